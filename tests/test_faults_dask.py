"""Compute faults on the real regional Dask clusters: workers SIGKILLed mid-analysis,
a task that kills its worker every time, a region's scheduler killed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from distributed import Client

from flows.cross_region_analysis import RegionFailed, analyze
from proxima.analysis.cf import data_variable
from proxima.analysis.request import AnalysisRequest
from proxima.stack import manager, processes
from tests import faults

pytestmark = pytest.mark.reliability

CHUNK = "block_partial"  # dask key prefix of the kernel's block tasks (one per block of a file)
REQUEST = {
    "selection": {
        "variable": "air_temperature",
        "dataset": "era5",
        "start": "2020-01-01",
        "end": "2020-04-30",
    },
    "reduction": "mean",
    "over": "time",
    "group_by": "month",
}


def _worker_pids(client: Client) -> set[int]:
    import os

    return set(client.run(os.getpid).values())


def _run(name: str, **extra) -> dict:
    request = AnalysisRequest.model_validate(
        {**REQUEST, "output_name": name, "overwrite": True, **extra}
    )
    return analyze(request)


@pytest.fixture(scope="module")
def clean(catalog) -> xr.DataArray:
    summary = _run("faults-clean")
    return data_variable(xr.open_dataset(summary["result_path"], engine="h5netcdf")).load()


@pytest.mark.parametrize("region", ["us-east-1", "us-west-2"])
def test_worker_sigkilled_mid_analysis_gives_the_same_answer(clean, region, tmp_path, observe):
    ledger = tmp_path / "kills"
    ledger.mkdir()
    with faults.region_client(region) as client:
        before = _worker_pids(client)
        faults.install(client, faults.KillOnTask(CHUNK, str(ledger), times=1), "kill-once")
        try:
            summary = _run(f"faults-kill-once-{region}")
        finally:
            faults.remove(client, "kill-once")
        client.wait_for_workers(1, timeout=60)
        after = _worker_pids(client)
    kills = list(ledger.iterdir())
    assert len(kills) == 1, "the fault was not injected"
    assert after and not (after & before), "the killed worker should have been replaced"
    result = data_variable(xr.open_dataset(summary["result_path"], engine="h5netcdf"))
    np.testing.assert_allclose(result.values, clean.values, rtol=1e-12)
    assert [r["region"] for r in summary["regions"]] == ["us-east-1", "us-west-2"]
    observe(
        kills=len(kills),
        max_abs_difference=float(np.nanmax(np.abs(result.values - clean.values))),
        seconds=summary["seconds"],
    )


def test_a_task_that_kills_its_worker_every_time_fails_after_bounded_deaths(
    clean, tmp_path, observe
):
    ledger = tmp_path / "kills"
    ledger.mkdir()
    with faults.region_client("us-west-2") as client:
        faults.install(client, faults.KillOnTask(CHUNK, str(ledger)), "kill-always")
        try:
            with pytest.raises(RegionFailed, match=r"region us-west-2 failed.*worker") as err:
                _run("faults-kill-always")
            deaths = len(list(ledger.iterdir()))
            partial = _run("faults-kill-always-partial", allow_partial=True)
        finally:
            faults.remove(client, "kill-always")
        client.wait_for_workers(1, timeout=60)
    assert 1 < deaths <= 4, (deaths, str(err.value))  # distributed allowed-failures = 3
    assert partial["missing_regions"] == ["us-west-2"]
    east = data_variable(xr.open_dataset(partial["result_path"], engine="h5netcdf"))
    assert np.isfinite(east.sel(month=[1, 2]).values).all()  # us-east-1's months answered
    observe(worker_deaths=deaths, error=str(err.value)[:300])


def test_a_killed_scheduler_is_named_then_a_retry_succeeds(clean, settings, config, observe):
    rows = {r.name: r for r in manager.status(settings, config)}
    processes.stop(rows["us-east-1-dask-scheduler"].pid or 0)
    try:
        with pytest.raises(RegionFailed, match="region us-east-1 failed") as err:
            _run("faults-no-scheduler")
        assert not (Path(settings.state_dir) / "results" / "faults-no-scheduler.nc").exists()
    finally:
        manager.up(settings, config)  # restarts the scheduler; its workers rejoin or restart
    summary = _run("faults-after-restart")
    result = data_variable(xr.open_dataset(summary["result_path"], engine="h5netcdf"))
    np.testing.assert_allclose(result.values, clean.values, rtol=1e-12)
    observe(error=str(err.value)[:300], retry="same answer, rtol 1e-12")
