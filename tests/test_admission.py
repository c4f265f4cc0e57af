"""Admission: a request that cannot fit a worker is refused with its estimate; concurrent
runs share each region's slots without exceeding them and each gives its solo answer;
a killed holder's slot comes back."""

from __future__ import annotations

import contextvars
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import xarray as xr

from flows.cross_region_analysis import analyze
from proxima import opensearch
from proxima.admission import lanes, memory
from proxima.analysis.plan import make_plan
from proxima.analysis.request import AnalysisRequest
from proxima.platform import load as load_platform

ERA5 = {
    "variable": "air_temperature",
    "dataset": "era5",
    "start": "2020-01-01",
    "end": "2020-04-30",
}


def _plan(request: dict):
    platform = load_platform()
    req = AnalysisRequest.model_validate(request)
    return platform, make_plan(
        req,
        opensearch.connect_catalog(platform.catalog),
        platform.catalog_alias,
        platform.client_region,
        platform.egress_prices,
    )


def _gcl(name: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(name)


def _queues():
    import asyncio

    from prefect.client.orchestration import get_client

    from flows.admission import queues

    async def read():
        async with get_client() as client:
            return await queues(client)

    return asyncio.run(read())


def test_a_request_over_a_workers_memory_is_refused_with_its_estimate(catalog):
    subset = {"selection": ERA5, "reduction": "none", "max_transfer_bytes": 2**34}
    platform, plan = _plan(subset)
    regions = {r.name: r for r in platform.regions}
    fits = memory.check(plan, regions, "none")  # the test stack's 1500 MiB workers
    assert {e.region for e in fits} == {"us-east-1", "us-west-2"}
    small = {
        n: r.model_copy(update={"worker_memory_bytes": 16 * 2**20}) for n, r in regions.items()
    }
    peak = max(e.peak_bytes for e in fits)
    assert peak > 0.8 * 16 * 2**20  # so that the refusal below is the estimate's doing
    with pytest.raises(memory.OverMemory, match=r"about [0-9,]+ MiB on a worker of us-.*16 MiB"):
        memory.check(plan, small, "none")
    # a standard deviation holds its deviations too: the estimate says so
    _, std = _plan({"selection": ERA5, "reduction": "std"})
    mean_est = memory.estimate(plan.selections[0].regions[0], 2, "mean")
    std_est = memory.estimate(std.selections[0].regions[0], 2, "std")
    assert std_est.copies > mean_est.copies


def test_each_share_takes_the_lane_of_its_size(catalog):
    """A one-month box takes only its region's small lane; four months take the main
    lane; a share over ``LARGE_BYTES`` takes the main lane and the large one."""
    box = {**ERA5, "end": "2020-01-31", "bbox": [160, -30, -150, 30]}
    platform, small = _plan({"selection": box, "over": "time"})
    _, other = _plan({"selection": ERA5, "over": "time"})
    for plan, lane in ((small, "small"), (other, "other")):
        shares = plan.selections[0].regions
        assert shares and {lanes.lane(share) for share in shares} == {lane}
    share = other.selections[0].regions[0]
    region = platform.region(share.region)
    every = f"{lanes.PREFIX}{region.name}"
    assert lanes.names(region, small.selections[0].regions[0]) == [f"{every}-small"]
    assert lanes.names(region, share) == [every]
    large = share.model_copy(update={"bytes_read": lanes.LARGE_BYTES + 1})
    assert lanes.names(region, large) == [every, f"{every}-large"]
    assert set(lanes.limits(region)) == {every, f"{every}-small", f"{every}-large"}


YIELDS = """
import os, sys, threading
from flows.admission import yield_cpu
from proxima.analysis.plan import Plan
plan = Plan.model_validate_json(sys.stdin.read())
started, stop = threading.Event(), threading.Event()
other = threading.Thread(target=lambda: (started.set(), stop.wait()))
other.start()
started.wait()
lowered = yield_cpu(plan)
tids = os.listdir("/proc/self/task")
print(lowered, sorted({os.getpriority(os.PRIO_PROCESS, int(t)) for t in tids}))
stop.set()
"""


@pytest.mark.parametrize(
    ("size", "nice", "seen"),
    [("small", "10", "False [0]"), ("other", "10", "True [10]"), ("other", "0", "False [0]")],
)
def test_a_work_pool_run_that_is_not_small_yields_the_cpu_to_small_ones(catalog, size, nice, seen):
    """Where the stack sets ``large_run_nice``, a run outside the small lane lowers every
    thread of its process to it; a small one, or a process without it, is left alone."""
    import os
    import subprocess
    import sys

    box = {**ERA5, "end": "2020-01-31", "bbox": [160, -30, -150, 30]}
    selection = box if size == "small" else ERA5
    _, plan = _plan({"selection": selection, "over": "time"})
    out = subprocess.run(
        [sys.executable, "-c", YIELDS],
        input=plan.model_dump_json(),
        env={**os.environ, "PROXIMA_LARGE_RUN_NICE": nice},
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[0] == seen


def test_concurrent_runs_share_the_slots_and_each_gives_its_solo_answer(catalog):
    """Ten runs of mixed shapes at once on two regions of two slots each: the server's
    limits are never exceeded, some runs wait, every answer equals its solo answer."""
    platform = load_platform()
    shapes = [
        {"over": "time"},
        {"over": "space", "group_by": "month"},
        {"over": "both", "reduction": "max"},
        {"over": "time", "reduction": "std", "group_by": "season"},
        {"over": "both", "reduction": "count"},
    ]
    requests = [
        {
            "selection": {**ERA5, "start": "2020-02-01", "end": "2020-03-31"},
            **shape,
            "output_name": f"admission-{i}",
            "overwrite": True,
            "reuse": False,  # each run computes: the solo runs' partials would end the queue early
        }
        for i, shape in enumerate(shapes * 2)
    ]
    solo = {}
    for req in requests[: len(shapes)]:
        summary = analyze(AnalysisRequest.model_validate(req))
        solo[req["output_name"]] = xr.load_dataset(summary["result_path"], engine="h5netcdf")
    names = [n for r in platform.regions for n in lanes.limits(r)]
    seen: dict[str, int] = dict.fromkeys(names, 0)
    queued: list[dict] = []  # the runs' own account of where they stand, sampled
    done = threading.Event()

    def watch() -> None:  # the server's own count of slots held, sampled
        while not done.is_set():
            for name in names:
                seen[name] = max(seen[name], _gcl(name).active_slots)
            queued.append(_queues())
            time.sleep(0.05)

    watcher = threading.Thread(target=contextvars.copy_context().run, args=(watch,))
    watcher.start()
    summaries: dict[str, dict] = {}
    errors: list[BaseException] = []

    def one(req: dict) -> None:
        try:
            summaries[req["output_name"]] = analyze(AnalysisRequest.model_validate(req))
        except BaseException as exc:  # the assertion below names it
            errors.append(exc)

    # each thread in this context: the Prefect settings the stack fixture made current
    threads = [
        threading.Thread(target=contextvars.copy_context().run, args=(one, r)) for r in requests
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    done.set()
    watcher.join(timeout=10)
    assert not errors, errors
    assert len(summaries) == len(requests)
    for i, req in enumerate(requests):
        got = xr.load_dataset(summaries[req["output_name"]]["result_path"], engine="h5netcdf")
        want = solo[f"admission-{i % len(shapes)}"]
        (var,) = [v for v in want.data_vars if not str(v).endswith("_bnds")]
        np.testing.assert_allclose(got[var].values, want[var].values, rtol=1e-12)
    limit = {n: _gcl(n).limit for n in names}
    assert all(seen[n] <= limit[n] for n in names), (seen, limit)
    assert max(seen.values()) >= 2  # they did run side by side
    waits = [r["waited_s"] for s in summaries.values() for r in s["regions"]]
    assert max(waits) > 0 and all(w >= 0 for w in waits)
    assert all(_gcl(n).active_slots == 0 for n in names)  # every slot given back
    # the runs' own lines agree: never more admitted than slots, the waiting numbered 1..n
    for sample in queued:
        for region, entries in sample.items():
            admitted = [e for e in entries if e.step == "admitted"]
            assert len(admitted) <= lanes.capacity(platform.region(region)), sample
            waiting = [e.position for e in entries if e.step == "waiting"]
            assert waiting == list(range(1, len(waiting) + 1))
    assert any(e.position for sample in queued for es in sample.values() for e in es)
    assert _queues() == {}  # none left in flight


def test_a_killed_holder_gives_its_slot_back(catalog, settings):
    """A flow-run process killed while it holds a region's slot renews its lease no more;
    the server frees the slot when the lease runs out."""
    import asyncio

    from flows.admission import LEASE_S, ensure_limits

    platform = load_platform()
    asyncio.run(ensure_limits(platform))
    region = platform.region("us-west-2")
    name = f"{lanes.PREFIX}{region.name}"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import asyncio, sys, time\n"
                "from prefect.concurrency.asyncio import concurrency\n"
                "async def main():\n"
                f"    async with concurrency({name!r}, lease_duration={LEASE_S}, strict=True):\n"
                "        print('held', flush=True)\n"
                "        await asyncio.sleep(600)\n"
                "asyncio.run(main())\n"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert _gcl(name).active_slots == 1
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        deadline = time.monotonic() + LEASE_S + 45  # the lease, then the repossessor's loop
        while _gcl(name).active_slots and time.monotonic() < deadline:
            time.sleep(1)
        assert _gcl(name).active_slots == 0
    finally:
        if holder.poll() is None:
            holder.kill()


def test_a_small_request_after_a_large_one_on_a_busy_region_finishes_first(catalog):
    """The large one's blocks are queued on the region's two threads when the small one
    arrives; its single block goes ahead of them (Dask priority by block count)."""
    from proxima.analysis.regional import Usage, compute_partial
    from tests.faults import region_client

    platform = load_platform()
    specs = {}
    for name, end in (("small", "2020-01-01"), ("large", "2020-02-29")):
        _, plan = _plan({"selection": {**ERA5, "end": end}, "reduction": "std"})
        (specs[name],) = [r.spec for r in plan.selections[0].regions if r.region == "us-east-1"]
    root = platform.region("us-east-1").root
    finished: dict[str, float] = {}
    large = Usage()
    client = region_client("us-east-1")
    try:

        def run(name: str, usage: Usage, block_bytes: int) -> None:
            compute_partial(root, specs[name], client, usage=usage, block_bytes=block_bytes)
            finished[name] = time.monotonic()

        first = threading.Thread(target=run, args=("large", large, 64 * 2**10))
        first.start()
        while not client.processing() or not any(client.processing().values()):
            time.sleep(0.01)  # the large one's tasks are running and queued
        run("small", Usage(), 48 * 2**20)
        first.join(timeout=300)
    finally:
        client.close()
    assert large.tasks >= 20  # enough queued behind the two threads to wait behind
    assert finished["small"] < finished["large"]


@pytest.mark.parametrize("seen", ["full", "with room"])
def test_a_run_waiting_for_a_full_region_says_so_and_proxima_runs_lists_it(
    catalog, stack, settings, monkeypatch, seen
):
    """With every us-west-2 slot held, a run waits on that region only, says so on its
    log, and ``proxima runs`` lists it waiting (position 1) there; it then completes.
    So too when the limits it read before asking showed room (the slots were taken
    between its read and its request)."""
    import asyncio
    import json

    from prefect.concurrency.asyncio import concurrency

    import flows.cross_region_analysis as analysis_flow
    from flows.admission import LEASE_S, ensure_limits
    from tests.cli import proxima

    platform = load_platform()
    before = asyncio.run(ensure_limits(platform))
    if seen == "with room":

        async def stale(platform):  # the limits as read before the holder came
            await ensure_limits(platform)
            return before

        monkeypatch.setattr(analysis_flow, "ensure_limits", stale)
    region = platform.region("us-west-2")
    name = f"{lanes.PREFIX}{region.name}"
    held, free = threading.Event(), threading.Event()

    def hold() -> None:
        async def main() -> None:
            async with concurrency(name, occupy=region.slots, lease_duration=LEASE_S):
                held.set()
                await asyncio.to_thread(free.wait, 120)

        asyncio.run(main())

    holder = threading.Thread(target=contextvars.copy_context().run, args=(hold,))
    holder.start()
    assert held.wait(30)
    summary: dict = {}
    request = AnalysisRequest.model_validate(
        {"selection": ERA5, "over": "time"}  # on both regions
    )
    runner = threading.Thread(
        target=contextvars.copy_context().run,
        args=(lambda: summary.update(analyze(request)),),
    )
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while not _queues().get("us-west-2") and time.monotonic() < deadline:
            time.sleep(0.2)
        listed = proxima(stack, settings, "runs", "--json")
        assert listed.returncode == 0, listed.stderr
        (waiting,) = json.loads(listed.stdout)["regions"]["us-west-2"]
        assert (waiting["step"], waiting["position"]) == ("waiting", 1)
        assert runner.is_alive()  # it does wait
    finally:
        free.set()
        holder.join(timeout=30)
        runner.join(timeout=120)
    by_region = {r["region"]: r for r in summary["regions"]}
    assert by_region["us-west-2"]["waited_s"] > by_region["us-east-1"]["waited_s"]
    assert _queues() == {}


def test_the_worker_kept_for_small_shares_is_found_by_name():
    from proxima.admission.workers import for_share, interactive_worker_name

    info = {
        "workers": {
            "tcp://a:1": {"name": "us-east-1-worker-0"},
            "tcp://a:2": {"name": "us-east-1-worker-1"},
            "tcp://a:3": {"name": interactive_worker_name("us-east-1")},
        }
    }
    assert for_share(info, "us-east-1", small=False) == ["tcp://a:1", "tcp://a:2"]
    assert for_share(info, "us-east-1", small=True) is None  # every worker
    without = {"workers": {k: v for k, v in info["workers"].items() if k != "tcp://a:3"}}
    assert for_share(without, "us-east-1", small=False) is None  # no worker kept: any


def test_the_worker_kept_for_small_shares_is_not_niced_below_the_batch_workers(tmp_path):
    """On the local stack's shared cores the batch workers run niced; the interactive
    worker does not, or a small share's blocks would get a fifth of the CPU under load."""
    from proxima.config import load_stack_config
    from proxima.settings import PROJECT_ROOT, ProximaSettings
    from proxima.stack.services import NICE, build_services

    settings = ProximaSettings(
        state_dir=tmp_path, stack_config=PROJECT_ROOT / "deployments" / "local" / "stack.yaml"
    )
    config = load_stack_config(settings=settings)
    assert all(r.interactive_worker for r in config.regions)  # the team's local stack
    argv = {s.name: s.argv() for s in build_services(config, settings) if "-dask-" in s.name}
    for region in config.regions:
        batch, kept = argv[f"{region.name}-dask-workers"], argv[f"{region.name}-dask-interactive"]
        assert batch[: len(NICE)] == list(NICE)
        assert "nice" not in kept and kept[kept.index("--name") + 1] == f"{region.name}-interactive"
        assert kept[kept.index("--nworkers") + 1] == "1"


def test_blocks_of_a_share_that_is_not_small_never_run_on_the_interactive_worker(
    catalog, stack, settings, tmp_path
):
    """The stack's `interactive_worker`: a one-thread worker that only small shares'
    blocks may use, so they never wait for a large run's running blocks."""
    from distributed import Client, get_task_stream

    from proxima.admission.workers import interactive_worker_name
    from proxima.platform import from_stack
    from proxima.stack.services import build_services

    region = from_stack(stack, settings).region("us-east-1")
    name = interactive_worker_name("us-east-1")
    with_it = stack.model_copy(
        update={
            "regions": [
                r.model_copy(update={"interactive_worker": r.name == "us-east-1"})
                for r in stack.regions
            ]
        }
    )
    (service,) = [s for s in build_services(with_it, settings) if s.name.endswith("-interactive")]
    assert service.name == "us-east-1-dask-interactive"
    worker = subprocess.Popen(
        service.argv(), env=service.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        with Client(region.scheduler_address, set_as_default=False) as client:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                names = {a: w["name"] for a, w in client.scheduler_info()["workers"].items()}
                if name in names.values():
                    break
                time.sleep(0.5)
            kept = next(a for a, n in names.items() if n == name)
            three_months = {  # more than one of us-east-1's files: not a small share
                "selection": {**ERA5, "end": "2020-03-31"},
                "reduction": "mean",
                "over": "time",
                "group_by": "month",
                "reuse": False,
            }
            (east,) = [
                r for r in _plan(three_months)[1].selections[0].regions if r.region == "us-east-1"
            ]
            assert lanes.lane(east) != "small" and len(east.spec.assets) >= 2
            # four runs: the idle interactive worker would take some of their 8+ blocks
            # (each as likely as not) if they were not kept off it
            with get_task_stream(client=client) as stream:
                summaries = [
                    analyze(AnalysisRequest.model_validate(three_months)) for _ in range(4)
                ]
            blocks = [r for r in stream.data if r["key"].startswith("block_partial")]
        assert all(s["bytes_read"] > 0 for s in summaries) and len(blocks) >= 8
        assert kept not in {r["worker"] for r in blocks}
    finally:
        worker.terminate()
        worker.wait(timeout=30)
