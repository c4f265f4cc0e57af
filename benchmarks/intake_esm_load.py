"""intake-esm's ``to_dataset_dict()`` of the whole catalog in fresh processes: the static
export (NetCDF opened by intake-esm's default netCDF4 engine from its threads) against
the live datastore of the STAC service (NetCDF as kerchunk references, Zarr engine).

Alternates the two, ``--runs`` fresh processes each, and counts the processes killed by
a signal (the segmentation faults of issue 30) and those that failed otherwise.
Usage: cd benchmarks && ../.venv/bin/python intake_esm_load.py [--runs 10]
Writes results/intake_esm_load.json: runs, export_crashes, export_errors, live_crashes,
live_errors, export_median_s, live_median_s, groups, crash_signals.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

common.configure()

from machine import print_machine  # noqa: E402

from proxima import opensearch  # noqa: E402
from proxima.catalog import export  # noqa: E402
from proxima.catalog.search import CatalogQuery, search  # noqa: E402

LOAD = """
import sys, intake
col = intake.open_esm_datastore(sys.argv[1])
print(len(col.to_dataset_dict(progressbar=False)))
"""


def _once(url: str) -> tuple[str, float, int]:
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-W", "ignore", "-c", LOAD, url],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    seconds = time.perf_counter() - t0
    if out.returncode < 0:
        return signal.Signals(-out.returncode).name, seconds, 0
    if out.returncode != 0:
        return "error: " + (out.stderr.strip().splitlines() or ["?"])[-1], seconds, 0
    return "ok", seconds, int(out.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    info = print_machine()
    settings, config = common.up()
    client = opensearch.connect(config.opensearch.endpoint)
    assets = search(client, config.opensearch.alias, CatalogQuery()).assets
    if not assets:
        common.ensure_era5(settings, config)
        from flows.catalog_refresh import catalog_refresh

        catalog_refresh()
        assets = search(client, config.opensearch.alias, CatalogQuery()).assets
    from proxima.platform import from_stack

    roots = {r.name: r.root for r in from_stack(config, settings).regions}
    outcomes: dict[str, list[tuple[str, float, int]]] = {"export": [], "live": []}
    with tempfile.TemporaryDirectory() as tmp:
        static = str(export.write_esm_collection(assets, roots, Path(tmp)))
        live = f"{config.stac.url}/intake-esm/proxima.json"
        for i in range(args.runs):
            for way, url in (("export", static), ("live", live)):
                outcome = _once(url)
                outcomes[way].append(outcome)
                print(f"  run {i + 1} {way}: {outcome[0]} in {outcome[1]:.1f} s", flush=True)

    def crashes(way: str) -> int:
        return sum(1 for o in outcomes[way] if o[0].startswith("SIG"))

    def errors(way: str) -> int:
        return sum(1 for o in outcomes[way] if o[0].startswith("error"))

    def median(way: str) -> float:
        return (
            statistics.median(o[1] for o in outcomes[way] if o[0] == "ok")
            if any(o[0] == "ok" for o in outcomes[way])
            else float("nan")
        )

    print(f"\n{len(assets)} assets; {args.runs} fresh processes each")
    print("| datastore | crashed | failed | loaded | median s |")
    print("|---|---|---|---|---|")
    for way in outcomes:
        ok = args.runs - crashes(way) - errors(way)
        print(f"| {way} | {crashes(way)} | {errors(way)} | {ok} | {median(way):.1f} |")
    common.save(
        "intake_esm_load",
        {
            "machine": info,
            "runs": args.runs,
            "assets": len(assets),
            "export_crashes": crashes("export"),
            "export_errors": errors("export"),
            "live_crashes": crashes("live"),
            "live_errors": errors("live"),
            "export_median_s": median("export"),
            "live_median_s": median("live"),
            "groups": max((o[2] for o in outcomes["live"]), default=0),
            "crash_signals": sorted(
                {o[0] for w in outcomes for o in outcomes[w] if o[0].startswith("SIG")}
            ),
            "outcomes": outcomes,
        },
    )


if __name__ == "__main__":
    main()
