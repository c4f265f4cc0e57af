"""Reuse (issue 28): a monthly climatology over 12 months in two regions, computed, asked
again, then extended by a 13th month that is generated, imported and catalogued.

In one run, from one warm process (the notebook's path, ``flows.cross_region_analysis
.analyze``), the whole sequence ``--repeat`` times (the machine is shared and noisy; each
key is the median over the sequences, each sequence's figures are kept beside):

1. ``full_s``: the 12-month request on empty partial stores;
2. ``cached_s``: the identical request again (served from the stored result);
3. a new month (2021-01) generated into us-west-2's repository, imported, refreshed;
4. ``incremental_s``: the request extended to 2021-01 (only the new month is read;
   us-east-1, with nothing new, is not visited: its merged partial is kept);
5. ``full_after_s``: the same 13-month request with ``reuse: false``.

The answers of (1, 2) and of (4, 5) must be equal to rtol 1e-12. The floor of the
incremental run is a plain read of the new month alone (``new_month_s``, the same
request over 2021-01 with reuse off): what remains above it is looking up 12 months of
stored partials and merging them. Usage:

    .venv/bin/python benchmarks/reuse.py [--resolution 1.0] [--repeat 3]

Own state (``.state/bench-reuse``) and ports (offset 2500): it does not disturb the other
benchmarks' stack. The new month is removed, and the stores emptied, at the start of
each sequence.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / ".state" / "bench-reuse"
os.environ.setdefault("PROXIMA_STATE_DIR", str(STATE))
os.environ.setdefault("PROXIMA_STACK_CONFIG", str(STATE / "stack.yaml"))
NEW_MONTH = "2021-01"


def _config_file(resolution: float) -> None:
    raw = yaml.safe_load((ROOT / "benchmarks" / "stack.yaml").read_text())
    for region, (start, end) in zip(
        raw["regions"], (("2020-01", "2020-06"), ("2020-07", "2020-12")), strict=True
    ):
        region["datasets"] = [d for d in region["datasets"] if d["name"] == "era5"]
        region["datasets"][0].update(resolution=resolution, start=start, end=end)
    STATE.mkdir(parents=True, exist_ok=True)
    Path(os.environ["PROXIMA_STACK_CONFIG"]).write_text(yaml.safe_dump(raw))


def _request(end: str, reuse: bool = True, start: str = "2020-01-01") -> dict:
    return {
        "selection": {"variable": "air_temperature", "dataset": "era5", "start": start, "end": end},
        "reduction": "mean",
        "over": "time",
        "group_by": "month",
        "reuse": reuse,
        "max_transfer_bytes": 2**30,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--resolution", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3, help="whole sequences (medians)")
    args = parser.parse_args()
    _config_file(args.resolution)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import common

    common.configure(offset=2500)
    import xarray as xr
    from machine import print_machine

    from flows.catalog_refresh import catalog_refresh
    from flows.cross_region_analysis import analyze
    from proxima import call_log, datagen, repository, s3
    from proxima.analysis.cf import data_variable
    from proxima.analysis.request import AnalysisRequest
    from proxima.platform import from_stack
    from proxima.reuse.results import INDEX_DIR
    from proxima.reuse.store import PartialStore

    info = print_machine()
    settings, config = common.up()
    common.ensure_era5(settings, config)
    platform = from_stack(config, settings)
    west = platform.region("us-west-2")
    new_month = west.dataset("era5").model_copy(update={"start": NEW_MONTH, "end": NEW_MONTH})
    year, month = NEW_MONTH.split("-")

    def afresh() -> None:
        """The archive without the new month, empty partial stores, no stored results."""
        with call_log.local_stand_in():
            client = s3.client(west)
            for obj in client.list_objects_v2(Bucket="era5-pds", Prefix=f"{year}/{month}/").get(
                "Contents", []
            ):
                client.delete_object(Bucket="era5-pds", Key=obj["Key"])
        for region in platform.regions:
            repository.import_region(region, Path(region.root))
            PartialStore.of_region(region.root).clear()
        shutil.rmtree(Path(platform.results_dir) / INDEX_DIR, ignore_errors=True)
        catalog_refresh()

    def timed(request: dict) -> tuple[dict, xr.DataArray, float]:
        t0 = time.perf_counter()
        summary = analyze(AnalysisRequest.model_validate(request))
        seconds = time.perf_counter() - t0
        with xr.open_dataset(summary["result_path"], engine="h5netcdf") as ds:
            return summary, data_variable(ds).load(), seconds

    def sequence() -> dict:
        """Full, cached, a month arrives, incremental, recompute, the month alone."""
        afresh()
        analyze(AnalysisRequest.model_validate(_request("2020-01-31", reuse=False)))  # warm-up
        for region in platform.regions:
            PartialStore.of_region(region.root).clear()
        full, full_answer, full_s = timed(_request("2020-12-31"))
        cached, cached_answer, cached_s = timed(_request("2020-12-31"))
        assert cached.get("served_from") and cached["bytes_read"] == 0, cached
        xr.testing.assert_allclose(cached_answer, full_answer, rtol=1e-12, atol=0)
        t0 = time.perf_counter()
        datagen.generate(west, new_month)
        repository.import_region(west, Path(west.root))
        catalog_refresh()
        # the month lands whole before it is asked for: the generator's ~200 MB of dirty
        # pages otherwise flush during the next run (an archive import is not the host's)
        os.sync()
        arrival_s = time.perf_counter() - t0
        extended = _request(f"{NEW_MONTH}-31")
        incremental, incremental_answer, incremental_s = timed(extended)
        after, after_answer, full_after_s = timed({**extended, "reuse": False})
        xr.testing.assert_allclose(incremental_answer, after_answer, rtol=1e-12, atol=0)
        alone, _, new_month_s = timed(_request(f"{NEW_MONTH}-31", False, f"{NEW_MONTH}-01"))
        run = {
            "full_s": full_s,
            "full_bytes_read": full["bytes_read"],
            "cached_s": cached_s,
            "incremental_s": incremental_s,
            "incremental_bytes_read": incremental["bytes_read"],
            "new_month_bytes": alone["bytes_read"],
            "new_month_s": new_month_s,
            "full_after_s": full_after_s,
            "full_after_bytes_read": after["bytes_read"],
            "incremental_ratio": incremental_s / full_after_s,
            "incremental_blocks": incremental["blocks"],
            "arrival_s": arrival_s,
            "incremental_regions": {r["region"]: r["seconds"] for r in incremental["regions"]},
            "incremental_not_visited": [r["region"] for r in incremental["regions"] if r["kept"]],
        }
        print(
            f"sequence: full {full_s:.2f} s, cached {cached_s:.3f} s, incremental "
            f"{incremental_s:.2f} s (regions {run['incremental_regions']}; not visited: "
            f"{run['incremental_not_visited']}), recompute "
            f"{full_after_s:.2f} s, the month alone {new_month_s:.2f} s: ratio "
            f"{run['incremental_ratio']:.3f}"
        )
        return run

    runs = [sequence() for _ in range(args.repeat)]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k.endswith("_s")}
    last = runs[-1]
    ratio = med["incremental_s"] / med["full_after_s"]
    print(f"\n| step (median of {len(runs)} sequences) | s | bytes read |\n|---|---|---|")
    for label, key, nbytes in (
        ("full (12 months, empty stores)", "full_s", "full_bytes_read"),
        ("the same request again (served from its result)", "cached_s", 0),
        ("+1 month: the 13-month request, reusing", "incremental_s", "incremental_bytes_read"),
        ("the 13-month request, reuse off", "full_after_s", "full_after_bytes_read"),
        ("the new month alone, reuse off (floor)", "new_month_s", "new_month_bytes"),
    ):
        shown = f"{last[nbytes]:,}" if isinstance(nbytes, str) else nbytes
        print(f"| {label} | {med[key]:.3f} | {shown} |")
    print(
        f"incremental_ratio = {med['incremental_s']:.2f} / {med['full_after_s']:.2f} = "
        f"{ratio:.3f} (each sequence's: {[round(r['incremental_ratio'], 3) for r in runs]}); "
        f"incremental read {last['incremental_bytes_read']:,} B vs the new month's "
        f"{last['new_month_bytes']:,} B; blocks {last['incremental_blocks']}"
    )
    assert all(r["incremental_bytes_read"] == r["new_month_bytes"] for r in runs)
    common.save(
        "reuse",
        {
            "machine": info,
            "resolution": args.resolution,
            **med,
            "incremental_bytes_read": last["incremental_bytes_read"],
            "new_month_bytes": last["new_month_bytes"],
            "full_after_bytes_read": last["full_after_bytes_read"],
            "incremental_ratio": ratio,
            "incremental_blocks": last["incremental_blocks"],
            "equal_rtol_1e-12": True,
            "sequences": runs,
        },
    )


if __name__ == "__main__":
    main()
