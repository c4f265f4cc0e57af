"""The catalog's fine-grained access control: a custom resource that runs as the
domain's master user and maps Proxima's IAM roles to OpenSearch security roles
(``catalog_roles_handler/index.py`` says which). Without it every request of a role
other than the master user gets 403, whatever its IAM policy allows.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import CustomResource, Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import custom_resources as cr
from constructs import Construct

from proxima_infra import catalog_access

HANDLER = Path(__file__).resolve().parent / "catalog_roles_handler"


def worker_role_name(project: str, region: str) -> str:
    """The fixed name of a data region's Dask worker task role (mapped before it exists)."""
    return f"{project}-{region}-dask-worker"


class CatalogRoles(Construct):
    """The master-user role (give its ARN to the domain) and, once the domain exists,
    the custom resource that maps the roles (``map``).
    """

    def __init__(self, scope: Construct, construct_id: str, *, vpc: ec2.IVpc) -> None:
        super().__init__(scope, construct_id)
        self.vpc = vpc
        self.master = iam.Role(
            self,
            "MasterUser",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="The catalog domain's FGAC master user: only the role-mapping function",
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name(
                    "service-role/AWSLambdaVPCAccessExecutionRole"
                )
            ],
        )
        self.security_group = ec2.SecurityGroup(
            self, "Sg", vpc=vpc, allow_all_outbound=True, description="Catalog role mapping"
        )

    def map(
        self,
        *,
        domain_arn: str,
        domain_endpoint: str,
        project: str,
        admins: list[str],
        analysts: list[str],
        refreshers: list[str],
        data_regions: list[str],
    ) -> CustomResource:
        """The custom resource; roles are IAM role ARNs (``admins`` get all_access)."""
        stack = Stack.of(self)
        self.master.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["es:ESHttpPut"],
                resources=[f"{domain_arn}/_plugins/_security/api/*"],
            )
        )
        function = lambda_.Function(
            self,
            "Function",
            runtime=lambda_.Runtime.PYTHON_3_14,
            handler="index.handler",
            code=lambda_.Code.from_asset(str(HANDLER)),
            role=self.master,
            vpc=self.vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_groups=[self.security_group],
            timeout=Duration.minutes(2),
        )
        provider = cr.Provider(self, "Provider", on_event_handler=function)
        workers = [
            stack.format_arn(
                service="iam",
                region="",
                resource="role",
                resource_name=worker_role_name(project, region),
            )
            for region in data_regions
        ]
        return CustomResource(
            self,
            "Mapping",
            service_token=provider.service_token,
            properties={
                "DomainEndpoint": domain_endpoint,
                "CatalogAlias": f"{project}-assets",
                "LocksIndex": catalog_access.LOCKS_INDEX,
                "AdminRoleArns": [*admins, self.master.role_arn],
                "AnalystRoleArns": analysts,
                "RefreshRoleArns": refreshers,
                "WorkerRoleArns": workers,
            },
        )
