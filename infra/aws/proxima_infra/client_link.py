"""The client side of a data region's VPC peering, done from the data-region stack
(the client stack exists first and cannot know the peering): route the client's private
subnets to the data region's CIDR, and associate the region's Cloud Map zone
(``scheduler.<region>.<project>.internal``) with the client VPC so the scheduler
addresses in the DataRegion blocks resolve there.

Nothing accepts the peering: both VPCs are in one account, and CloudFormation accepts a
same-account peering itself (``AcceptVpcPeeringConnection`` on an active one fails).
"""

from __future__ import annotations

from aws_cdk import Fn, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import custom_resources as cr
from constructs import Construct

from proxima_infra.network import MAX_AZS


def _call(service: str, action: str, parameters: dict, region: str, physical: str) -> cr.AwsSdkCall:
    return cr.AwsSdkCall(
        service=service,
        action=action,
        parameters=parameters,
        region=region,
        physical_resource_id=cr.PhysicalResourceId.of(physical),
    )


class ClientLink(Construct):
    """Routes and DNS on the client side of one data region's peering."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        peering_id: str,
        client_region: str,
        client_vpc_id: str,
        client_route_tables: list[str],
        data_cidr: str,
        hosted_zone_id: str,
    ) -> None:
        super().__init__(scope, construct_id)
        policy = cr.AwsCustomResourcePolicy.from_sdk_calls(
            resources=cr.AwsCustomResourcePolicy.ANY_RESOURCE
        )
        for i in range(MAX_AZS):  # the client VPC has one private route table per AZ
            table = Fn.select(i, client_route_tables)
            route = {"RouteTableId": table, "DestinationCidrBlock": data_cidr}
            cr.AwsCustomResource(
                self,
                f"ClientRoute{i}",
                on_create=_call(
                    "EC2",
                    "createRoute",
                    {**route, "VpcPeeringConnectionId": peering_id},
                    client_region,
                    f"route-{i}-{data_cidr}",
                ),
                on_delete=_call(
                    "EC2", "deleteRoute", route, client_region, f"route-{i}-{data_cidr}"
                ),
                policy=policy,
                install_latest_aws_sdk=False,
            )
        vpc = {"VPCId": client_vpc_id, "VPCRegion": client_region}
        cr.AwsCustomResource(
            self,
            "AssociateZone",
            on_create=_call(
                "Route53",
                "associateVPCWithHostedZone",
                {"HostedZoneId": hosted_zone_id, "VPC": vpc},
                client_region,
                f"zone-{client_vpc_id}",
            ),
            on_delete=_call(
                "Route53",
                "disassociateVPCFromHostedZone",
                {"HostedZoneId": hosted_zone_id, "VPC": vpc},
                client_region,
                f"zone-{client_vpc_id}",
            ),
            # Route 53 checks the VPC it associates: without ec2:DescribeVpcs the call
            # is denied (not derivable from the SDK call, so written out)
            policy=cr.AwsCustomResourcePolicy.from_statements(
                [
                    iam.PolicyStatement(
                        actions=[
                            "route53:AssociateVPCWithHostedZone",
                            "route53:DisassociateVPCFromHostedZone",
                        ],
                        resources=[
                            Stack.of(self).format_arn(
                                service="route53",
                                region="",
                                account="",
                                resource="hostedzone",
                                resource_name=hosted_zone_id,
                            )
                        ],
                    ),
                    iam.PolicyStatement(actions=["ec2:DescribeVpcs"], resources=["*"]),
                ]
            ),
            install_latest_aws_sdk=False,
        )
