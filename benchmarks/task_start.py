"""What a Prefect task costs before its function runs, and what the shared TLS context
of the Prefect clients saves there.

A subflow on a regional DaskTaskRunner submits a task that does nothing, one at a
time; each reports how long after its submission its function started. Both ways are
measured in one run, interleaved: every Prefect client of the process sharing one TLS
context (what ``flows`` installs), and Prefect's own way (a context per client, built
from the certifi bundle), switched on the caller and on the region's workers alike.

Usage: .venv/bin/python benchmarks/task_start.py [--tasks 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import common

common.configure()

from distributed import Client  # noqa: E402
from machine import print_machine  # noqa: E402
from prefect import flow, task  # noqa: E402

from flows.runners import on_cluster, regional_runner  # noqa: E402


@task(name="nothing")
def nothing(submitted: float) -> float:
    return time.time() - submitted


@flow(name="task-start")
async def task_start(n: int) -> list[float]:
    return [await on_cluster(nothing, time.time()) for _ in range(n)]


def sharing(on: bool) -> None:
    """Every Prefect client of this process shares one TLS context, or builds its own."""
    from prefect.client import orchestration

    from flows.prefect_clients import share_tls_context

    if on:
        share_tls_context()
        return
    for cls in (orchestration.PrefectClient, orchestration.SyncPrefectClient):
        while getattr(cls.__init__, "_shares_tls_context", False):
            cls.__init__ = cls.__init__.__wrapped__


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    info = print_machine()
    common.up()
    from proxima.platform import from_stack

    region = from_stack().region("us-east-1")
    runner = regional_runner(region)
    seconds: dict[str, list[float]] = {"shared": [], "per_client": []}
    with Client(
        region.scheduler_address, security=region.dask_security(), set_as_default=False
    ) as workers:
        try:
            asyncio.run(task_start.with_options(task_runner=runner)(2))  # warm-up
            for _ in range(args.rounds):
                for mode in seconds:
                    sharing(mode == "shared")
                    workers.run(sharing, mode == "shared")
                    seconds[mode] += asyncio.run(
                        task_start.with_options(task_runner=runner)(args.tasks)
                    )[1:]
        finally:
            sharing(True)
            workers.run(sharing, True)
    medians = {mode: statistics.median(s) * 1000 for mode, s in seconds.items()}
    print("| TLS context of the Prefect clients | submit → start, median ms | tasks |")
    print("|---|---|---|")
    for mode, ms in medians.items():
        print(f"| {mode.replace('_', ' ')} | {ms:.0f} | {len(seconds[mode])} |")
    common.save(
        "task_start",
        {
            "machine": info,
            "start_ms_shared": medians["shared"],
            "start_ms_per_client": medians["per_client"],
            "seconds": seconds,
        },
    )


if __name__ == "__main__":
    main()
