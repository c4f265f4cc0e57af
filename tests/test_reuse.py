"""Exact reuse (issue 28): whole results served again on unchanged assets, per-block
partials reused next to the data, and every change to the data or the question seen.

The tests that change the test data (a file rewritten in place, a file deleted, a newer
CMIP6 version) put it back as it was and refresh the catalog before they end.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
import zarr

from flows.catalog_refresh import catalog_refresh
from flows.cross_region_analysis import analyze, cross_region_analysis
from flows.scheduled_analysis import scheduled_analysis
from proxima import call_log, s3
from proxima.analysis.cf import data_variable
from proxima.analysis.request import AnalysisRequest
from proxima.platform import from_stack
from proxima.reuse import regions as regions_kept
from proxima.reuse.store import PartialStore
from tests.cli import proxima

JAN_TO_MAR = {
    "variable": "air_temperature",
    "dataset": "era5",
    "start": "2020-01-01",
    "end": "2020-03-31",
    "bbox": [170.0, -40.0, -160.0, 40.0],  # crosses the antimeridian
}
MONTHLY_MEAN = {"selection": JAN_TO_MAR, "reduction": "mean", "over": "time", "group_by": "month"}
T2M = "era5-pds/2020/{month}/data/air_temperature_at_2_metres.nc"


def _between(start: str, end: str) -> dict:
    """The monthly mean of JAN_TO_MAR's selection over other days."""
    return {**MONTHLY_MEAN, "selection": {**JAN_TO_MAR, "start": start, "end": end}}


def _named(tag: str) -> str:
    """A new output name: results of earlier sessions stay in the results store."""
    return f"reuse-{tag}-{uuid.uuid4().hex[:8]}"


def _run(request: dict) -> tuple[dict, xr.DataArray]:
    summary = analyze(AnalysisRequest.model_validate(request))
    with xr.open_dataset(summary["result_path"], engine="h5netcdf") as ds:
        return summary, data_variable(ds).load()


def _fresh(request: dict) -> tuple[dict, xr.DataArray]:
    return _run({**request, "reuse": False})


def _equal(a: xr.DataArray, b: xr.DataArray) -> None:
    xr.testing.assert_allclose(a, b, rtol=1e-12, atol=0)


def _stores(stack, settings) -> dict[str, PartialStore]:
    return {r.name: PartialStore.of_region(r.root) for r in from_stack(stack, settings).regions}


def _forget_merged(stack, settings, *names: str) -> None:
    """Drop the client region's kept merged partials of ``names``: those regions are
    visited again (and their blocks looked up one by one)."""
    platform = from_stack(stack, settings)
    for name in names:
        regions_kept.store(platform.results_dir, name).clear()


def _region(summary: dict, name: str) -> dict:
    (found,) = [r for r in summary["regions"] if r["region"] == name]
    return found


@pytest.fixture
def restore(settings):
    """Put back every file or store a test changes, then refresh the catalog."""
    saved: list[tuple[Path, Path | None]] = []

    def keep(path: Path, backup_dir: Path) -> None:
        if path.exists():
            backup = backup_dir / f"{len(saved)}-{path.name}"
            (shutil.copytree if path.is_dir() else shutil.copy2)(path, backup)
            saved.append((path, backup))
        else:
            saved.append((path, None))

    yield keep
    for path, backup in reversed(saved):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        if backup is not None:
            (shutil.copytree if backup.is_dir() else shutil.copy2)(backup, path)
    if saved:
        catalog_refresh()


def test_the_same_request_is_served_from_its_result_reading_nothing(
    catalog, stack, settings, tmp_path
):
    first, answer = _run(MONTHLY_MEAN)
    assert "served_from" not in first and first["bytes_read"] > 0
    # the same question, spelled otherwise: keys in another order, the box in 0..360
    again = {
        "group_by": "month",
        "over": "time",
        "selection": {**JAN_TO_MAR, "bbox": [170.0, -40.0, 200.0, 40.0]},
        "reduction": "mean",
    }
    served, same = _run(again)
    assert served["served_from"]["run"] and served["served_from"]["because"] == "assets unchanged"
    assert served["bytes_read"] == 0 and served["bytes_crossed_regions"] == 0
    assert served["result_path"] == first["result_path"]
    assert served["footprint"] == {"served_from": served["served_from"]["run"]}
    _equal(same, answer)
    asked = tmp_path / "request.json"
    asked.write_text(json.dumps(again))
    cli = proxima(stack, settings, "analyze", str(asked), "--here")
    assert cli.returncode == 0, cli.stderr
    assert f"served from run {served['served_from']['run']}" in cli.stdout
    assert "footprint: none" in cli.stdout
    # reuse off: every block read again, none taken from the store
    forced, recomputed = _fresh(MONTHLY_MEAN)
    assert "served_from" not in forced and forced["bytes_read"] == first["bytes_read"]
    assert set(forced["blocks"]) == {"computed"}
    _equal(recomputed, answer)


