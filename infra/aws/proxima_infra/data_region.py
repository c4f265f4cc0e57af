"""One stack per data region: VPC, FSx for Lustre linked to the dataset buckets, a
scheduled metadata import, and a Dask cluster on ECS with EC2 capacity that mounts FSx.
"""

from __future__ import annotations

import shlex

import jsii
from aws_cdk import (
    AspectPriority,
    Aspects,
    CfnOutput,
    CfnParameter,
    Duration,
    IAspect,
    RemovalPolicy,
    Stack,
)
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_fsx as fsx
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_servicediscovery as sd
from constructs import Construct, IConstruct

from proxima_infra import catalog_access
from proxima_infra.catalog_roles import worker_role_name
from proxima_infra.client_link import ClientLink
from proxima_infra.config import (
    DataRegion,
    InfraConfig,
    cluster_name,
    container_image,
    worker_service_name,
)
from proxima_infra.network import vpc_with_flow_logs

DASK_SCHEDULER_PORT = 8786
DASK_DASHBOARD_PORT = 8787
# The minimal profile's workers scale in to none below this average CPU (15 minutes of
# it, target tracking's scale-in alarm); a flow run wakes them (proxima/ecs.py).
IDLE_CPU_PERCENT = 5
NANNY_ALLOCATOR = repr(
    {"MALLOC_TRIM_THRESHOLD_": 128 * 2**20, "MALLOC_MMAP_THRESHOLD_": 128 * 2**20}
)
LUSTRE_PORTS = (988, 1018, 1023)


TLS_DIR = "/tmp/dask-tls"  # inside the task: the secret's files, owner-only


def tls_command(*dask: str) -> list[str]:
    """A container command: write the task's Dask TLS secret (``PROXIMA_DASK_TLS``,
    from Secrets Manager) to files, then run ``dask <dask…>`` with them.
    """
    argv = [
        "dask",
        *dask,
        "--tls-ca-file",
        f"{TLS_DIR}/ca.pem",
        "--tls-cert",
        f"{TLS_DIR}/cert.pem",
        "--tls-key",
        f"{TLS_DIR}/key.pem",
    ]
    return [
        "sh",
        "-c",
        f"python -m proxima.dask_tls materialize {TLS_DIR} && exec {shlex.join(argv)}",
    ]


@jsii.implements(IAspect)
class _AfterCapacityAssociation:
    """Makes ``services`` depend on ``cluster``'s capacity-provider association, which
    aws-cdk-lib creates in an aspect of its own (so it is not there to refer to when the
    services are made).
    """

    def __init__(self, cluster: ecs.Cluster, services: list[ecs.BaseService]) -> None:
        self.cluster = cluster
        self.services = services

    def visit(self, node: IConstruct) -> None:
        if node is not self.cluster:
            return
        association = self.cluster.node.try_find_child(self.cluster.node.id)
        if association is None:
            raise RuntimeError("the cluster has no capacity-provider association")
        for service in self.services:
            service.node.add_dependency(association)


