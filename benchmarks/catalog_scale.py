"""Catalog throughput on N assets: the first refresh (every header read), a full
refresh (a rebuild of the unchanged archive: documents copied inside OpenSearch),
incremental (1 % of the files changed) and no-change refresh, in assets/s; query
latency p50/p95 on that catalog; and, in the same run, the floors: every header read
with the library's extractor in as many processes as cores, the documents
bulk-written to a scratch index from one process, and copied by one ``_reindex``.

Fills us-east-1's `scale-pds` directory with N small NetCDF files (copies of one
generated file under distinct names), so extraction really opens N files.
Usage: cd benchmarks && ../.venv/bin/python catalog_scale.py [--assets 10000]
Writes results/catalog_scale.json: full_assets_per_s, cold_assets_per_s (the first
refresh), incremental_assets_per_s,
nochange_assets_per_s, query_p50_ms, query_p95_ms, floor_extract_assets_per_s,
floor_extract_netcdf4_python_assets_per_s (the same with every header through
netCDF4-python's ``Dataset``, the reader before issue 29), floor_open_assets_per_s (each
file only opened and closed in netCDF-C, as many processes as cores: the header read's
floor), floor_bulk_docs_per_s, floor_copy_docs_per_s (one ``_reindex`` of the region's documents),
floor_nochange_walk_assets_per_s (the no-change refresh's lean walk of the tree alone),
stac_query_p50_ms and stac_query_p95_ms (the same small questions through the STAC API,
each answer checked equal to the direct one) beside direct_query_p95_ms (those questions
asked directly, interleaved with the STAC ones).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import statistics
import time
from datetime import datetime
from pathlib import Path

import common

common.configure()

from machine import print_machine  # noqa: E402

from proxima import opensearch  # noqa: E402
from proxima.catalog import header, refresh  # noqa: E402
from proxima.catalog.extract import extract  # noqa: E402
from proxima.catalog.model import MAPPING  # noqa: E402
from proxima.catalog.search import CatalogQuery, search  # noqa: E402


def _extract_one(args: tuple[str, str]) -> dict:
    root, rel = args
    return extract(root, rel, "us-east-1", "scale", "scale-pds")


def _open_one(args: tuple[str, str]) -> int:
    """Open and close the file in netCDF-C, nothing more: the header read's floor."""
    root, rel = args
    lib, ncid = header._library(), ctypes.c_int()
    if lib.nc_open(os.path.join(root, rel).encode(), 0, ncid) != 0:
        raise OSError(rel)
    return lib.nc_close(ncid.value)


def _without_c_path() -> None:
    header._library = lambda: None  # every header through netCDF4-python's Dataset


def _in_pool(func, root: str, files: list[Path], initializer=None) -> tuple[float, list]:
    """``func`` over every file, one process per core: (files per second, results)."""
    from multiprocessing import Pool

    rels = [(root, p.relative_to(root).as_posix()) for p in files]
    with Pool(os.cpu_count(), initializer=initializer) as pool:
        pool.map(func, rels[: os.cpu_count() or 1])  # imports and libraries loaded
        t0 = time.perf_counter()
        out = pool.map(func, rels, chunksize=200)
        seconds = time.perf_counter() - t0
    return len(out) / seconds, out


def _floor_bulk(client, docs: list[dict]) -> float:
    """The same documents bulk-written to a scratch index (refreshed once at the end)."""
    scratch = "proxima-floor-scratch"
    client.indices.delete(index=scratch, ignore_unavailable=True)
    opensearch.create_index(client, scratch, MAPPING)
    try:
        t0 = time.perf_counter()
        opensearch.bulk(client, refresh.index_actions(scratch, docs), refresh=False)
        client.indices.refresh(index=scratch)
        return len(docs) / (time.perf_counter() - t0)
    finally:
        client.indices.delete(index=scratch, ignore_unavailable=True)


def _floor_copy(client, alias: str) -> float:
    """One server-side ``_reindex`` of the region's documents into a scratch index (run
    as a task and polled: its synchronous answer carries a header per batch).
    """
    scratch = "scale-floor-copy"
    client.indices.delete(index=scratch, ignore_unavailable=True)
    opensearch.create_index(client, scratch, MAPPING)
    try:
        t0 = time.perf_counter()
        task = client.reindex(
            body={
                "source": {"index": alias, "query": {"term": {"dataset": "scale"}}, "size": 1000},
                "dest": {"index": scratch, "version_type": "external"},
            },
            wait_for_completion=False,
        )["task"]
        while not client.tasks.get(task_id=task)["completed"]:
            time.sleep(0.1)
        client.indices.refresh(index=scratch)
        seconds = time.perf_counter() - t0
        return client.count(index=scratch)["count"] / seconds
    finally:
        client.indices.delete(index=scratch, ignore_unavailable=True)


