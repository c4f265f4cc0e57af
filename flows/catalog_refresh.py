"""The catalog-refresh flow: per region, on that region's Dask cluster,
import → scan → diff → extract headers → index. The catalog never goes empty.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, cast
from uuid import UUID

from distributed import as_completed as dask_as_completed
from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.exceptions import ObjectNotFound
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from flows.progress import reporter
from flows.runners import on_cluster, region_cluster, run_regional_subflow
from proxima import opensearch, repository
from proxima.catalog import refresh
from proxima.catalog.model import MAPPING
from proxima.errors import ConfigurationError, ProximaError
from proxima.opensearch import CatalogConnection
from proxima.platform import Platform, Region
from proxima.platform import load as load_platform


@task(
    name="import-data-repository",
    task_run_name="import-{region.name}",
    retries=2,
    retry_delay_seconds=5,
)
def import_repository(region: Region) -> dict[str, Any]:
    """Bring new and changed objects from S3 into the region's file system."""
    return repository.import_region(region, Path(region.root)).to_dict()


@task(name="check-unchanged", task_run_name="check-unchanged-{region.name}")
def check_unchanged(
    region: Region, catalog: CatalogConnection, index: str
) -> tuple[str, int | None]:
    """Fingerprint the region's tree; the document count if the catalog already has it."""
    digest = refresh.fingerprint(region, region.root)
    client = opensearch.connect_catalog(catalog)
    return digest, refresh.unchanged_since_last_refresh(
        client, index, region.name, region.root, digest
    )


@task(name="scan-and-diff", task_run_name="scan-and-diff-{region.name}", retries=1)
def scan_and_diff(
    region: Region, catalog: CatalogConnection, index: str, source: str | None = None
) -> refresh.Diff:
    """Walk the file system and compare it with the region's documents; in a full
    rebuild into ``index``, first copy unchanged assets' documents from the old index
    ``source`` inside OpenSearch (only what changed is read again).
    """
    client = opensearch.connect_catalog(catalog)
    if source:
        return refresh.rebuild_diff(client, region, region.root, source, index)
    found = refresh.scan_region(region, region.root)
    return refresh.diff(found, refresh.existing(client, index, region.name))


@task(name="extract-headers", task_run_name="extract-headers-{region.name}")
def extract_headers(
    region: Region, todo: refresh.Parcel, catalog: CatalogConnection, index: str
) -> refresh.BatchReport:
    """Read headers of new and changed assets in batches on the region's workers; each
    batch writes its documents to the catalog itself (they never pass through Prefect).
    """
    done = refresh.BatchReport()
    if not todo:
        return done
    # The worker thread is seceded while the batches run on the same cluster: two
    # refreshes holding a one-worker region's two threads would otherwise wait on each
    # other's batches forever (seen with concurrent refreshes).
    work = refresh.batches(todo.candidates)
    n = len(work)
    report = reporter(region.name, "headers")
    with region_cluster() as client:
        futures = client.map(
            refresh.extract_and_index,
            [region.root] * n,
            [region.name] * n,
            work,
            [catalog] * n,
            [index] * n,
            pure=False,
        )
        for future in dask_as_completed(futures, loop=client.loop):
            done.add(future.result())
            report(done.assets, len(todo), done.bytes)
    if done.errors:
        raise ProximaError(f"{len(done.errors)} catalog write(s) failed, first: {done.errors[:3]}")
    return done


@task(
    name="write-catalog",
    task_run_name="write-catalog-{region.name}",
    retries=2,
    retry_delay_seconds=2,
)
def write_catalog(
    region: Region, catalog: CatalogConnection, index: str, deleted: list[str], digest: str
) -> None:
    """Delete removed assets' documents, make the region's writes searchable, and
    remember the tree they reflect (the next refresh of an unchanged tree stops early).
    """
    client = opensearch.connect_catalog(catalog)
    report = opensearch.bulk(client, refresh.delete_actions(index, deleted))
    if report.errors:
        raise ProximaError(
            f"{len(report.errors)} catalog delete(s) failed, first: {report.errors[:3]}"
        )
    client.indices.refresh(index=index)
    unrecorded = refresh.remember_refresh(client, index, region.name, region.root, digest)
    if unrecorded:
        get_run_logger().warning("%s; its next refresh scans in full", unrecorded)


@flow(name="refresh-region", log_prints=True)
async def refresh_region(
    region: Region, catalog: CatalogConnection, index: str, source: str | None = None
) -> dict[str, Any]:
    """Refresh one region's part of the catalog (runs on that region's cluster); in a
    full rebuild into ``index``, ``source`` is the index it replaces.

    Asynchronous, as the analysis's regional subflows: Prefect 3.9 ends a synchronous
    flow by joining its heartbeat thread, which sleeps in 1 s steps.
    """
    started = time.perf_counter()
    # .submit() sends each task to the region's Dask cluster; a direct call would
    # run it in the flow's own process, far from the data.
    imported = await on_cluster(import_repository, region)
    digest, documents = await on_cluster(check_unchanged, region, catalog, index)
    if documents is not None:  # the tree the catalog already reflects: nothing to do
        plan, extracted = refresh.Diff(unchanged=documents), refresh.BatchReport()
    else:
        plan = await on_cluster(scan_and_diff, region, catalog, index, source)
        todo = refresh.Parcel(plan.todo)
        extracted = await on_cluster(extract_headers, region, todo, catalog, index)
        await on_cluster(write_catalog, region, catalog, index, plan.deleted, digest)
    return {
        "region": region.name,
        **plan.summary(),
        "quarantined": len(extracted.quarantined),
        "superseded": extracted.superseded,
        "quarantined_paths": extracted.quarantined,
        "bytes": plan.scanned_bytes,
        "imported_bytes": imported["bytes_copied"],
        "seconds": round(time.perf_counter() - started, 2),
        "short_circuit": documents is not None,
    }


