"""Incremental catalog refresh, as library steps: scan, diff, index, delete.

The flow in ``flows/catalog_refresh.py`` wires these into Prefect tasks on each
region's Dask cluster; they are plain functions so they can be tested alone.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opensearchpy import OpenSearch

from proxima import opensearch, repository
from proxima.catalog.extract import extract, tree_stat
from proxima.catalog.model import MAPPING, SCHEMA_VERSION, asset_id
from proxima.config import DatasetConfig
from proxima.opensearch import CatalogConnection
from proxima.platform.model import Region

ZARR_MARKERS = (".zmetadata", ".zgroup", "zarr.json")


@dataclass
class Candidate:
    """An asset found on the file system."""

    id: str
    relpath: str
    dataset: str
    bucket: str
    size: int
    mtime_ns: int
    ctime_ns: int = 0
    etag: str | None = None

    @property
    def stamp(self) -> tuple[int, int, int]:
        """What says the asset changed: (size, mtime, ctime)."""
        return self.size, self.mtime_ns, self.ctime_ns


@dataclass
class Diff:
    """What the refresh has to do for one region."""

    new: list[Candidate] = field(default_factory=list)
    changed: list[Candidate] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: int = 0
    unchanged_ids: list[str] = field(default_factory=list)
    copied: int = 0  # a full rebuild: unchanged documents copied from the old index
    scanned_bytes: int = 0

    @property
    def todo(self) -> list[Candidate]:
        """The assets whose headers must be read."""
        return self.new + self.changed

    def summary(self) -> dict[str, int]:
        """Counts only."""
        return {
            "new": len(self.new),
            "changed": len(self.changed),
            "deleted": len(self.deleted),
            "unchanged": self.unchanged,
            "copied": self.copied,
        }


def scan_region(region: Region, root: str) -> list[Candidate]:
    """Every NetCDF file and Zarr store under the region's dataset buckets.

    Paths are handled as strings: pathlib's parsing was most of a scan's CPU
    (0.9 CPU-s per 10,000 files).
    """
    found: list[Candidate] = []
    for dataset in region.datasets:
        base = os.path.join(root, dataset.bucket)
        if not os.path.isdir(base):
            continue
        etags = repository.etags(Path(base))
        for dirpath, dirnames, filenames in os.walk(base):
            under = dirpath[len(base) + 1 :]  # '' at the bucket's top
            if under and any(marker in filenames for marker in ZARR_MARKERS):
                dirnames.clear()
                found.append(
                    _candidate(region.name, dirpath, f"{dataset.bucket}/{under}", dataset, None)
                )
                continue
            dirnames.sort()
            prefix = f"{under}/" if under else ""
            for name in sorted(filenames):
                if name.startswith("."):  # the import's bookkeeping files are hidden
                    continue
                if name.endswith((".nc", ".nc4")):
                    key = prefix + name
                    found.append(
                        _candidate(
                            region.name,
                            os.path.join(dirpath, name),
                            f"{dataset.bucket}/{key}",
                            dataset,
                            etags.get(key),
                        )
                    )
    return found


def _candidate(
    region: str, path: str, rel: str, dataset: DatasetConfig, etag: str | None
) -> Candidate:
    try:
        size, mtime, ctime = tree_stat(path)
    except OSError:  # a loop, a dangling link, gone: extraction names it and quarantines
        size, mtime, ctime = 0, 0, 0
    return Candidate(
        asset_id(region, rel), rel, dataset.name, dataset.bucket, size, mtime, ctime, etag
    )


SNAPSHOTS = ".proxima-refresh"  # under the region root: one file per catalog index


def fingerprint(region: Region, root: str) -> str:
    """A digest of everything a refresh's scan depends on, from a lean walk.

    Every file under the region's dataset buckets contributes its path, size and
    mtime (``os.scandir``: one ``stat`` each, no header read, no hashing per asset);
    the import's manifest, rewritten by every import that copies, does not. It covers
    more than the scan looks at (all files, not only ``.nc`` and Zarr stores), so it
    can only change more often than the scan's result, never less.
    """
    digest = hashlib.sha256()
    for dataset in region.datasets:
        digest.update(f"\0dataset\0{dataset.name}\0{dataset.bucket}\0".encode())
        _fingerprint_tree(os.path.join(root, dataset.bucket), "", digest)
    return digest.hexdigest()


def _fingerprint_tree(directory: str, rel: str, digest: Any) -> None:
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except FileNotFoundError:
        digest.update(f"\0missing\0{rel}".encode())
        return
    for entry in entries:
        path = f"{rel}/{entry.name}"
        if not rel and entry.name == repository.MANIFEST:
            continue
        if entry.is_dir(follow_symlinks=False):
            _fingerprint_tree(entry.path, path, digest)
            continue
        try:  # links are followed, as the scan's stat does; a broken one counts as such
            st = entry.stat()
            digest.update(f"\0{path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}".encode())
        except OSError as exc:
            digest.update(f"\0{path}\0error {exc.errno}".encode())


def _snapshot_file(root: str, index: str) -> Path:
    return Path(root) / SNAPSHOTS / f"{index}.json"


def _region_count(client: OpenSearch, index: str, region: str) -> int:
    found = client.count(index=index, body={"query": {"term": {"region": region}}})
    return int(found["count"])


def unchanged_since_last_refresh(
    client: OpenSearch, index: str, region: str, root: str, digest: str
) -> int | None:
    """The region's document count if the last refresh into ``index`` saw exactly this
    file tree and the index still holds what it wrote; None when a refresh must run.
    """
    concrete = opensearch.alias_target(client, index) or index
    try:
        snapshot = json.loads(_snapshot_file(root, concrete).read_text())
    except (OSError, json.JSONDecodeError):  # none yet, or a root it cannot be under
        return None
    if snapshot.get("digest") != digest:
        return None
    count = _region_count(client, concrete, region)
    return count if count == snapshot.get("documents") else None


def remember_refresh(
    client: OpenSearch, index: str, region: str, root: str, digest: str
) -> str | None:
    """Record that the region's catalog in ``index`` now reflects the tree ``digest``
    (taken before the scan: a change during the refresh makes the next one run in full).

    Returns:
        None, or why nothing could be recorded (a file system mounted read-only, as the
        Dask tasks on AWS mount FSx): the next refresh then scans in full, as before.
    """
    concrete = opensearch.alias_target(client, index) or index
    target = _snapshot_file(root, concrete)
    count = _region_count(client, concrete, region)
    try:
        target.parent.mkdir(exist_ok=True)
        for stale in target.parent.glob("*.json"):  # snapshots of indices since replaced
            if stale != target:
                stale.unlink(missing_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"digest": digest, "documents": count}))
        tmp.replace(target)
    except OSError as exc:
        return f"no snapshot under {target.parent}: {exc.strerror}"
    return None


Stamp = tuple[int, int, int]  # (size, mtime_ns, ctime_ns), as Candidate.stamp


def existing(client: OpenSearch, index: str, region: str) -> dict[str, Stamp]:
    """Id → (size, mtime_ns, ctime_ns) of the region's documents in ``index``."""
    return _stamps(client, index, {"term": {"region": region}})