def pct(xs: list[float], p: int) -> float:
    """The p-th percentile of ``xs``."""
    return statistics.quantiles(xs, n=100)[p - 1]


def _stac_body(query: CatalogQuery) -> dict:
    """The STAC search asking what ``query`` asks (variable, period, dataset, region)."""
    args = []
    if query.variable:
        names = [query.variable]
        args.append(
            {
                "op": "or",
                "args": [
                    {"op": "a_overlaps", "args": [{"property": "proxima:variables"}, names]},
                    {"op": "a_overlaps", "args": [{"property": "proxima:standard_names"}, names]},
                ],
            }
        )
    if query.region:
        args.append({"op": "=", "args": [{"property": "proxima:region"}, query.region]})
    body: dict = {"limit": 1000, "collections": [query.dataset]}
    if query.start and query.end:
        body["datetime"] = f"{query.start.isoformat()}Z/{query.end.isoformat()}Z"
    if args:
        body["filter"] = {"op": "and", "args": args}
    return body


def _stac_latencies(url: str, client, alias: str, queries: list, runs: int) -> dict:
    """The same small questions, direct and through the STAC API, interleaved."""
    import httpx

    out: dict[str, list[float]] = {"direct, same questions": [], "STAC API, same questions": []}
    with httpx.Client(base_url=url, timeout=30) as http:
        for i in range(runs):
            q = queries[i % len(queries)]
            t0 = time.perf_counter()
            direct = search(client, alias, q)
            out["direct, same questions"].append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            page = http.post("/search", json=_stac_body(q)).raise_for_status().json()
            out["STAC API, same questions"].append((time.perf_counter() - t0) * 1000)
            timed = {a["id"] for a in direct.assets if a.get("time")}
            assert {f["id"] for f in page["features"]} == timed, q
    return out


