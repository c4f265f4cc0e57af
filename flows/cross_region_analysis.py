"""The cross-region analysis flow: plan from the catalog, compute next to the data,
combine exactly, and report what was read and what moved.

The flow and the regional subflows are asynchronous: the regions run side by side on
the flow's own event loop, and Prefect 3.9 ends a synchronous flow by joining its
heartbeat thread, which sleeps in 1 s steps (0.5 s per flow on average, measured).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import cloudpickle
from prefect import flow, get_run_logger, task
from prefect.artifacts import acreate_markdown_artifact
from prefect.runtime import flow_run as prefect_flow_run

from flows.admission import Held, ensure_limits, region_slot, yield_cpu
from flows.progress import Say, reporter, run_watched
from flows.runners import on_cluster, on_region, region_cluster, wake
from proxima import opensearch
from proxima.admission import lanes, memory, workers
from proxima.analysis import results
from proxima.analysis.assemble import (
    RegionFailed,
    RegionOutcome,
    assemble,
    output_name,
    summary_markdown,
)
from proxima.analysis.kernels import KernelSpec, TransferCapExceeded, check_transfer
from proxima.analysis.plan import Plan, PlanningError, RegionPlan, make_plan
from proxima.analysis.regional import Usage, compute_partial
from proxima.analysis.request import AnalysisRequest
from proxima.footprint import run as footprint_run
from proxima.platform import Platform, Region
from proxima.platform import load as load_platform
from proxima.reuse import regions as regions_kept
from proxima.reuse import results as reused
from proxima.reuse.store import PartialStore
from proxima.settings import get_settings

__all__ = ["RegionFailed", "analyze", "cross_region_analysis"]


def _worth_retrying(task: Any, run: Any, state: Any) -> bool:
    """A cap breach is deterministic (same data, same bytes): never computed again."""
    try:
        state.result()
    except TransferCapExceeded:
        return False
    except Exception:
        return True
    return True


@task(
    name="partial-aggregates",
    task_run_name="partial-aggregates-{region.name}",
    retries=2,
    retry_delay_seconds=3,
    retry_condition_fn=_worth_retrying,
)
def partial_aggregates(
    region: Region, spec: KernelSpec, reuse: bool = True, small: bool = False
) -> dict[str, Any]:
    """Compute the region's partial aggregates on its own cluster, reusing the blocks its
    partial store keeps (with ``reuse``; without, every block is computed and stored
    afresh); return only those (and only within the region's share of the transfer cap).
    A share that is not ``small`` leaves the region's interactive worker to small ones.
    """
    import distributed

    worker = distributed.get_worker()
    started, started_at = time.perf_counter(), time.time()
    usage = Usage()
    with region_cluster() as client:
        store = PartialStore.of_region(region.root, region.partial_store_bytes, read=reuse)
        # one round trip for every worker's name and threads
        info = client.scheduler_info(n_workers=-1)
        agg, bytes_read = compute_partial(
            region.root,
            spec,
            client,
            reporter(region.name, "blocks"),
            usage,
            store=store,
            workers=workers.for_share(info, region.name, small),
        )
        cores = sum(w["nthreads"] for w in info["workers"].values())
    returned = len(cloudpickle.dumps(agg))
    check_transfer(region.name, returned, spec)
    return {
        "region": region.name,
        "worker": worker.name,
        "worker_region": get_settings().region,
        "bytes_read": bytes_read,
        "bytes_returned": returned,
        "seconds": round(time.perf_counter() - started, 3),
        "started_at": started_at,
        "cpu_s": round(usage.cpu_s, 4),
        "tasks": usage.tasks,
        "blocks": usage.blocks,
        "cores": min(cores, usage.tasks) or 1,
        "partial": agg,
    }


# Its result (the partial) reaches the parent in memory: persisted, as a subflow
# inherits from its parent, it wrote each region's partial to the result storage on
# every run, and Prefect's JSON serializer cannot hold it
@flow(name="analyze-region", persist_result=False)
async def analyze_region(
    region: Region, spec: KernelSpec, reuse: bool = True, small: bool = False
) -> dict[str, Any]:
    """One region's share of an analysis, on that region's Dask cluster."""
    result: dict[str, Any] = await on_cluster(partial_aggregates, region, spec, reuse, small)
    return result


async def _run_region(
    region: Region, share: RegionPlan, role: str, reuse: bool, held: Held, results_dir: str
) -> RegionOutcome:
    kept = regions_kept.store(results_dir, region.name, read=reuse)
    before, status = regions_kept.lookup(kept, region.name, share.spec)
    if status == "corrupt":
        get_run_logger().warning(
            "region %s: its kept merged partial did not verify; dropped, the region is visited",
            region.name,
        )
    if before is not None:
        get_run_logger().info("region %s: its share is unchanged, not visited", region.name)
        return RegionOutcome(
            role=role,
            **{
                **before,
                "bytes_read": 0,
                "bytes_returned": 0,  # kept in the client region: it crosses nothing now
                "seconds": 0.0,
                "started_at": time.time(),
                "cpu_s": 0.0,
                "tasks": 0,
                "blocks": {"reused": sum(before["blocks"].values())},
                "kept": True,
            },
        )
    subflow = on_region(analyze_region, region, f"analyze-{region.name}")
    try:
        await asyncio.to_thread(wake, region)  # its workers boot while the run waits for a slot
        async with region_slot(region, share, held) as slot:
            out = await subflow(
                region=region, spec=share.spec, reuse=reuse, small=lanes.lane(share) == "small"
            )
    except TransferCapExceeded:
        raise
    except Exception as exc:
        raise RegionFailed(f"region {region.name} failed: {type(exc).__name__}: {exc}") from exc
    await asyncio.to_thread(regions_kept.keep, kept, region.name, share.spec, out)
    return RegionOutcome(role=role, waited_s=slot["waited_s"], **out)


async def _run_regions(
    plan: Plan, platform: Platform, reuse: bool
) -> tuple[list[RegionOutcome], list[str]]:
    """Every region's subflow at once, each in its region's slot; what answered, and why
    the others did not.
    """
    held = await ensure_limits(platform)
    jobs = [
        _run_region(platform.region(r.region), r, s.role, reuse, held, platform.results_dir)
        for s in plan.selections
        for r in s.regions
    ]
    outcomes: list[RegionOutcome] = []
    failures: list[str] = []
    answers = await asyncio.gather(*jobs, return_exceptions=True)
    for got in answers:  # a cap breach fails the run, allow_partial or not
        if isinstance(got, TransferCapExceeded):
            raise got
    for got in answers:
        if isinstance(got, RegionOutcome):
            outcomes.append(got)
        elif isinstance(got, Exception):
            failures.append(str(got))
            get_run_logger().error("%s", got)
        else:
            raise got
    return outcomes, failures


def _check_regions(plan: Plan, platform: Platform) -> None:
    missing = sorted(
        {r.region for s in plan.selections for r in s.regions} - set(platform.region_names)
    )
    if missing:
        raise PlanningError(
            f"the catalog places data in region(s) {missing} that this platform has no "
            f"cluster for (configured: {platform.region_names})"
        )


def _plan_markdown(request: AnalysisRequest, plan: Plan) -> str:
    rows = "\n".join(
        f"| {r['selection']} | {r['region']} | {r['assets']} | {r['bytes_read_est']:,} | "
        f"{r['bytes_out_est']:,} | {'yes' if r['crosses_region'] else 'no'} | "
        f"{r['egress_usd']:.6f} |"
        for r in plan.table()
    )
    return (
        f"## Plan{' (dry run)' if request.dry_run else ''}\n\n"
        f"Results are combined in **{plan.client_region}**.\n\n"
        "| selection | region | assets | bytes read (est.) | bytes out (est.) | crosses | USD |\n"
        "|---|---|---|---|---|---|---|\n"
        f"{rows}\n\n"
        f"Total read ≈ {plan.bytes_read:,} B; crossing regions ≈ {plan.bytes_crossing:,} B; "
        f"egress ≈ ${plan.egress_usd:.6f}.\n"
    )


def _served_markdown(summary: dict[str, Any]) -> str:
    return (
        "## Cross-region analysis (served from a stored result)\n\n"
        f"Served from run `{summary['served_from']['run']}`: the request and every asset it "
        f"reads are unchanged. Nothing was read or moved.\n\nResult: `{summary['result_path']}`"
    )


def served_here(request: AnalysisRequest) -> dict[str, Any] | None:
    """The stored answer to ``request`` if the catalog says its assets are unchanged,
    found in this process without starting a flow run; None otherwise (and whenever
    planning has anything to say: the flow run then says it).
    """
    if not request.reuse or request.dry_run:
        return None
    started = time.perf_counter()
    platform = load_platform()
    catalog = opensearch.connect_catalog(platform.catalog)
    try:
        plan = make_plan(
            request, catalog, platform.catalog_alias, platform.client_region, platform.egress_prices
        )
    except PlanningError:
        return None
    served = reused.lookup(request, plan, Path(platform.results_dir))
    if served:
        served["seconds"] = round(time.perf_counter() - started, 3)
    else:
        now = time.monotonic()
        for key, (at, _, _) in list(_planned.items()):  # one C call: safe beside threads
            if now - at >= HANDOFF_S:  # for a flow run that never started
                _planned.pop(key, None)
        _planned[request.model_dump_json()] = (now, platform, plan)
    return served


# The platform and plan that served_here made for a request it could not serve, taken
# by the flow run this process starts next for it: planning twice cost 0.1 s a run.
_planned: dict[str, tuple[float, Platform, Plan]] = {}
HANDOFF_S = 10.0  # older, and the flow plans afresh


def _platform_and_plan(request: AnalysisRequest) -> tuple[Platform, Plan]:
    """This process's fresh plan of ``request`` (see ``_planned``), or a new one."""
    handed = _planned.pop(request.model_dump_json(), None)
    if handed and time.monotonic() - handed[0] < HANDOFF_S:
        return handed[1], handed[2]
    platform = load_platform()
    catalog = opensearch.connect_catalog(platform.catalog)
    plan = make_plan(
        request, catalog, platform.catalog_alias, platform.client_region, platform.egress_prices
    )
    return platform, plan


# persist_result: a run started through the deployment returns its summary to the
# caller that submitted it, read from the result storage; as JSON, so that the CLI reads
# it without importing Prefect (proxima.prefect_api)
@flow(name="cross-region-analysis", log_prints=True, persist_result=True, result_serializer="json")
async def cross_region_analysis(request: AnalysisRequest) -> dict[str, Any]:
    """Answer ``request`` with one subflow per region, next to the data.

    Validation and planning happen before any cluster is touched. Regions return
    partial aggregates only; the combination is exact.
    """
    started = time.perf_counter()
    platform, plan = _platform_and_plan(request)
    results_dir = Path(platform.results_dir)
    _check_regions(plan, platform)
    memory.check(plan, {r.name: r for r in platform.regions}, request.reduction)
    if not request.dry_run and (served := reused.lookup(request, plan, results_dir)):
        get_run_logger().info("served from run %s: assets unchanged", served["served_from"]["run"])
        served["seconds"] = round(time.perf_counter() - started, 3)
        await acreate_markdown_artifact(_served_markdown(served), key="analysis-summary")
        return served
    name = output_name(request, plan)
    if not request.dry_run:
        results.check_output(
            Path(platform.results_dir), name, request.output_format, request.overwrite
        )
    plan_note = asyncio.create_task(
        acreate_markdown_artifact(_plan_markdown(request, plan), key="analysis-plan")
    )
    if request.dry_run:
        await plan_note
        estimate = footprint_run.estimate(plan, request.reduction, platform)
        return plan.dry_run_summary() | {"footprint": estimate}
    yield_cpu(plan)
    outcomes, failures = await _run_regions(plan, platform, request.reuse)
    done = assemble(request, plan, outcomes, failures, platform.client_region)
    footprint, footprint_note = footprint_run.measure(plan, outcomes, request.reduction, platform)
    done.dataset.attrs["footprint"] = json.dumps(footprint)
    path = results.write_atomic(
        done.dataset, Path(platform.results_dir), name, request.output_format, request.overwrite
    )
    png = results.plot_png(done.answer, done.long_name)
    Path(f"{path}.png").write_bytes(png)
    uri = str(path)
    if platform.results_bucket:
        uri = results.upload(
            path, platform.results_bucket, platform.results_prefix, platform.results_s3_endpoint
        )
    summary = done.summary(plan, str(path), uri, time.perf_counter() - started)
    summary["footprint"] = footprint
    reused.record(request, plan, summary, str(prefect_flow_run.id), results_dir)
    dashboards = {r.name: r.dashboard_url for r in platform.regions}
    note = f"{summary_markdown(summary, dashboards, png)}\n\n{footprint_note}"
    await asyncio.gather(plan_note, acreate_markdown_artifact(note, key="analysis-summary"))
    return summary


def analyze(request: AnalysisRequest, say: Say | None = None) -> dict[str, Any]:
    """Run the analysis flow in this process and return its summary; with ``say``, tell
    it each region's state and progress as the run goes. A request whose stored answer
    is still true is served without a flow run (its summary names the run it came from).
    """
    if served := served_here(request):
        if say:
            say(f"served from run {served['served_from']['run']}: assets unchanged")
        return served
    if say is None:
        summary: dict[str, Any] = asyncio.run(cross_region_analysis(request))
        return summary
    watched: dict[str, Any] = run_watched(cross_region_analysis, say, request=request)
    return watched
