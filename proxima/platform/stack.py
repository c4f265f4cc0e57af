"""The platform of the local stack, from its stack file."""

from __future__ import annotations

from pathlib import Path

from dask.utils import parse_bytes

from proxima.config import StackConfig, load_stack_config
from proxima.dask_tls import TlsFiles
from proxima.opensearch import CatalogConnection
from proxima.platform.model import Platform, Region
from proxima.settings import ProximaSettings, get_settings


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
                s3_endpoint=r.s3_endpoint,
                datasets=list(r.datasets),
                fsx_file_system_id=r.fsx_file_system_id,
                workers=r.workers,
                threads_per_worker=r.threads_per_worker,
                worker_memory_bytes=parse_bytes(r.memory_limit),
            )
            for r in config.regions
        ],
        catalog=CatalogConnection(
            hosts=[config.opensearch.endpoint], alias=config.opensearch.alias
        ),
        results_dir=str(Path(settings.state_dir) / "results"),
        client_region=config.client_region,
        egress_prices=config.egress_prices,
        footprint_factors=config.footprint,
    )
