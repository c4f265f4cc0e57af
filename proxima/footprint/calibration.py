"""Each region's measured cost per byte read, kept beside the results for dry runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

FILE = ".footprint-calibration.json"


def load(results_dir: str | Path) -> dict[str, dict[str, float]]:
    """The saved calibration, or none (a damaged file counts as none)."""
    try:
        data = json.loads((Path(results_dir) / FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def save(results_dir: str | Path, calibration: dict[str, dict[str, float]]) -> None:
    """Replace the saved calibration atomically (concurrent runs: the last one wins)."""
    path = Path(results_dir) / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(calibration, indent=1))
    tmp.replace(path)
