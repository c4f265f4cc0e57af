"""The client-region stack: VPC, Amazon OpenSearch Service in the VPC, the results
bucket, roles for analysts and for the refresh flow, and a Prefect ECS worker.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, CfnParameter, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_opensearchservice as opensearch
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from proxima_infra import catalog_access
from proxima_infra.catalog_roles import CatalogRoles
from proxima_infra.config import (
    InfraConfig,
    cluster_name,
    container_image,
    worker_service_name,
)
from proxima_infra.network import vpc_with_flow_logs
from proxima_infra.workstation import Workstation


def _catalog_capacity(cfg: InfraConfig, vpc: ec2.IVpc) -> dict[str, Any]:
    """The domain's nodes, subnets and storage (gp3: cheaper than gp2, 3,000 IOPS at any
    size) for the configured profile.
    """
    gp3 = ec2.EbsDeviceVolumeType.GP3
    if cfg.profile == "minimal":
        return {
            "vpc_subnets": [ec2.SubnetSelection(subnets=[vpc.private_subnets[0]])],
            "capacity": opensearch.CapacityConfig(
                data_nodes=1,
                data_node_instance_type=cfg.client.opensearch_instance_type,
                multi_az_with_standby_enabled=False,
            ),
            "zone_awareness": opensearch.ZoneAwarenessConfig(enabled=False),
            "ebs": opensearch.EbsOptions(volume_size=20, volume_type=gp3),
        }
    return {
        "vpc_subnets": [ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)],
        "capacity": opensearch.CapacityConfig(
            data_nodes=2,
            data_node_instance_type=cfg.client.opensearch_instance_type,
            master_nodes=3,
            master_node_instance_type="m6g.large.search",
            multi_az_with_standby_enabled=False,
        ),
        "zone_awareness": opensearch.ZoneAwarenessConfig(enabled=True, availability_zone_count=2),
        "ebs": opensearch.EbsOptions(volume_size=100, volume_type=gp3),
    }


STAC_PORT = 8090


class ClientRegionStack(Stack):
    """What the scientist's side runs."""

    def __init__(self, scope: Construct, construct_id: str, *, cfg: InfraConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        vpc = vpc_with_flow_logs(self, cfg.client.cidr)
        data_cidrs = [r.cidr for r in cfg.data_regions]

        search_sg = ec2.SecurityGroup(
            self,
            "SearchSg",
            vpc=vpc,
            allow_all_outbound=False,
            description="OpenSearch: HTTPS from the Proxima networks only",
        )
        for cidr in [cfg.client.cidr, *data_cidrs]:
            search_sg.add_ingress_rule(
                ec2.Peer.ipv4(cidr), ec2.Port.tcp(443), "HTTPS from the client and data-region VPCs"
            )

        analyst_role = iam.Role(
            self,
            "AnalystRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="Reads the catalog (search) and writes results",
        )
        stac_role = iam.Role(
            self,
            "StacRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="The STAC API service: reads the catalog, nothing else",
        )
        workstation_role = iam.Role(
            self,
            "WorkstationRole",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="The analysts' workstation in the VPC: an analyst's grants, and SSM",
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name("AmazonSSMManagedInstanceCore")
            ],
        )
        refresh_role = iam.Role(
            self,
            "RefreshRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="The catalog-refresh flow: writes the catalog",
        )
        slow_logs = logs.LogGroup(
            self,
            "SearchLogs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        admin_role = CfnParameter(
            self,
            "CatalogAdminRoleArn",
            type="String",
            description="IAM role ARN of the catalog's administrators (OpenSearch all_access)",
        )
        roles_mapper = CatalogRoles(self, "CatalogRoles", vpc=vpc)
        search_sg.add_ingress_rule(
            roles_mapper.security_group, ec2.Port.tcp(443), "the role-mapping function"
        )
        domain = opensearch.Domain(
            self,
            "Catalog",
            version=opensearch.EngineVersion.OPENSEARCH_2_19,
            vpc=vpc,
            security_groups=[search_sg],
            **_catalog_capacity(cfg, vpc),
            encryption_at_rest=opensearch.EncryptionAtRestOptions(enabled=True),
            node_to_node_encryption=True,
            enforce_https=True,
            tls_security_policy=opensearch.TLSSecurityPolicy.TLS_1_2,
            fine_grained_access_control=opensearch.AdvancedSecurityOptions(
                master_user_arn=roles_mapper.master.role_arn
            ),
            logging=opensearch.LoggingOptions(
                slow_search_log_enabled=True,
                slow_search_log_group=slow_logs,
                slow_index_log_enabled=True,
                slow_index_log_group=slow_logs,
                app_log_enabled=True,
                app_log_group=slow_logs,
            ),
            removal_policy=RemovalPolicy.RETAIN,
        )
        if cfg.client.create_opensearch_service_role:
            # a VPC domain needs it, and an account that never had a domain has none
            linked = iam.CfnServiceLinkedRole(
                self,
                "OpenSearchServiceRole",
                aws_service_name="opensearchservice.amazonaws.com",
                description="Lets OpenSearch Service place the catalog's domain in the VPC",
            )
            domain.node.add_dependency(linked)
        if cfg.profile == "minimal":
            NagSuppressions.add_resource_suppressions(
                domain,
                [
                    NagPackSuppression(
                        id=rule,
                        reason="profile minimal: one data node holds a catalog that every "
                        "refresh can rebuild from the file systems; production adds three "
                        "dedicated masters and two zone-aware data nodes",
                    )
                    for rule in ("AwsSolutions-OS4", "AwsSolutions-OS7")
                ],
                apply_to_children=True,
            )
        roles_mapper.map(
            domain_arn=domain.domain_arn,
            domain_endpoint=domain.domain_endpoint,
            project=cfg.project,
            admins=[admin_role.value_as_string],
            analysts=[analyst_role.role_arn, stac_role.role_arn, workstation_role.role_arn],
            refreshers=[refresh_role.role_arn],
            data_regions=[r.region for r in cfg.data_regions],
        )
        for role, caller in (
            (analyst_role, "analyst"),
            (stac_role, "analyst"),
            (workstation_role, "analyst"),
            (refresh_role, "refresh"),
        ):
            for statement in catalog_access.statements(domain.domain_arn, cfg.project, caller):
                role.add_to_principal_policy(statement)
        # A flow run wakes each data region's worker service (scaled to none when idle)
        # before it computes there (proxima/ecs.py)
        worker_services = [
            self.format_arn(
                service="ecs",
                region=r.region,
                resource="service",
                resource_name=f"{cluster_name(cfg.project, r.region)}/"
                f"{worker_service_name(cfg.project, r.region)}",
            )
            for r in cfg.data_regions
        ]
        for role in (analyst_role, workstation_role, refresh_role):
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=["ecs:DescribeServices", "ecs:UpdateService"],
                    resources=worker_services,
                )
            )

        access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(90))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        results = s3.Bucket(
            self,
            "Results",
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            versioned=True,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="results/",
            removal_policy=RemovalPolicy.RETAIN,
        )
        results.grant_read_write(analyst_role)
        results.grant_read_write(workstation_role)

        image, image_uri = container_image(self, cfg)
        cluster = ecs.Cluster(
            self, "PrefectCluster", vpc=vpc, container_insights_v2=ecs.ContainerInsights.ENABLED
        )
        prefect_key = secretsmanager.Secret.from_secret_name_v2(
            self, "PrefectApiKey", f"{cfg.project}/prefect-api"
        )
        worker_logs = logs.LogGroup(
            self,
            "WorkerLogs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        worker_td = ecs.FargateTaskDefinition(
            self, "PrefectWorkerTask", cpu=512, memory_limit_mib=1024
        )
        worker_td.add_container(
            "worker",
            image=image,
            command=["prefect", "worker", "start", "--pool", f"{cfg.project}-ecs", "--type", "ecs"],
            logging=ecs.LogDrivers.aws_logs(stream_prefix="prefect-worker", log_group=worker_logs),
            secrets={
                "PREFECT_API_URL": ecs.Secret.from_secrets_manager(prefect_key, "url"),
                "PREFECT_API_KEY": ecs.Secret.from_secrets_manager(prefect_key, "key"),
            },
        )
        # Flow runs are ECS tasks the worker starts (prefect-aws's ECS worker): their
        # execution role pulls the image and writes logs; their task role is the analyst
        # or the refresh role; they run in the private subnets behind flow_run_sg.
        flow_run_execution = iam.Role(
            self,
            "FlowRunExecutionRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name(
                    "service-role/AmazonECSTaskExecutionRolePolicy"
                )
            ],
        )
        flow_run_sg = ec2.SecurityGroup(
            self,
            "FlowRunSg",
            vpc=vpc,
            allow_all_outbound=True,
            description="Prefect flow-run tasks: outbound to the catalog, Dask and Prefect",
        )
        search_sg.add_ingress_rule(flow_run_sg, ec2.Port.tcp(443), "flow runs search the catalog")
        worker_role = worker_td.task_role
        # RunTask, StopTask and DescribeTasks can be limited to the one cluster;
        # task-definition and network lookups support no such condition (an
        # ecs:cluster condition on them would deny them).
        worker_role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["ecs:RunTask", "ecs:StopTask", "ecs:DescribeTasks"],
                resources=["*"],
                conditions={"ArnEquals": {"ecs:cluster": cluster.cluster_arn}},
            )
        )
        worker_role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[
                    "ecs:RegisterTaskDefinition",
                    "ecs:DeregisterTaskDefinition",
                    "ecs:DescribeTaskDefinition",
                    "ecs:ListTaskDefinitions",
                    "ec2:DescribeVpcs",
                    "ec2:DescribeSubnets",
                    "ec2:DescribeSecurityGroups",
                ],
                resources=["*"],
            )
        )
        worker_role.add_to_principal_policy(  # tags on the tasks it starts
            iam.PolicyStatement(
                actions=["ecs:TagResource"],
                resources=["*"],
                conditions={"StringEquals": {"ecs:CreateAction": "RunTask"}},
            )
        )
        worker_role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[
                    analyst_role.role_arn,
                    refresh_role.role_arn,
                    flow_run_execution.role_arn,
                ],
            )
        )
        ecs.FargateService(
            self,
            "PrefectWorker",
            cluster=cluster,
            task_definition=worker_td,
            desired_count=1,
            min_healthy_percent=0,  # one worker: replaced, not doubled
            max_healthy_percent=100,
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
        )

        stac_url = self._stac_service(cfg, vpc, cluster, image, stac_role, search_sg, domain)
        workstation = Workstation(
            self,
            "Workstation",
            vpc=vpc,
            role=workstation_role,
            image_uri=image_uri,
            prefect_api=prefect_key,
        )
        CfnOutput(
            self,
            "WorkstationId",
            value=workstation.instance.instance_id,
            description="aws ssm start-session --target <this> (docs/aws.md, Run)",
        )

        CfnOutput(
            self,
            "StacApiUrl",
            value=stac_url,
            description="The STAC API and intake-esm datastore (inside the Proxima networks)",
        )
        CfnOutput(
            self,
            "OpenSearchEndpoint",
            value=f"https://{domain.domain_endpoint}",
            description="OpenSearchCatalog.hosts (auth: sigv4)",
        )
        CfnOutput(
            self,
            "CatalogReplicas",
            value="0" if cfg.profile == "minimal" else "1",
            description="OpenSearchCatalog.replicas (one node: 0; a zone-aware pair: 1)",
        )
        CfnOutput(
            self, "ResultsBucket", value=results.bucket_name, description="ResultsStore.bucket"
        )
        CfnOutput(
            self,
            "CatalogDomainArn",
            value=domain.domain_arn,
            description="Parameter CatalogDomainArn of each data-region stack",
        )
        CfnOutput(self, "AnalystRoleArn", value=analyst_role.role_arn)
        CfnOutput(self, "RefreshRoleArn", value=refresh_role.role_arn)
        CfnOutput(
            self,
            "ClientVpcId",
            value=vpc.vpc_id,
            description="Parameter ClientVpcId of each data-region stack",
        )
        CfnOutput(self, "PrefectClusterArn", value=cluster.cluster_arn)
        CfnOutput(
            self,
            "ClientRouteTableIds",
            value=",".join(s.route_table.route_table_id for s in vpc.private_subnets),
            description="Parameter ClientRouteTableIds of each data-region stack",
        )
        # the ECS work pool's base job template (proxima aws-blocks prints it)
        CfnOutput(self, "FlowRunExecutionRoleArn", value=flow_run_execution.role_arn)
        CfnOutput(self, "FlowRunImage", value=image_uri)
        CfnOutput(self, "FlowRunSecurityGroup", value=flow_run_sg.security_group_id)
        CfnOutput(
            self,
            "FlowRunSubnets",
            value=",".join(s.subnet_id for s in vpc.private_subnets),
        )

    def _stac_service(
        self,
        cfg: InfraConfig,
        vpc: ec2.IVpc,
        cluster: ecs.Cluster,
        image: ecs.ContainerImage,
        role: iam.IRole,
        search_sg: ec2.SecurityGroup,
        domain: opensearch.Domain,
    ) -> str:
        """The read-only STAC API (proxima/stac) behind the catalog's network rules:
        reachable from the client and data-region VPCs only, on its own port, and
        reading the catalog with the analysts' grants.
        """
        sg = ec2.SecurityGroup(
            self,
            "StacSg",
            vpc=vpc,
            description="The STAC API: HTTP from the Proxima networks only",
            allow_all_outbound=True,  # the image pull and logs go out through the NAT
        )
        for cidr in [cfg.client.cidr, *(r.cidr for r in cfg.data_regions)]:
            sg.add_ingress_rule(
                ec2.Peer.ipv4(cidr), ec2.Port.tcp(STAC_PORT), "STAC API from the Proxima VPCs"
            )
        search_sg.add_ingress_rule(sg, ec2.Port.tcp(443), "the STAC API reads the catalog")
        task = ecs.FargateTaskDefinition(
            self, "StacTask", cpu=256, memory_limit_mib=512, task_role=role
        )
        task.add_container(
            "stac",
            image=image,
            command=[
                "python",
                "-m",
                "proxima.stac",
                *("--host", "0.0.0.0", "--port", str(STAC_PORT)),
                *("--catalog", f"https://{domain.domain_endpoint}"),
                *("--alias", f"{cfg.project}-assets", "--auth", "sigv4"),
                *("--aws-region", Stack.of(self).region),
            ],
            port_mappings=[ecs.PortMapping(container_port=STAC_PORT)],
            logging=ecs.LogDrivers.aws_logs(
                stream_prefix="stac",
                log_group=logs.LogGroup(
                    self,
                    "StacLogs",
                    retention=logs.RetentionDays.ONE_MONTH,
                    removal_policy=RemovalPolicy.DESTROY,
                ),
            ),
        )
        namespace = cluster.add_default_cloud_map_namespace(name=f"{cfg.project}.internal")
        ecs.FargateService(
            self,
            "StacApi",
            cluster=cluster,
            task_definition=task,
            desired_count=1,
            min_healthy_percent=100,  # stateless: the new task starts before the old stops
            max_healthy_percent=200,
            security_groups=[sg],
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            cloud_map_options=ecs.CloudMapOptions(name="stac"),
        )
        return f"http://stac.{namespace.namespace_name}:{STAC_PORT}"
