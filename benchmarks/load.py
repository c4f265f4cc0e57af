"""A team on the platform at once: three users submit 24 analyses over about a minute,
through the deployment (work pool), the Python API and the CLI, while a catalog refresh
runs; then every distinct (request, way in) is run alone.

Prints and writes benchmarks/results/load.json: requests, completed, refused, wrong,
lost, duplicated, p50_small_s, p95_small_s, solo_small_s, makespan_s, sum_solo_s,
throughput_ratio, max_worker_memory_fraction, machine.

    .venv/bin/python benchmarks/load.py [--no-interactive-worker]

Its own stack (``.state/bench-load``, ports +2700): benchmarks/stack.yaml with each
region's interactive worker, as the team's local stack runs.
"""

from __future__ import annotations

import argparse
import contextvars
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from datetime import UTC

from benchmarks import common
from benchmarks.machine import print_machine

ERA5 = {"variable": "air_temperature", "dataset": "era5"}
MONTHS = ["01", "02", "03", "04", "05", "06"]
ENDS = {"01": "31", "02": "29", "03": "31", "04": "30", "05": "31", "06": "30"}
BOXES = [[-10, 35, 30, 60], [230, 20, 290, 50], [100, -40, 160, 0], [160, -20, -160, 20]]
WAYS = ("deployment", "python", "cli")
RTOL = 1e-12
# the large ones early, so that the small ones meet them on the clusters
ORDER = "LMSSLMSSRSMSSSMSSRSMSSSSMS"


def _month(m: str) -> dict[str, str]:
    return {"start": f"2020-{m}-01", "end": f"2020-{m}-{ENDS[m]}"}


def requests() -> list[tuple[str, dict[str, Any]]]:
    """The load: (size, request) for 16 small, 6 medium, 2 large and 2 to refuse, in
    the order they are submitted.
    """
    small = [
        ("small", {"selection": {**ERA5, **_month(m), "bbox": BOXES[i % 4]}, "over": "time"})
        for i, m in enumerate(MONTHS + MONTHS[:2])
    ]
    half = {**ERA5, "start": "2020-01-01", "end": "2020-06-30"}
    medium = [
        ("medium", {"selection": {**half, "bbox": BOXES[i]}, "reduction": r, "group_by": "month"})
        for i, r in enumerate(("mean", "max", "std"))
    ]
    large = [
        ("large", {"selection": half, "reduction": "none", "coarsen": {"time": "day", "space": 2}}),
    ]
    refused = [
        ("over-cap", {"selection": half, "reduction": "none", "max_transfer_bytes": 2**20}),
        ("over-memory", {"selection": half, "reduction": "none", "max_transfer_bytes": 2**40}),
    ]
    pools = {"L": large * 2, "M": medium * 2, "S": small * 2, "R": refused}
    out = [pools[kind].pop(0) for kind in ORDER]
    assert not any(pools.values()), "ORDER names every request once"
    # each submission computes (a repeat served from the first's result is not load)
    return [(kind, {**request, "reuse": False}) for kind, request in out]


@dataclass
class Submission:
    """One analysis sent in, and what became of it."""

    index: int
    size: str
    way: str
    request: dict[str, Any]
    submitted: float = 0.0
    finished: float | None = None
    outcome: str = "pending"  # completed | refused | failed | pending
    message: str = ""
    result_path: str | None = None
    waited_s: dict[str, float] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.way}:{json.dumps(self.request, sort_keys=True)}"

    @property
    def seconds(self) -> float | None:
        return None if self.finished is None else self.finished - self.submitted


def _named(request: dict[str, Any], name: str) -> dict[str, Any]:
    return {**request, "output_name": name, "overwrite": True}


def _suffix(request: dict[str, Any]) -> str:
    return ".zarr" if request.get("reduction") == "none" else ".nc"


