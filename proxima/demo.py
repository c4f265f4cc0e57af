"""`make demo`: the whole platform, end to end, on the local stack, through Prefect
deployments exactly as a user would run them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import xarray as xr

from proxima import datagen
from proxima.analysis import results
from proxima.analysis.cf import data_variable
from proxima.config import StackConfig, load_stack_config
from proxima.errors import ProximaError
from proxima.footprint import report as footprint_report
from proxima.platform import Platform, from_stack
from proxima.settings import ProximaSettings, get_settings
from proxima.stack import manager
from proxima.stack.services import run_prefect

DEMO_OUTPUT = "demo-tropical-pacific-monthly-t2m"
DEMO_REQUEST: dict[str, Any] = {
    "selection": {
        "variable": "air_temperature",
        "dataset": "era5",
        "start": "2020-01-01",
        "end": "2020-06-30",
        "bbox": [160, -30, -150, 30],
    },
    "reduction": "mean",
    "over": "both",
    "group_by": "month",
    "convert": "K->degC",
    "output_name": DEMO_OUTPUT,
    "overwrite": True,  # `make demo` may run again
}

Say = Callable[[str], None]


def _prefect(args: list[str], config: StackConfig, settings: ProximaSettings) -> str:
    proc = run_prefect(args, config, settings)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0 or "finished in state 'Failed'" in out:
        tail = "\n".join(out.strip().splitlines()[-25:])
        raise ProximaError(f"`prefect {' '.join(args[:3])}` failed:\n{tail}")
    return out


def _generate(platform: Platform, say: Say) -> None:
    for region in platform.regions:
        for dataset in region.datasets:
            rep = datagen.ensure_generated(region, dataset)
            if rep is None:
                say(f"  {region.name}/{dataset.name}: already in s3://{dataset.bucket}")
                continue
            say(
                f"  {region.name}/{dataset.name}: {rep.objects} objects, "
                f"{rep.bytes_written / 2**20:.1f} MiB into s3://{dataset.bucket}"
            )


def run(say: Say, settings: ProximaSettings | None = None) -> dict[str, Any]:
    """Run the demo; return the answer and figures it printed."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.deploy import seal_parameter_schemas
    from proxima.platform.blocks import save_blocks

    settings = settings or get_settings()
    config = load_stack_config(settings=settings)
    t0 = time.perf_counter()
    say("[1/6] starting the local stack (Prefect, OpenSearch, Dask + S3 per region)")
    manager.up(settings, config, progress=lambda m: say(f"  {m}"))
    say("[2/6] generating ERA5-like and CMIP6-like data in each region's S3")
    _generate(from_stack(config, settings), say)
    say("[3/6] registering blocks and deploying (prefect deploy --all, schemas sealed)")
    with temporary_settings({PREFECT_API_URL: config.prefect.api_url}):
        saved = save_blocks()
    say(f"  blocks: {', '.join(saved)}")
    _prefect(["--no-prompt", "deploy", "--all"], config, settings)
    with temporary_settings({PREFECT_API_URL: config.prefect.api_url}):
        seal_parameter_schemas()
    say("[4/6] prefect deployment run 'catalog-refresh/catalog-refresh' --watch")
    _prefect(["deployment", "run", "catalog-refresh/catalog-refresh", "--watch"], config, settings)
    say("[5/6] prefect deployment run 'cross-region-analysis/cross-region-analysis' --watch")
    _prefect(
        [
            "deployment",
            "run",
            "cross-region-analysis/cross-region-analysis",
            "--params",
            json.dumps({"request": DEMO_REQUEST}),
            "--watch",
        ],
        config,
        settings,
    )
    result_path = Path(settings.state_dir) / "results" / f"{DEMO_OUTPUT}.nc"
    say("[6/6] answer: mean 2 m temperature over the tropical Pacific (160E-150W, 30S-30N)")
    reported = report(result_path, say)
    say(f"Prefect UI: {config.prefect.ui_url}  (the stack keeps running; `make down` stops it)")
    say(f"demo finished in {time.perf_counter() - t0:.0f}s")
    return reported | {"result": str(result_path)}


def report(result_path: Path, say: Say) -> dict[str, Any]:
    """Say the answer a result file holds (a row per group, with units), what each
    region read and returned, and what crossed regions.

    Returns:
        The answer's rows and each region's figures.
    """
    ds = xr.load_dataset(result_path, engine="h5netcdf")
    rows = results.answer_table(data_variable(ds))
    per_region = json.loads(ds.attrs["per_region"])
    for label, value in rows:
        say(f"  {label}: {value}")
    for r in per_region:
        say(
            f"  {r['region']}: read {r['bytes_read']:,} B on {r['worker']}, "
            f"returned {r['bytes_returned']:,} B"
        )
    say(f"  bytes that crossed regions: {int(ds.attrs['bytes_crossed_regions']):,}")
    for line in footprint_report.lines(json.loads(ds.attrs["footprint"])):
        say(f"  {line}")
    say(f"  result file: {result_path}")
    return {"answer": rows, "per_region": per_region}
