"""Data-repository import: bring a region's S3 buckets into its file system.

Locally the region's "FSx for Lustre" is a directory, filled by copying new and
changed objects. On AWS, a region with an FSx file system id instead runs an FSx
``IMPORT_METADATA_FROM_REPOSITORY`` data repository task and waits for it.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from proxima import call_log, s3
from proxima.errors import ProximaError
from proxima.paths import UnsafePath, inside
from proxima.platform.model import Region

MANIFEST = ".proxima-import.json"
TMP_MARK = ".proxima-partial-"
UNFINISHED = ".proxima-import-unfinished"  # present while an import copies


class ImportFailed(ProximaError):
    """The import could not run (unreachable endpoint, failed FSx task)."""


@dataclass
class ImportReport:
    """What one import did."""

    region: str
    copied: int = 0
    skipped: int = 0
    deleted: int = 0
    bytes_copied: int = 0
    seconds: float = 0.0
    fsx_task: dict[str, Any] | None = None
    buckets: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def _safe_local(root: Path, key: str) -> Path:
    try:
        return inside(root, key)
    except UnsafePath as exc:
        raise ImportFailed(f"object key {key[:80]!r} would leave the region root: {exc}") from exc


def etags(root: Path) -> dict[str, str]:
    """The S3 ETag of every object the import last copied under ``root``, by key."""
    return {key: entry["etag"] for key, entry in _load_manifest(root).items()}


def _load_manifest(root: Path) -> dict[str, dict[str, Any]]:
    try:
        data: dict[str, dict[str, Any]] = json.loads((root / MANIFEST).read_text())
        return data
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _save_manifest(root: Path, manifest: dict[str, dict[str, Any]]) -> None:
    tmp = root / f"{MANIFEST}.{uuid.uuid4().hex}"
    tmp.write_text(json.dumps(manifest, sort_keys=True))
    tmp.replace(root / MANIFEST)


def _sync_bucket(
    client: Any,
    bucket: str,
    root: Path,
    report: ImportReport,
    on_object: Callable[[ImportReport], None] | None = None,
) -> None:
    root.mkdir(parents=True, exist_ok=True)
    unfinished = root / UNFINISHED
    if unfinished.exists():  # an import was killed mid-copy: its partial files remain
        for stale in root.rglob(f"{TMP_MARK}*"):
            stale.unlink(missing_ok=True)
    manifest = _load_manifest(root)
    copied_before = report.copied  # the report covers the region's other buckets too
    seen: set[str] = set()
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            key, etag, size = obj["Key"], obj["ETag"].strip('"'), obj["Size"]
            seen.add(key)
            local = _safe_local(root, key)
            known = manifest.get(key)
            if (
                known
                and known["etag"] == etag
                and known["size"] == size
                and local.is_file()
                and local.stat().st_size == size
            ):
                report.skipped += 1
                if on_object:
                    on_object(report)
                continue
            local.parent.mkdir(parents=True, exist_ok=True)
            unfinished.touch()  # until the manifest is saved: the next import cleans up
            partial = local.with_name(f"{TMP_MARK}{local.name}.{uuid.uuid4().hex[:8]}")
            try:
                client.download_file(bucket, key, str(partial))
                os.replace(partial, local)
            finally:
                partial.unlink(missing_ok=True)
            manifest[key] = {"etag": etag, "size": size}
            report.copied += 1
            report.bytes_copied += size
            if report.copied % 200 == 0:
                _save_manifest(root, manifest)
            if on_object:
                on_object(report)
    gone = sorted(set(manifest) - seen)
    for key in gone:
        _safe_local(root, key).unlink(missing_ok=True)
        del manifest[key]
        report.deleted += 1
    if gone or report.copied > copied_before:  # else the tree is as the last import left it
        _prune_empty_dirs(root)
        _save_manifest(root, manifest)
    unfinished.unlink(missing_ok=True)


def _prune_empty_dirs(root: Path) -> None:
    for directory in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
        try:
            directory.rmdir()
        except OSError:
            pass


def fsx_import(
    region: Region,
    paths: list[str],
    poll_s: float = 15.0,
    timeout_s: float = 3600.0,
    fsx_client: Any = None,
) -> dict[str, Any]:
    """Run an FSx ``IMPORT_METADATA_FROM_REPOSITORY`` task and wait for it.

    Returns:
        The final task description (Lifecycle, Status counts, FailureDetails).

    Raises:
        ImportFailed: The task failed, was cancelled or did not finish in time.
    """
    if not region.fsx_file_system_id:
        raise ImportFailed(f"region {region.name} has no FSx file system id")
    fsx = call_log.watch(fsx_client or boto3.client("fsx", region_name=region.name))
    task = fsx.create_data_repository_task(
        FileSystemId=region.fsx_file_system_id,
        Type="IMPORT_METADATA_FROM_REPOSITORY",
        Paths=paths,
        Report={"Enabled": False},
    )["DataRepositoryTask"]
    task_id = task["TaskId"]
    deadline = time.monotonic() + timeout_s
    while True:
        task = fsx.describe_data_repository_tasks(TaskIds=[task_id])["DataRepositoryTasks"][0]
        lifecycle = task["Lifecycle"]
        if lifecycle == "SUCCEEDED":
            return {"task_id": task_id, "lifecycle": lifecycle, "status": task.get("Status", {})}
        if lifecycle in ("FAILED", "CANCELED"):
            reason = task.get("FailureDetails", {}).get("Message", "no details")
            raise ImportFailed(f"FSx import task {task_id} in {region.name} {lifecycle}: {reason}")
        if time.monotonic() > deadline:
            raise ImportFailed(f"FSx import task {task_id} in {region.name} still {lifecycle}")
        time.sleep(poll_s)


def import_region(
    region: Region, root: Path, on_object: Callable[[ImportReport], None] | None = None
) -> ImportReport:
    """Bring every dataset bucket of ``region`` into ``root`` (its file system);
    ``on_object`` sees the report after each object (copied or unchanged).

    Idempotent: unchanged objects (same ETag and size) are skipped; removed
    objects are deleted; each file appears under its final name only when whole.

    Raises:
        ImportFailed: The S3 endpoint cannot be reached or a bucket is missing.
    """
    started = time.perf_counter()
    report = ImportReport(region=region.name)
    buckets = sorted({d.bucket for d in region.datasets})
    report.buckets = buckets
    if region.fsx_file_system_id:
        report.fsx_task = fsx_import(region, [f"/{b}" for b in buckets])
    else:
        client = s3.client(region, connect_timeout=2, retries=2)
        with call_log.local_stand_in():  # AWS imports through FSx, above
            _sync_all(client, buckets, region, root, report, on_object)
    report.seconds = time.perf_counter() - started
    return report


def _sync_all(
    client: Any,
    buckets: list[str],
    region: Region,
    root: Path,
    report: ImportReport,
    on_object: Callable[[ImportReport], None] | None,
) -> None:
    for bucket in buckets:
        try:
            _sync_bucket(client, bucket, root / bucket, report, on_object)
        except (BotoCoreError, ClientError) as exc:
            raise ImportFailed(
                f"import of s3://{bucket} in {region.name} ({region.s3_endpoint}) failed: {exc}"
            ) from exc
