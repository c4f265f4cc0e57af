"""Shared setup of the benchmarks: an isolated stack from benchmarks/stack.yaml."""

from __future__ import annotations

import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def configure(offset: int = 2000) -> None:
    """Point Proxima's settings at the benchmark stack (before importing flows)."""
    os.environ.setdefault("PROXIMA_STATE_DIR", str(ROOT / ".state" / "bench"))
    os.environ.setdefault("PROXIMA_STACK_CONFIG", str(ROOT / "benchmarks" / "stack.yaml"))
    os.environ.setdefault("PROXIMA_PORT_OFFSET", str(offset))
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"


def up():
    """Bring the benchmark stack up; return (settings, config)."""
    from proxima.config import load_stack_config
    from proxima.settings import get_settings
    from proxima.stack import manager

    settings = get_settings()
    config = load_stack_config(settings=settings)
    manager.up(settings, config, progress=lambda m: print(f"  stack: {m}", flush=True))
    from proxima import s3

    for region in config.regions:  # every configured bucket exists (the import needs them)
        for dataset in region.datasets:
            s3.ensure_bucket(s3.client(region), dataset.bucket, region.name)
    os.environ["PREFECT_API_URL"] = config.prefect.api_url
    os.environ["PREFECT_HOME"] = str(settings.state_dir / "prefect")
    return settings, config


def save(name: str, payload: dict) -> Path:
    """Write a JSON result under benchmarks/results/."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path