def test_a_notebook_run_plans_once_and_a_stale_plan_is_made_again(catalog, monkeypatch):
    """On a miss, the plan made to look the answer up is the flow run's; one older than
    the hand-off window is not used (the flow plans afresh)."""
    import flows.cross_region_analysis as analysis_flow

    made = []
    real = analysis_flow.make_plan
    monkeypatch.setattr(analysis_flow, "make_plan", lambda *a: made.append(1) or real(*a))
    first, _ = _run(MONTHLY_MEAN)
    assert "served_from" not in first and len(made) == 1
    monkeypatch.setattr(analysis_flow, "HANDOFF_S", 0.0)
    other, _ = _run(_between("2020-01-01", "2020-02-29"))
    assert "served_from" not in other and len(made) == 3


def test_a_longer_range_reads_only_the_new_month(catalog, stack, settings):
    _run(MONTHLY_MEAN)
    longer = {**MONTHLY_MEAN, "selection": {**JAN_TO_MAR, "end": "2020-04-30"}}
    grown, answer = _run(longer)
    april_only = {
        **MONTHLY_MEAN,
        "selection": {**JAN_TO_MAR, "start": "2020-04-01", "end": "2020-04-30"},
    }
    april, _ = _fresh(april_only)
    assert grown["bytes_read"] == april["bytes_read"] > 0
    east = _region(grown, "us-east-1")
    assert east["bytes_read"] == 0 and east["kept"] and east["tasks"] == 0  # not visited
    assert not _region(grown, "us-west-2")["kept"]
    assert grown["blocks"]["reused"] > 0
    full, expected = _fresh(longer)
    assert full["bytes_read"] > grown["bytes_read"]
    _equal(answer, expected)
    # only the merged partial crossed, as without reuse
    assert grown["bytes_crossed_regions"] == full["bytes_crossed_regions"] > 0


def test_a_file_rewritten_in_place_with_its_size_and_mtime_is_recomputed(
    catalog, stack, settings, restore, tmp_path
):
    _run(MONTHLY_MEAN)
    path = settings.region_root("us-east-1") / T2M.format(month="01")
    restore(path, tmp_path)
    before = path.stat()
    with h5py.File(
        path, "r+", locking=False
    ) as f:  # the first day's chunk, rounded: smaller, in place
        var = f["air_temperature_at_2_metres"]
        var[0:24] = np.round(var[0:24]) + 1.0
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # as cp -p leaves it
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    catalog_refresh()
    summary, answer = _run(MONTHLY_MEAN)
    assert "served_from" not in summary and not _region(summary, "us-east-1")["kept"]
    january_only = {**MONTHLY_MEAN, "selection": {**JAN_TO_MAR, "end": "2020-01-31"}}
    january, _ = _fresh(january_only)
    assert summary["bytes_read"] == january["bytes_read"] > 0
    _, expected = _fresh(MONTHLY_MEAN)
    _equal(answer, expected)


def test_a_file_deleted_from_the_repository_drops_out(catalog, stack, settings):
    _, before = _run(MONTHLY_MEAN)
    region = from_stack(stack, settings).region("us-east-1")
    key = T2M.format(month="02").removeprefix("era5-pds/")
    with call_log.local_stand_in():
        client = s3.client(region)
        body = client.get_object(Bucket="era5-pds", Key=key)["Body"].read()
        client.delete_object(Bucket="era5-pds", Key=key)
    try:
        catalog_refresh()  # imports first: the file leaves the file system too
        assert not (settings.region_root("us-east-1") / "era5-pds" / key).exists()
        summary, answer = _run({**MONTHLY_MEAN, "allow_partial": True})
        assert "served_from" not in summary and summary["bytes_read"] == 0  # the rest kept
        assert list(answer["month"].values) == [1, 3]
        _equal(answer, before.sel(month=[1, 3]))
    finally:
        with call_log.local_stand_in():
            client.put_object(Bucket="era5-pds", Key=key, Body=body)
        catalog_refresh()


