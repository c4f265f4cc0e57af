"""Catalog faults on the real OpenSearch node and Dask clusters: the node killed
mid-refresh, refreshes racing, a rebuild while another holds the lease, and files
replaced while they are read."""

from __future__ import annotations

import contextvars
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from flows.catalog_refresh import catalog_refresh
from proxima import opensearch
from proxima.catalog import extract as extract_module
from proxima.catalog import refresh
from proxima.pids import alive
from proxima.platform import from_stack
from proxima.stack import manager
from tests import faults

pytestmark = pytest.mark.reliability


def _catalog_matches_files(os_client, config, settings, region: str) -> dict[str, int]:
    """Assert the region's documents are exactly its files at their current stamps."""
    alias, root = config.opensearch.alias, str(settings.region_root(region))
    os_client.indices.refresh(index=alias)
    files = {
        c.id: c.stamp
        for c in refresh.scan_region(from_stack(config, settings).region(region), root)
    }
    docs = refresh.existing(os_client, alias, region)
    assert docs == files, {
        "missing": sorted(set(files) - set(docs)),
        "extra": sorted(set(docs) - set(files)),
        "stale": sorted(k for k in files.keys() & docs.keys() if files[k] != docs[k]),
    }
    hits = os_client.count(index=alias, body={"query": {"term": {"region": region}}})["count"]
    assert hits == len(files)  # no duplicates
    return {"files": len(files), "documents": hits}


def _thread(target) -> threading.Thread:
    """A thread that sees this test's Prefect settings (they live in a context variable)."""
    context = contextvars.copy_context()
    return threading.Thread(target=context.run, args=(target,))


def _touch_all(settings, region: str) -> int:
    paths = list((settings.region_root(region) / "era5-pds").rglob("*.nc"))
    now = time.time_ns()
    for i, path in enumerate(paths):
        os.utime(path, ns=(now + i, now + i))
    return len(paths)


def test_opensearch_killed_mid_refresh_then_rerun_loses_nothing(
    catalog, stack, settings, config, os_client, observe, tmp_path
):
    region = "us-west-2"
    before = os_client.count(index=config.opensearch.alias)["count"]
    touched = _touch_all(settings, region)
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["result"] = catalog_refresh(regions=[region])
        except Exception as exc:
            outcome["error"] = exc

    node = {r.name: r for r in manager.status(settings, config)}["opensearch"].pid
    # The refresh is held at its first header read, after it has read the catalog and
    # before it writes: the node dies mid-refresh however fast or slow the machine is.
    marker = tmp_path / "extracting"
    dask = faults.region_client(region)
    faults.install(dask, faults.Stall("extract", 5, str(marker)), "stall-extract")
    try:
        thread = _thread(run)
        thread.start()
        faults.wait_for(marker)
        os.kill(node or 0, signal.SIGKILL)
        killed_at = time.monotonic()
        thread.join(timeout=300)
    finally:
        faults.remove(dask, "stall-extract")
        dask.close()
    assert not alive(node)
    assert "error" in outcome, "the refresh should fail while the catalog is down"
    manager.up(settings, config)  # restart the node on its data directory
    restarted_s = time.monotonic() - killed_at
    assert os_client.count(index=config.opensearch.alias)["count"] == before  # nothing lost
    rerun = catalog_refresh(regions=[region])["regions"][0]
    figures = _catalog_matches_files(os_client, config, settings, region)
    assert rerun["changed"] > 0 or rerun["unchanged"] >= touched
    observe(
        error=str(outcome["error"])[:200],
        documents_before=before,
        restart_seconds=round(restarted_s, 1),
        rerun=rerun,
        **figures,
    )


