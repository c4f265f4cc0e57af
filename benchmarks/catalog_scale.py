"""Catalog throughput on >= 10,000 assets (full refresh and no-change refresh, assets/s)
and query latency p50/p95 on that catalog.

Fills us-east-1's `scale-pds` directory with N small NetCDF files (copies of one
generated file under distinct names), so extraction really opens N files.
Usage: .venv/bin/python benchmarks/catalog_scale.py [--assets 10000]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import common

common.configure()

from machine import print_machine  # noqa: E402

from proxima import opensearch, s3  # noqa: E402
from proxima.catalog.search import CatalogQuery, search  # noqa: E402
from proxima.datagen import era5  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--assets", type=int, default=10000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    info = print_machine()
    settings, config = common.up()
    region = config.region("us-east-1")
    ds = region.dataset("scale")
    s3.ensure_bucket(s3.client(region), ds.bucket, region.name)
    root = settings.region_root(region.name) / ds.bucket
    shutil.rmtree(root, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        sample = Path(tmp) / "sample.nc"
        era5.write_month(sample, 2020, 1, "air_temperature_at_2_metres", ds.resolution, 1)
        for i in range(args.assets):
            target = root / f"{2000 + i // 12 % 100}" / f"{i:05d}" / "data" / "t2m.nc"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(sample, target)
    from flows.catalog_refresh import catalog_refresh

    t0 = time.perf_counter()
    full = catalog_refresh(regions=["us-east-1"], full_rebuild=True)
    full_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = catalog_refresh(regions=["us-east-1"])
    again_s = time.perf_counter() - t0
    n = sum(r["new"] for r in full["regions"])
    assert all(r["new"] + r["changed"] + r["deleted"] == 0 for r in again["regions"])
    client = opensearch.connect(config.opensearch.endpoint)
    alias = config.opensearch.alias
    total = client.count(index=alias)["count"]
    queries = [
        CatalogQuery(
            variable="air_temperature",
            region="us-east-1",
            dataset="scale",
            bbox=[170, -10, -170, 10],
        ),
        CatalogQuery(
            variable="air_temperature",
            start=datetime(2020, 1, 10),
            end=datetime(2020, 1, 12),
            dataset="era5",
        ),
        CatalogQuery(text="synthetic", dataset="era5", region="us-west-2"),
    ]
    latencies: dict[str, list[float]] = {"small result": [], "listing 10k+": []}
    for i in range(args.queries):
        q = queries[1 + i % 2]
        t0 = time.perf_counter()
        search(client, alias, q)
        latencies["small result"].append((time.perf_counter() - t0) * 1000)
    for _ in range(max(args.queries // 20, 3)):
        t0 = time.perf_counter()
        res = search(client, alias, queries[0])
        latencies["listing 10k+"].append((time.perf_counter() - t0) * 1000)
    assert res.total >= args.assets

    def pct(xs, p):
        return statistics.quantiles(xs, n=100)[p - 1]

    print(f"\ncatalog documents: {total}; scale assets: {n}")
    print("| operation | seconds | assets/s |")
    print("|---|---|---|")
    print(f"| full refresh (new index + alias swap) | {full_s:.1f} | {n / full_s:.0f} |")
    print(f"| no-change refresh | {again_s:.1f} | {n / again_s:.0f} |")
    print("| query | p50 ms | p95 ms | runs |")
    print("|---|---|---|---|")
    for name, xs in latencies.items():
        print(f"| {name} | {statistics.median(xs):.1f} | {pct(xs, 95):.1f} | {len(xs)} |")
    common.save(
        "catalog_scale",
        {
            "machine": info,
            "assets": n,
            "full_s": full_s,
            "nochange_s": again_s,
            "latency_ms": latencies,
        },
    )
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
