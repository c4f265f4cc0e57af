"""Read an asset's metadata from its header only (never its data arrays).

NetCDF: the HDF5 header and the 1-D coordinate variables. Zarr: the consolidated
metadata (``.zmetadata``) and the 1-D coordinate arrays. Anything unreadable
becomes a quarantined asset with the error class and message.
"""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cftime
import numpy as np

from proxima.catalog.facets import facets
from proxima.catalog.geo import envelope, lon_extent
from proxima.catalog.header import is_coordinate
from proxima.catalog.header import read as read_header
from proxima.catalog.model import Asset, TimeCoverage, Variable, asset_id
from proxima.errors import ProximaError
from proxima.paths import inside
from proxima.zarr_chunks import check_chunks

_TIME_NAMES = ("time", "time0", "time1", "t")
_LAT_NAMES = ("lat", "latitude", "y")
_LON_NAMES = ("lon", "longitude", "x")


def _pick(
    coords: dict[str, dict[str, Any]], names: tuple[str, ...], std: str, axis: str
) -> str | None:
    for name, attrs in coords.items():
        if attrs.get("standard_name") == std or attrs.get("axis") == axis:
            return name
    for name in coords:
        if name.lower() in names:
            return name
    return None


def _frequency(hours: float) -> str:
    if hours < 1.5:
        return "1hr"
    if hours < 4:
        return "3hr"
    if hours < 7:
        return "6hr"
    if hours < 36:
        return "day"
    if hours < 24 * 45:
        return "mon"
    return "yr"


def _to_datetime(value: Any) -> datetime:
    day = value.day
    while True:  # 360_day dates such as Feb 30 map to the month's last real day
        try:
            return datetime(value.year, value.month, day, value.hour, value.minute, tzinfo=UTC)
        except ValueError:
            day -= 1


class BadTimeAxis(ValueError):
    """The time coordinate cannot be read as dates."""


def _time_coverage(values: np.ndarray, attrs: dict[str, Any]) -> TimeCoverage:
    units = attrs.get("units")
    if not units:
        raise BadTimeAxis(
            "the time coordinate has no 'units' attribute (e.g. 'hours since 1900-01-01'), "
            "so its values cannot be read as dates"
        )
    calendar = attrs.get("calendar", "standard")
    first, second, last = cftime.num2date(
        np.asarray([values[0], values[min(1, len(values) - 1)], values[-1]]), units, calendar
    )
    step_h = (second - first).total_seconds() / 3600
    return TimeCoverage(
        start=_to_datetime(first),
        end=_to_datetime(last),
        start_native=first.isoformat(),
        end_native=last.isoformat(),
        calendar=calendar,
        frequency=_frequency(step_h) if len(values) > 1 else None,
        steps=len(values),
    )


def _text(attrs: dict[str, Any]) -> str:
    return " ".join(
        f"{k}: {v}" for k, v in sorted(attrs.items()) if isinstance(v, (str, int, float))
    )


def _finish(asset: Asset, coords: dict[str, tuple[dict[str, Any], np.ndarray]]) -> Asset:
    meta = {name: attrs for name, (attrs, _) in coords.items()}
    t = _pick(meta, _TIME_NAMES, "time", "T")
    la = _pick(meta, _LAT_NAMES, "latitude", "Y")
    lo = _pick(meta, _LON_NAMES, "longitude", "X")
    if t is not None:
        asset.time = _time_coverage(coords[t][1], coords[t][0])
    if la is not None and lo is not None:
        lat, lon = coords[la][1].astype(float), coords[lo][1].astype(float)
        step = float(np.median(np.abs(np.diff(lat)))) if lat.size > 1 else 0.0
        south = max(-90.0, float(lat.min()) - step / 2)
        north = min(90.0, float(lat.max()) + step / 2)
        west, east, _ = lon_extent(lon)
        asset.bbox = [west, south, east, north]
        asset.extent = envelope(west, south, east, north)
        asset.lon_convention = "0-360" if float(lon.max()) > 180.0 else "-180-180"
        asset.lat_descending = bool(lat.size > 1 and lat[0] > lat[-1])
    asset.variable_names = [v.name for v in asset.variables]
    asset.standard_names = sorted({v.standard_name for v in asset.variables if v.standard_name})
    return asset


def _variable(
    name: str,
    attrs: dict[str, Any],
    dims: tuple[str, ...],
    shape: list[int],
    dtype: np.dtype,
    chunks: list[int] | None,
) -> Variable:
    return Variable(
        name=name,
        standard_name=attrs.get("standard_name"),
        long_name=attrs.get("long_name"),
        units=attrs.get("units"),
        dims=list(dims),
        shape=shape,
        dtype=str(dtype),
        chunks=chunks,
        nbytes=int(np.prod(shape)) * dtype.itemsize,
    )


def _netcdf(path: Path, asset: Asset) -> Asset:
    header = read_header(path)
    coords: dict[str, tuple[dict[str, Any], np.ndarray]] = {}
    for var in header.variables:
        if var.values is not None:
            coords[var.name] = (var.attrs, var.values)
        elif not var.name.endswith("_bounds") and not var.name.endswith("_bnds"):
            asset.variables.append(
                _variable(var.name, var.attrs, var.dims, var.shape, var.dtype, var.chunks)
            )
    asset.facets, asset.facet_conflicts = facets(header.attrs, asset.path)
    asset.attributes_text = _text(header.attrs)
    return _finish(asset, coords)