def test_a_newer_cmip6_version_supersedes_the_cached_one(catalog, stack, settings, restore):
    request = {
        "selection": {
            "variable": "tas",
            "dataset": "cmip6",
            "start": "2015-01-01",
            "end": "2016-12-31",
            "facets": {"source_id": "GFDL-ESM4"},
        },
        "reduction": "mean",
        "over": "time",
    }
    _, old = _run(request)
    grid = (
        settings.region_root("us-west-2")
        / "cmip6-pds/CMIP6/ScenarioMIP/NOAA-GFDL/GFDL-ESM4/ssp585/r1i1p1f1/Amon/tas/gr1"
    )
    newer = grid / "v20210101"
    restore(newer, grid)
    shutil.copytree(grid / "v20190726", newer)
    tas = zarr.open_array(str(newer / "tas"), mode="r+")
    tas[:] = tas[:] + 1.0
    store = zarr.open_group(str(newer), mode="r+")
    store.attrs["version"] = "v20210101"
    zarr.consolidate_metadata(str(newer))
    catalog_refresh()
    summary, answer = _run(request)
    assert "served_from" not in summary and summary["bytes_read"] > 0
    _, expected = _fresh(request)
    _equal(answer, expected)
    np.testing.assert_allclose(answer, old + 1.0, atol=1e-4)  # float32 data, + 1 K


@pytest.mark.parametrize(
    "change",
    [
        {"selection": {**JAN_TO_MAR, "bbox": [170.0, -30.0, -160.0, 40.0]}},
        {"group_by": "season"},
        {"reduction": "max"},
    ],
    ids=["box", "grouping", "reduction"],
)
def test_a_changed_question_never_reuses(catalog, stack, settings, change):
    first, _ = _run(MONTHLY_MEAN)
    summary, answer = _run({**MONTHLY_MEAN, **change})
    assert "served_from" not in summary
    assert summary["blocks"] == {"computed": first["blocks"]["computed"]}
    assert summary["bytes_read"] > 0
    _, expected = _fresh({**MONTHLY_MEAN, **change})
    _equal(answer, expected)


def test_a_unit_conversion_is_a_new_question_on_the_same_partials(catalog, stack, settings):
    """A request's conversion applies to the combined statistic (the partials stay in the
    data's units), so it is served afresh from the same blocks; a conversion applied to
    the data (to put assets in one unit) is part of each block's identity.
    """
    first, kelvin = _run(MONTHLY_MEAN)
    summary, celsius = _run({**MONTHLY_MEAN, "convert": "K->degC"})
    assert "served_from" not in summary and summary["blocks"] == {
        "reused": first["blocks"]["computed"]
    }
    assert celsius.attrs["units"] == "degC"
    _equal(celsius, (kelvin - 273.15).assign_attrs(celsius.attrs))


