"""How long from a trigger (the UI's Run button, `prefect deployment run`, the API) to the
regional subflows running, for the cross-region-analysis deployment on the stack's own
server and process worker.

    cd benchmarks && ../.venv/bin/python trigger_latency.py [--runs 12]

Each run is created through the API and waited for before the next; runs alternate
between the stack's warm start (the flow launcher, the default) and a cold one (the
process worker's own ``python -m prefect.engine``, as a job-variable override), so both
see the same machine. Times are the server's: the run's creation, its Pending (the
worker took it), its Running (the flow process started) and the first regional
subflow's Running. Writes ``results/trigger_latency.json`` with ``p50_s`` and ``p95_s``
(trigger to subflows, warm) and ``cold_p50_s``/``cold_p95_s``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

common.configure()

from machine import print_machine  # noqa: E402

REQUEST = {
    "selection": {
        "variable": "air_temperature",
        "dataset": "era5",
        "start": "2020-01-01",
        "end": "2020-01-02",
        "bbox": [0, 0, 10, 10],
    },
    "reduction": "mean",
    "over": "both",
    "output_name": "bench-trigger",
    "overwrite": True,
    "reuse": False,  # every run computes: the figures are the compute path's
}


def _state_time(client, run_id, state_type: str):
    for state in client.read_flow_run_states(run_id):
        if state.type.value == state_type:
            return state.timestamp
    return None


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=12)
    args = parser.parse_args()
    info = print_machine()
    settings, config = common.up()
    common.ensure_era5(settings, config)
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
    from prefect.flow_runs import wait_for_flow_run

    from flows.catalog_refresh import catalog_refresh
    from proxima.platform.blocks import save_blocks
    from proxima.stack.services import client_env

    catalog_refresh()
    save_blocks()
    subprocess.run(
        [sys.executable, "-m", "proxima.cli", "deploy"],
        env=client_env(config, settings),
        cwd=common.ROOT,
        check=True,
        capture_output=True,
    )
    cold = {"command": f"{sys.executable} -m prefect.engine"}  # the worker's own default
    rows: dict[str, list[dict]] = {"warm": [], "cold": []}
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("cross-region-analysis/cross-region-analysis")
        for i in range(args.runs * 2):  # alternate, so both see the same machine
            start = "warm" if i % 2 == 0 else "cold"
            run = client.create_flow_run_from_deployment(
                deployment.id,
                parameters={"request": REQUEST},
                job_variables=cold if start == "cold" else None,
            )
            asyncio.run(wait_for_flow_run(run.id, timeout=600, log_states=False))
            children = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id])
                )
            )
            created = client.read_flow_run(run.id).created
            starts = [_state_time(client, c.id, "RUNNING") for c in children]
            row = {
                "pending_s": (_state_time(client, run.id, "PENDING") - created).total_seconds(),
                "running_s": (_state_time(client, run.id, "RUNNING") - created).total_seconds(),
                "subflows_s": (min(s for s in starts if s) - created).total_seconds(),
            }
            rows[start].append(row)
            print(
                f"run {i + 1:2d} ({start}): worker took it {row['pending_s']:.2f} s, flow "
                f"running {row['running_s']:.2f} s, regional subflows running "
                f"{row['subflows_s']:.2f} s",
                flush=True,
            )
            time.sleep(0.5)

    def summary(kind: str) -> dict[str, float]:
        of = rows[kind]
        return {
            "p50_s": statistics.median(r["subflows_s"] for r in of),
            "p95_s": _percentile([r["subflows_s"] for r in of], 0.95),
            "worker_pickup_p50_s": statistics.median(r["pending_s"] for r in of),
            "flow_running_p50_s": statistics.median(r["running_s"] for r in of),
        }

    warm, cold_summary = summary("warm"), summary("cold")
    result = {
        "machine": info,
        "runs": len(rows["warm"]),
        **warm,  # the platform's default: warm starts through the flow launcher
        **{f"cold_{key}": value for key, value in cold_summary.items()},
        "rows": rows,
    }
    for kind, figures in (
        ("warm (flow launcher)", warm),
        ("cold (python -m prefect.engine)", cold_summary),
    ):
        print(
            f"{kind}: trigger -> regional subflows running p50 {figures['p50_s']:.2f} s, "
            f"p95 {figures['p95_s']:.2f} s over {len(rows['warm'])} runs (worker pickup p50 "
            f"{figures['worker_pickup_p50_s']:.2f} s, flow running p50 "
            f"{figures['flow_running_p50_s']:.2f} s)"
        )
    common.save("trigger_latency", result)


if __name__ == "__main__":
    main()
