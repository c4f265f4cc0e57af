"""The one runtime model of the platform: its regions, catalog and results store.

Built by ``proxima.platform.load()`` from Prefect blocks (deployments) or from the
stack file (local runs, tests); every domain function takes these types.
"""

from __future__ import annotations

from typing import Any

from distributed.security import Security
from pydantic import BaseModel, Field

from proxima.config import EGRESS_PRICES_DEFAULT, DatasetConfig, dataset_named
from proxima.dask_tls import DaskTls
from proxima.errors import ConfigurationError
from proxima.opensearch import CatalogConnection


class Region(BaseModel):
    """A data region: its Dask cluster, its file system and its S3 data repository."""

    name: str
    scheduler_address: str | None = None
    cluster_spec: dict[str, Any] | None = Field(
        default=None, description="A dask-cloudprovider ECSCluster spec (DaskClusterSpec)."
    )
    dashboard_url: str | None = None
    tls: DaskTls | None = Field(
        default=None, description="Client credentials when the scheduler is TLS-only."
    )
    root: str = Field(description="The region's file-system mount (FSx for Lustre).")
    s3_endpoint: str | None = Field(
        default=None, description="The data repository's S3 endpoint (None: AWS's own)."
    )
    datasets: list[DatasetConfig] = Field(default_factory=list)
    ecs_worker_service: str | None = Field(
        default=None,
        description="AWS: the Dask worker service ('cluster/service') a run wakes.",
    )
    fsx_file_system_id: str | None = Field(
        default=None, description="When set, imports run as FSx data repository tasks."
    )
    workers: int = Field(default=1, ge=1, description="Dask worker processes of the cluster.")
    threads_per_worker: int = Field(default=1, ge=1, description="Threads of each worker.")
    worker_memory_bytes: int | None = Field(
        default=None, description="Each worker's memory limit (None: not known, not checked)."
    )
    partial_store_bytes: int = Field(
        default=4 * 2**30, gt=0, description="Size cap of the region's store of partials."
    )

    @property
    def slots(self) -> int:
        """How many block tasks the cluster runs at once."""
        return self.workers * self.threads_per_worker

    def dataset(self, name: str) -> DatasetConfig:
        """The dataset ``name`` held in this region."""
        return dataset_named(self.name, self.datasets, name)

    def dask_security(self) -> Security | None:
        """What a client needs to connect to the region's scheduler (None: plain TCP)."""
        return self.tls.security() if self.tls else None


class Platform(BaseModel):
    """Regions, catalog endpoint and results location."""

    regions: list[Region]
    catalog: CatalogConnection
    results_dir: str
    results_bucket: str | None = None
    results_prefix: str = "results/"
    results_s3_endpoint: str | None = None
    client_region: str = "us-east-1"
    egress_prices: dict[str, float] = Field(default_factory=lambda: dict(EGRESS_PRICES_DEFAULT))
    footprint_factors: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="Overrides of proxima/footprint/factors.yaml."
    )

    def region(self, name: str) -> Region:
        """The region ``name``, or an error listing those that exist."""
        for region in self.regions:
            if region.name == name:
                return region
        known = ", ".join(r.name for r in self.regions)
        raise ConfigurationError(f"unknown region {name!r}; known regions: {known}")

    @property
    def opensearch_endpoint(self) -> str:
        """The catalog's first host."""
        return self.catalog.endpoint

    @property
    def catalog_alias(self) -> str:
        """The catalog alias."""
        return self.catalog.alias

    @property
    def region_names(self) -> list[str]:
        """All region names."""
        return [r.name for r in self.regions]
