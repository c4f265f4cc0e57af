"""The platform from Prefect blocks (a deployment), and the local stack saved as blocks."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, cast

import httpx
from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import BlockDocument
from prefect.exceptions import ObjectNotFound
from pydantic import SecretStr

from blocks.data_region import DataRegion
from blocks.opensearch_catalog import OpenSearchCatalog
from blocks.results_store import ResultsStore
from proxima.config import DatasetConfig
from proxima.dask_tls import DaskTls
from proxima.errors import ConfigurationError
from proxima.opensearch import CatalogConnection
from proxima.platform.model import Platform, Region
from proxima.platform.stack import from_stack

CATALOG_BLOCK = "proxima-catalog"
RESULTS_BLOCK = "proxima-results"


PAGE = 200  # the API's largest page


def saved() -> dict[tuple[str, str], BlockDocument]:
    """Every named block document on the server, by (block type slug, name), read in
    one API call per 200 documents with nested blocks filled in (loading them one by
    one cost ~0.2 s of every analysis). Empty when there is no server.
    """
    docs: list[BlockDocument] = []
    try:
        with get_client(sync_client=True) as client:
            while True:
                page = client.read_block_documents(
                    offset=len(docs), limit=PAGE, include_secrets=True
                )
                docs += page
                if len(page) < PAGE:
                    break
    except (ObjectNotFound, httpx.HTTPError):
        return {}
    return {
        (d.block_type.slug, d.name): d
        for d in docs
        if d.block_type and d.name and not d.is_anonymous
    }


def region_names(documents: dict[tuple[str, str], BlockDocument] | None = None) -> list[str]:
    """The names of the saved DataRegion documents (none: no blocks, or no server)."""
    documents = saved() if documents is None else documents
    slug = DataRegion.get_block_type_slug()
    return sorted(name for kind, name in documents if kind == slug)


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
    return Region(
        name=block.region,
        scheduler_address=block.scheduler_address,
        cluster_spec=block.cluster_spec,
        dashboard_url=block.dashboard_url,
        tls=tls,
        root=block.mount,
        s3_endpoint=block.s3_endpoint,
        datasets=[DatasetConfig.model_validate(d) for d in block.datasets],
        fsx_file_system_id=block.fsx_file_system_id,
        ecs_worker_service=block.ecs_worker_service,
        workers=block.workers,
        threads_per_worker=block.threads_per_worker,
        worker_memory_bytes=block.worker_memory_bytes,
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
        replicas=block.replicas,
    )


def _block(documents: dict[tuple[str, str], BlockDocument], kind: type[Block], name: str) -> Block:
    document = documents.get((kind.get_block_type_slug(), name))
    if document is None:
        raise ConfigurationError(
            f"no saved {kind.get_block_type_name()} block named {name!r}: save the "
            "platform's blocks first (`proxima demo` saves the local stack's, "
            "`proxima aws-blocks` those of AWS)"
        )
    return kind._from_block_document(document)


def from_blocks(
    names: list[str], documents: dict[tuple[str, str], BlockDocument] | None = None
) -> Platform:
    """The platform the saved blocks describe: the DataRegions ``names``, the catalog
    and the results store. No stack file is read.

    Args:
        names: DataRegion document names.
        documents: What :func:`saved` returned (read now when not given).
    """
    documents = saved() if documents is None else documents
    catalog = cast(OpenSearchCatalog, _block(documents, OpenSearchCatalog, CATALOG_BLOCK))
    results = cast(ResultsStore, _block(documents, ResultsStore, RESULTS_BLOCK))
    return Platform(
        regions=[
            region_from_block(cast(DataRegion, _block(documents, DataRegion, n))) for n in names
        ],
        catalog=catalog_connection(catalog),
        results_dir=results.path or str(Path(tempfile.gettempdir()) / "proxima-results"),
        results_bucket=results.bucket,
        results_prefix=results.prefix,
        results_s3_endpoint=results.s3_endpoint,
        client_region=results.client_region,
        egress_prices=results.egress_prices,
        footprint_factors=results.footprint_factors,
    )


def _pem(tls: DaskTls) -> dict[str, Any]:
    """Block fields holding the PEM text itself: a deployment needs no local files."""
    return {
        "tls_ca_file": Path(tls.ca).read_text(),
        "tls_client_cert": Path(tls.cert).read_text(),
        "tls_client_key": SecretStr(Path(tls.key.get_secret_value()).read_text()),
    }


def save_blocks(platform: Platform | None = None) -> list[str]:
    """Register the block types and save ``platform`` (default: the local stack's) as
    block documents.

    Returns:
        The names of the saved documents.
    """
    platform = platform or from_stack()
    for block in (DataRegion, OpenSearchCatalog, ResultsStore):
        block.register_type_and_schema()
    saved = []
    for region in platform.regions:
        tls = _pem(region.tls) if region.tls else {}
        DataRegion(
            region=region.name,
            scheduler_address=region.scheduler_address,
            dashboard_url=region.dashboard_url,
            mount=region.root,
            data_repository_uri=",".join(f"s3://{d.bucket}" for d in region.datasets),
            s3_endpoint=region.s3_endpoint,
            datasets=[d.model_dump() for d in region.datasets],
            fsx_file_system_id=region.fsx_file_system_id,
            workers=region.workers,
            threads_per_worker=region.threads_per_worker,
            worker_memory_bytes=region.worker_memory_bytes,
            **tls,
        ).save(region.name, overwrite=True)
        saved.append(region.name)
    OpenSearchCatalog(hosts=platform.catalog.hosts, alias=platform.catalog_alias).save(
        CATALOG_BLOCK, overwrite=True
    )
    ResultsStore(
        path=platform.results_dir,
        client_region=platform.client_region,
        egress_prices=platform.egress_prices,
        footprint_factors=platform.footprint_factors,
    ).save(RESULTS_BLOCK, overwrite=True)
    return [*saved, CATALOG_BLOCK, RESULTS_BLOCK]
