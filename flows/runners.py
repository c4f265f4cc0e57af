"""The Dask task runner a regional subflow is bound to."""

from __future__ import annotations

from typing import Any

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
            address=region.scheduler_address,
            client_kwargs={"timeout": connect_timeout, "security": region.dask_security()},
        )
    if region.cluster_spec:
        spec = DaskClusterSpec.model_validate(region.cluster_spec)
        return DaskTaskRunner(cluster_class=ECS_CLUSTER, cluster_kwargs=spec.ecs_cluster_kwargs())
    raise ConfigurationError(
        f"region {region.name} has neither a scheduler_address nor a cluster_spec"
    )


def cluster_client_kwargs() -> dict[str, Any]:
    """Keyword arguments for ``get_dask_client`` inside a task on a regional worker.

    prefect-dask builds that client from the scheduler address alone, which fails on a
    TLS-only scheduler ("TLS expects a `ssl_context` argument"); the worker's own
    certificate (started as ``--tls-cert``, it is the worker role's) serves as the
    client's.
    """
    import distributed
    from distributed.security import Security

    own = distributed.get_worker().security.get_tls_config_for_role("worker")
    if not own["ca_file"]:
        return {}
    security = Security(
        require_encryption=True,
        tls_ca_file=own["ca_file"],
        tls_client_cert=own["cert"],
        tls_client_key=own["key"],
    )
    return {"security": security}
