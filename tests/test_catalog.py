"""The catalog on real OpenSearch: complete, correct searches, incremental refresh,
quarantine, no empty reads during rebuilds, nothing lost on errors."""

import os
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from flows.catalog_refresh import catalog_refresh
from proxima import datagen, opensearch, s3
from proxima.catalog import refresh
from proxima.catalog.geo import wrap180
from proxima.catalog.model import MAPPING, SCHEMA_VERSION, asset_id
from proxima.catalog.search import CatalogQuery, facet_counts, search
from proxima.datagen import era5
from proxima.platform import from_stack
from tests.cli import proxima

CFT = xr.coders.CFDatetimeCoder(use_cftime=True)


def _all_assets(config, settings):
    out = []
    for region in from_stack(config, settings).regions:
        for cand in refresh.scan_region(region, region.root):
            out.append((region.name, cand))
    return out


def _truth(settings, region, cand):
    """Coverage read from the file itself with xarray (independent of the extractor)."""
    path = settings.region_root(region) / cand.relpath
    ds = (
        xr.open_zarr(path, decode_times=CFT)
        if path.is_dir()
        else xr.open_dataset(path, engine="h5netcdf", decode_times=CFT)
    )
    tname = next(d for d in ds.dims if d.startswith("time"))
    times = ds[tname].values
    lons = np.array([wrap180(v) for v in ds.lon.values])
    return {
        "start": (times[0].year, times[0].month, times[0].day),
        "end": (times[-1].year, times[-1].month, times[-1].day),
        "lat": (float(ds.lat.min()), float(ds.lat.max())),
        "lons": lons,
        "vars": {v: ds[v].attrs.get("standard_name") for v in ds.data_vars},
        "attrs": dict(ds.attrs),
        "dataset": cand.dataset,
    }


def _ids(result):
    return {a["id"] for a in result.assets}


def test_one_document_per_asset(catalog, data, settings, os_client):
    assets = _all_assets(data, settings)
    alias = data.opensearch.alias
    everything = search(os_client, alias, CatalogQuery(include_quarantined=True))
    assert _ids(everything) == {c.id for _, c in assets}
    assert everything.total == len(assets)
    assert sum(r["new"] + r["unchanged"] + r["changed"] for r in catalog["regions"]) >= len(assets)


def test_searches_match_ground_truth(catalog, data, settings, os_client):
    assets = _all_assets(data, settings)
    truth = {c.id: _truth(settings, region, c) for region, c in assets}
    alias = data.opensearch.alias

    def expect(pred):
        return {i for i, t in truth.items() if pred(t)}

    # time overlap: 2020-01-20 .. 2020-03-05
    q = CatalogQuery(start=datetime(2020, 1, 20), end=datetime(2020, 3, 5, 23, 59))
    assert _ids(search(os_client, alias, q)) == expect(
        lambda t: t["start"] <= (2020, 3, 5) and t["end"] >= (2020, 1, 20)
    )

    def in_box(t, w, s, e, n):
        lons = t["lons"]
        lon_ok = ((lons >= w) & (lons <= e)) if w <= e else ((lons >= w) | (lons <= e))
        return bool(lon_ok.any()) and t["lat"][0] <= n and t["lat"][1] >= s

    # a box across the antimeridian: the Pacific grid and the global ones, not Europe
    box = [175.0, -5.0, -175.0, 5.0]
    got = _ids(search(os_client, alias, CatalogQuery(bbox=box)))
    assert got == expect(lambda t: in_box(t, *box))
    assert any(truth[i]["dataset"] == "era5-pacific" for i in got)
    assert not any(truth[i]["dataset"] == "era5-europe" for i in got)
    box = [0.0, 40.0, 10.0, 50.0]
    got = _ids(search(os_client, alias, CatalogQuery(bbox=box)))
    assert got == expect(lambda t: in_box(t, *box))
    assert not any(truth[i]["dataset"] == "era5-pacific" for i in got)

    # facets and CF standard names
    q = CatalogQuery(variable="air_temperature", facets={"experiment_id": "ssp585"})
    assert _ids(search(os_client, alias, q)) == expect(
        lambda t: (
            "air_temperature" in t["vars"].values() and t["attrs"].get("experiment_id") == "ssp585"
        )
    )
    q = CatalogQuery(variable="precipitation_flux")
    assert _ids(search(os_client, alias, q)) == expect(
        lambda t: "precipitation_flux" in t["vars"].values()
    )
    assert len(_ids(search(os_client, alias, q))) == 4  # 2 models x (historical, ssp585)
    counts = facet_counts(os_client, alias, CatalogQuery(variable="tas"))
    assert counts["experiment_id"] == {"historical": 2, "ssp585": 2}
    assert counts["region"] == {"us-west-2": 4}