def _queries_only(info: dict, settings, config, runs: int) -> None:
    client = opensearch.connect(config.opensearch.endpoint)
    alias = config.opensearch.alias
    questions = [
        CatalogQuery(
            variable="air_temperature",
            start=datetime(2020, 5, 10),
            end=datetime(2020, 5, 12),
            dataset="era5",
        ),
        CatalogQuery(variable="air_temperature", dataset="era5", region="us-west-2"),
    ]
    if not search(client, alias, questions[1]).assets:  # us-west-2's small ERA5 archive
        common.ensure_era5(settings, config, regions=["us-west-2"])
        from flows.catalog_refresh import catalog_refresh

        catalog_refresh(regions=["us-west-2"])
    assert all(search(client, alias, q).assets for q in questions)
    total = client.count(index=alias)["count"]
    lat = _stac_latencies(config.stac.url, client, alias, questions, runs)
    direct, stac = lat["direct, same questions"], lat["STAC API, same questions"]

    print(f"\ncatalog documents: {total}")
    print("| query | p50 ms | p95 ms | runs |")
    print("|---|---|---|---|")
    for name, xs in lat.items():
        print(f"| {name} | {statistics.median(xs):.1f} | {pct(xs, 95):.1f} | {len(xs)} |")
    print(f"STAC p95 / direct p95 = {pct(stac, 95) / pct(direct, 95):.2f}")
    common.save(
        "catalog_scale",
        {
            "machine": info,
            "queries_only": True,
            "catalog_documents": total,
            "query_p50_ms": statistics.median(direct),
            "query_p95_ms": pct(direct, 95),
            "direct_query_p95_ms": pct(direct, 95),
            "stac_query_p50_ms": statistics.median(stac),
            "stac_query_p95_ms": pct(stac, 95),
            "latency_ms": lat,
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--assets", type=int, default=10000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--queries-only",
        action="store_true",
        help="only the query latencies (direct and STAC), on the catalog as a full run left it",
    )
    args = parser.parse_args()
    info = print_machine()
    settings, config = common.up()
    if args.queries_only:
        _queries_only(info, settings, config, args.queries)
        return
    region = config.region("us-east-1")
    root = common.fill_scale(settings, config, args.assets)
    from flows.catalog_refresh import catalog_refresh

    t0 = time.perf_counter()  # every header read (the files are new to this index)
    cold = catalog_refresh(regions=["us-east-1"])
    cold_s = time.perf_counter() - t0
    read = sum(r["new"] + r["changed"] for r in cold["regions"])
    print(f"  first refresh: {read} read in {cold_s:.1f} s", flush=True)
    t0 = time.perf_counter()
    full = catalog_refresh(regions=["us-east-1"], full_rebuild=True)
    full_s = time.perf_counter() - t0
    n = sum(r["new"] + r["changed"] + r["copied"] for r in full["regions"])
    copied = sum(r["copied"] for r in full["regions"])
    assert read >= args.assets and copied == n, (read, copied, n)
    print(f"  full rebuild: {n} assets, {copied} copied, in {full_s:.1f} s", flush=True)
    files = sorted(root.rglob("t2m.nc"))
    for path in files[::100]:
        os.utime(path)  # 1 % changed
    t0 = time.perf_counter()
    incremental = catalog_refresh(regions=["us-east-1"])
    incremental_s = time.perf_counter() - t0
    changed = sum(r["changed"] for r in incremental["regions"])
    print(f"  incremental: {changed} changed in {incremental_s:.1f} s", flush=True)
    t0 = time.perf_counter()
    again = catalog_refresh(regions=["us-east-1"])
    again_s = time.perf_counter() - t0
    assert all(r["new"] + r["changed"] + r["deleted"] == 0 for r in again["regions"])
    assert all(r["short_circuit"] for r in again["regions"])
    print(f"  no-change: {again_s:.1f} s", flush=True)
    from proxima.platform import from_stack

    east = from_stack(config, settings).region("us-east-1")
    t0 = time.perf_counter()  # the no-change floor: the lean walk alone, in-process
    refresh.fingerprint(east, east.root)
    walk_rate = n / (time.perf_counter() - t0)
    client = opensearch.connect(config.opensearch.endpoint)
    here = str(settings.region_root(region.name))
    open_rate, _ = _in_pool(_open_one, here, files)
    extract_rate, docs = _in_pool(_extract_one, here, files)
    python_rate, _ = _in_pool(_extract_one, here, files, initializer=_without_c_path)
    bulk_rate = _floor_bulk(client, docs)
    copy_rate = _floor_copy(client, config.opensearch.alias)
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
        CatalogQuery(variable="precipitation_amount", dataset="era5", region="us-west-2"),
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
    stac = _stac_latencies(config.stac.url, client, alias, [queries[1], queries[3]], args.queries)
    latencies |= stac

    print(f"\ncatalog documents: {total}; scale assets: {n}")
    print("| operation | seconds | assets/s |")
    print("|---|---|---|")
    print(f"| first refresh ({read} headers read) | {cold_s:.1f} | {read / cold_s:.0f} |")
    print(
        f"| full refresh (new index + alias swap, {copied} copied) | {full_s:.1f} | "
        f"{n / full_s:.0f} |"
    )
    print(
        f"| incremental refresh ({changed} changed) | {incremental_s:.1f} | "
        f"{n / incremental_s:.0f} |"
    )
    print(f"| no-change refresh | {again_s:.1f} | {n / again_s:.0f} |")
    print(f"| floor: netCDF-C open + close in {os.cpu_count()} processes | | {open_rate:.0f} |")
    print(f"| floor: extract() in {os.cpu_count()} processes | | {extract_rate:.0f} |")
    print(f"| the same, headers through netCDF4-python | | {python_rate:.0f} |")
    print(f"| floor: the no-change fingerprint walk, one process | | {walk_rate:.0f} |")
    print(f"| floor: bulk of the documents, one process | | {bulk_rate:.0f} |")
    print(f"| floor: one _reindex of the region's documents | | {copy_rate:.0f} |")
    print("| query | p50 ms | p95 ms | runs |")
    print("|---|---|---|---|")
    for name, xs in latencies.items():
        print(f"| {name} | {statistics.median(xs):.1f} | {pct(xs, 95):.1f} | {len(xs)} |")
    common.save(
        "catalog_scale",
        {
            "machine": info,
            "assets": n,
            "cold_s": cold_s,
            "cold_read": read,
            "cold_assets_per_s": read / cold_s,
            "full_s": full_s,
            "full_copied": copied,
            "incremental_s": incremental_s,
            "incremental_changed": changed,
            "nochange_s": again_s,
            "full_assets_per_s": n / full_s,
            "incremental_assets_per_s": n / incremental_s,
            "nochange_assets_per_s": n / again_s,
            "query_p50_ms": statistics.median(latencies["small result"]),
            "query_p95_ms": pct(latencies["small result"], 95),
            "direct_query_p95_ms": pct(latencies["direct, same questions"], 95),
            "stac_query_p50_ms": statistics.median(latencies["STAC API, same questions"]),
            "stac_query_p95_ms": pct(latencies["STAC API, same questions"], 95),
            "floor_extract_assets_per_s": extract_rate,
            "floor_extract_netcdf4_python_assets_per_s": python_rate,
            "floor_open_assets_per_s": open_rate,
            "floor_bulk_docs_per_s": bulk_rate,
            "floor_copy_docs_per_s": copy_rate,
            "floor_nochange_walk_assets_per_s": walk_rate,
            "latency_ms": latencies,
        },
    )
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
