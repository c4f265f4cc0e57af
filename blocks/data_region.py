"""The `DataRegion` block: one AWS region that holds data and a Dask cluster next to it."""

from __future__ import annotations

from typing import Any

from prefect.blocks.core import Block
from pydantic import Field, SecretStr


class DataRegion(Block):
    """A data region: its Dask cluster, its FSx for Lustre mount and its S3 data repository.
    S3 and FSx calls use the flow's own AWS credentials (on ECS, the task role).

    Attributes:
        region: AWS region name.
        scheduler_address: Address of the region's Dask scheduler.
        mount: Where the region's file system is mounted on its Dask workers.
    """

    _block_type_name = "Proxima Data Region"
    _block_type_slug = "proxima-data-region"
    _description = "An AWS region with data on FSx for Lustre and a Dask cluster next to it."
    _code_example = """
    ```python
    from blocks.data_region import DataRegion

    region = DataRegion.load("us-east-1")
    print(region.scheduler_address, region.mount)
    ```
    """

    region: str = Field(
        description="AWS region name, e.g. us-east-1.", pattern=r"^[a-z]{2}-[a-z]+-\d$"
    )
    scheduler_address: str | None = Field(
        default=None,
        description="Dask scheduler address (tcp:// or tls://) of the region's cluster.",
    )
    cluster_spec: dict[str, Any] | None = Field(
        default=None,
        description="AWS: a dask-cloudprovider cluster specification, used when no "
        "scheduler_address is given (e.g. {'class': 'ECSCluster', 'n_workers': 4}).",
    )
    dashboard_url: str | None = Field(default=None, description="The Dask dashboard URL.")
    mount: str = Field(description="The region's FSx for Lustre mount path on its workers.")
    data_repository_uri: str = Field(
        default="", description="The S3 prefix(es) linked to the file system, e.g. s3://era5-pds."
    )
    s3_endpoint: str | None = Field(
        default=None, description="S3 endpoint URL; leave empty for AWS's own endpoint."
    )
    datasets: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Datasets held (name, kind, bucket, ...), as in the stack configuration.",
    )
    ecs_worker_service: str | None = Field(
        default=None,
        description="AWS: the region's Dask worker service as 'cluster/service', scaled "
        "to none when idle; a flow run sets it to `workers` tasks before computing there.",
    )
    fsx_file_system_id: str | None = Field(
        default=None,
        description="FSx file system id; when set, imports run as FSx data repository tasks.",
    )
    workers: int = Field(default=1, ge=1, description="Dask worker processes of the cluster.")
    threads_per_worker: int = Field(default=1, ge=1, description="Threads of each worker.")
    worker_memory_bytes: int | None = Field(
        default=None,
        description="Each worker's memory limit in bytes; requests estimated to need more "
        "are refused before they run.",
    )
    tls_ca_file: str | None = Field(
        default=None,
        description="CA certificate (PEM text or a path) for tls:// Dask connections; "
        "when set, the client certificate and key are required too.",
    )
    tls_client_cert: str | None = Field(
        default=None, description="Client certificate (PEM text or a path)."
    )
    tls_client_key: SecretStr | None = Field(
        default=None, description="Client private key (PEM text or a path) for Dask TLS."
    )