def test_user_text_is_matched_not_parsed(catalog, data, os_client):
    alias = data.opensearch.alias
    hits = search(os_client, alias, CatalogQuery(text="UKESM1-0-LL")).total
    assert hits == 4
    # query_string syntax must be inert, not an error or a match-all
    assert search(os_client, alias, CatalogQuery(text='*:* OR "a')).total == 0


def _put_era5(stack, region_name, bucket, key, seed):
    region = stack.region(region_name)
    y, m = int(key.split("/")[0]), int(key.split("/")[1])
    var = key.rsplit("/", 1)[1].removesuffix(".nc")
    ds = region.dataset(next(d.name for d in region.datasets if d.bucket == bucket))
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.nc"
        era5.write_month(path, y, m, var, ds.resolution, seed, area=ds.area)
        s3.client(region).upload_file(str(path), bucket, key)


def test_incremental_refresh_follows_the_file_system(catalog, data, settings, os_client):
    region, bucket = "us-west-2", "era5-europe"
    client = s3.client(data.region(region))
    original = "2020/03/data/air_temperature_at_2_metres.nc"
    added = "2020/04/data/air_temperature_at_2_metres.nc"
    try:
        _put_era5(data, region, bucket, added, 42)
        _put_era5(data, region, bucket, original, 7)  # same key, new content
        out = catalog_refresh(regions=[region])["regions"][0]
        assert (out["new"], out["changed"], out["deleted"]) == (1, 1, 0)
        again = catalog_refresh(regions=[region])["regions"][0]
        assert (again["new"], again["changed"], again["deleted"]) == (0, 0, 0)
        # nothing changed: decided from the tree's fingerprint, before any scan or diff
        assert again["short_circuit"] is True
        assert again["unchanged"] == _region_documents(os_client, data, region)
        client.delete_object(Bucket=bucket, Key=added)
        gone = catalog_refresh(regions=[region])["regions"][0]
        assert (gone["new"], gone["changed"], gone["deleted"]) == (0, 0, 1)
        assets = _all_assets(data, settings)
        everything = search(
            os_client, data.opensearch.alias, CatalogQuery(include_quarantined=True)
        )
        assert _ids(everything) == {c.id for _, c in assets}
    finally:
        client.delete_object(Bucket=bucket, Key=added)
        _put_era5(data, region, bucket, original, 42)
        catalog_refresh(regions=[region])


def _region_documents(os_client, data, region: str) -> int:
    query = {"query": {"term": {"region": region}}}
    return int(os_client.count(index=data.opensearch.alias, body=query)["count"])


def test_a_no_change_refresh_stops_early_unless_the_catalog_lost_documents(
    catalog, data, settings, os_client
):
    region = "us-west-2"
    first = catalog_refresh(regions=[region])["regions"][0]
    documents = _region_documents(os_client, data, region)
    quiet = catalog_refresh(regions=[region])["regions"][0]
    assert quiet["short_circuit"] is True and quiet["unchanged"] == documents
    assert (quiet["new"], quiet["changed"], quiet["deleted"]) == (0, 0, 0)
    # documents removed behind the refresh's back: the tree is unchanged, the catalog
    # is not what the last refresh left, so the refresh runs in full and restores them
    victim = next(iter(_ids(search(os_client, data.opensearch.alias, CatalogQuery(region=region)))))
    # deleted at its own external version: a plain delete leaves a tombstone one version
    # newer, which supersedes the re-extraction until OpenSearch forgets it (60 s)
    version = os_client.get(index=data.opensearch.alias, id=victim)["_version"]
    os_client.delete(
        index=data.opensearch.alias,
        id=victim,
        version=version,
        version_type="external_gte",
        refresh=True,
    )
    repaired = catalog_refresh(regions=[region])["regions"][0]
    assert repaired["short_circuit"] is False and repaired["new"] == 1
    assert _region_documents(os_client, data, region) == documents
    assert first["region"] == region


