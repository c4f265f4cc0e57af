"""Where a first refresh's time goes: N new files, one cold refresh, the CPU-seconds of
every process on the machine over it (psutil) and the refresh's task runs as the
Prefect server timed them.

Usage: cd benchmarks && ../.venv/bin/python catalog_cold.py [--assets 10000]
Writes results/catalog_cold.json: cold_s, cold_assets_per_s, cpu_s (process -> CPU-s),
tasks (name -> start_s, end_s: server timestamps, after the first task's start).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import time

import common

common.configure()

import psutil  # noqa: E402
from machine import print_machine  # noqa: E402


def _cpu(procs: dict[int, psutil.Process]) -> dict[int, float]:
    out = {}
    for pid, proc in procs.items():
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        out[pid] = times.user + times.system
    return out


async def _tasks(limit: int = 6) -> dict[str, dict[str, float]]:
    """The refresh's six task runs (the region's, then its steps): each one's start and
    end, in s after the first one's start.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import TaskRunSort

    async with get_client() as client:
        runs = await client.read_task_runs(sort=TaskRunSort.EXPECTED_START_TIME_DESC, limit=limit)
    timed = [r for r in runs if r.start_time and r.end_time]
    zero = min(r.start_time for r in timed)
    return {
        r.name.split("-us-")[0].split("-bd")[0]: {
            "start_s": (r.start_time - zero).total_seconds(),
            "end_s": (r.end_time - zero).total_seconds(),
        }
        for r in sorted(timed, key=lambda r: r.start_time)
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--assets", type=int, default=10000)
    args = parser.parse_args()
    info = print_machine()
    settings, config = common.up()
    root = common.fill_scale(settings, config, args.assets)
    from flows.catalog_refresh import catalog_refresh

    procs = {p.pid: p for p in psutil.process_iter(["cmdline"])}
    before = _cpu(procs)
    t0 = time.perf_counter()
    catalog_refresh(regions=["us-east-1"])
    cold_s = time.perf_counter() - t0
    after = _cpu(procs)
    cpu: dict[str, float] = {}
    for pid, proc in procs.items():
        line = " ".join(proc.info["cmdline"] or []) or str(pid)
        name = line if len(line) <= 90 else f"{line[:40]} … {line[-45:]}"
        cpu[name] = cpu.get(name, 0.0) + after.get(pid, 0.0) - before.get(pid, 0.0)
    tasks = asyncio.run(_tasks())
    print(f"first refresh: {args.assets} headers in {cold_s:.1f} s, {args.assets / cold_s:.0f}/s")
    for name, seconds in sorted(cpu.items(), key=lambda kv: -kv[1])[:8]:
        print(f"  {seconds:6.2f} CPU-s  {name}")
    for name, span in tasks.items():
        print(f"  {span['start_s']:6.2f} -> {span['end_s']:6.2f} s  task {name}")
    common.save(
        "catalog_cold",
        {
            "machine": info,
            "assets": args.assets,
            "cold_s": cold_s,
            "cold_assets_per_s": args.assets / cold_s,
            "cpu_s": {k: v for k, v in cpu.items() if v >= 0.05},
            "tasks": tasks,
        },
    )
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
