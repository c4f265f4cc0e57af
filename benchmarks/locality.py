"""The locality benchmark on the testbed (needs root): the same analysis three ways, over
a sweep of input sizes and link rates.

(a) Proxima from a notebook: ``proxima.connect().analyze(request)`` in this (warm)
    process, like (b) and (c): regional subflows next to the data, partial aggregates
    cross the links.
(b) pull-to-client: the client downloads the assets from each region's S3 endpoint
    across the links (regions in parallel) and reduces them itself with the same kernel.
(c) plain Dask on the regional clusters with the same kernel, without Prefect.
(a') Proxima from the shell: ``proxima analyze --here`` in a new process, which first
    imports Prefect, distributed and xarray (what a new process pays, which (b) and (c)
    do not).

At the default point, the ways a run is started other than a notebook (issue 29):
``deployment_s``, a run of the analysis deployment as the UI or ``prefect deployment run``
makes it, from created to Completed by the server's timestamps (the work pool's worker
and its warm flow launcher run it); ``cli_s``, ``proxima analyze`` (through the same
deployment) in a new process, wall; both beside ``notebook_s``, the warm notebook run.

Data: hourly 1° ERA5-like NetCDF, us-east-1 holding 2020-01..06 and us-west-2
2021-01..06. A request over ``m`` months per region spans the year boundary
(2020-(7-m) .. 2021-m), so both regions always share the work: m = 1, 2, 3, 6 gives
about 0.38, 0.75, 1.13 and 2.27 GB decoded. Sweep: every size at 100 Mbit/s, and
25 / 100 / 400 Mbit/s at 1.13 GB; the default point is 1.13 GB at 100 Mbit/s.

For each run: wall time and bytes across each link in each direction (kernel
counters), and a check that the three answers are equal. Prints the machine, a table
and a model fitted to the measurements (fixed cost + decoded bytes / throughput for
(a); fixed cost + bytes moved / link rate + decode for (b)) extrapolated to 100 GB and
1 TB. Writes benchmarks/results/locality.json (``rows``: the default point), .md and
locality.png (wall time against input size).

Usage: sudo .venv/bin/python benchmarks/locality.py [--quick] [--keep] [--ways-only]
[--repeat N]
"""

from __future__ import annotations

import argparse
import calendar
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import print_machine  # noqa: E402

from proxima import datagen, opensearch, testbed  # noqa: E402
from proxima.analysis.cf import data_variable  # noqa: E402
from proxima.analysis.partials import combine, finalize  # noqa: E402
from proxima.analysis.plan import make_plan  # noqa: E402
from proxima.analysis.regional import compute_partial  # noqa: E402
from proxima.analysis.request import AnalysisRequest  # noqa: E402
from proxima.baselines import pull_partial  # noqa: E402
from proxima.client import Proxima  # noqa: E402
from proxima.config import StackConfig, load_stack_config  # noqa: E402
from proxima.footprint.factors import for_region  # noqa: E402
from proxima.platform import from_stack  # noqa: E402
from proxima.settings import ProximaSettings, get_settings  # noqa: E402
from proxima.stack import manager  # noqa: E402

STATE = ROOT / ".state" / "testbed-bench"
DEFAULT = (3, 100.0)  # months per region, Mbit/s
STRATEGIES = (
    "(a) Proxima, notebook",
    "(b) pull-to-client",
    "(c) plain Dask, regional",
    "(a') Proxima CLI, new process",
)


def _config_file(resolution: float) -> Path:
    raw = yaml.safe_load((ROOT / "deployments" / "testbed" / "stack.yaml").read_text())
    for region, year in zip(raw["regions"], (2020, 2021), strict=True):
        for ds in region["datasets"]:
            ds.update(resolution=resolution, start=f"{year}-01", end=f"{year}-06")
    STATE.mkdir(parents=True, exist_ok=True)
    path = STATE / "stack.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def request_for(months: int, name: str) -> dict[str, Any]:
    """Monthly mean maps over ``months`` months in each region."""
    last = calendar.monthrange(2021, months)[1]
    return {
        "selection": {
            "variable": "air_temperature",
            "dataset": "era5",
            "start": f"2020-{7 - months:02d}-01",
            "end": f"2021-{months:02d}-{last}",
        },
        "reduction": "mean",
        "over": "time",
        "group_by": "month",
        "output_name": name,
        "overwrite": True,
        "reuse": False,  # each strategy computes: none is served the other's answer
        "allow_partial": True,  # the regions hold 2020-01..06 and 2021-01..06: a gap between
        "max_transfer_bytes": 2**30,
    }


