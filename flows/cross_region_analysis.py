"""The cross-region analysis flow: plan from the catalog, compute next to the data,
combine exactly, and report what was read and what moved.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cloudpickle
import xarray as xr
from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.context import FlowRunContext
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from flows.platform import load_platform
from flows.runners import region_cluster, run_regional_subflow
from proxima import opensearch
from proxima.analysis import results
from proxima.analysis.kernels import KernelSpec, compute_partial
from proxima.analysis.partials import combine
from proxima.analysis.plan import Plan, PlanningError, make_plan
from proxima.analysis.request import AnalysisRequest
from proxima.errors import ProximaError
from proxima.platform import Platform, Region
from proxima.settings import get_settings


class RegionFailed(ProximaError):
    """A region's part of the analysis failed after its retries."""


@task(name="partial-aggregates", retries=2, retry_delay_seconds=3)
def partial_aggregates(region: Region, spec: KernelSpec) -> dict[str, Any]:
    """Compute the region's partial aggregates on its own cluster; return only those."""
    import distributed

    worker = distributed.get_worker()
    started, started_at = time.perf_counter(), time.time()
    with region_cluster() as client:
        agg, bytes_read = compute_partial(region.root, spec, client)
    return {
        "region": region.name,
        "worker": worker.name,
        "worker_region": get_settings().region,
        "bytes_read": bytes_read,
        "bytes_returned": len(cloudpickle.dumps(agg)),
        "seconds": round(time.perf_counter() - started, 3),
        "started_at": started_at,
        "partial": agg,
    }


@flow(name="analyze-region")
async def analyze_region(region: Region, spec: KernelSpec) -> dict[str, Any]:
    """One region's share of an analysis, on that region's Dask cluster.

    Asynchronous for one reason: Prefect 3.9 ends a synchronous flow by joining its
    heartbeat thread, which sleeps in 1 s steps (0.5 s per region on average, measured).
    """
    future = partial_aggregates.submit(region, spec)
    result: dict[str, Any] = await asyncio.to_thread(future.result)
    return result


@task(name="region-subflow")
def run_region(region: Region, spec: KernelSpec, role: str) -> dict[str, Any]:
    """Run the regional subflow bound to the region's scheduler."""
    try:
        out: dict[str, Any] = run_regional_subflow(
            analyze_region, region, f"analyze-{region.name}", spec=spec
        )
    except Exception as exc:
        raise RegionFailed(f"region {region.name} failed: {type(exc).__name__}: {exc}") from exc
    return {"role": role, **out}


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