def _run(sub: Submission, name: str, results_dir: Path, env: dict[str, str]) -> None:
    """Send ``sub`` in its way as result ``name`` and wait for its end."""
    from flows.cross_region_analysis import analyze
    from flows.progress import wait_run
    from flows.submit import submit_analysis
    from proxima.analysis.request import AnalysisRequest

    request = _named(sub.request, name)
    sub.submitted = time.time()
    try:
        if sub.way == "python":
            summary = analyze(AnalysisRequest.model_validate(request))
            sub.result_path = summary["result_path"]
            sub.waited_s = {r["region"]: r["waited_s"] for r in summary["regions"]}
        elif sub.way == "cli":
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
                json.dump(request, f)
            done = subprocess.run(
                [sys.executable, "-m", "proxima.cli", "analyze", f.name, "--json"],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode:
                raise RuntimeError(done.stderr.strip().splitlines()[-1])
            summary = json.loads(done.stdout)
            sub.result_path = summary["result_path"]
            sub.waited_s = {r["region"]: r["waited_s"] for r in summary["regions"]}
        else:
            run = wait_run(submit_analysis(AnalysisRequest.model_validate(request)).id)
            if not run.state.is_completed():
                raise RuntimeError(run.state.message if run.state else "no state")
            sub.result_path = str(results_dir / f"{name}{_suffix(request)}")
        sub.outcome = "completed"
    except Exception as exc:  # every end is recorded, refusals included
        sub.message = " ".join(str(exc).split())[:300]
        refusal = "max_transfer_bytes" in sub.message or "MiB limit" in sub.message
        sub.outcome = "refused" if refusal else "failed"
    sub.finished = time.time()


def _in_thread(fn: Callable[..., None], *args: Any) -> threading.Thread:
    thread = threading.Thread(target=contextvars.copy_context().run, args=(fn, *args))
    thread.start()
    return thread


class MemorySampler:
    """The regional workers' peak RSS over their memory limit, sampled every 0.2 s."""

    def __init__(self, settings, config) -> None:
        import psutil
        from dask.utils import parse_bytes

        from proxima.stack import manager

        self.limits: dict[int, int] = {}
        limits = {r.name: parse_bytes(r.memory_limit) for r in config.regions}
        for service in manager.status(settings, config):  # workers and interactive workers
            if not service.name.endswith(("-dask-workers", "-dask-interactive")):
                continue
            for proc in psutil.Process(service.pid).children(recursive=True):
                if "distributed" in " ".join(proc.cmdline()) or proc.children() == []:
                    self.limits[proc.pid] = limits[service.region]
        self.peak = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        import psutil

        while not self.stop.is_set():
            for pid, limit in self.limits.items():
                try:
                    self.peak = max(self.peak, psutil.Process(pid).memory_info().rss / limit)
                except psutil.NoSuchProcess:
                    continue
            self.stop.wait(0.2)

    def close(self) -> float:
        self.stop.set()
        self.thread.join(timeout=5)
        return round(self.peak, 3)


CPU_KINDS = (  # (kind, what its command line holds), the first match wins
    ("prefect-server", "prefect server"),
    ("prefect-server", "uvicorn"),
    ("prefect-worker", "prefect worker"),
    ("flow-launcher", "flow_launcher"),
    ("dask-workers", "distributed.cli.dask_worker"),
    ("dask-workers", "dask worker"),
    ("dask-workers", "dask_worker"),
    ("dask-scheduler", "scheduler"),
    ("postgres", "postgres"),
    ("opensearch", "opensearch"),
    ("s3", "s3proxy"),
    ("stac-api", "proxima.stac"),
    ("cli", "proxima.cli analyze"),
)


class CpuSampler:
    """CPU-seconds by kind of process over the loaded phase: every process of the
    machine sampled every 0.5 s, a process born during the phase counted whole."""

    def __init__(self) -> None:
        import os

        import psutil

        self.me = os.getpid()
        self.start: dict[int, float] = {}
        self.last: dict[int, tuple[str, float]] = {}
        for proc in psutil.process_iter():
            try:
                t = proc.cpu_times()
                self.start[proc.pid] = t.user + t.system
            except psutil.Error:
                continue
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _kind(self, proc) -> str:
        if proc.pid == self.me:
            return "benchmark (python way)"
        cmd = " ".join(proc.cmdline())
        parent = " ".join(proc.parent().cmdline()) if proc.ppid() else ""
        if "flow_launcher serve" in parent:
            return "flow-runs"  # forked: the launcher's command line
        if "multiprocessing" in cmd and "dask worker" in parent:
            return "dask-workers"  # the nanny's worker processes
        return next((k for k, needle in CPU_KINDS if needle in cmd), "other")

    def _sample(self) -> None:
        import psutil

        while not self.stop.is_set():
            for proc in psutil.process_iter():
                try:
                    t = proc.cpu_times()
                    kind = self.last.get(proc.pid, (None,))[0] or self._kind(proc)
                    self.last[proc.pid] = (kind, t.user + t.system)
                except psutil.Error:
                    continue
            self.stop.wait(0.5)

    def close(self) -> dict[str, float]:
        self.stop.set()
        self.thread.join(timeout=5)
        out: dict[str, float] = {}
        for pid, (kind, cpu) in self.last.items():
            out[kind] = out.get(kind, 0.0) + cpu - self.start.get(pid, 0.0)
        return {k: round(v, 1) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


def _same(a: str, b: str) -> bool:
    import xarray as xr

    def load(path: str) -> xr.Dataset:
        if path.endswith(".zarr"):
            return xr.open_zarr(path).load()
        return xr.load_dataset(path, engine="h5netcdf")

    got, want = load(a), load(b)
    names = [v for v in want.data_vars if not str(v).endswith("_bnds")]
    return all(
        got[v].shape == want[v].shape
        and np.allclose(got[v].values, want[v].values, rtol=RTOL, atol=0, equal_nan=True)
        for v in names
    )


def _accounting(since: float, subs: list[Submission]) -> tuple[int, int]:
    """(lost, duplicated) from the server's records of the analysis runs: a submission
    with no run that ended, and a name run more than once (or a run that ran twice)."""
    from datetime import datetime

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterStartTime,
    )

    runs = []
    with get_client(sync_client=True) as client:
        offset = 0
        while True:
            page = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["cross-region-analysis"])),
                flow_run_filter=FlowRunFilter(
                    start_time=FlowRunFilterStartTime(after_=datetime.fromtimestamp(since, UTC))
                ),
                limit=200,
                offset=offset,
            )
            runs += page
            offset += len(page)
            if len(page) < 200:
                break
    by_name: dict[str, list[Any]] = {}
    for run in runs:
        name = (run.parameters.get("request") or {}).get("output_name")
        if name and name.startswith("load-"):
            by_name.setdefault(name, []).append(run)
    duplicated = sum(len(v) - 1 for v in by_name.values())
    duplicated += sum(1 for v in by_name.values() for r in v if r.run_count > 1)
    lost = 0
    for sub in subs:
        ran = by_name.get(f"load-{sub.index:02d}", [])
        ended = [r for r in ran if r.state and r.state.is_final()]
        if sub.outcome == "pending" or (sub.outcome != "refused" and not ended):
            lost += 1  # a refusal in the API or CLI is raised before a run exists
    return lost, duplicated


