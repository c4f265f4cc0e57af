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

from flows.cross_region_analysis import analyze
from flows.submit import submit_analysis
from proxima.analysis.cf import data_variable
from proxima.analysis.request import AnalysisRequest
from tests import faults

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


def _heartbeats(api_url: str, run_id) -> int:
    """Heartbeat events the server has received from flow run ``run_id``."""
    import httpx

    resp = httpx.post(
        f"{api_url}/events/filter",
        json={
            "filter": {
                "occurred": {"since": "2020-01-01T00:00:00Z"},
                "event": {"name": ["prefect.flow-run.heartbeat"]},
                "resource": {"id": [f"prefect.flow-run.{run_id}"]},
            },
            "limit": 50,
        },
        timeout=10,
    )
    resp.raise_for_status()
    return len(resp.json()["events"])


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
    request = AnalysisRequest.model_validate({**REQUEST, "output_name": name, "overwrite": True})
    results = Path(settings.state_dir) / "results"
    (results / f"{name}.nc").unlink(missing_ok=True)
    clients = [faults.region_client(r) for r in ("us-east-1", "us-west-2")]
    for client in clients:  # each region's first chunk read waits 20 s: the run stays mid-flight
        faults.install(client, faults.Stall("block_partial", 20), "stall")
    try:
        run = submit_analysis(request)
        proc = _flow_run_process(run.id)
        # Mid-run: a regional subflow is running and the server has its first heartbeat
        # (sent at its start, asynchronously; a process killed before that one arrives
        # leaves a subflow no automation can see).
        deadline, beating = time.monotonic() + 90, []
        while not beating and time.monotonic() < deadline:
            beating = [c for c in _children(run.id) if _heartbeats(deployed.prefect.api_url, c.id)]
            time.sleep(0.2)
        assert beating, "no regional subflow reported a heartbeat"
        proc.send_signal(signal.SIGKILL)
    finally:
        for client in clients:
            faults.remove(client, "stall")
            client.close()
    killed_at = time.monotonic()
    crashed = _wait(run.id, {"CRASHED", "FAILED", "COMPLETED"})
    assert crashed.state.type.value == "CRASHED", crashed.state
    # Its regional subflows died with the process: the zombie automation crashes them
    # once their heartbeats stop (they would otherwise show Running for ever).
    watched = {c.id for c in beating}
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if all(_read(i).state.is_final() for i in watched):
            break
        time.sleep(2)
    orphans = {c.name: c.state.type.value for c in _children(run.id) if c.state}
    watched_states = {_read(i).state.type.value for i in watched}
    assert watched_states <= {"CRASHED", "COMPLETED"}, orphans
    assert "CRASHED" in watched_states, orphans  # at least one was mid-run
    subflows_final_s = round(time.monotonic() - killed_at, 1)

    rerun = submit_analysis(request, wait_seconds=300)
    assert rerun.state.type.value == "COMPLETED", rerun.state
    again = submit_analysis(request, wait_seconds=300)  # re-running once more changes nothing
    assert again.state.type.value == "COMPLETED", again.state
    assert not list(results.glob(f".partial-*-{name}.nc")), "a crashed run's partial write remains"
    written = data_variable(xr.open_dataset(results / f"{name}.nc", engine="h5netcdf")).load()
    reference = analyze(
        AnalysisRequest.model_validate(
            {**REQUEST, "output_name": f"{name}-reference", "overwrite": True}
        )
    )
    expected = data_variable(xr.open_dataset(reference["result_path"], engine="h5netcdf"))
    np.testing.assert_array_equal(written.values, expected.values)
    observe(
        crashed_state=crashed.state.name,
        crashed_message=(crashed.state.message or "")[:200],
        rerun_state=rerun.state.name,
        subflows=orphans,
        subflows_final_after_s=subflows_final_s,
    )


def _warm_child(settings, run_id) -> int:
    """The pid the flow launcher forked for ``run_id`` (from its log)."""
    log = Path(settings.logs_dir) / "flow-launcher.log"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if line.startswith(f"flow run {run_id}: started warm as pid "):
                return int(line.rsplit(" ", 1)[1])
        time.sleep(0.2)
    raise AssertionError(f"the flow launcher did not start flow run {run_id}")


def test_a_run_cancelled_mid_flight_ends_cancelled_and_its_process_exits(
    deployed, settings, tmp_path, observe
):
    from prefect.states import Cancelling

    request = AnalysisRequest.model_validate(
        {**REQUEST, "output_name": "cancel-mid-run", "overwrite": True}
    )
    marker = tmp_path / "stalled"
    clients = [faults.region_client(r) for r in ("us-east-1", "us-west-2")]
    for client in clients:  # each region's first chunk read waits 20 s: the run stays mid-flight
        faults.install(client, faults.Stall("block_partial", 20, str(marker)), "stall")
    try:
        run = submit_analysis(request)
        faults.wait_for(marker)
        child = psutil.Process(_warm_child(settings, run.id))  # started warm, not cold
        asked = time.monotonic()
        with get_client(sync_client=True) as client:  # what the UI's Cancel button does
            client.set_flow_run_state(run.id, Cancelling())
        ended = _wait(run.id, {"CANCELLED", "CRASHED", "FAILED", "COMPLETED"}, 90)
        cancelled_after_s = round(time.monotonic() - asked, 1)
    finally:
        for client in clients:
            faults.remove(client, "stall")
            client.close()
    assert ended.state.type.value == "CANCELLED", ended.state
    try:
        child.wait(30)
    except psutil.TimeoutExpired:
        raise AssertionError(f"the cancelled run's process {child.pid} still runs") from None
    observe(state=ended.state.name, cancelled_after_s=cancelled_after_s)


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
            "--no-wait",
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