def _moved(delta: dict[str, dict[str, int]]) -> tuple[int, int]:
    return (
        sum(v["to_region"] for v in delta.values()),
        sum(v["from_region"] for v in delta.values()),
    )


class Bench:
    """The testbed stack and the three strategies."""

    def __init__(self, settings: ProximaSettings, config: StackConfig) -> None:
        self.settings, self.config = settings, config
        self.platform = from_stack(config, settings)
        self.env = {
            **os.environ,
            "PROXIMA_STATE_DIR": str(settings.state_dir),
            "PROXIMA_STACK_CONFIG": str(settings.stack_config),
            "PROXIMA_PORT_OFFSET": "0",
        }
        self.env.pop("PREFECT_API_URL", None)
        os.environ.update({k: self.env[k] for k in ("PROXIMA_STATE_DIR", "PROXIMA_STACK_CONFIG")})
        os.environ["PROXIMA_PORT_OFFSET"] = "0"  # the in-process flow reads the stack from these
        get_settings.cache_clear()
        self.notebook_client = Proxima(self.platform, config.prefect.api_url)
        self.pickups: list[float] = []  # deployment runs: created -> started by the worker

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "proxima.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )

    def measured(self, fn):
        before, t0 = testbed.counters(self.config), time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - t0
        return out, seconds, testbed.delta(before, testbed.counters(self.config))

    def notebook(self, request: dict[str, Any]) -> Any:
        return data_variable(self.notebook_client.analyze(request, progress=None))

    def proxima(self, request: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        path = Path(tempfile.mkdtemp()) / "request.json"
        path.write_text(json.dumps(request))
        out = self.cli("analyze", str(path), "--json", "--here")
        if out.returncode:
            raise SystemExit(out.stderr[-3000:])
        summary = json.loads(out.stdout)
        return self._answer(summary), summary

    def deployed(self, request: dict[str, Any]) -> tuple[Any, float]:
        """A run of the analysis deployment: its answer and created -> end by the server."""
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from flows.progress import wait_run
        from flows.submit import submit_analysis, summary_of

        with temporary_settings({PREFECT_API_URL: self.config.prefect.api_url}):
            run = wait_run(submit_analysis(AnalysisRequest.model_validate(request)).id)
            if not run.state or not run.state.is_completed():
                raise SystemExit(f"the deployment run ended {run.state}")
            summary = summary_of(run)
        self.pickups.append((run.start_time - run.created).total_seconds())
        return self._answer(summary), (run.end_time - run.created).total_seconds()

    def submitted(self, request: dict[str, Any]) -> tuple[Any, float]:
        """``proxima analyze`` in a new process (through the deployment): answer, wall s."""
        path = Path(tempfile.mkdtemp()) / "request.json"
        path.write_text(json.dumps(request))
        t0 = time.perf_counter()
        out = self.cli("analyze", str(path), "--json")
        seconds = time.perf_counter() - t0
        if out.returncode:
            raise SystemExit(out.stderr[-3000:])
        return self._answer(json.loads(out.stdout)), seconds

    @staticmethod
    def _answer(summary: dict[str, Any]) -> Any:
        import xarray as xr

        with xr.open_dataset(summary["result_path"], engine="h5netcdf") as ds:
            return data_variable(ds).load()

    def ways(self, request: dict[str, Any], repeat: int) -> dict[str, Any]:
        """Notebook, deployment and CLI runs of one request, interleaved ``repeat`` times;
        medians, and every answer equal to the notebook's.
        """
        runs: dict[str, list[float]] = {"notebook_s": [], "deployment_s": [], "cli_s": []}
        for _ in range(repeat):
            t0 = time.perf_counter()
            reference = self.notebook(request)
            runs["notebook_s"].append(time.perf_counter() - t0)
            for key, way in (("deployment_s", self.deployed), ("cli_s", self.submitted)):
                answer, seconds = way(request)
                np.testing.assert_allclose(
                    reference.values, answer.transpose(*reference.dims).values, rtol=1e-12
                )
                runs[key].append(seconds)
        out: dict[str, Any] = {k: float(np.median(v)) for k, v in runs.items()}
        out["runs"] = runs
        out["deployment_pickup_s"] = self.pickups[-repeat:]
        out["deployment_over_notebook"] = out["deployment_s"] / out["notebook_s"]
        out["cli_over_notebook"] = out["cli_s"] / out["notebook_s"]
        print(
            f"  ways (median of {repeat}): notebook {out['notebook_s']:.2f} s, deployment "
            f"{out['deployment_s']:.2f} s ({out['deployment_over_notebook']:.2f}x), CLI "
            f"{out['cli_s']:.2f} s ({out['cli_over_notebook']:.2f}x); the worker picked the "
            f"deployment runs up after {out['deployment_pickup_s']} s",
            flush=True,
        )
        return out

    def specs(self, request: dict[str, Any]) -> dict[str, Any]:
        plan = make_plan(
            AnalysisRequest.model_validate(request),
            opensearch.connect(self.config.opensearch.endpoint),
            self.config.opensearch.alias,
            "client",
        )
        return {r.region: r.spec for s in plan.selections for r in s.regions}

    def pull(self, specs: dict[str, Any]):
        with ThreadPoolExecutor(len(specs)) as pool:
            parts = list(
                pool.map(lambda n: pull_partial(self.platform.region(n), specs[n]), sorted(specs))
            )
        return finalize(combine(parts), "mean")

    def plain(self, specs: dict[str, Any]):
        from distributed import Client

        platform = from_stack(self.config, self.settings)

        def one(name: str):
            region = platform.region(name)
            with Client(
                region.scheduler_address, security=region.dask_security(), set_as_default=False
            ) as client:
                return compute_partial(str(self.settings.region_root(name)), specs[name], client)[0]

        with ThreadPoolExecutor(len(specs)) as pool:
            parts = list(pool.map(one, sorted(specs)))
        return finalize(combine(parts), "mean")

    def point(self, months: int, rate: float) -> dict[str, Any]:
        """The three strategies on one (size, rate) point; their answers must agree."""
        testbed.up(self.config, rate_mbit=rate)
        request = request_for(months, f"locality-{months}m-{rate:g}")
        a_result, a_s, a_moved = self.measured(lambda: self.notebook(request))
        (cli_result, summary), cli_s, cli_moved = self.measured(lambda: self.proxima(request))
        specs = self.specs(request)
        cpu0 = time.process_time()
        b_result, b_s, b_moved = self.measured(lambda: self.pull(specs))
        pull_cpu_s = time.process_time() - cpu0
        c_result, c_s, c_moved = self.measured(lambda: self.plain(specs))
        dims = a_result.dims
        for other in (b_result, c_result, cli_result):
            np.testing.assert_allclose(a_result.values, other.transpose(*dims).values, rtol=1e-9)
        rows = []
        for name, secs, moved in zip(
            STRATEGIES,
            (a_s, b_s, c_s, cli_s),
            (a_moved, b_moved, c_moved, cli_moved),
            strict=True,
        ):
            to_r, from_r = _moved(moved)
            rows.append(
                {
                    "strategy": name,
                    "seconds": round(secs, 2),
                    "to_regions": to_r,
                    "from_regions": from_r,
                    "per_link": moved,
                }
            )
        point = {
            "months_per_region": months,
            "rate_mbit": rate,
            "decoded_bytes": summary["bytes_read"],
            "compressed_bytes": sum(a.size for s in specs.values() for a in s.assets),
            "bytes_returned": sum(r["bytes_returned"] for r in summary["regions"]),
            "rows": rows,
            "footprint": modelled(summary["footprint"], pull_cpu_s, self.platform.client_region),
        }
        print(
            f"  {summary['bytes_read'] / 1e9:.2f} GB @ {rate:g} Mbit/s: "
            + ", ".join(f"{r['strategy'][:3]} {r['seconds']:.1f} s" for r in rows),
            flush=True,
        )
        return point


def modelled(footprint: dict[str, Any], pull_cpu_s: float, client: str) -> dict[str, Any]:
    """Energy and carbon of (a) Proxima (its run's footprint: compute on the regions and
    what crossed) and (b) the pull (the same selection's on-disk bytes across the links,
    and the client's decode: its CPU-seconds at max watts, in the client region).
    """
    f = for_region(client)
    decode_kwh = pull_cpu_s / 3600 * f.vcpu_watts_max.value / 1000 * f.pue.value
    run, pull = footprint["totals"]["run"], footprint["totals"]["pull"]
    return {
        "proxima_kwh": run["kwh"],
        "proxima_gco2e": run["gco2e"],
        "pull_kwh": pull["kwh"] + decode_kwh,
        "pull_gco2e": pull["gco2e"] + decode_kwh * f.grid_gco2e_per_kwh.value,
        "pull_decode_cpu_s": pull_cpu_s,
    }


def fit(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Least-squares models of the measurements.

    (a) and (c): T = fixed + decoded / throughput (the links carry only partials).
    (b): T = fixed + compressed / (regions × link rate) / efficiency + decoded / client decode.
    """
    d = np.array([p["decoded_bytes"] for p in points], dtype=float)
    c = np.array([p["compressed_bytes"] for p in points], dtype=float)
    link = np.array([2 * p["rate_mbit"] * 1e6 / 8 for p in points])  # bytes/s, 2 regions
    model: dict[str, Any] = {"compression_ratio": float((c / d).mean())}
    for i, key in ((0, "proxima"), (2, "plain_dask"), (3, "proxima_cli")):
        t = np.array([p["rows"][i]["seconds"] for p in points])
        (slope, fixed), *_ = np.linalg.lstsq(np.c_[d, np.ones_like(d)], t, rcond=None)
        model[key] = {"fixed_s": float(fixed), "throughput_mb_s": float(1 / slope / 1e6)}
    t = np.array([p["rows"][1]["seconds"] for p in points])
    (k_link, k_dec, fixed), *_ = np.linalg.lstsq(np.c_[c / link, d, np.ones_like(d)], t, rcond=None)
    model["pull"] = {
        "fixed_s": float(fixed),
        "link_efficiency": float(1 / k_link),
        "client_decode_mb_s": float(1 / k_dec / 1e6) if k_dec > 0 else None,
    }
    return model


def extrapolate(
    model: dict[str, Any], rate_mbit: float = 100.0, point: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Predicted wall time at 100 GB and 1 TB decoded, 2 regions, ``rate_mbit`` links; with
    ``point``, its energy and carbon scaled by the decoded bytes (both sides are linear).
    """
    out = []
    for size in (100e9, 1e12):
        p, pull = model["proxima"], model["pull"]
        compressed = size * model["compression_ratio"]
        link = 2 * rate_mbit * 1e6 / 8 * pull["link_efficiency"]
        decode = size / (pull["client_decode_mb_s"] * 1e6) if pull["client_decode_mb_s"] else 0
        t_pull = pull["fixed_s"] + compressed / link + decode
        t_prox = p["fixed_s"] + size / (p["throughput_mb_s"] * 1e6)
        out.append(
            {
                "decoded_gb": size / 1e9,
                "proxima_s": t_prox,
                "pull_s": t_pull,
                "speedup": t_pull / t_prox,
            }
        )
        if point:
            scale = size / point["decoded_bytes"]
            out[-1] |= {
                k: v * scale for k, v in point["footprint"].items() if k != "pull_decode_cpu_s"
            }
    return out


def plot(points: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=100)
    by_size = sorted(
        (p for p in points if p["rate_mbit"] == DEFAULT[1]), key=lambda p: p["decoded_bytes"]
    )
    by_rate = sorted(
        (p for p in points if p["months_per_region"] == DEFAULT[0]), key=lambda p: p["rate_mbit"]
    )
    for i, name in enumerate(STRATEGIES):
        xs = [p["decoded_bytes"] / 1e9 for p in by_size]
        left.plot(xs, [p["rows"][i]["seconds"] for p in by_size], marker="o", label=name)
        xr_ = [p["rate_mbit"] for p in by_rate]
        right.plot(xr_, [p["rows"][i]["seconds"] for p in by_rate], marker="o", label=name)
    left.set(xlabel="input, GB decoded", ylabel="wall s", title=f"links {DEFAULT[1]:g} Mbit/s")
    right.set(xlabel="link rate, Mbit/s", ylabel="wall s", xscale="log", title="1.13 GB input")
    rates = [p["rate_mbit"] for p in by_rate]
    right.set_xticks(rates, [f"{r:g}" for r in rates])
    right.minorticks_off()
    left.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--resolution", type=float, default=1.0)
    parser.add_argument("--quick", action="store_true", help="the default point only")
    parser.add_argument("--keep", action="store_true", help="leave the testbed up")
    parser.add_argument(
        "--ways-only", action="store_true", help="only the notebook/deployment/CLI comparison"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each way (medians)")
    args = parser.parse_args()
    info = print_machine()
    settings = ProximaSettings(state_dir=STATE, stack_config=_config_file(args.resolution))
    config = load_stack_config(settings=settings)
    bench = Bench(settings, config)
    grid = [DEFAULT] if args.quick else [(1, 100.0), (2, 100.0), (3, 100.0), (6, 100.0)]
    if not args.quick:
        grid += [(3, 25.0), (3, 400.0)]
    points = []
    try:
        testbed.up(config, rate_mbit=10000)  # fast links while setting up
        manager.up(settings, config, progress=lambda m: print(f"  stack: {m}", flush=True))
        for region in bench.platform.regions:
            for ds in region.datasets:
                if datagen.ensure_generated(region, ds):
                    print(f"  generated {region.name}/{ds.name}", flush=True)
        out = bench.cli("catalog", "refresh")
        if out.returncode:
            raise SystemExit(out.stderr[-3000:])
        deployed = bench.cli("deploy")
        if deployed.returncode:
            raise SystemExit(deployed.stderr[-3000:])
        bench.proxima(request_for(1, "locality-warm-up"))  # worker imports, as a second run
        bench.notebook(request_for(1, "locality-warm-up"))  # this process's flow imports
        bench.deployed(request_for(1, "locality-warm-up"))  # the flow launcher's first fork
        testbed.up(config, rate_mbit=DEFAULT[1])
        ways = bench.ways(request_for(DEFAULT[0], "locality-ways"), args.repeat)
        for months, rate in [] if args.ways_only else grid:
            points.append(bench.point(months, rate))
    finally:
        if not args.keep:
            manager.down(settings)
            testbed.down(config)

    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    if args.ways_only:
        path = results / "locality.json"
        kept = json.loads(path.read_text()) if path.exists() else {}
        path.write_text(json.dumps({**kept, **ways, "machine": info}, indent=2, default=str))
        return
    default = next(p for p in points if (p["months_per_region"], p["rate_mbit"]) == DEFAULT)
    rows = default["rows"]
    a, b = rows[0], rows[1]
    lines = [
        f"Default point: {default['decoded_bytes'] / 1e9:.2f} GB decoded "
        f"({default['compressed_bytes'] / 1e9:.2f} GB on disk) of ERA5-like NetCDF in 2 regions; "
        f"links {DEFAULT[1]:g} Mbit/s (tbf); answers of the three strategies equal (rtol 1e-9).",
        "",
        "| GB decoded | Mbit/s | (a) Proxima s | (b) pull s | (c) plain Dask s | (b)/(a) | "
        "(a') CLI s | (b)/(a') | bytes (a) | bytes (b) | bytes (a)/(b) | kWh (a) | kWh (b) "
        "| gCO2e (a) | gCO2e (b) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in points:
        r, fp = p["rows"], p["footprint"]
        ab, bb = sum(_moved(r[0]["per_link"])), sum(_moved(r[1]["per_link"]))
        lines.append(
            f"| {p['decoded_bytes'] / 1e9:.2f} | {p['rate_mbit']:g} | {r[0]['seconds']:.1f} | "
            f"{r[1]['seconds']:.1f} | {r[2]['seconds']:.1f} | "
            f"{r[1]['seconds'] / r[0]['seconds']:.1f} | {r[3]['seconds']:.1f} | "
            f"{r[1]['seconds'] / r[3]['seconds']:.1f} | {ab:,} | {bb:,} | {ab / bb:.4f} | "
            f"{fp['proxima_kwh']:.3g} | {fp['pull_kwh']:.3g} | {fp['proxima_gco2e']:.3g} | "
            f"{fp['pull_gco2e']:.3g} |"
        )
    speedup = b["seconds"] / a["seconds"]
    byte_ratio = sum(_moved(a["per_link"])) / sum(_moved(b["per_link"]))
    lines += [
        "",
        f"default point: Proxima {speedup:.1f}x faster than the pull; bytes (a)/(b) "
        f"{byte_ratio:.4f}; time (a)/(c) {a['seconds'] / rows[2]['seconds']:.2f}; from a "
        f"new process (a') {b['seconds'] / rows[3]['seconds']:.1f}x",
    ]
    result: dict[str, Any] = {
        "machine": info,
        "rate_mbit": DEFAULT[1],
        "bytes_read": default["decoded_bytes"],
        "rows": rows,
        "speedup_vs_pull": speedup,
        "speedup_vs_pull_cli": b["seconds"] / rows[3]["seconds"],
        "bytes_ratio_vs_pull": byte_ratio,
        "footprint": default["footprint"],
        "sweep": points,
        **ways,
    }
    if len(points) > 2:
        model = fit(points)
        result["model"] = model
        result["extrapolation"] = extrapolate(model, point=default)
        p, pull, cli = model["proxima"], model["pull"], model["proxima_cli"]
        lines += [
            "",
            f"fitted: Proxima = {p['fixed_s']:.1f} s + decoded / {p['throughput_mb_s']:.0f} MB/s "
            f"(both regions; from a new process {cli['fixed_s']:.1f} s + decoded / "
            f"{cli['throughput_mb_s']:.0f} MB/s); plain Dask = "
            f"{model['plain_dask']['fixed_s']:.1f} s + decoded / "
            f"{model['plain_dask']['throughput_mb_s']:.0f} MB/s; pull = {pull['fixed_s']:.1f} s + "
            f"on-disk bytes / ({pull['link_efficiency']:.2f} x link rate x 2 links) + decode "
            f"({pull['client_decode_mb_s'] or 0:.0f} MB/s); on-disk / decoded = "
            f"{model['compression_ratio']:.2f}",
            "",
            "| extrapolated, 100 Mbit/s links | Proxima | pull | speed-up | Proxima kWh | "
            "pull kWh | Proxima gCO2e | pull gCO2e |",
            "|---|---|---|---|---|---|---|---|",
            *[
                f"| {e['decoded_gb']:,.0f} GB | {e['proxima_s'] / 60:.1f} min | "
                f"{e['pull_s'] / 60:.1f} min | {e['speedup']:.1f}x | {e['proxima_kwh']:.3g} | "
                f"{e['pull_kwh']:.3g} | {e['proxima_gco2e']:.3g} | {e['pull_gco2e']:.3g} |"
                for e in result["extrapolation"]
            ],
        ]
        plot(points, results / "locality.png")
    print("\n".join(lines))
    (results / "locality.json").write_text(json.dumps(result, indent=2, default=str))
    (results / "locality.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