def test_a_root_the_refresh_cannot_write_only_loses_the_short_circuit(
    catalog, data, os_client, tmp_path
):
    read_only = tmp_path / "a-file-not-a-directory"  # (root ignores permission bits)
    read_only.write_text("")
    alias = data.opensearch.alias
    why = refresh.remember_refresh(os_client, alias, "us-west-2", str(read_only), "d")
    assert why and "no snapshot" in why
    assert (
        refresh.unchanged_since_last_refresh(os_client, alias, "us-west-2", str(read_only), "d")
        is None
    )


def test_the_tree_fingerprint_sees_every_change_the_scan_would(data, settings, tmp_path):
    region = from_stack(data, settings).region("us-west-2")
    bucket = tmp_path / region.datasets[0].bucket
    store = bucket / "2020" / "store.zarr"
    store.mkdir(parents=True)
    (store / ".zmetadata").write_text("{}")
    nc = bucket / "2020" / "a.nc"
    nc.write_bytes(b"x" * 10)
    seen = {refresh.fingerprint(region, str(tmp_path))}

    def changed() -> bool:
        now = refresh.fingerprint(region, str(tmp_path))
        new = now not in seen
        seen.add(now)
        return new

    assert not changed()  # deterministic
    (bucket / ".proxima-import.json").write_text("{}")  # the import's manifest: ignored
    assert not changed()
    os.utime(nc, ns=(1, 1))
    assert changed()  # touched
    nc.write_bytes(b"y" * 11)
    assert changed()  # rewritten
    (store / ".zmetadata").write_text('{"zarr_consolidated_format": 1}')
    assert changed()  # a hidden file inside a Zarr store
    (bucket / "b.nc").symlink_to(bucket / "nowhere.nc")
    assert changed()  # a dangling link
    (bucket / "b.nc").unlink()
    nc.unlink()
    assert changed()  # removed


@pytest.mark.reliability
def test_corrupt_assets_are_quarantined_not_fatal(catalog, data, settings, os_client):
    root = settings.region_root("us-east-1") / "era5-pds" / "junk"
    root.mkdir(parents=True, exist_ok=True)
    good = next((settings.region_root("us-east-1") / "era5-pds").rglob("*.nc"))
    (root / "zero.nc").write_bytes(b"")
    (root / "truncated.nc").write_bytes(good.read_bytes()[:2000])
    (root / "junk.nc").write_bytes(b"this is not HDF5" * 100)
    store = root / "broken.zarr"
    store.mkdir(exist_ok=True)
    (store / ".zgroup").write_text('{"zarr_format": 2}')
    (store / ".zmetadata").write_text("{not json")
    try:
        out = catalog_refresh(regions=["us-east-1"])["regions"][0]
        assert out["quarantined"] == 4
        assert out["new"] == 4
        q = CatalogQuery(include_quarantined=True, region="us-east-1")
        bad = [a for a in search(os_client, data.opensearch.alias, q).assets if a["quarantined"]]
        assert {Path(a["path"]).name for a in bad} == {
            "zero.nc",
            "truncated.nc",
            "junk.nc",
            "broken.zarr",
        }
        assert all(a["error_class"] and a["error_message"] for a in bad)
        normal = search(os_client, data.opensearch.alias, CatalogQuery(region="us-east-1"))
        assert not any(a["quarantined"] for a in normal.assets)
    finally:
        import shutil

        shutil.rmtree(root)
        out = catalog_refresh(regions=["us-east-1"])["regions"][0]
        assert out["deleted"] == 4


def test_a_full_rebuild_copies_unchanged_documents_and_reads_only_the_rest(
    catalog, data, settings, os_client
):
    region = "us-west-2"
    alias = data.opensearch.alias
    root = settings.region_root(region)
    junk = root / "era5-europe" / "junk" / "junk.nc"
    junk.parent.mkdir(parents=True, exist_ok=True)
    junk.write_bytes(b"this is not HDF5" * 100)  # quarantined: a rebuild tries it again
    try:
        catalog_refresh(regions=[region])
        query = {"term": {"region": region}}
        before = {h["_id"]: h["_source"] for h in opensearch.scan(os_client, alias, query)}
        readable = sorted(i for i, doc in before.items() if not doc["quarantined"])
        stale, touched = readable[0], readable[1]
        # written by an older catalog version: read again, never copied
        os_client.update(index=alias, id=stale, body={"doc": {"catalog_version": 0}}, refresh=True)
        os.utime(root / before[touched]["path"])  # changed since the last refresh
        out = catalog_refresh(regions=[region], full_rebuild=True)["regions"][0]
        after = {h["_id"]: h["_source"] for h in opensearch.scan(os_client, alias, query)}
        assert set(after) == set(before)
        assert (out["new"], out["changed"], out["copied"]) == (2, 1, len(before) - 3)
        reread = {stale, touched, asset_id(region, junk.relative_to(root).as_posix())}
        for id_, doc in after.items():
            if id_ in reread:
                assert doc["indexed_at"] > before[id_]["indexed_at"], doc["path"]
            else:  # copied inside OpenSearch: the very document the old index held
                assert doc == before[id_]
        assert after[stale]["catalog_version"] == SCHEMA_VERSION
        assert after[touched]["mtime_ns"] > before[touched]["mtime_ns"]
    finally:
        junk.unlink(missing_ok=True)
        catalog_refresh(regions=[region])


