"""Orchestration faults on the real Prefect server and process worker: a flow-run
process killed mid-run, and one idempotency key submitted twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import psutil
import pytest
import xarray as xr
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

from flows.cross_region_analysis import cross_region_analysis
from flows.submit import submit_analysis
from proxima.analysis.request import AnalysisRequest

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parents[1]
REQUEST = {
    "selection": {
        "variable": "air_temperature",
        "dataset": "era5",
        "start": "2020-01-01",
        "end": "2020-04-30",
    },
    "reduction": "max",
    "over": "time",
    "group_by": "month",
}


def _read(run_id):
    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def _wait(run_id, states: set[str], timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = _read(run_id)
        if run.state and run.state.type.value in states:
            return run
        time.sleep(0.2)
    raise AssertionError(f"flow run {run_id} not in {states} after {timeout}s: {run.state}")


def _children(run_id) -> list:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run_id])
            )
        )


def _flow_run_process(run_id) -> psutil.Process:
    """The process the work pool's worker started for ``run_id``."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for proc in psutil.process_iter():
            try:
                if proc.environ().get("PREFECT__FLOW_RUN_ID") == str(run_id):
                    return proc
            except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
        time.sleep(0.2)
    raise AssertionError(f"no process runs flow run {run_id}")


def test_killed_flow_run_process_ends_crashed_and_a_rerun_is_idempotent(
    deployed, settings, observe
):
    name = "crash-and-rerun"
    request = AnalysisRequest.model_validate({**REQUEST, "output_name": name})
    results = Path(settings.state_dir) / "results"
    (results / f"{name}.nc").unlink(missing_ok=True)
    run = submit_analysis(request)
    proc = _flow_run_process(run.id)
    deadline = time.monotonic() + 60
    while not _children(run.id) and time.monotonic() < deadline:  # mid-run: regions started
        time.sleep(0.1)
    assert _children(run.id), "the run never reached its regional subflows"
    proc.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    crashed = _wait(run.id, {"CRASHED", "FAILED", "COMPLETED"})
    assert crashed.state.type.value == "CRASHED", crashed.state
    # Its regional subflows died with the process: the zombie automation crashes them
    # once their heartbeats stop (they would otherwise show Running for ever).
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        children = _children(run.id)
        if all(c.state and c.state.is_final() for c in children):
            break
        time.sleep(2)
    orphans = {c.name: c.state.type.value for c in _children(run.id) if c.state}
    assert set(orphans.values()) <= {"CRASHED", "COMPLETED"}, orphans
    assert "CRASHED" in orphans.values(), orphans  # at least one was mid-run
    subflows_final_s = round(time.monotonic() - killed_at, 1)

    rerun = submit_analysis(request, wait_seconds=300)
    assert rerun.state.type.value == "COMPLETED", rerun.state
    again = submit_analysis(request, wait_seconds=300)  # re-running once more changes nothing
    assert again.state.type.value == "COMPLETED", again.state
    assert not list(results.glob(f".partial-*-{name}.nc")), "a crashed run's partial write remains"
    written = xr.open_dataset(results / f"{name}.nc", engine="h5netcdf")["result"].load()
    reference = cross_region_analysis(
        AnalysisRequest.model_validate({**REQUEST, "output_name": f"{name}-reference"})
    )
    expected = xr.open_dataset(reference["result_path"], engine="h5netcdf")["result"]
    np.testing.assert_array_equal(written.values, expected.values)
    observe(
        crashed_state=crashed.state.name,
        crashed_message=(crashed.state.message or "")[:200],
        rerun_state=rerun.state.name,
        subflows=orphans,
        subflows_final_after_s=subflows_final_s,
    )


def test_one_idempotency_key_gives_one_run(deployed, tmp_path, observe):
    request = AnalysisRequest.model_validate({**REQUEST, "dry_run": True})
    key = f"reliability-{uuid.uuid4()}"
    first = submit_analysis(request, idempotency_key=key)
    second = submit_analysis(request, idempotency_key=key)
    request_file = tmp_path / "request.json"
    request_file.write_text(request.model_dump_json())
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "proxima.cli",
            "analyze",
            str(request_file),
            "--submit",
            "--idempotency-key",
            key,
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ),
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    other = submit_analysis(request, idempotency_key=f"{key}-other")
    assert first.id == second.id == uuid.UUID(json.loads(cli.stdout)["flow_run_id"])
    assert other.id != first.id  # a different key is a different run
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(deployment_id={"any_": [first.deployment_id]})
        )
    same_key = [r for r in runs if r.idempotency_key == key]
    assert len(same_key) == 1
    for run_id in (first.id, other.id):
        assert _wait(run_id, {"COMPLETED", "FAILED", "CRASHED"}).state.type.value == "COMPLETED"
    observe(submissions=3, runs_with_the_key=len(same_key))


def test_a_run_left_pending_by_a_dead_worker_is_released_when_the_worker_restarts(
    deployed, settings, config, observe
):
    from prefect.deployments import run_deployment
    from prefect.states import Pending

    from proxima.stack import manager, processes

    deployment = "catalog-refresh/catalog-full-rebuild"  # concurrency 1, CANCEL_NEW
    worker = {r.name: r for r in manager.status(settings, config)}["prefect-worker"].pid
    processes.stop(worker or 0)  # the worker dies...
    stuck = run_deployment(deployment, timeout=0, as_subflow=False)
    with get_client(sync_client=True) as client:  # ...while it was submitting this run
        accepted = client.set_flow_run_state(stuck.id, Pending())
    assert accepted.status.value == "ACCEPT"  # it now holds the deployment's only slot
    blocked = run_deployment(deployment, timeout=0, as_subflow=False)
    blocked = _wait(blocked.id, {"CANCELLED", "COMPLETED"}, 30)
    assert blocked.state.type.value == "CANCELLED", blocked.state

    manager.up(settings, config)  # restarts the worker, releasing what the dead one held
    released = _read(stuck.id)
    assert released.state.type.value == "CRASHED", released.state
    after = run_deployment(deployment, timeout=300, as_subflow=False)
    assert after.state.type.value == "COMPLETED", after.state
    observe(
        blocked_before_restart=f"{blocked.state.name}: {blocked.state.message}",
        stuck_after_restart=released.state.name,
        next_run=after.state.name,
    )
