"""End-to-end time of a cross-region analysis over >= 1 GB of input, and the same job
with plain Dask on the same regional clusters (Prefect's overhead).

The plain-Dask job is what a Dask user would write for the same answer: find the files
in the catalog, reduce them on each region's cluster, combine, and save the answer as
NetCDF. Its compute alone (connect, reduce, combine) is timed too and reported beside.

The floor is Prefect's own fixed cost for the analysis's shape, measured in the same
run: a flow whose regional subflows, on the same DaskTaskRunners, each run one task that
does nothing, and which posts the same artifacts. Proxima's overhead less the floor is
what Proxima itself adds (planning, the CF result, its picture). The floor is also built
up part by part (an empty flow, then the subflows, the tasks, the artifacts).

Needs the ERA5 data of benchmarks/stack.yaml (run data_throughput.py first, or this
script generates it). Usage: .venv/bin/python benchmarks/analysis_overhead.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import common

common.configure()

import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from distributed import Client  # noqa: E402
from machine import print_machine  # noqa: E402
from prefect import flow, task  # noqa: E402
from prefect.artifacts import acreate_markdown_artifact  # noqa: E402

from flows.runners import on_cluster, on_region  # noqa: E402
from proxima import opensearch  # noqa: E402
from proxima.analysis.cf import data_variable  # noqa: E402
from proxima.analysis.partials import combine, finalize  # noqa: E402
from proxima.analysis.plan import make_plan  # noqa: E402
from proxima.analysis.regional import compute_partial  # noqa: E402
from proxima.analysis.request import AnalysisRequest  # noqa: E402

REQUEST = {
    "selection": {
        "variable": "air_temperature",
        "dataset": "era5",
        "start": "2020-01-01",
        "end": "2020-06-30",
    },
    "reduction": "mean",
    "over": "time",
    "group_by": "month",
    "output_name": "bench-overhead",
    "overwrite": True,
    "reuse": False,  # every run computes: the figures are the compute path's
}


FLOOR_PARTS = ("an empty flow", "+ a subflow per region", "+ a task each", "+ the artifacts")


@task(name="nothing")
def nothing(region: str) -> str:
    return region


@flow(name="floor-region")
async def floor_region(region: str, with_task: bool) -> str:
    return await on_cluster(nothing, region) if with_task else region


@flow(name="floor")
async def floor(regions: list, parts: int = len(FLOOR_PARTS)) -> None:
    """The analysis's shape in Prefect, with nothing to compute, up to ``parts`` of
    FLOOR_PARTS: a subflow per region on its DaskTaskRunner, running one task, and the
    artifacts (a plan note at the start, the summary at the end).
    """
    notes = parts == len(FLOOR_PARTS)
    plan_note = (
        asyncio.create_task(acreate_markdown_artifact("plan", key="floor-plan"))
        if notes
        else asyncio.sleep(0)
    )
    answered = await asyncio.gather(
        *(
            on_region(floor_region, r, f"floor-{r.name}")(region=r.name, with_task=parts >= 3)
            for r in (regions if parts >= 2 else [])
        )
    )
    if notes:
        await acreate_markdown_artifact(f"summary of {answered}", key="floor-summary")
    await plan_note


def floor_parts(regions: list, repeat: int) -> dict[str, float]:
    """The floor built up part by part: the median seconds of each, interleaved."""
    runs: dict[str, list[float]] = {name: [] for name in FLOOR_PARTS}
    for _ in range(repeat):
        for parts, name in enumerate(FLOOR_PARTS, start=1):
            t0 = time.perf_counter()
            asyncio.run(floor(regions, parts))
            runs[name].append(time.perf_counter() - t0)
    return {name: statistics.median(r) for name, r in runs.items()}


def plain_dask(request: AnalysisRequest, platform, path: Path) -> tuple[xr.DataArray, float]:
    """The answer by plain Dask, and the seconds of its compute alone."""
    plan = make_plan(
        request,
        opensearch.connect_catalog(platform.catalog),
        platform.catalog_alias,
        platform.client_region,
    )
    specs = {r.region: r.spec for s in plan.selections for r in s.regions}

    def one(name):
        region = platform.region(name)
        with Client(
            region.scheduler_address, security=region.dask_security(), set_as_default=False
        ) as client:
            return compute_partial(region.root, specs[name], client)

    started = time.perf_counter()
    with ThreadPoolExecutor(len(specs)) as pool:
        parts = list(pool.map(one, sorted(specs)))
    answer = finalize(combine([p for p, _ in parts]), "mean")
    compute_s = time.perf_counter() - started
    answer.to_netcdf(path, engine="h5netcdf")
    return answer, compute_s


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    info = print_machine()
    settings, config = common.up()
    common.ensure_era5(settings, config)
    from flows.catalog_refresh import catalog_refresh
    from flows.cross_region_analysis import analyze
    from proxima.platform import from_stack

    catalog_refresh()
    request = AnalysisRequest.model_validate(REQUEST)
    platform = from_stack()
    plain_path = Path(platform.results_dir) / "bench-overhead-plain.nc"
    regions = [platform.region(r["region"]) for r in analyze(request)["regions"]]
    # One untimed run of each: a fresh stack's workers import Prefect on their first task.
    plain_dask(request, platform, plain_path)
    asyncio.run(floor(regions))
    prefect_s, dask_s, compute_s, floor_s, summary, plain = [], [], [], [], None, None
    apart_s = []  # how far apart the regions' tasks started
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        summary = analyze(request)
        prefect_s.append(time.perf_counter() - t0)
        starts = [r["started_at"] for r in summary["regions"]]
        apart_s.append(max(starts) - min(starts))
        t0 = time.perf_counter()
        plain, computing = plain_dask(request, platform, plain_path)
        dask_s.append(time.perf_counter() - t0)
        compute_s.append(computing)
        t0 = time.perf_counter()
        asyncio.run(floor(regions))
        floor_s.append(time.perf_counter() - t0)
    parts = floor_parts(regions, args.repeat)
    ours = data_variable(xr.open_dataset(summary["result_path"], engine="h5netcdf"))
    np.testing.assert_allclose(ours.values, plain.transpose(*ours.dims).values, rtol=1e-9)
    gb = summary["bytes_read"] / 1e9
    p, d, c, f = (statistics.median(x) for x in (prefect_s, dask_s, compute_s, floor_s))
    print(
        f"\ninput read: {gb:.2f} GB across {len(summary['regions'])} regions; "
        "results equal (rtol 1e-9)"
    )
    print("| strategy | median s | runs |")
    print("|---|---|---|")
    for label, median, runs in (
        ("Proxima (Prefect subflows on regional DaskTaskRunners)", p, prefect_s),
        ("plain Dask, the same job (catalog, compute, combine, save)", d, dask_s),
        ("plain Dask, its compute alone", c, compute_s),
        ("the floor: Prefect alone, the same flows and artifacts, no work", f, floor_s),
    ):
        print(f"| {label} | {median:.2f} | {', '.join(f'{x:.2f}' for x in runs)} |")
    print(
        f"ratio Proxima / plain Dask: {p / d:.2f} ({p - d:.2f} s of orchestration, the CF "
        f"result, its picture and the artifacts per run); against the compute alone: "
        f"{p / c:.2f}; bytes crossing regions: {summary['bytes_crossed_regions']:,}"
    )
    print(
        f"of the {p - d:.2f} s, Prefect's floor is {f:.2f} s and Proxima's own {p - d - f:.2f} s; "
        f"the floor alone sets the ratio at {(d + f) / d:.2f}, reached at 1.10 by a job of "
        f"{f / 0.10:.1f} s"
    )
    print(f"the regions' tasks started {statistics.median(apart_s) * 1000:.0f} ms apart (median)")
    print("\n| the floor, part by part | median s |\n|---|---|")
    for name, seconds in parts.items():
        print(f"| {name} | {seconds:.2f} |")
    common.save(
        "analysis_overhead",
        {
            "machine": info,
            "bytes_read": summary["bytes_read"],
            "prefect_s": prefect_s,
            "dask_s": dask_s,
            "dask_compute_s": compute_s,
            "ratio": p / d,
            "ratio_compute_only": p / c,
            "overhead_s": p - d,
            "own_overhead_s": p - d - f,  # Proxima's own cost beyond Prefect's floor (issue 29)
            "floor_s": floor_s,
            "floor_ratio": (d + f) / d,
            "floor_parts_s": parts,
            "regions_started_apart_s": apart_s,
            "summary": summary,
        },
    )


if __name__ == "__main__":
    main()