@flow(
    name="cross-region-analysis",
    task_runner=ThreadPoolTaskRunner(max_workers=8),  # type: ignore[arg-type]
    log_prints=True,
)
def cross_region_analysis(request: AnalysisRequest) -> dict[str, Any]:
    """Answer ``request`` with one subflow per region, next to the data.

    Validation and planning happen before any cluster is touched. Regions return
    partial aggregates only; the combination is exact.
    """
    logger = get_run_logger()
    started = time.perf_counter()
    platform = load_platform()
    client = opensearch.connect_catalog(platform.catalog)
    plan = make_plan(
        request, client, platform.catalog_alias, platform.client_region, platform.egress_prices
    )
    _check_regions(plan, platform)
    create_markdown_artifact(_plan_markdown(request, plan), key="analysis-plan")
    if request.dry_run:
        return {
            "dry_run": True,
            "plan": plan.table(),
            "bytes_read_est": plan.bytes_read,
            "bytes_crossing_est": plan.bytes_crossing,
            "egress_usd_est": plan.egress_usd,
        }

    futures = [
        run_region.submit(platform.region(r.region), r.spec, s.role)
        for s in plan.selections
        for r in s.regions
    ]
    done: list[dict[str, Any]] = []
    failed: list[str] = []
    for future in as_completed(futures):
        try:
            done.append(future.result())
        except Exception as exc:
            failed.append(str(exc))
            logger.error("%s", exc)
    if failed and (not request.allow_partial or not done):
        raise RegionFailed("; ".join(sorted(failed)))
    missing = (
        sorted({r.region for s in plan.selections for r in s.regions} - {d["region"] for d in done})
        if failed
        else []
    )

    answers: dict[str, xr.DataArray] = {}
    for sel in plan.selections:
        parts = [d["partial"] for d in done if d["role"] == sel.role]
        if not parts:
            raise RegionFailed(f"no region of the {sel.role} answered: {failed}")
        answers[sel.role] = results.statistic(combine(parts), request, sel.units)
    answer = answers["selection"]
    if "baseline" in answers:
        answer = results.coarser_grid_difference(answers["selection"], answers["baseline"])
        answer.attrs["units"] = answers["selection"].attrs.get("units", "")
    main = plan.selections[0]
    name = request.output_name or (
        f"{main.variable}-{request.reduction}-over-{request.over}-"
        f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}"
    )
    per_region = [
        {
            k: d[k]
            for k in (
                "role",
                "region",
                "worker",
                "worker_region",
                "bytes_read",
                "bytes_returned",
                "seconds",
                "started_at",
            )
        }
        for d in sorted(done, key=lambda d: (d["role"], d["region"]))
    ]
    bytes_crossed = sum(d["bytes_returned"] for d in done if d["region"] != platform.client_region)
    ds = answer.rename("result").to_dataset()
    ds.attrs.update(
        {
            "title": f"{request.reduction} of {main.variable} over {request.over}",
            "request": request.model_dump_json(),
            "regions": ",".join(d["region"] for d in per_region),
            "workers": ",".join(f"{d['region']}={d['worker']}" for d in per_region),
            "worker_regions": ",".join(f"{d['region']}={d['worker_region']}" for d in per_region),
            "bytes_read": sum(d["bytes_read"] for d in done),
            "bytes_crossed_regions": bytes_crossed,
            "missing_regions": ",".join(missing),
            "coverage": "partial: missing " + ",".join(missing) if missing else "complete",
            "history": f"{datetime.now(UTC).isoformat()} proxima cross-region-analysis",
            "per_region": json.dumps(per_region),
        }
    )
    path = results.write_atomic(ds, Path(platform.results_dir), name, request.output_format)
    result_uri = str(path)
    if platform.results_bucket:
        result_uri = results.upload(
            path, platform.results_bucket, platform.results_prefix, platform.results_s3_endpoint
        )
    summary = {
        "result_path": str(path),
        "result_uri": result_uri,
        "answer": results.scalar_or_summary(answer),
        "regions": per_region,
        "bytes_read": sum(d["bytes_read"] for d in done),
        "bytes_read_est": plan.bytes_read,
        "bytes_crossed_regions": bytes_crossed,
        "bytes_crossing_est": plan.bytes_crossing,
        "egress_usd_est": plan.egress_usd,
        "missing_regions": missing,
        "seconds": round(time.perf_counter() - started, 2),
    }
    _publish(request, plan, platform, summary, answer)
    return summary


def _publish(
    request: AnalysisRequest,
    plan: Plan,
    platform: Platform,
    summary: dict[str, Any],
    answer: xr.DataArray,
) -> None:
    rows = "\n".join(
        f"| {r['role']} | {r['region']} | {r['worker']} | {r['bytes_read']:,} | "
        f"{r['bytes_returned']:,} | {r['seconds']} |"
        for r in summary["regions"]
    )
    png = results.plot_png(answer, f"{request.reduction} over {request.over}")
    Path(summary["result_path"] + ".png").write_bytes(png)
    note = (
        f"\n\n**Partial result**: missing {summary['missing_regions']}"
        if summary["missing_regions"]
        else ""
    )
    create_markdown_artifact(
        "## Cross-region analysis\n\n"
        f"Answer: `{summary['answer']}`\n\nResult: `{summary['result_path']}`{note}\n\n"
        "| selection | region | worker | bytes read | bytes returned | seconds |\n"
        "|---|---|---|---|---|---|\n"
        f"{rows}\n\n"
        f"Bytes that crossed regions: **{summary['bytes_crossed_regions']:,}** "
        f"(estimated {summary['bytes_crossing_est']:,}); read {summary['bytes_read']:,} "
        f"(estimated {summary['bytes_read_est']:,}).\n\n" + results.png_markdown(png, "result"),
        key="analysis-summary",
    )
    create_table_artifact(summary["regions"], key="analysis-regions")
    ctx = FlowRunContext.get()
    del ctx
    for region in platform.regions:
        if region.dashboard_url and any(r["region"] == region.name for r in summary["regions"]):
            create_link_artifact(
                region.dashboard_url,
                link_text=f"Dask dashboard {region.name}",
                key=f"dask-dashboard-{region.name}",
            )
