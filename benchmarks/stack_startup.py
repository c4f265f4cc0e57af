"""Median time to healthy and resident memory of each local-stack service over N starts.

Runs an isolated stack (its own state directory, ports shifted by 2000) so it does not
disturb a running one. Usage: .venv/bin/python benchmarks/stack_startup.py [--starts 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path

from machine import print_machine

from proxima.settings import ProximaSettings
from proxima.stack import manager


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument(
        "--fresh-state",
        action="store_true",
        help="a new state directory each start (includes Prefect migrations)",
    )
    args = parser.parse_args()
    info = print_machine()
    base = Path(tempfile.mkdtemp(prefix="proxima-bench-"))
    times: dict[str, list[float]] = {}
    rss: dict[str, list[int]] = {}
    try:
        for i in range(args.starts):
            state = base / (f"run{i}" if args.fresh_state else "state")
            settings = ProximaSettings(state_dir=state, port_offset=2000)
            rows = manager.up(settings)
            for row in rows:
                times.setdefault(row.name, []).append(row.seconds_to_healthy or 0.0)
                rss.setdefault(row.name, []).append(row.rss_bytes)
            manager.down(settings)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"\n| service | median s to healthy ({args.starts} starts) | RSS MiB (median) |")
    print("|---|---|---|")
    for name in times:
        print(
            f"| {name} | {statistics.median(times[name]):.1f} | "
            f"{statistics.median(rss[name]) / 2**20:.0f} |"
        )
    out = {"machine": info, "seconds_to_healthy": times, "rss_bytes": rss}
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "stack_startup.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
