"""Shared setup of the benchmarks: an isolated stack from benchmarks/stack.yaml."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def configure(offset: int = 2000) -> None:
    """Point Proxima and Prefect at the benchmark stack. Call before anything imports
    ``prefect``: Prefect reads ``PREFECT_API_URL`` at import, and without it a flow
    starts a temporary server inside the benchmark process (17 s, and the figures no
    longer describe the stack's own server).
    """
    if "prefect" in sys.modules:
        raise RuntimeError("benchmarks.common.configure() must run before prefect is imported")
    os.environ.setdefault("PROXIMA_STATE_DIR", str(ROOT / ".state" / "bench"))
    os.environ.setdefault("PROXIMA_STACK_CONFIG", str(ROOT / "benchmarks" / "stack.yaml"))
    os.environ.setdefault("PROXIMA_PORT_OFFSET", str(offset))
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    from proxima.config import load_stack_config
    from proxima.settings import get_settings

    settings = get_settings()
    config = load_stack_config(settings=settings)
    os.environ["PREFECT_API_URL"] = config.prefect.api_url
    os.environ["PREFECT_HOME"] = str(settings.state_dir / "prefect")


def check_prefect_target(config) -> None:
    """Fail unless this process's Prefect client talks to the stack's server."""
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value() != config.prefect.api_url:
        raise RuntimeError(
            f"Prefect points at {PREFECT_API_URL.value()!r}, not the stack's "
            f"{config.prefect.api_url!r}: flows would run on a temporary server"
        )


def up():
    """Bring the benchmark stack up; return (settings, config)."""
    import compileall

    from proxima.config import load_stack_config
    from proxima.settings import get_settings
    from proxima.stack import manager

    for package in ("proxima", "flows", "blocks"):  # as `make install` does, after edits
        compileall.compile_dir(ROOT / package, quiet=1)
    settings = get_settings()
    config = load_stack_config(settings=settings)
    manager.up(settings, config, progress=lambda m: print(f"  stack: {m}", flush=True))
    from proxima import s3

    for region in config.regions:  # every configured bucket exists (the import needs them)
        for dataset in region.datasets:
            s3.ensure_bucket(s3.client(region), dataset.bucket, region.name)
    check_prefect_target(config)
    return settings, config


def fill_scale(settings, config, assets: int):
    """us-east-1's ``scale`` bucket directory emptied and filled with ``assets`` copies
    of one small ERA5 file under distinct names; returns the directory.
    """
    import shutil
    import tempfile

    from proxima.datagen import era5

    ds = config.region("us-east-1").dataset("scale")
    root = settings.region_root("us-east-1") / ds.bucket
    shutil.rmtree(root, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        sample = Path(tmp) / "sample.nc"
        era5.write_month(sample, 2020, 1, "air_temperature_at_2_metres", ds.resolution, 1)
        for i in range(assets):
            target = root / f"{2000 + i // 12 % 100}" / f"{i:05d}" / "data" / "t2m.nc"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(sample, target)
    return root


def ensure_era5(settings, config, regions: list[str] | None = None) -> None:
    """The ERA5 data of the benchmark stack generated (once) and imported."""
    from pathlib import Path

    from proxima import datagen, repository
    from proxima.platform import from_stack

    for region in from_stack(config, settings).regions:
        if regions and region.name not in regions:
            continue
        for ds in region.datasets:
            if ds.name == "era5" and datagen.ensure_generated(region, ds):
                print(f"  generated {region.name}/{ds.name}", flush=True)
        repository.import_region(region, Path(region.root))


def save(name: str, payload: dict) -> Path:
    """Write a JSON result under benchmarks/results/."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path
