"""End-to-end time of a cross-region analysis over >= 1 GB of input, and the same
computation with plain Dask on the same regional clusters (Prefect's overhead).

Needs the ERA5 data of benchmarks/stack.yaml (run data_throughput.py first, or this
script generates it). Usage: .venv/bin/python benchmarks/analysis_overhead.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import common

common.configure()

import numpy as np  # noqa: E402
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
    plan = make_plan(
        request,
        opensearch.connect_catalog(platform.catalog),
        platform.catalog_alias,
        platform.client_region,
    )
    specs = {r.region: r.spec for s in plan.selections for r in s.regions}
    prefect_s, dask_s, summary, plain = [], [], None, None
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        summary = analyze(request)
        prefect_s.append(time.perf_counter() - t0)

        def one(name):
            region = platform.region(name)
            security = region.dask_security()
            with Client(
                region.scheduler_address, security=security, set_as_default=False
            ) as client:
                return compute_partial(region.root, specs[name], client)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(len(specs)) as pool:
            parts = list(pool.map(one, sorted(specs)))
        plain = finalize(combine([p for p, _ in parts]), "mean")
        dask_s.append(time.perf_counter() - t0)
    import xarray as xr

    ours = data_variable(xr.open_dataset(summary["result_path"], engine="h5netcdf"))
    np.testing.assert_allclose(ours.values, plain.transpose(*ours.dims).values, rtol=1e-9)
    gb = summary["bytes_read"] / 1e9
    p, d = statistics.median(prefect_s), statistics.median(dask_s)
    print(f"\ninput read: {gb:.2f} GB across {len(specs)} regions; results equal (rtol 1e-9)")
    print("| strategy | median s | runs |")
    print("|---|---|---|")
    print(
        f"| Proxima (Prefect subflows on regional DaskTaskRunners) | {p:.1f} | "
        f"{', '.join(f'{x:.1f}' for x in prefect_s)} |"
    )
    print(
        f"| plain Dask on the same clusters | {d:.1f} | {', '.join(f'{x:.1f}' for x in dask_s)} |"
    )
    print(
        f"ratio Proxima / plain Dask: {p / d:.2f} ({p - d:.1f} s of orchestration, result "
        f"file and artifacts per run); bytes crossing regions: "
        f"{summary['bytes_crossed_regions']:,}"
    )
    common.save(
        "analysis_overhead",
        {
            "machine": info,
            "bytes_read": summary["bytes_read"],
            "prefect_s": prefect_s,
            "dask_s": dask_s,
            "ratio": p / d,
            "overhead_s": p - d,
            "summary": summary,
        },
    )


if __name__ == "__main__":
    main()
