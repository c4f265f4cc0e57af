"""The client side of a data region's VPC peering, done from the data-region stack
(the client stack exists first and cannot know the peering): accept the peering in the
client region, route the client's private subnets to the data region's CIDR, and
associate the region's Cloud Map zone (``scheduler.<region>.<project>.internal``) with
the client VPC so the scheduler addresses in the DataRegion blocks resolve there.
"""

from __future__ import annotations

from aws_cdk import Fn
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
    """Peering accepted, routes and DNS on the client side of one data region."""

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
        accept = cr.AwsCustomResource(
            self,
            "AcceptPeering",
            on_create=_call(
                "EC2",
                "acceptVpcPeeringConnection",
                {"VpcPeeringConnectionId": peering_id},
                client_region,
                f"accept-{peering_id}",
            ),
            policy=policy,
            install_latest_aws_sdk=False,
        )
        for i in range(MAX_AZS):  # the client VPC has one private route table per AZ
            table = Fn.select(i, client_route_tables)
            route = {"RouteTableId": table, "DestinationCidrBlock": data_cidr}
            created = cr.AwsCustomResource(
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
            created.node.add_dependency(accept)
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
            policy=policy,
            install_latest_aws_sdk=False,
        )