def test_two_refreshes_of_one_region_at_once_keep_the_newest(
    catalog, stack, settings, config, os_client, observe
):
    region = "us-east-1"
    _touch_all(settings, region)
    outcomes: list[object] = []

    def run() -> None:
        try:
            outcomes.append(catalog_refresh(regions=[region])["regions"][0])
        except Exception as exc:
            outcomes.append(exc)

    threads = [_thread(run) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    _touch_all(settings, region)  # newer mtimes while both run
    for t in threads:
        t.join(timeout=300)
    assert all(isinstance(o, dict) for o in outcomes), outcomes
    after = catalog_refresh(regions=[region])["regions"][0]  # picks up what both missed
    figures = _catalog_matches_files(os_client, config, settings, region)
    again = catalog_refresh(regions=[region])["regions"][0]
    assert again["new"] == again["changed"] == again["deleted"] == 0

    # The losing interleaving, forced: refresh A reads, the files change, refresh B
    # indexes the newer state, then A's older documents arrive last.
    alias, root = config.opensearch.alias, str(settings.region_root(region))
    _touch_all(settings, region)
    slow = refresh.diff(
        refresh.scan_region(from_stack(config, settings).region(region), root),
        refresh.existing(os_client, alias, region),
    )
    older = [
        extract_module.extract(root, c.relpath, region, c.dataset, c.bucket, c.etag)
        for c in slow.changed
    ]
    _touch_all(settings, region)
    catalog_refresh(regions=[region])
    late = opensearch.bulk(os_client, refresh.index_actions(alias, older))
    assert not late.errors and late.superseded == len(older) > 0
    _catalog_matches_files(os_client, config, settings, region)
    observe(
        concurrent_superseded=sum(o["superseded"] for o in outcomes if isinstance(o, dict)),
        changed_after=after["changed"],
        late_older_documents=len(older),
        late_older_superseded=late.superseded,
        **figures,
    )


def test_a_refresh_across_a_full_rebuild_writes_through_the_alias_swap(
    catalog, stack, settings, config, os_client, observe, monkeypatch
):
    """A plain refresh held after it resolved the catalog's index while a full rebuild
    swaps the alias and drops that index: it must finish, its documents in the new index
    (it once failed with a raw 404 index_not_found, using the index it resolved first).
    """
    import threading

    region = "us-east-1"
    _touch_all(settings, region)  # the plain refresh has documents to write
    reached, go = threading.Event(), threading.Event()
    ensure_alias = opensearch.ensure_alias
    calls: list[str] = []

    def hold_the_first(*args, **kwargs):  # the flows run in this process: hold here
        calls.append("ensure_alias")
        index = ensure_alias(*args, **kwargs)
        if len(calls) == 1:
            reached.set()
            go.wait(300)
        return index

    monkeypatch.setattr(opensearch, "ensure_alias", hold_the_first)
    outcome: list[object] = []

    def plain() -> None:
        try:
            outcome.append(catalog_refresh(regions=[region])["regions"][0])
        except Exception as exc:
            outcome.append(exc)

    thread = _thread(plain)
    thread.start()
    try:
        assert reached.wait(300), "the plain refresh never started"
        before = opensearch.alias_target(os_client, config.opensearch.alias)
        rebuilt = catalog_refresh(full_rebuild=True)
        assert rebuilt["index"] != before and not os_client.indices.exists(index=before)
    finally:
        go.set()
        thread.join(timeout=300)
    assert isinstance(outcome[0], dict), outcome
    figures = _catalog_matches_files(os_client, config, settings, region)
    observe(rebuilt_into=rebuilt["index"], held_refresh_changed=outcome[0]["changed"], **figures)


def test_a_rebuild_waits_for_the_lease_and_takes_over_a_crashed_holder(
    catalog, stack, config, os_client, observe
):
    alias = config.opensearch.alias
    lease = f"{alias}-rebuild"
    before_index = opensearch.alias_target(os_client, alias)
    count = os_client.count(index=alias)["count"]
    with opensearch.lease(os_client, lease, "another-rebuild"):
        with pytest.raises(opensearch.CatalogBusy, match="held by another-rebuild"):
            catalog_refresh(full_rebuild=True)
        assert opensearch.alias_target(os_client, alias) == before_index
        assert os_client.count(index=alias)["count"] == count
        versions = os_client.indices.get(index=f"{alias}-v*")
        assert list(versions) == [before_index], "a refused rebuild must create nothing"
    # A holder whose flow run has ended (e.g. crashed) is taken over at once.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter

    with get_client(sync_client=True) as client:  # the catalog fixture's run has ended
        ended = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(state={"type": {"any_": ["COMPLETED"]}}), limit=1
        )[0]
    os_client.index(
        index=opensearch.LOCKS_INDEX,
        id=lease,
        body={"owner": str(ended.id), "acquired_at": time.time(), "expires_at": time.time() + 3600},
        refresh=True,
    )
    rebuilt = catalog_refresh(full_rebuild=True)
    assert rebuilt["index"] != before_index
    assert os_client.count(index=alias)["count"] == count
    assert not os_client.exists(index=opensearch.LOCKS_INDEX, id=lease)  # released
    observe(refused="CatalogBusy while held", stale_holder_taken_over=str(ended.id))


def _netcdf(path: Path, start: str, steps: int) -> None:
    time_axis = pd.date_range(start, periods=steps, freq="h")
    ds = xr.Dataset(
        {"tas": (("time", "lat", "lon"), np.zeros((steps, 3, 4), "f4"), {"units": "K"})},
        coords={
            "time": time_axis,
            "lat": ("lat", [10.0, 0.0, -10.0], {"standard_name": "latitude"}),
            "lon": ("lon", [0.0, 10.0, 20.0, 30.0], {"standard_name": "longitude"}),
        },
    )
    tmp = path.with_suffix(".tmp")
    ds.to_netcdf(tmp, engine="h5netcdf")
    os.replace(tmp, path)


@pytest.fixture
def asset(tmp_path) -> tuple[Path, Path]:
    """(region root, path) of a small NetCDF asset at ``bucket/a.nc``."""
    root = tmp_path / "fsx"
    (root / "bucket").mkdir(parents=True)
    path = root / "bucket" / "a.nc"
    _netcdf(path, "2020-01-01", 24)
    return root, path


def test_a_file_replaced_during_its_read_is_described_as_it_now_is(asset, monkeypatch):
    root, path = asset
    real = extract_module._netcdf
    reads = []

    def replaced_while_reading(p, asset):
        out = real(p, asset)
        if not reads:
            _netcdf(path, "2021-06-01", 48)  # a new version lands mid-read
        reads.append(1)
        return out

    monkeypatch.setattr(extract_module, "_netcdf", replaced_while_reading)
    doc = extract_module.extract(str(root), "bucket/a.nc", "us-east-1", "d", "bucket")
    assert len(reads) == 2
    assert not doc["quarantined"]
    assert doc["time"]["start"].startswith("2021-06-01") and doc["time"]["steps"] == 48
    assert doc["mtime_ns"] == path.stat().st_mtime_ns and doc["size"] == path.stat().st_size


def test_a_file_that_never_holds_still_is_quarantined(asset, monkeypatch):
    root, path = asset
    real = extract_module._netcdf

    def always_replaced(p, asset):
        out = real(p, asset)
        _netcdf(path, "2021-06-01", 24)
        return out

    monkeypatch.setattr(extract_module, "_netcdf", always_replaced)
    doc = extract_module.extract(str(root), "bucket/a.nc", "us-east-1", "d", "bucket")
    assert doc["quarantined"] and doc["error_class"] == "ChangedDuringScan"
