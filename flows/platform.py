"""How flows find the platform: Prefect blocks when saved, else the local stack file."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import httpx
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from pydantic import SecretStr

from blocks.data_region import DataRegion
from blocks.opensearch_catalog import OpenSearchCatalog
from blocks.results_store import ResultsStore
from proxima.config import DatasetConfig, RegionConfig
from proxima.dask_tls import DaskTls
from proxima.errors import ConfigurationError
from proxima.opensearch import CatalogConnection
from proxima.platform import Platform, Region, from_stack

CATALOG_BLOCK = "proxima-catalog"
RESULTS_BLOCK = "proxima-results"


def _region_names() -> list[str]:
    try:
        with get_client(sync_client=True) as client:
            docs = client.read_block_documents_by_type(DataRegion.get_block_type_slug())
    except (ObjectNotFound, httpx.HTTPError):
        return []
    return sorted(d.name for d in docs if d.name and not d.is_anonymous)


def region_from_block(block: DataRegion) -> Region:
    """A Region from its block document."""
    tls = None
    if block.tls_ca_file:
        if not (block.tls_client_cert and block.tls_client_key):
            raise ConfigurationError(
                f"DataRegion {block.region}: tls_ca_file is set, so tls_client_cert and "
                "tls_client_key are required too (the scheduler refuses clients without them)"
            )
        tls = DaskTls(ca=block.tls_ca_file, cert=block.tls_client_cert, key=block.tls_client_key)
    config = RegionConfig(
        name=block.region,
        tls=tls is not None,
        scheduler_url=block.scheduler_address,
        s3_url=block.s3_endpoint or "aws",
        datasets=[DatasetConfig.model_validate(d) for d in block.datasets],
        fsx_file_system_id=block.fsx_file_system_id,
    )
    return Region(
        name=block.region,
        scheduler_address=config.scheduler_address if block.scheduler_address else None,
        cluster_spec=block.cluster_spec,
        dashboard_url=block.dashboard_url,
        tls=tls,
        root=block.mount,
        config=config,
    )


def catalog_connection(block: OpenSearchCatalog) -> CatalogConnection:
    """The connection a block describes (credentials resolved from its AwsCredentials)."""
    creds = block.aws_credentials
    return CatalogConnection(
        hosts=block.hosts,
        alias=block.alias,
        auth=block.auth,
        username=block.username,
        password=block.password,
        aws_region=block.aws_region or (creds.region_name if creds else None),
        aws_access_key_id=creds.aws_access_key_id if creds else None,
        aws_secret_access_key=creds.aws_secret_access_key if creds else None,
        verify_certs=block.verify_certs,
        ca_certs=block.ca_certs,
    )


def load_platform() -> Platform:
    """The platform of the current run: from blocks when saved, else the stack file."""
    names = _region_names()
    if not names:
        return from_stack()
    catalog = cast(OpenSearchCatalog, OpenSearchCatalog.load(CATALOG_BLOCK))
    results = cast(ResultsStore, ResultsStore.load(RESULTS_BLOCK))
    fallback = from_stack()
    return Platform(
        regions=[region_from_block(cast(DataRegion, DataRegion.load(n))) for n in names],
        catalog=catalog_connection(catalog),
        results_dir=results.path or fallback.results_dir,
        results_bucket=results.bucket,
        results_prefix=results.prefix,
        results_s3_endpoint=results.s3_endpoint,
        client_region=fallback.client_region,
        egress_prices=fallback.egress_prices,
    )


def _pem(tls: DaskTls) -> dict[str, Any]:
    """Block fields holding the PEM text itself: a deployment needs no local files."""
    return {
        "tls_ca_file": Path(tls.ca).read_text(),
        "tls_client_cert": Path(tls.cert).read_text(),
        "tls_client_key": SecretStr(Path(tls.key.get_secret_value()).read_text()),
    }


def save_local_blocks(platform: Platform | None = None) -> list[str]:
    """Register the block types and save the local stack's block documents.

    Returns:
        The names of the saved documents.
    """
    platform = platform or from_stack()
    for block in (DataRegion, OpenSearchCatalog, ResultsStore):
        block.register_type_and_schema()
    saved = []
    for region in platform.regions:
        cfg = region.config
        tls = _pem(region.tls) if region.tls else {}
        DataRegion(
            region=region.name,
            scheduler_address=region.scheduler_address,
            dashboard_url=region.dashboard_url,
            mount=region.root,
            data_repository_uri=",".join(f"s3://{d.bucket}" for d in cfg.datasets),
            s3_endpoint=cfg.s3_endpoint,
            datasets=[d.model_dump() for d in cfg.datasets],
            fsx_file_system_id=cfg.fsx_file_system_id,
            **tls,
        ).save(region.name, overwrite=True)
        saved.append(region.name)
    OpenSearchCatalog(hosts=[platform.opensearch_endpoint], alias=platform.catalog_alias).save(
        CATALOG_BLOCK, overwrite=True
    )
    ResultsStore(path=platform.results_dir).save(RESULTS_BLOCK, overwrite=True)
    return [*saved, CATALOG_BLOCK, RESULTS_BLOCK]