@task(name="refresh-region-on-its-cluster", task_run_name="refresh-{region.name}")
def run_region(
    region: Region, catalog: CatalogConnection, index: str, source: str | None = None
) -> dict[str, Any]:
    """Run the regional subflow bound to the region's own Dask scheduler."""
    return run_regional_subflow(
        refresh_region,
        region,
        f"refresh-{region.name}",
        catalog=catalog,
        index=index,
        source=source,
    )


def _select(platform: Platform, regions: list[str] | None) -> list[Region]:
    if not regions:
        return platform.regions
    unknown = sorted(set(regions) - set(platform.region_names))
    if unknown:
        raise ConfigurationError(
            f"unknown region(s) {unknown}; known regions: {platform.region_names}"
        )
    return [platform.region(n) for n in regions]


@flow(
    name="catalog-refresh",
    task_runner=ThreadPoolTaskRunner(max_workers=8),  # type: ignore[arg-type]
    log_prints=True,
)
def catalog_refresh(regions: list[str] | None = None, full_rebuild: bool = False) -> dict[str, Any]:
    """Refresh the catalog of the given regions (default all), concurrently.

    Args:
        regions: Region names; empty or None means every region.
        full_rebuild: Build a fresh versioned index and swap the alias atomically
            when every region succeeded (the old index keeps serving until then).
    """
    logger = get_run_logger()
    platform = load_platform()
    selected = _select(platform, regions)
    client = opensearch.connect_catalog(platform.catalog)
    if not full_rebuild:
        return _refresh(platform, selected, client, full_rebuild=False)
    # One rebuild at a time: a second one would delete the first's index as an orphan.
    run = FlowRunContext.get()
    owner = str(run.flow_run.id) if run and run.flow_run else f"pid {os.getpid()}"
    with opensearch.lease(
        client, f"{platform.catalog_alias}-rebuild", owner, is_stale=_holder_gone
    ):
        logger.info("holding the rebuild lease of %s", platform.catalog_alias)
        return _refresh(platform, selected, client, full_rebuild=True)


def _holder_gone(holder: dict[str, Any]) -> bool:
    """Whether the flow run holding a lease has ended (crashed runs leave leases)."""
    try:
        with get_client(sync_client=True) as prefect:
            state = prefect.read_flow_run(UUID(holder["owner"])).state
    except (ValueError, ObjectNotFound):
        return False  # not a flow run we can see: wait for the TTL
    return bool(state and state.is_final())


def _refresh(
    platform: Platform, selected: list[Region], client: Any, *, full_rebuild: bool
) -> dict[str, Any]:
    logger = get_run_logger()
    alias = platform.catalog_alias
    replicas = platform.catalog.replicas
    index = opensearch.ensure_alias(client, alias, MAPPING, replicas)
    # Writes go through the alias: a full rebuild may swap it and drop the old index
    # while this refresh runs, and a resolved index name would then be gone (404).
    target, source = alias, None
    if full_rebuild:
        others = sorted(set(platform.region_names) - {r.name for r in selected})
        target, orphans = refresh.prepare_rebuild(client, alias, others, replicas)
        source = index  # what the alias served until now: unchanged documents come from it
        if orphans:
            logger.warning("removed orphaned catalog indices %s", orphans)
    results, failures = _run_regions(platform, selected, target, source)
    if full_rebuild:
        old = refresh.finish_rebuild(client, alias, target, not failures, replicas)
        if not failures:
            logger.info("alias %s now points at %s (was %s)", alias, target, old)
    create_table_artifact(
        key="catalog-refresh-summary",
        table=[{k: v for k, v in r.items() if k != "quarantined_paths"} for r in results],
        description=f"Catalog refresh into {target}" + (" (full rebuild)" if full_rebuild else ""),
    )
    if failures:
        raise ProximaError(f"catalog refresh failed in {len(failures)} region(s): {failures}")
    index = target if full_rebuild else (opensearch.alias_target(client, alias) or index)
    return {"index": index, "regions": sorted(results, key=lambda r: r["region"])}


def _run_regions(
    platform: Platform, selected: list[Region], index: str, source: str | None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Every selected region's subflow at once, with a progress artifact."""
    progress = create_progress_artifact(
        progress=0.0, key="catalog-refresh-progress", description="regions refreshed"
    )
    futures = [run_region.submit(r, platform.catalog, index, source) for r in selected]
    results, failures = [], []
    for done, future in enumerate(as_completed(futures), start=1):
        try:
            results.append(future.result())
        except Exception as exc:
            failures.append(str(exc))
        update_progress_artifact(cast(UUID, progress), progress=100.0 * done / len(futures))
    return results, failures