def test_a_corrupt_partial_is_recomputed_and_reported(catalog, stack, settings):
    first, answer = _run(MONTHLY_MEAN)
    east = _stores(stack, settings)["us-east-1"]
    entry = east.entries()[0]
    path = Path(east.directory) / entry.key[:2] / entry.key
    path.write_bytes(path.read_bytes()[: entry.bytes // 2])  # truncated, as by a crash
    # another output name: not served whole; the merged partials forgotten: the regions
    # are visited and their blocks looked up one by one
    _forget_merged(stack, settings, "us-east-1", "us-west-2")
    summary, again = _run({**MONTHLY_MEAN, "output_name": _named("corrupt")})
    assert summary["blocks"]["corrupt"] == 1
    assert summary["blocks"]["reused"] == first["blocks"]["computed"] - 1
    assert 0 < summary["bytes_read"] < first["bytes_read"]
    _equal(again, answer)
    _forget_merged(stack, settings, "us-east-1", "us-west-2")
    third, _ = _run({**MONTHLY_MEAN, "output_name": _named("after-corrupt")})
    assert third["blocks"] == {"reused": first["blocks"]["computed"]}  # stored whole again


def test_a_corrupt_merged_partial_is_dropped_and_its_region_visited(catalog, stack, settings):
    first, answer = _run(MONTHLY_MEAN)
    kept = regions_kept.store(from_stack(stack, settings).results_dir, "us-west-2")
    (entry,) = kept.entries()
    path = Path(kept.directory) / entry.key[:2] / entry.key
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF  # one bit-flipped byte
    path.write_bytes(bytes(raw))
    summary, again = _run({**MONTHLY_MEAN, "output_name": _named("merged-corrupt")})
    west, east = _region(summary, "us-west-2"), _region(summary, "us-east-1")
    assert not west["kept"]  # visited: its blocks from its own store
    assert west["blocks"] == {"reused": _region(first, "us-west-2")["blocks"]["computed"]}
    assert east["kept"]
    _equal(again, answer)
    assert len(kept.entries()) == 1  # kept whole again


def test_partials_stay_in_their_region(catalog, stack, settings):
    first, _ = _run(MONTHLY_MEAN)
    stores = _stores(stack, settings)
    for name, store in stores.items():
        assert len(store.entries()) == _region(first, name)["blocks"]["computed"]
        assert Path(store.directory).is_relative_to(settings.region_root(name))
    _forget_merged(stack, settings, "us-east-1", "us-west-2")
    reused, _ = _run({**MONTHLY_MEAN, "output_name": _named("crossing")})
    assert reused["blocks"] == {"reused": first["blocks"]["computed"]}
    assert reused["bytes_read"] == 0
    # the blocks' partials stayed in us-west-2: only its merged partial crossed, as before
    assert reused["bytes_crossed_regions"] == first["bytes_crossed_regions"] > 0
    kept, _ = _run({**MONTHLY_MEAN, "output_name": _named("crossing-kept")})
    assert all(r["kept"] for r in kept["regions"]) and kept["bytes_crossed_regions"] == 0


def test_two_concurrent_requests_sharing_blocks_leave_one_whole_partial_each(
    catalog, stack, settings
):
    async def both():
        return await asyncio.gather(
            *(
                cross_region_analysis(
                    AnalysisRequest.model_validate({**MONTHLY_MEAN, "output_name": _named(str(i))})
                )
                for i in range(2)
            )
        )

    a, b = asyncio.run(both())
    computed = [a["blocks"].get("computed", 0), b["blocks"].get("computed", 0)]
    reused = a["blocks"].get("reused", 0) + b["blocks"].get("reused", 0)
    blocks = sum(len(s.entries()) for s in _stores(stack, settings).values())
    assert sum(computed) + reused == 2 * blocks  # each block once per request
    assert blocks <= sum(computed) <= 2 * blocks  # each block computed once, at worst twice
    assert not list(Path(settings.region_root("us-east-1")).rglob(".tmp-*"))
    with xr.open_dataset(a["result_path"]) as ra, xr.open_dataset(b["result_path"]) as rb:
        _equal(data_variable(ra), data_variable(rb))
    again, _ = _run({**MONTHLY_MEAN, "output_name": _named("after")})
    assert again["blocks"] == {"reused": blocks}


def test_the_cache_command_lists_and_clears_each_region(catalog, stack, settings):
    first, _ = _run(MONTHLY_MEAN)
    listed = proxima(stack, settings, "cache", "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {r["region"]: r for r in json.loads(listed.stdout)["regions"]}
    for name in ("us-east-1", "us-west-2"):
        assert rows[name]["partials"] == _region(first, name)["blocks"]["computed"]
        assert rows[name]["bytes"] > 0
    assert json.loads(listed.stdout)["results"] == 1
    cleared = proxima(stack, settings, "cache", "clear", "--region", "us-west-2")
    assert cleared.returncode == 0, cleared.stderr
    stores = _stores(stack, settings)
    assert stores["us-west-2"].entries() == [] and stores["us-east-1"].entries()
    again, _ = _run({**MONTHLY_MEAN, "output_name": _named("after-clear")})
    assert _region(again, "us-west-2")["blocks"] == {"computed": rows["us-west-2"]["partials"]}
    assert _region(again, "us-east-1")["blocks"] == {"reused": rows["us-east-1"]["partials"]}
    unknown = proxima(stack, settings, "cache", "ls", "--region", "eu-north-9")
    assert unknown.returncode != 0 and "unknown region 'eu-north-9'" in unknown.stderr


def test_a_scheduled_analysis_reads_only_the_month_a_refresh_brought(catalog, stack, settings):
    name = _named("climatology")
    request = AnalysisRequest.model_validate(
        {**MONTHLY_MEAN, "selection": {**JAN_TO_MAR, "end": "2020-01-31"}}
    )
    region = from_stack(stack, settings).region("us-west-2")
    key = "2020/04/data/air_temperature_at_2_metres.nc"
    with call_log.local_stand_in():
        client = s3.client(region)
        body = client.get_object(Bucket="era5-pds", Key=key)["Body"].read()
        client.delete_object(Bucket="era5-pds", Key=key)
    try:
        catalog_refresh()
        before = asyncio.run(scheduled_analysis(name=name, request=request))
        with xr.open_dataset(before["result_path"]) as ds:
            assert list(ds["month"].values) == [1, 2, 3]  # up to the newest data, not to Jan
    finally:
        with call_log.local_stand_in():
            client.put_object(Bucket="era5-pds", Key=key, Body=body)
        catalog_refresh()
    after = asyncio.run(scheduled_analysis(name=name, request=request))
    assert after["result_path"] == before["result_path"] and "served_from" not in after
    april = {
        **MONTHLY_MEAN,
        "selection": {**JAN_TO_MAR, "start": "2020-04-01", "end": "2020-04-30"},
    }
    assert after["bytes_read"] == _fresh(april)[0]["bytes_read"] > 0
    with xr.open_dataset(after["result_path"]) as ds:
        answer = data_variable(ds).load()
    assert list(answer["month"].values) == [1, 2, 3, 4]
    _, expected = _fresh(_between("2020-01-01", "2020-04-30"))
    _equal(answer, expected)
    unchanged = asyncio.run(scheduled_analysis(name=name, request=request))
    assert unchanged["served_from"]["run"] and unchanged["bytes_read"] == 0