class DataRegionStack(Stack):
    """Everything one data region runs."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cfg: InfraConfig,
        region_cfg: DataRegion,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        vpc = vpc_with_flow_logs(self, region_cfg.cidr)

        client_vpc_id = CfnParameter(
            self,
            "ClientVpcId",
            type="String",
            description="VPC id of the client-region stack (output ClientVpcId), for peering.",
        )
        client_route_tables = CfnParameter(
            self,
            "ClientRouteTableIds",
            type="CommaDelimitedList",
            description="The client VPC's private route tables (client stack output "
            "ClientRouteTableIds): routed to this region through the peering.",
        )
        catalog_arn = CfnParameter(
            self,
            "CatalogDomainArn",
            type="String",
            description="ARN of the catalog's OpenSearch domain (client stack output "
            "CatalogDomainArn): the workers write the region's documents.",
        )
        peering = ec2.CfnVPCPeeringConnection(
            self,
            "PeeringToClient",
            vpc_id=vpc.vpc_id,
            peer_vpc_id=client_vpc_id.value_as_string,
            peer_region=cfg.client.region,
        )
        for i, subnet in enumerate(vpc.private_subnets):
            ec2.CfnRoute(
                self,
                f"RouteToClient{i}",
                route_table_id=subnet.route_table.route_table_id,
                destination_cidr_block=cfg.client.cidr,
                vpc_peering_connection_id=peering.ref,
            )

        dask_sg = ec2.SecurityGroup(
            self,
            "DaskSg",
            vpc=vpc,
            allow_all_outbound=True,
            description="Dask scheduler and workers",
        )
        dask_sg.add_ingress_rule(
            ec2.Peer.ipv4(cfg.client.cidr),
            ec2.Port.tcp(DASK_SCHEDULER_PORT),
            "Dask scheduler over TLS from the client region only",
        )
        dask_sg.add_ingress_rule(
            ec2.Peer.ipv4(cfg.client.cidr),
            ec2.Port.tcp(DASK_DASHBOARD_PORT),
            "Dask dashboard from the client region only",
        )
        dask_sg.add_ingress_rule(
            dask_sg, ec2.Port.tcp_range(1024, 65535), "scheduler <-> workers inside the region"
        )
        fsx_sg = ec2.SecurityGroup(
            self,
            "FsxSg",
            vpc=vpc,
            allow_all_outbound=False,
            description="FSx for Lustre: only the Dask hosts",
        )
        fsx_sg.add_ingress_rule(dask_sg, ec2.Port.tcp(LUSTRE_PORTS[0]), "Lustre")
        fsx_sg.add_ingress_rule(dask_sg, ec2.Port.tcp_range(*LUSTRE_PORTS[1:]), "Lustre")
        fsx_sg.add_ingress_rule(fsx_sg, ec2.Port.tcp(LUSTRE_PORTS[0]), "Lustre servers")
        fsx_sg.add_ingress_rule(fsx_sg, ec2.Port.tcp_range(*LUSTRE_PORTS[1:]), "Lustre servers")
        # Lustre servers also connect back to their clients: both ways on 988, 1018-1023
        for peer in (dask_sg, fsx_sg):
            fsx_sg.add_egress_rule(peer, ec2.Port.tcp(LUSTRE_PORTS[0]), "Lustre")
            fsx_sg.add_egress_rule(peer, ec2.Port.tcp_range(*LUSTRE_PORTS[1:]), "Lustre")
        dask_sg.add_ingress_rule(fsx_sg, ec2.Port.tcp(LUSTRE_PORTS[0]), "Lustre servers")
        dask_sg.add_ingress_rule(fsx_sg, ec2.Port.tcp_range(*LUSTRE_PORTS[1:]), "Lustre servers")

        lustre = fsx.CfnFileSystem(
            self,
            "Lustre",
            file_system_type="LUSTRE",
            storage_capacity=region_cfg.fsx_storage_gib,
            subnet_ids=[vpc.private_subnets[0].subnet_id],
            security_group_ids=[fsx_sg.security_group_id],
            lustre_configuration=fsx.CfnFileSystem.LustreConfigurationProperty(
                deployment_type="PERSISTENT_2",
                per_unit_storage_throughput=125,
                data_compression_type="LZ4",
            ),
        )
        # It only caches the dataset buckets (import-only associations): nothing is lost
        # with it, and a retained file system keeps costing ~$170 a month.
        lustre.apply_removal_policy(RemovalPolicy.DESTROY)
        # One import path: the catalog-refresh flow's (an IMPORT_METADATA_FROM_REPOSITORY
        # task from the region's workers, then the scan sees exactly what it imported).
        # No auto-import events and no separate schedule racing it.
        for i, bucket in enumerate(region_cfg.buckets):
            fsx.CfnDataRepositoryAssociation(
                self,
                f"Dra{i}",
                file_system_id=lustre.ref,
                file_system_path=f"/{bucket}",
                data_repository_path=f"s3://{bucket}",
                batch_import_meta_data_on_create=True,
            )
        fs_arn = self.format_arn(service="fsx", resource="file-system", resource_name=lustre.ref)
        # CreateDataRepositoryTask authorizes the file system and the task it creates.
        fs_task_arns = [fs_arn, self.format_arn(service="fsx", resource="task", resource_name="*")]

        cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=vpc,
            cluster_name=cluster_name(cfg.project, region_cfg.region),
            container_insights_v2=ecs.ContainerInsights.ENABLED,
            default_cloud_map_namespace=ecs.CloudMapNamespaceOptions(
                name=f"{region_cfg.region}.{cfg.project}.internal",
                vpc=vpc,
                type=sd.NamespaceType.DNS_PRIVATE,
            ),
        )
        namespace = cluster.default_cloud_map_namespace
        assert isinstance(namespace, sd.PrivateDnsNamespace)
        ClientLink(
            self,
            "ClientLink",
            peering_id=peering.ref,
            client_region=cfg.client.region,
            client_vpc_id=client_vpc_id.value_as_string,
            client_route_tables=client_route_tables.value_as_list,
            data_cidr=region_cfg.cidr,
            hosted_zone_id=namespace.namespace_hosted_zone_id,
        )
        in_fsx_subnet = ec2.SubnetSelection(subnets=[vpc.private_subnets[0]])
        asg = autoscaling.AutoScalingGroup(
            self,
            "DaskHosts",
            vpc=vpc,
            # The file system lives in one subnet (one AZ): hosts elsewhere would pay
            # cross-AZ traffic on every read, and lose /fsx if that AZ is down anyway.
            vpc_subnets=in_fsx_subnet,
            instance_type=ec2.InstanceType(region_cfg.instance_type),
            machine_image=ecs.EcsOptimizedImage.amazon_linux2023(),
            # minimal: no host while idle (the capacity provider starts one for the
            # scheduler's task); production: one kept warm for a prompt first run
            min_capacity=0 if cfg.profile == "minimal" else 1,
            max_capacity=region_cfg.workers + 1,
            security_group=dask_sg,
            require_imdsv2=True,
            block_devices=[
                autoscaling.BlockDevice(
                    device_name="/dev/xvda",
                    volume=autoscaling.BlockDeviceVolume.ebs(
                        60, encrypted=True, volume_type=autoscaling.EbsDeviceVolumeType.GP3
                    ),
                )
            ],
        )
        # Fargate cannot mount Lustre: EC2 hosts mount FSx and tasks bind-mount it.
        # A host whose mount failed must not join the cluster with an empty /fsx: the
        # script stops at the first error (before the ECS agent's configuration that
        # aws-cdk-lib appends), and fstab remounts after a reboot.
        asg.add_user_data(
            "set -euo pipefail",
            "dnf install -y lustre-client",
            f"mkdir -p {region_cfg.fsx_path}",
            f"echo '{lustre.attr_dns_name}@tcp:/{lustre.attr_lustre_mount_name} "
            f"{region_cfg.fsx_path} lustre defaults,relatime,flock,_netdev,x-systemd.automount,"
            "x-systemd.requires=network.service 0 0' >> /etc/fstab",
            f"mount {region_cfg.fsx_path}",
            f"mountpoint -q {region_cfg.fsx_path}",
        )
        capacity = ecs.AsgCapacityProvider(
            self,
            "Capacity",
            auto_scaling_group=asg,
            enable_managed_termination_protection=False,
        )
        cluster.add_asg_capacity_provider(capacity)
        on_hosts = [
            ecs.CapacityProviderStrategy(
                capacity_provider=capacity.capacity_provider_name, weight=1
            )
        ]

        log_group = logs.LogGroup(
            self,
            "DaskLogs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        tls = secretsmanager.Secret.from_secret_name_v2(self, "DaskTls", f"{cfg.project}/dask-tls")
        # tasks run on the workers report their states to the deployment's Prefect: without
        # the API, Prefect starts a throwaway server in each worker (FIELD-NOTES)
        prefect_api = secretsmanager.Secret.from_secret_name_v2(
            self, "PrefectApi", f"{cfg.project}/prefect-api"
        )
        image, _ = container_image(self, cfg)  # one image for every task of the stack
        scheduler_td = self._task(
            cfg,
            region_cfg,
            "Scheduler",
            log_group,
            tls,
            image,
            tls_command(
                "scheduler",
                "--protocol",
                "tls",
                "--port",
                str(DASK_SCHEDULER_PORT),
                "--dashboard-address",
                f":{DASK_DASHBOARD_PORT}",
            ),
            cpu=1024,
            memory=4096,
            fargate=True,
        )
        worker_td = self._task(
            cfg,
            region_cfg,
            "Worker",
            log_group,
            tls,
            image,
            tls_command(
                "worker",
                f"tls://scheduler.{region_cfg.region}.{cfg.project}.internal:{DASK_SCHEDULER_PORT}",
                "--nthreads",
                "4",
            ),
            cpu=4096,
            memory=30000,
            secrets={
                "PREFECT_API_URL": ecs.Secret.from_secrets_manager(prefect_api, "url"),
                "PREFECT_API_KEY": ecs.Secret.from_secrets_manager(prefect_api, "key"),
            },
            # a fixed name: the catalog stack maps it to an OpenSearch role before this
            # stack exists (catalog_roles.py)
            task_role=iam.Role(
                self,
                "WorkerTaskRole",
                role_name=worker_role_name(cfg.project, region_cfg.region),
                assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            ),
        )
        # The refresh flow's import and catalog writes run on the workers (proxima/
        # repository.py's fsx_import, proxima/catalog/refresh.py's bulk writes).
        worker_role = worker_td.task_role
        worker_role.add_to_principal_policy(
            iam.PolicyStatement(actions=["fsx:CreateDataRepositoryTask"], resources=fs_task_arns)
        )
        worker_role.add_to_principal_policy(
            iam.PolicyStatement(actions=["fsx:DescribeDataRepositoryTasks"], resources=["*"])
        )
        for statement in catalog_access.statements(
            catalog_arn.value_as_string, cfg.project, "worker"
        ):
            worker_role.add_to_principal_policy(statement)
        # The scheduler reads no data: on Fargate it keeps no EC2 host up while the
        # workers are scaled in, and the flows' clients always find it.
        ecs.FargateService(
            self,
            "SchedulerService",
            cluster=cluster,
            task_definition=scheduler_td,
            desired_count=1,
            min_healthy_percent=0,  # one scheduler: replaced, not doubled
            max_healthy_percent=100,
            security_groups=[dask_sg],
            cloud_map_options=ecs.CloudMapOptions(name="scheduler"),
            vpc_subnets=in_fsx_subnet,
            assign_public_ip=False,
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
        )
        minimal = cfg.profile == "minimal"
        worker_service = ecs.Ec2Service(
            self,
            "WorkerService",
            cluster=cluster,
            service_name=worker_service_name(cfg.project, region_cfg.region),
            task_definition=worker_td,
            # minimal: none while idle; a flow run sets the count (proxima/ecs.py)
            desired_count=0 if minimal else region_cfg.workers,
            min_healthy_percent=50,
            security_groups=[dask_sg],
            capacity_provider_strategies=on_hosts,
            vpc_subnets=in_fsx_subnet,
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
        )
        if minimal:
            scaling = worker_service.auto_scale_task_count(
                min_capacity=0, max_capacity=region_cfg.workers
            )
            scaling.scale_on_cpu_utilization(
                "ScaleInWhenIdle",
                target_utilization_percent=IDLE_CPU_PERCENT,
                scale_in_cooldown=Duration.minutes(15),
                scale_out_cooldown=Duration.minutes(1),
            )
        # A service created before the cluster's capacity-provider association fails
        # "capacity provider not associated with the cluster" (intermittently: the order
        # is CloudFormation's, as nothing refers from one to the other)
        Aspects.of(self).add(
            _AfterCapacityAssociation(cluster, [worker_service]),
            priority=AspectPriority.MUTATING + 1,  # after aws-cdk-lib's, which creates it
        )

        address = (
            f"tls://scheduler.{region_cfg.region}.{cfg.project}.internal:{DASK_SCHEDULER_PORT}"
        )
        CfnOutput(
            self, "SchedulerAddress", value=address, description="DataRegion.scheduler_address"
        )
        CfnOutput(self, "FsxMount", value=region_cfg.fsx_path, description="DataRegion.mount")
        CfnOutput(
            self,
            "EcsWorkerService",
            value=f"{cluster.cluster_name}/{worker_service_name(cfg.project, region_cfg.region)}",
            description="DataRegion.ecs_worker_service (cluster/service)",
        )
        CfnOutput(self, "Workers", value=str(region_cfg.workers), description="DataRegion.workers")
        CfnOutput(
            self, "FsxFileSystemId", value=lustre.ref, description="DataRegion.fsx_file_system_id"
        )
        CfnOutput(
            self,
            "DataRepositoryUri",
            value=",".join(f"s3://{b}" for b in region_cfg.buckets),
            description="DataRegion.data_repository_uri",
        )
        CfnOutput(
            self,
            "DashboardUrl",
            value=f"http://scheduler.{region_cfg.region}.{cfg.project}.internal:"
            f"{DASK_DASHBOARD_PORT}/status",
            description="DataRegion.dashboard_url",
        )
        CfnOutput(
            self,
            "VpcPeeringId",
            value=peering.ref,
            description="Accept in the client region; add it to the client config",
        )

    def _task(
        self,
        cfg: InfraConfig,
        region_cfg: DataRegion,
        role: str,
        log_group: logs.ILogGroup,
        tls: secretsmanager.ISecret,
        image: ecs.ContainerImage,
        command: list[str],
        *,
        cpu: int,
        memory: int,
        task_role: iam.IRole | None = None,
        secrets: dict[str, ecs.Secret] | None = None,
        fargate: bool = False,
    ) -> ecs.TaskDefinition:
        """A Dask task: on the EC2 hosts with /fsx bind-mounted, or (``fargate``, the
        scheduler, which reads no data) on Fargate without it.
        """
        td: ecs.TaskDefinition
        if fargate:
            td = ecs.FargateTaskDefinition(
                self, f"{role}Task", cpu=cpu, memory_limit_mib=memory, task_role=task_role
            )
        else:
            td = ecs.Ec2TaskDefinition(
                self, f"{role}Task", network_mode=ecs.NetworkMode.AWS_VPC, task_role=task_role
            )
            td.add_volume(name="fsx", host=ecs.Host(source_path=region_cfg.fsx_path))
        container = td.add_container(
            role,
            image=image,
            command=command,
            cpu=cpu,
            memory_limit_mib=memory,
            logging=ecs.LogDrivers.aws_logs(stream_prefix=role.lower(), log_group=log_group),
            environment={
                "PROXIMA_REGION": region_cfg.region,
                "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True",
                # as the local stack's workers (proxima/stack/services.py): Dask's nanny
                # default MALLOC_TRIM_THRESHOLD_ doubled the kernel's CPU per byte
                "DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON": NANNY_ALLOCATOR,
            },
            secrets={"PROXIMA_DASK_TLS": ecs.Secret.from_secrets_manager(tls), **(secrets or {})},
            port_mappings=[ecs.PortMapping(container_port=DASK_SCHEDULER_PORT)]
            if role == "Scheduler"
            else [],
        )
        if not fargate:
            container.add_mount_points(
                ecs.MountPoint(
                    container_path=region_cfg.fsx_path, source_volume="fsx", read_only=True
                )
            )
        return td


__all__ = ["DataRegionStack", "Duration"]