def _percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2) if values else float("nan")


STATE = common.ROOT / ".state" / "bench-load"


def _stack_file(interactive: bool) -> None:
    """The benchmark stack's config with (or without) each region's interactive worker,
    as the team's local stack runs it (deployments/local/stack.yaml): its own state and
    ports, so that the kernel benchmarks keep their two workers per region.
    """
    import os

    import yaml

    raw = yaml.safe_load((common.ROOT / "benchmarks" / "stack.yaml").read_text())
    for region in raw["regions"]:
        region["interactive_worker"] = interactive
    STATE.mkdir(parents=True, exist_ok=True)
    (STATE / "stack.yaml").write_text(yaml.safe_dump(raw))
    os.environ["PROXIMA_STATE_DIR"] = str(STATE)
    os.environ["PROXIMA_STACK_CONFIG"] = str(STATE / "stack.yaml")
    common.configure(offset=2700)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--over", type=float, default=60.0, help="Seconds to submit over.")
    parser.add_argument(
        "--loaded-only", action="store_true", help="Skip the solo runs (a diagnosis, no ratios)."
    )
    parser.add_argument(
        "--no-interactive-worker",
        action="store_true",
        help="Without the regions' workers kept for small shares (to compare).",
    )
    args = parser.parse_args()
    _stack_file(interactive=not args.no_interactive_worker)
    info = print_machine()
    settings, config = common.up()
    common.ensure_era5(settings, config)
    from flows.catalog_refresh import catalog_refresh
    from flows.submit import submit_analysis  # noqa: F401 - imported before the threads
    from proxima.platform import load as load_platform
    from proxima.platform.blocks import save_blocks
    from proxima.stack.services import client_env

    catalog_refresh()
    save_blocks()
    env = client_env(config, settings)
    subprocess.run(
        [sys.executable, "-m", "proxima.cli", "deploy"],
        env=env,
        cwd=common.ROOT,
        check=True,
        capture_output=True,
    )
    results_dir = Path(load_platform().results_dir)
    plan = requests()
    subs = [
        Submission(index=i, size=size, way=WAYS[i % 3], request=req)
        for i, (size, req) in enumerate(plan)
    ]
    print(f"load: {len(subs)} analyses over {args.over:.0f} s, a catalog refresh among them")
    memory = MemorySampler(settings, config)
    cpu = CpuSampler()
    started = time.time()
    threads = []
    refresh = _in_thread(lambda: catalog_refresh())
    for sub in subs:
        sub.submitted = started + sub.index * args.over / len(subs)
        time.sleep(max(0.0, sub.submitted - time.time()))
        threads.append(_in_thread(_run, sub, f"load-{sub.index:02d}", results_dir, env))
    for t in [*threads, refresh]:
        t.join(timeout=1800)
    makespan = max(s.finished or time.time() for s in subs) - started
    max_memory = memory.close()
    cpu_s = cpu.close()
    print(f"CPU-seconds by process over the loaded phase ({makespan:.0f} s on 2 cores): {cpu_s}")
    lost, duplicated = _accounting(started, subs)
    for s in subs:
        waited = ", ".join(f"{r} {w:.1f} s" for r, w in s.waited_s.items())
        print(
            f"  {s.index:2d} {s.way:10s} {s.size:11s} {s.outcome:9s} {s.seconds or 0:6.1f} s"
            + (f" (waited for a slot: {waited})" if waited else "")
        )
    if args.loaded_only:
        small = [s.seconds for s in subs if s.size == "small" and s.seconds is not None]
        print(f"p50/p95 small: {_percentile(small, 50)} / {_percentile(small, 95)} s")
        return
    print("solo: each distinct (request, way in) alone")
    solo: dict[str, Submission] = {}
    for sub in subs:
        if sub.key in solo:
            continue
        alone = Submission(index=sub.index, size=sub.size, way=sub.way, request=sub.request)
        _run(alone, f"solo-{sub.index:02d}", results_dir, env)
        solo[sub.key] = alone
        print(f"  {sub.way:10s} {sub.size:11s} {alone.outcome:9s} {alone.seconds or 0:6.1f} s")
    wrong = sum(
        1
        for s in subs
        if s.outcome == "completed"
        and not (
            solo[s.key].result_path and _same(s.result_path or "", solo[s.key].result_path or "")
        )
    )
    small = [s.seconds for s in subs if s.size == "small" and s.seconds is not None]
    solo_small = [a.seconds for a in solo.values() if a.size == "small" and a.seconds]
    sum_solo = sum(solo[s.key].seconds or 0 for s in subs)
    out = {
        "requests": len(subs),
        "completed": sum(s.outcome == "completed" for s in subs),
        "refused": sum(s.outcome == "refused" for s in subs),
        "failed": sum(s.outcome == "failed" for s in subs),
        "wrong": wrong,
        "lost": lost,
        "duplicated": duplicated,
        "p50_small_s": _percentile(small, 50),
        "p95_small_s": _percentile(small, 95),
        "solo_small_s": _percentile(solo_small, 50),
        "makespan_s": round(makespan, 2),
        "sum_solo_s": round(sum_solo, 2),
        "throughput_ratio": round(sum_solo / makespan, 3),
        "max_worker_memory_fraction": max_memory,
        "submitted_over_s": args.over,
        "by_way": {
            w: {
                "p50_s": _percentile([s.seconds or 0 for s in subs if s.way == w], 50),
                "solo_p50_s": _percentile(
                    [a.seconds or 0 for a in solo.values() if a.way == w], 50
                ),
            }
            for w in WAYS
        },
        "loaded_cpu_s": cpu_s,
        "failures": [s.message for s in subs if s.outcome == "failed"],
        "refusals": [s.message for s in subs if s.outcome == "refused"],
        "machine": info,
    }
    print(json.dumps({k: v for k, v in out.items() if k != "machine"}, indent=2))
    print(f"wrote {common.save('load', out)}")


if __name__ == "__main__":
    main()