@pytest.mark.reliability
def test_reader_never_sees_an_empty_catalog_during_a_full_rebuild(catalog, data, os_client):
    alias = data.opensearch.alias
    expected = os_client.count(index=alias)["count"]
    seen: list[int] = []
    errors: list[str] = []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                seen.append(os_client.count(index=alias)["count"])
            except Exception as exc:
                errors.append(repr(exc))
            time.sleep(0.02)

    orphan = f"{alias}-v00000000000000000000"  # as if an earlier rebuild had been killed
    opensearch.create_index(os_client, orphan, MAPPING)
    thread = threading.Thread(target=reader)
    thread.start()
    try:
        before = opensearch.alias_target(os_client, alias)
        result = catalog_refresh(full_rebuild=True)
    finally:
        stop.set()
        thread.join()
    assert result["index"] != before
    assert opensearch.alias_target(os_client, alias) == result["index"]
    assert not os_client.indices.exists(index=before)
    assert not os_client.indices.exists(index=orphan)
    assert len(seen) > 10 and not errors
    assert min(seen) == expected == max(seen)


@pytest.mark.reliability
def test_bulk_reports_mapping_violations_and_keeps_the_rest(stack, os_client):
    index = opensearch.new_index_name("bulk-test")
    opensearch.create_index(os_client, index, MAPPING)
    good = {"_index": index, "_id": "good", "_source": {"region": "x", "size": 1}}
    bad = {"_index": index, "_id": "bad", "_source": {"region": "x", "size": "not a number"}}
    extra = {"_index": index, "_id": "extra", "_source": {"unknown_field": 1}}
    report = opensearch.bulk(os_client, [good, bad, extra])
    assert report.ok == 1
    assert {e["id"] for e in report.errors} == {"bad", "extra"}
    assert os_client.count(index=index)["count"] == 1
    os_client.indices.delete(index=index)


@pytest.mark.reliability
@pytest.mark.parametrize("status", [429, 500, 503])
def test_bulk_retries_injected_errors_and_loses_nothing(stack, status):
    from tests.faultproxy import FaultProxy

    with FaultProxy(stack.opensearch.endpoint, fail_first=3, status=status) as proxy:
        client = opensearch.connect(proxy.url)
        index = opensearch.new_index_name("retry-test")
        opensearch.create_index(client, index, MAPPING)
        docs = [
            {"_index": index, "_id": str(i), "_source": {"region": "r", "size": i}}
            for i in range(1200)
        ]
        report = opensearch.bulk(client, docs, chunk_size=500, initial_backoff=0.05)
        assert proxy.injected == 3
        assert report.ok == 1200 and not report.errors
        if status == 500:  # 429: streaming_bulk retries; 503: the transport; 500: our loop
            assert report.retries == 3
        assert client.count(index=index)["count"] == 1200
        client.indices.delete(index=index)


def test_generation_is_seeded(stack):
    ds = stack.region("us-east-1").dataset("era5")
    assert datagen.estimate_bytes(ds) == sum(24 * d * 19 * 36 * 4 * 2 for d in (31, 29))


@pytest.mark.reliability
def test_older_extraction_never_overwrites_newer(stack, os_client):
    """Two refreshes of one region racing: the write with the older file mtime loses."""
    index = opensearch.new_index_name("race-test")
    opensearch.create_index(os_client, index, MAPPING)
    newer = {"id": "a1", "region": "r", "path": "x.nc", "size": 2, "mtime_ns": 2_000}
    older = {"id": "a1", "region": "r", "path": "x.nc", "size": 1, "mtime_ns": 1_000}
    assert opensearch.bulk(os_client, refresh.index_actions(index, [newer])).ok == 1
    report = opensearch.bulk(os_client, refresh.index_actions(index, [older]))
    assert report.ok == 1 and not report.errors  # a 409 here is the guard working
    doc = os_client.get(index=index, id="a1")
    assert doc["_source"]["size"] == 2 and doc["_version"] == 2_000
    os_client.indices.delete(index=index)


