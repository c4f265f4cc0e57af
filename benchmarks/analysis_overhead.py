"""End-to-end time of a cross-region analysis over >= 1 GB of input, and the same job
with plain Dask on the same regional clusters (Prefect's overhead).

The plain-Dask job is what a Dask user would write for the same answer: find the files
in the catalog, reduce them on each region's cluster, combine, and save the answer as
NetCDF. Its compute alone (connect, reduce, combine) is timed too and reported beside.

Needs the ERA5 data of benchmarks/stack.yaml (run data_throughput.py first, or this
script generates it). Usage: .venv/bin/python benchmarks/analysis_overhead.py [--repeat 3]
"""

from __future__ import annotations

import argparse
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

from proxima import opensearch  # noqa: E402
from proxima.analysis.cf import data_variable  # noqa: E402
from proxima.analysis.kernels import compute_partial  # noqa: E402
from proxima.analysis.partials import combine, finalize  # noqa: E402
from proxima.analysis.plan import make_plan  # noqa: E402
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
}


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
    prefect_s, dask_s, compute_s, summary, plain = [], [], [], None, None
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        summary = analyze(request)
        prefect_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        plain, computing = plain_dask(request, platform, plain_path)
        dask_s.append(time.perf_counter() - t0)
        compute_s.append(computing)
    ours = data_variable(xr.open_dataset(summary["result_path"], engine="h5netcdf"))
    np.testing.assert_allclose(ours.values, plain.transpose(*ours.dims).values, rtol=1e-9)
    gb = summary["bytes_read"] / 1e9
    p, d, c = (statistics.median(x) for x in (prefect_s, dask_s, compute_s))
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
    ):
        print(f"| {label} | {median:.2f} | {', '.join(f'{x:.2f}' for x in runs)} |")
    print(
        f"ratio Proxima / plain Dask: {p / d:.2f} ({p - d:.2f} s of orchestration, the CF "
        f"result, its picture and the artifacts per run); against the compute alone: "
        f"{p / c:.2f}; bytes crossing regions: {summary['bytes_crossed_regions']:,}"
    )
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
            "summary": summary,
        },
    )


if __name__ == "__main__":
    main()