def _zarr(path: Path, asset: Asset) -> Asset:
    import zarr

    meta = json.loads((path / ".zmetadata").read_text())["metadata"]
    attrs = meta.get(".zattrs", {})
    coords: dict[str, tuple[dict[str, Any], np.ndarray]] = {}
    for key, zarray in meta.items():
        if not key.endswith("/.zarray"):
            continue
        name = key.removesuffix("/.zarray")
        vattrs = meta.get(f"{name}/.zattrs", {})
        dims = tuple(vattrs.get("_ARRAY_DIMENSIONS", []))
        if is_coordinate(name, dims):
            check_chunks(path, name, zarray)  # a lost chunk would read as fill values
            arr = zarr.open_array(store=str(path / name), mode="r", zarr_format=2)
            values = np.asarray(arr[:])
            coords[name] = (vattrs, values)
        elif len(dims) >= 2:
            asset.variables.append(
                _variable(
                    name,
                    vattrs,
                    dims,
                    list(zarray["shape"]),
                    np.dtype(zarray["dtype"]),
                    list(zarray["chunks"]),
                )
            )
    asset.facets, asset.facet_conflicts = facets(attrs, asset.path)
    asset.attributes_text = _text(attrs)
    return _finish(asset, coords)


def tree_stat(path: str | Path) -> tuple[int, int, int]:
    """(total bytes, newest mtime, newest ctime, in ns) of a file or a directory tree.

    The ctime is what a rewrite in place that keeps the size and restores the mtime
    (``cp -p``, ``rsync -t``) still changes: no user-space call can set it.
    """
    top = os.stat(path)
    if stat.S_ISREG(top.st_mode):
        return top.st_size, top.st_mtime_ns, top.st_ctime_ns
    size, mtime, ctime = 0, top.st_mtime_ns, top.st_ctime_ns
    for root, _, files in os.walk(path):
        for name in files:
            st = os.stat(os.path.join(root, name))
            size += st.st_size
            mtime = max(mtime, st.st_mtime_ns)
            ctime = max(ctime, st.st_ctime_ns)
    return size, mtime, ctime


SCAN_ATTEMPTS = 3


def _describe(path: Path, fmt: str, asset: Asset) -> Asset:
    """Read the asset's header; errors become a quarantined record."""
    try:
        if asset.size == 0:
            raise ValueError("zero-byte asset")
        result = _zarr(path, asset) if fmt == "zarr" else _netcdf(path, asset)
        if not result.variables:
            raise ValueError("no data variables with two or more dimensions")
    except Exception as exc:  # quarantine everything; a bad file must not stop the refresh
        asset.variables, asset.quarantined = [], True
        asset.error_class, asset.error_message = type(exc).__name__, str(exc)[:2000]
        result = asset
    return result


def _reachable(root: str, relpath: str) -> Path:
    """The asset's path, inside the root and existing; a clear error otherwise (a symlink
    loop, a dangling link, a link out of the root, a file gone since the scan).
    """
    link = Path(root) / relpath
    try:
        path = inside(root, relpath)
    except RuntimeError as exc:  # Path.resolve on a symlink loop
        raise OSError(f"{relpath}: a symbolic link loop") from exc
    if not path.exists():
        if link.is_symlink():
            raise FileNotFoundError(f"{relpath}: a dangling symbolic link to {os.readlink(link)}")
        raise FileNotFoundError(f"{relpath}: gone since the scan")
    return path


def extract(
    root: str, relpath: str, region: str, dataset: str, bucket: str, etag: str | None = None
) -> dict[str, Any]:
    """Describe one asset; errors become a quarantined record (never raised).

    Args:
        root: The region's file-system root.
        relpath: The asset's path under ``root`` (``bucket/key``).
        region: Region name.
        dataset: Dataset (collection) name.
        bucket: Data-repository bucket, for the asset's URI.
        etag: ETag recorded by the import, if known.

    Returns:
        The asset as a JSON-ready dict (plain data travels cheaply from Dask workers).
    """
    key = relpath.split("/", 1)[1] if "/" in relpath else relpath
    try:
        path = _reachable(root, relpath)
    except (OSError, RuntimeError, ProximaError) as exc:
        asset = Asset(
            id=asset_id(region, relpath),
            region=region,
            dataset=dataset,
            path=relpath,
            uri=f"s3://{bucket}/{key}",
            format="unknown",
            size=0,
            mtime_ns=0,
            quarantined=True,
            error_class=type(exc).__name__,
            error_message=str(exc)[:2000],
            indexed_at=datetime.now(UTC),
        )
        return asset.model_dump(mode="json")
    fmt = "zarr" if path.is_dir() else ("netcdf" if path.suffix in (".nc", ".nc4") else "unknown")
    for _ in range(SCAN_ATTEMPTS):
        # The document must describe the file at the (size, mtime) it records: a file
        # replaced while we read it is read again, so the next diff sees what we saw.
        before = tree_stat(path) if path.exists() else (0, 0, 0)
        result = _describe(
            path,
            fmt,
            Asset(
                id=asset_id(region, relpath),
                region=region,
                dataset=dataset,
                path=relpath,
                uri=f"s3://{bucket}/{key.rstrip('/')}" + ("/" if fmt == "zarr" else ""),
                format=fmt,
                size=before[0],
                mtime_ns=before[1],
                ctime_ns=before[2],
                etag=etag,
            ),
        )
        if (tree_stat(path) if path.exists() else (0, 0, 0)) == before:
            break
    else:
        result.variables, result.quarantined = [], True
        result.error_class = "ChangedDuringScan"
        result.error_message = f"the asset changed during each of {SCAN_ATTEMPTS} reads"
    result.indexed_at = datetime.now(UTC)
    return result.model_dump(mode="json")
