"""Where things are: the regions, the catalog and the results store, as one typed object.

Flows never hard-code endpoints: they build a :class:`Platform` from Prefect blocks
when those exist (deployments), or from the stack configuration (local runs, tests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distributed.security import Security
from pydantic import BaseModel, Field

from proxima.config import DatasetConfig, RegionConfig, StackConfig, load_stack_config
from proxima.dask_tls import DaskTls, TlsFiles
from proxima.errors import ConfigurationError
from proxima.opensearch import CatalogConnection
from proxima.settings import ProximaSettings, get_settings


class Region(BaseModel):
    """A data region as the flows see it."""

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
    config: RegionConfig

    @property
    def datasets(self) -> list[DatasetConfig]:
        """Datasets held in the region."""
        return self.config.datasets

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
    egress_prices: dict[str, float] = Field(default_factory=lambda: {"default": 0.02})

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


def from_stack(
    config: StackConfig | None = None, settings: ProximaSettings | None = None
) -> Platform:
    """The platform of the local stack."""
    settings = settings or get_settings()
    config = config or load_stack_config(settings=settings)
    return Platform(
        regions=[
            Region(
                name=r.name,
                scheduler_address=r.scheduler_address,
                dashboard_url=r.dashboard_url,
                tls=TlsFiles(directory=settings.tls_dir).client() if r.tls else None,
                root=str(settings.region_root(r.name)),
                config=r,
            )
            for r in config.regions
        ],
        catalog=CatalogConnection(
            hosts=[config.opensearch.endpoint], alias=config.opensearch.alias
        ),
        results_dir=str(Path(settings.state_dir) / "results"),
        client_region=config.client_region,
        egress_prices=config.egress_prices,
    )
