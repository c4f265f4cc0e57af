"""The locality benchmark on the testbed (needs root): the same analysis three ways.

(a) Proxima: regional subflows next to the data, partial aggregates cross the links.
(b) pull-to-client: the client reads the assets from each region's S3 endpoint across
    the links and reduces them itself, as a user without Proxima would.
(c) plain Dask on the regional clusters, without Prefect.

For each: wall time and bytes across each link in each direction (kernel counters),
and a check that the three results are equal. Prints the machine and a markdown
table; writes benchmarks/results/locality.json and .md.

Usage: .venv/bin/python benchmarks/locality.py [--rate 100] [--resolution 1.0] [--months 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import print_machine  # noqa: E402

from proxima import datagen, opensearch, testbed  # noqa: E402
from proxima.analysis.kernels import compute_partial  # noqa: E402
from proxima.analysis.partials import combine, finalize  # noqa: E402
from proxima.analysis.plan import make_plan  # noqa: E402
from proxima.analysis.request import AnalysisRequest  # noqa: E402
from proxima.baselines import pull_partial  # noqa: E402
from proxima.config import load_stack_config  # noqa: E402
from proxima.platform import from_stack  # noqa: E402
from proxima.settings import ProximaSettings  # noqa: E402
from proxima.stack import manager  # noqa: E402


def _config_file(resolution: float, months: int, state: Path) -> Path:
    raw = yaml.safe_load((ROOT / "deployments" / "testbed" / "stack.yaml").read_text())
    for i, region in enumerate(raw["regions"]):
        first = 1 + i * months
        for ds in region["datasets"]:
            ds.update(
                resolution=resolution,
                start=f"2020-{first:02d}",
                end=f"2020-{first + months - 1:02d}",
            )
    state.mkdir(parents=True, exist_ok=True)
    path = state / "stack.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _sum(moved: dict) -> tuple[int, int]:
    return (
        sum(v["to_region"] for v in moved.values()),
        sum(v["from_region"] for v in moved.values()),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=100.0, help="link Mbit/s")
    parser.add_argument("--resolution", type=float, default=1.0)
    parser.add_argument("--months", type=int, default=3, help="months per region")
    parser.add_argument("--keep", action="store_true", help="leave the testbed up")
    args = parser.parse_args()
    info = print_machine()
    state = ROOT / ".state" / "testbed-bench"
    settings = ProximaSettings(
        state_dir=state, stack_config=_config_file(args.resolution, args.months, state)
    )
    config = load_stack_config(settings=settings)
    env = {
        **os.environ,
        "PROXIMA_STATE_DIR": str(state),
        "PROXIMA_STACK_CONFIG": str(settings.stack_config),
        "PROXIMA_PORT_OFFSET": "0",
    }
    env.pop("PREFECT_API_URL", None)
    end_month = 2 * args.months
    request = {
        "selection": {
            "variable": "air_temperature",
            "dataset": "era5",
            "start": "2020-01-01",
            "end": f"2020-{end_month:02d}-28",
        },
        "reduction": "mean",
        "over": "time",
        "group_by": "month",
        "output_name": "locality-bench",
        "max_transfer_bytes": 2**30,
    }
    try:
        testbed.up(config, rate_mbit=10000)  # fast links while setting up
        manager.up(settings, config, progress=lambda m: print(f"  stack: {m}", flush=True))
        for region in config.regions:
            for ds in region.datasets:
                if datagen.ensure_generated(region, ds):
                    print(f"  generated {region.name}/{ds.name}", flush=True)
        out = subprocess.run(
            [sys.executable, "-m", "proxima.cli", "catalog", "refresh"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode:
            raise SystemExit(out.stderr[-3000:])
        testbed.up(config, rate_mbit=args.rate)
        req_file = Path(tempfile.mkdtemp()) / "request.json"
        req_file.write_text(json.dumps(request))

        before, t0 = testbed.counters(config), time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "proxima.cli", "analyze", str(req_file), "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        a_s, a_bytes = time.perf_counter() - t0, testbed.delta(before, testbed.counters(config))
        if out.returncode:
            raise SystemExit(out.stderr[-3000:])
        summary = json.loads(out.stdout)
        import xarray as xr

        a_result = xr.open_dataset(summary["result_path"], engine="h5netcdf")["result"]

        plan = make_plan(
            AnalysisRequest.model_validate(request),
            opensearch.connect(config.opensearch.endpoint),
            config.opensearch.alias,
            "client",
        )
        specs = {r.region: r.spec for s in plan.selections for r in s.regions}

        before, t0 = testbed.counters(config), time.perf_counter()
        with ThreadPoolExecutor(len(specs)) as pool:
            parts = list(
                pool.map(lambda n: pull_partial(config.region(n), specs[n]), sorted(specs))
            )
        b_result = finalize(combine(parts), "mean")
        b_s, b_bytes = time.perf_counter() - t0, testbed.delta(before, testbed.counters(config))

        from distributed import Client

        def plain(name):
            region = from_stack(config, settings).region(name)
            security = region.dask_security()
            with Client(
                region.scheduler_address, security=security, set_as_default=False
            ) as client:
                return compute_partial(str(settings.region_root(name)), specs[name], client)[0]

        before, t0 = testbed.counters(config), time.perf_counter()
        with ThreadPoolExecutor(len(specs)) as pool:
            parts = list(pool.map(plain, sorted(specs)))
        c_result = finalize(combine(parts), "mean")
        c_s, c_bytes = time.perf_counter() - t0, testbed.delta(before, testbed.counters(config))
    finally:
        if not args.keep:
            manager.down(settings)
            testbed.down(config)

    import numpy as np

    dims = a_result.dims
    np.testing.assert_allclose(a_result.values, b_result.transpose(*dims).values, rtol=1e-9)
    np.testing.assert_allclose(a_result.values, c_result.transpose(*dims).values, rtol=1e-9)
    rows = []
    for name, secs, moved in (
        ("(a) Proxima", a_s, a_bytes),
        ("(b) pull-to-client", b_s, b_bytes),
        ("(c) plain Dask, regional", c_s, c_bytes),
    ):
        to_r, from_r = _sum(moved)
        rows.append(
            {
                "strategy": name,
                "seconds": round(secs, 1),
                "to_regions": to_r,
                "from_regions": from_r,
                "per_link": moved,
            }
        )
    gb = summary["bytes_read"] / 1e9
    lines = [
        f"Input: {gb:.2f} GB of ERA5-like NetCDF in 2 regions; links {args.rate:g} Mbit/s (tbf); "
        "results of the three strategies equal (rtol 1e-9).",
        "",
        "| strategy | wall s | bytes client→regions | bytes regions→client |",
        "|---|---|---|---|",
        *[
            f"| {r['strategy']} | {r['seconds']} | {r['to_regions']:,} | {r['from_regions']:,} |"
            for r in rows
        ],
        "",
        f"bytes (a)/(b): {sum(_sum(a_bytes)) / sum(_sum(b_bytes)):.5f}; "
        f"time (a)/(b): {a_s / b_s:.3f}; time (a)/(c): {a_s / c_s:.2f}",
    ]
    print("\n".join(lines))
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "locality.json").write_text(
        json.dumps(
            {
                "machine": info,
                "rate_mbit": args.rate,
                "bytes_read": summary["bytes_read"],
                "rows": rows,
            },
            indent=2,
        )
    )
    (results / "locality.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