def test_copying_documents_keeps_versions_and_never_overwrites_newer(stack, os_client, monkeypatch):
    source, dest = (opensearch.new_index_name(f"copy-{side}") for side in ("from", "to"))
    for index in (source, dest):
        opensearch.create_index(os_client, index, MAPPING)
    docs = [
        {"id": f"d{i}", "region": "r", "path": f"{i}.nc", "size": i, "mtime_ns": 1_000 + i}
        for i in range(20)
    ]
    assert opensearch.bulk(os_client, refresh.index_actions(source, docs)).ok == 20
    newer = {**docs[0], "size": 99, "mtime_ns": 5_000}  # re-read since the old index
    assert opensearch.bulk(os_client, refresh.index_actions(dest, [newer])).ok == 1
    monkeypatch.setattr(opensearch, "COPY_IDS", 7)  # several requests, several batches
    monkeypatch.setattr(opensearch, "COPY_BATCH", 3)
    ids = [d["id"] for d in docs]
    assert opensearch.copy_documents(os_client, source, dest, ids) == 20
    assert opensearch.copy_documents(os_client, source, dest, ids) == 20  # a retry: same
    os_client.indices.refresh(index=dest)
    assert os_client.count(index=dest)["count"] == 20
    kept = os_client.get(index=dest, id="d0")
    assert kept["_source"]["size"] == 99 and kept["_version"] == 5_000
    copied = os_client.get(index=dest, id="d7")
    assert copied["_source"]["size"] == 7 and copied["_version"] == 1_007
    os_client.indices.delete(index=f"{source},{dest}")


def test_a_rebuild_fills_without_replicas_and_refreshes_then_restores_them(stack, os_client):
    alias = "replicas-test"
    first = opensearch.ensure_alias(os_client, alias, MAPPING, replicas=1)
    target, _ = refresh.prepare_rebuild(os_client, alias, [], replicas=1)

    def settings(index: str) -> tuple[str, str]:
        got = os_client.indices.get_settings(index=index)[index]["settings"]["index"]
        return got["number_of_replicas"], got["refresh_interval"]

    assert settings(first)[0] == "1"
    assert settings(target) == ("0", "-1")  # nobody reads it until the swap
    assert refresh.finish_rebuild(os_client, alias, target, True, replicas=1) == first
    assert settings(target) == ("1", opensearch.SETTINGS["refresh_interval"])
    assert opensearch.alias_target(os_client, alias) == target
    os_client.indices.delete(index=target)


def test_the_cli_refresh_shows_each_region_and_its_progress(catalog, stack, settings):
    """`proxima catalog refresh` follows its run: each regional subflow by name, and the
    header extraction's progress (files done of total, bytes read)."""
    import os

    root = settings.region_root("us-east-1")
    changed = sorted(root.glob("era5-pds/2020/01/data/*.nc"))
    for path in changed:
        os.utime(path)
    out = proxima(stack, settings, "catalog", "refresh", "--region", "us-east-1")
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    assert "refresh-us-east-1: Running" in lines and "refresh-us-east-1: Completed" in lines
    assert f"us-east-1: {len(changed)}/{len(changed)} headers" in out.stderr, out.stderr


def test_the_headers_task_gets_its_candidates_as_one_value_prefect_does_not_walk():
    """Prefect walks and rebuilds every list and dataclass in a task's parameters
    looking for futures (~2 s over 10,000 candidates before the parcel); a parcel is
    one leaf, handed over as it is.
    """
    from prefect.utilities.collections import visit_collection

    todo = [
        refresh.Candidate(
            id=f"a{i}", relpath=f"b/{i}.nc", dataset="d", bucket="b", size=1, mtime_ns=2
        )
        for i in range(1000)
    ]
    parcel = refresh.Parcel(todo)
    seen: list = []
    out = visit_collection({"todo": parcel}, lambda x: seen.append(x) or x, return_data=True)
    assert out["todo"] is parcel and parcel.candidates is todo and len(parcel) == 1000
    assert not any(isinstance(x, refresh.Candidate) for x in seen)
    seen.clear()
    visit_collection({"todo": todo}, lambda x: seen.append(x) or x, return_data=True)
    assert sum(isinstance(x, refresh.Candidate) for x in seen) == 1000  # what it would do