def _stamps(client: OpenSearch, index: str, query: dict[str, Any]) -> dict[str, Stamp]:
    fields = ("size", "mtime_ns", "ctime_ns")
    return {
        hit["_id"]: tuple(hit["_source"].get(f, -1) for f in fields)
        for hit in opensearch.scan(client, index, query, source=list(fields))
    }


def diff(candidates: list[Candidate], current: dict[str, Stamp], *, keep_ids: bool = False) -> Diff:
    """Compare the file system with the catalog by (size, mtime, ctime); with ``keep_ids``, the
    unchanged assets' ids are listed too (else only counted).
    """
    result = Diff()
    seen = set()
    for cand in candidates:
        seen.add(cand.id)
        result.scanned_bytes += cand.size
        if cand.id not in current:
            result.new.append(cand)
        elif current[cand.id] != cand.stamp:
            result.changed.append(cand)
        else:
            result.unchanged += 1
            if keep_ids:
                result.unchanged_ids.append(cand.id)
    result.deleted = sorted(set(current) - seen)
    return result


def reusable(client: OpenSearch, index: str, region: str) -> dict[str, Stamp]:
    """Id → (size, mtime_ns, ctime_ns) of the region's documents in ``index`` that a full rebuild
    may copy as they are: written by this catalog version (a newer extractor reads
    every header again) and not quarantined (a rebuild retries those).
    """
    filters = [
        {"term": {"region": region}},
        {"term": {"catalog_version": SCHEMA_VERSION}},
        {"term": {"quarantined": False}},
    ]
    return _stamps(client, index, {"bool": {"filter": filters}})


def rebuild_diff(client: OpenSearch, region: Region, root: str, source: str, target: str) -> Diff:
    """A full rebuild's plan for one region: documents of unchanged assets are copied
    from the old index ``source`` into ``target`` inside OpenSearch; the rest (new,
    changed, quarantined, or from an older catalog version) are left to be read.
    Assets gone from the file system are simply not copied.
    """
    plan = diff(scan_region(region, root), reusable(client, source, region.name), keep_ids=True)
    plan.copied = opensearch.copy_documents(client, source, target, plan.unchanged_ids)
    plan.unchanged_ids, plan.deleted = [], []
    return plan


