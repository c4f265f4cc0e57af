"""The Dask task runner a regional subflow is bound to."""

from __future__ import annotations

from prefect_dask import DaskTaskRunner

from proxima.aws_outputs import DaskClusterSpec
from proxima.errors import ConfigurationError
from proxima.platform import Region

ECS_CLUSTER = "dask_cloudprovider.aws.ECSCluster"


def regional_runner(region: Region, connect_timeout: str = "15s") -> DaskTaskRunner:
    """Bind to the region's running scheduler, or start an ECSCluster on the resources
    its stack created (nothing else is created at run time).
    """
    if region.scheduler_address:
        return DaskTaskRunner(
            address=region.scheduler_address, client_kwargs={"timeout": connect_timeout}
        )
    if region.cluster_spec:
        spec = DaskClusterSpec.model_validate(region.cluster_spec)
        return DaskTaskRunner(cluster_class=ECS_CLUSTER, cluster_kwargs=spec.ecs_cluster_kwargs())
    raise ConfigurationError(
        f"region {region.name} has neither a scheduler_address nor a cluster_spec"
    )
