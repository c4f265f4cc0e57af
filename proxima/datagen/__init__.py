"""Synthetic ERA5-like and CMIP6-like data, written into a region's data repository."""

from __future__ import annotations

import calendar
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from proxima import s3
from proxima.config import DatasetConfig
from proxima.datagen import cmip6, era5
from proxima.datagen.fields import grid
from proxima.errors import ProximaError
from proxima.platform.model import Region

MAX_BYTES_DEFAULT = 20 * 2**30


class GenerationError(ProximaError):
    """The generation request is invalid or its target unreachable; nothing was written."""


@dataclass
class GenerateReport:
    """What a generation run wrote."""

    region: str
    dataset: str
    objects: int
    bytes_raw: int
    bytes_written: int
    seconds: float


def _months(start: str, end: str) -> list[tuple[int, int]]:
    (y, m), last = map(int, start.split("-")), tuple(map(int, end.split("-")))
    out = []
    while (y, m) <= last:
        out.append((y, m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def plan(dataset: DatasetConfig) -> list[tuple[str, Any]]:
    """The objects a dataset consists of: (key or prefix, what to write)."""
    items: list[tuple[str, Any]] = []
    if dataset.kind == "era5":
        unknown = sorted(set(dataset.variables) - set(era5.VARIABLES))
        if unknown:
            raise GenerationError(
                f"unknown ERA5 variable(s) {unknown}; known: {sorted(era5.VARIABLES)}"
            )
        for y, m in _months(dataset.start, dataset.end):
            for var in dataset.variables:
                items.append((era5.key(y, m, var), (y, m, var)))
    else:
        unknown = sorted(set(dataset.variables) - set(cmip6.VARIABLES))
        if unknown:
            raise GenerationError(
                f"unknown CMIP6 variable(s) {unknown}; known: {sorted(cmip6.VARIABLES)}"
            )
        first = tuple(map(int, dataset.start.split("-")))
        last = tuple(map(int, dataset.end.split("-")))
        for store in cmip6.stores(first, last, dataset.variables):  # type: ignore[arg-type]
            items.append((store.prefix, store))
    return items


def estimate_bytes(dataset: DatasetConfig) -> int:
    """Uncompressed size of the dataset's data variables."""
    total = 0
    for _, item in plan(dataset):
        if isinstance(item, cmip6.Store):
            lat, lon = grid(dataset.resolution * item.model.resolution_factor, descending_lat=False)
            total += len(item.months()) * len(lat) * len(lon) * 4
        else:
            y, m, _ = item
            lat, lon = grid(dataset.resolution, descending_lat=True, area=dataset.area)
            total += 24 * calendar.monthrange(y, m)[1] * len(lat) * len(lon) * 4
    return total


def _upload_tree(client: Any, bucket: str, root: Path, prefix: str) -> int:
    written = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        client.upload_file(str(path), bucket, prefix + path.relative_to(root).as_posix())
        written += path.stat().st_size
    return written


def ensure_generated(
    region: Region, dataset: DatasetConfig, *, seed: int = 42
) -> GenerateReport | None:
    """Generate ``dataset`` unless its bucket already holds objects.

    Returns:
        The generation report, or None when the data was already there.
    """
    client = s3.client(region)
    try:
        present = client.list_objects_v2(Bucket=dataset.bucket, MaxKeys=1)["KeyCount"]
    except client.exceptions.NoSuchBucket:
        present = 0
    return None if present else generate(region, dataset, seed=seed)


def generate(
    region: Region,
    dataset: DatasetConfig,
    *,
    seed: int = 42,
    max_bytes: int = MAX_BYTES_DEFAULT,
    on_progress: Callable[[int, int], None] | None = None,
) -> GenerateReport:
    """Write ``dataset`` into the region's data-repository bucket.

    Each object is built in a temporary directory and uploaded whole, so an
    interrupted run (Ctrl-C) leaves only complete objects behind.

    Args:
        region: The region whose S3 endpoint receives the data.
        dataset: What to write (kind, months, variables, resolution).
        seed: Seed of the values; the same seed writes the same values.
        max_bytes: Refuse datasets whose raw size exceeds this.
        on_progress: Called with (raw bytes done, raw bytes total).

    Raises:
        GenerationError: Invalid request or unreachable endpoint; nothing is written.
    """
    items = plan(dataset)
    total = estimate_bytes(dataset)
    if total > max_bytes:
        raise GenerationError(
            f"dataset {dataset.name} would be {total / 2**30:.1f} GiB raw, above the limit of "
            f"{max_bytes / 2**30:.1f} GiB; coarsen the resolution, shorten the range, or raise "
            "--max-gb"
        )
    client = s3.client(region, connect_timeout=2, retries=1)
    try:
        s3.ensure_bucket(client, dataset.bucket, region.name)
    except (BotoCoreError, ClientError) as exc:
        raise GenerationError(
            f"cannot reach the S3 endpoint of {region.name} at {region.s3_endpoint}: {exc}. "
            "Is the stack up (`proxima stack up`)?"
        ) from exc
    done = written = 0
    started = time.perf_counter()

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if on_progress:
            on_progress(done, total)

    for key, item in items:
        with tempfile.TemporaryDirectory(prefix="proxima-gen-") as tmp:
            if isinstance(item, cmip6.Store):
                local = Path(tmp) / "store.zarr"
                cmip6.write_store(local, item, dataset.resolution, seed, on_progress=tick)
                written += _upload_tree(client, dataset.bucket, local, key)
            else:
                y, m, var = item
                local = Path(tmp) / "file.nc"
                era5.write_month(
                    local, y, m, var, dataset.resolution, seed, on_progress=tick, area=dataset.area
                )
                client.upload_file(str(local), dataset.bucket, key)
                written += local.stat().st_size
    return GenerateReport(
        region=region.name,
        dataset=dataset.name,
        objects=len(items),
        bytes_raw=total,
        bytes_written=written,
        seconds=time.perf_counter() - started,
    )