BATCH_ASSETS = 200  # assets per extraction task: amortises a task and a bulk request


@dataclass
class BatchReport:
    """What one extraction batch wrote to the catalog (documents never travel back)."""

    assets: int = 0
    written: int = 0
    superseded: int = 0
    bytes: int = 0
    quarantined: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def add(self, other: BatchReport) -> None:
        """Fold another batch's figures into this one."""
        self.assets += other.assets
        self.written += other.written
        self.superseded += other.superseded
        self.bytes += other.bytes
        self.quarantined += other.quarantined
        self.errors += other.errors


class Parcel:
    """Candidates handed from one task to the next as a single value.

    Prefect looks for futures in every list, dict and dataclass a task is given, and
    rebuilds them: over 10,000 candidates that is ~0.2 s a pass and several passes a
    task (~2 s between the scan and the headers task). To it, this is one leaf.
    """

    __slots__ = ("candidates",)

    def __init__(self, candidates: list[Candidate]) -> None:
        self.candidates = candidates

    def __len__(self) -> int:
        return len(self.candidates)


def batches(todo: list[Candidate], size: int = BATCH_ASSETS) -> list[list[Candidate]]:
    """``todo`` in batches of ``size``."""
    return [todo[i : i + size] for i in range(0, len(todo), size)]


def extract_and_index(
    root: str, region: str, batch: list[Candidate], catalog: CatalogConnection, index: str
) -> BatchReport:
    """Describe a batch of assets and write their documents straight to the catalog,
    from the worker that read them (the index is refreshed once, at the end of the
    region's refresh).
    """
    docs = [extract(root, c.relpath, region, c.dataset, c.bucket, c.etag) for c in batch]
    client = opensearch.connect_catalog(catalog)
    written = opensearch.bulk(client, index_actions(index, docs), refresh=False)
    return BatchReport(
        assets=len(batch),
        written=written.ok,
        superseded=written.superseded,
        bytes=sum(c.size for c in batch),
        quarantined=[d["path"] for d in docs if d.get("quarantined")],
        errors=written.errors[:20],
    )


def index_actions(index: str, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Bulk index actions; the file's mtime is the external version, so an older
    extraction racing a newer one can never overwrite it.
    """
    return [
        {
            "_op_type": "index",
            "_index": index,
            "_id": doc["id"],
            "version": max(int(doc["mtime_ns"]), 0),
            "version_type": "external_gte",
            "_source": {k: v for k, v in doc.items() if k != "id"},
        }
        for doc in docs
    ]


def delete_actions(index: str, ids: list[str]) -> list[dict[str, Any]]:
    """Bulk delete actions."""
    return [{"_op_type": "delete", "_index": index, "_id": i} for i in ids]


def prepare_rebuild(
    client: OpenSearch, alias: str, keep: list[str], replicas: int = 0
) -> tuple[str, list[str]]:
    """A fresh index behind ``alias`` for a full rebuild, holding the documents of the
    regions ``keep`` (not being rebuilt); indices left by a killed rebuild are removed.
    Nobody reads it until the swap, so it fills without replicas and without periodic
    refreshes (:func:`finish_rebuild` restores both).

    Returns:
        The new index and the orphans removed.
    """
    current = opensearch.ensure_alias(client, alias, MAPPING, replicas)
    orphans = opensearch.cleanup_orphans(client, alias)
    target = opensearch.new_index_name(alias)
    opensearch.create_index(client, target, MAPPING, replicas=0)
    client.indices.put_settings(index=target, body={"index": {"refresh_interval": "-1"}})
    if keep:
        client.reindex(
            body={
                "source": {"index": current, "query": {"terms": {"region": keep}}},
                "dest": {"index": target},
            },
            refresh=True,
        )
    return target, orphans


def finish_rebuild(
    client: OpenSearch, alias: str, target: str, succeeded: bool, replicas: int = 0
) -> str | None:
    """Point ``alias`` at the rebuilt ``target`` (its refreshes and ``replicas``
    restored) and drop the old index, or drop ``target`` if the rebuild failed (the old
    index keeps serving).

    Returns:
        The index the alias pointed at before, when it was swapped.
    """
    if not succeeded:
        client.indices.delete(index=target, ignore_unavailable=True)
        return None
    client.indices.put_settings(
        index=target,
        body={
            "index": {
                "refresh_interval": opensearch.SETTINGS["refresh_interval"],
                "number_of_replicas": replicas,
            }
        },
    )
    client.indices.refresh(index=target)
    old = opensearch.swap_alias(client, alias, target)
    if old:
        client.indices.delete(index=old, ignore_unavailable=True)
    return old
