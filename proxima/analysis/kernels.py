"""The regional kernel: read a region's selected data once, next to it, and fold it into
minimal partial aggregates (see :mod:`proxima.analysis.partials`).

The work is shaped by the data, not by the request's groups: one task per block of
whole on-disk time chunks of one file (about ``BLOCK_BYTES`` decoded), each opening its
file once, reading chunk-aligned slabs as plain numpy and folding every group inside
the task. HDF5 decodes under one process-wide lock, so regional workers run as
processes with one thread each.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections import OrderedDict
from datetime import timedelta
from typing import Any, Literal

import cftime
import numpy as np
import xarray as xr
from pydantic import BaseModel, Field
from xarray.coding.times import decode_cf_datetime

from proxima import netcdf
from proxima.analysis.partials import Accumulator, step_keys
from proxima.catalog.extract import tree_stat
from proxima.errors import ProximaError
from proxima.paths import inside
from proxima.zarr_chunks import check_chunks

# Bump when block_partial's arithmetic or the partials' layout changes: stored partials
# of another kernel version are never reused.
KERNEL_VERSION = 1
# Decoded bytes per task: enough to amortise a task, small enough to balance the workers.
BLOCK_BYTES = 48 * 2**20
# Zarr's Blosc-lz4 decodes ~3x as fast as NetCDF's zlib (1.5 vs 0.5 GB/s on the
# benchmark's two processes): three times the bytes make a task of the same time, over
# which its fixed ~10 ms (an open, the window, pickling its partials) is spread alike.
ZARR_BLOCK_BYTES = 3 * BLOCK_BYTES
SLAB_BYTES = 64 * 2**20  # decoded bytes per read inside a task


class AssetRef(BaseModel):
    """An asset a region reads, with what the catalog knows of its variable's layout."""

    path: str
    format: Literal["netcdf", "zarr", "unknown"]
    size: int = 0
    steps: int = Field(default=0, description="Time steps of the variable (0: unknown).")
    nbytes: int = Field(default=0, description="Decoded bytes of the variable (0: unknown).")
    time_chunk: int = Field(default=0, description="Time steps per on-disk chunk (0: unknown).")
    scale: float = Field(default=1.0, description="To the selection's units: x * scale + offset.")
    offset: float = 0.0
    mtime_ns: int = Field(default=0, description="The catalog's stamp of the asset, with ctime_ns.")
    ctime_ns: int = 0
    etag: str | None = None


class KernelSpec(BaseModel):
    """Everything a region needs to compute its partial aggregates."""

    variable: str
    reduction: Literal["mean", "min", "max", "sum", "std", "count", "none"] = "mean"
    start_key: int
    end_key: int
    bbox: list[float]
    over: Literal["time", "space", "both"]
    group_by: Literal["month", "season", "year"] | None = None
    assets: list[AssetRef]
    coarsen_time: Literal["day", "month"] | None = None
    coarsen_space: int | None = None
    max_out_bytes: int | None = Field(
        default=None,
        description="The region's share of the request's transfer cap (None: it does not "
        "cross regions): a larger partial is never sent.",
    )


class Block(BaseModel):
    """One task's share: chunks ``[first, stop)`` of one of the spec's assets."""

    asset: int
    first: int = 0
    stop: int | None = None


class TransferCapExceeded(ProximaError):
    """A region's partial aggregates are larger than its share of the transfer cap."""


def check_transfer(region: str, returned: int, spec: KernelSpec) -> None:
    """Refuse to send a partial larger than the region's share of the transfer cap.

    Raises:
        TransferCapExceeded: naming the measured and the allowed bytes.
    """
    if spec.max_out_bytes is not None and returned > spec.max_out_bytes:
        raise TransferCapExceeded(
            f"region {region} computed {returned:,} bytes of partial aggregates, above its "
            f"share {spec.max_out_bytes:,} of max_transfer_bytes: nothing was sent; raise "
            "max_transfer_bytes or reduce over more dimensions"
        )


class EmptySelection(ProximaError):
    """The box or time range selects no grid cell or time step of an asset."""


def open_asset(
    root: str,
    asset: AssetRef,
    variable: str,
    block: Block | None = None,
    decode_times: bool = True,
) -> xr.DataArray:
    """Open one asset lazily (no Dask) as (time, lat, lon), whatever its time is called.

    A Zarr store's chunk objects are checked first: all of them, or with ``block`` only
    the block's own (listing a store's every chunk for each of its blocks cost 5 ms a
    block, measured). With ``decode_times`` off, times stay the file's numbers with
    their ``units`` and ``calendar``: :func:`window` finds the selected steps among them
    and :func:`times` decodes only those.
    """
    path = inside(root, asset.path)
    coder: Any = xr.coders.CFDatetimeCoder(use_cftime=True) if decode_times else False
    # no pandas indexes: the kernel selects by index masks, and building them was half
    # of an open (22 -> 10 ms per NetCDF file here)
    if asset.format == "zarr":
        part = block or Block(asset=0)  # the whole store
        check_chunks(path, variable, first=part.first, stop=part.stop)
        ds = xr.open_zarr(
            path, decode_times=coder, consolidated=True, chunks=None, create_default_indexes=False
        )
    else:
        ds = netcdf.open_dataset(
            path, decode_times=coder, chunks=None, create_default_indexes=False
        )
    da = ds[variable]
    tdim = next(d for d in da.dims if d not in ("lat", "lon"))
    return da.rename({tdim: "time"}).transpose("time", "lat", "lon")


def _day_keys(values: np.ndarray) -> np.ndarray:
    """YYYYMMDD of every step (decoded to cftime objects: read their fields)."""
    return np.fromiter(
        (t.year * 10000 + t.month * 100 + t.day for t in values), dtype="i8", count=len(values)
    )


def _encoded(time: xr.DataArray) -> bool:
    """Whether ``time`` holds the file's CF numbers (opened with ``decode_times`` off)."""
    return time.dtype.kind in "iuf" and "since" in str(time.attrs.get("units", ""))


def times(time: xr.DataArray, idx: np.ndarray) -> xr.DataArray:
    """The steps ``idx`` of ``time``, decoded as xarray decodes them (cftime objects)."""
    if not _encoded(time):
        return time.isel(time=idx)
    raw = np.asarray(time.values)[idx]
    decoded = decode_cf_datetime(
        raw, time.attrs["units"], time.attrs.get("calendar", "standard"), use_cftime=True
    )
    return xr.DataArray(np.asarray(decoded), dims=("time",))


def _steps_between(time: xr.DataArray, start_key: int, end_key: int) -> np.ndarray:
    """Indices of the steps whose day is in [start_key, end_key].

    On CF numbers increasing strictly, by bisection: the range's first and last days
    are encoded in the file's units and calendar, and only the steps at each edge are
    decoded to settle it (a step a rounding error from midnight decodes to the day
    xarray gives it). Decoding every step was a third of a small block's time, for a
    store of 60,000 daily steps far more. Anything else is decoded whole.
    """
    raw = np.asarray(time.values)
    calendar = str(time.attrs.get("calendar", "standard"))
    if _encoded(time) and len(raw) and bool(np.all(np.diff(raw) > 0)):
        try:
            first = cftime.datetime(
                start_key // 10000, start_key // 100 % 100, start_key % 100, calendar=calendar
            )
            last = cftime.datetime(
                end_key // 10000, end_key // 100 % 100, end_key % 100, calendar=calendar
            )
            bounds = cftime.date2num(
                [first, last + timedelta(days=1)], time.attrs["units"], calendar
            )
        except (ValueError, TypeError, KeyError):  # a day this calendar lacks
            bounds = None
        if bounds is not None:
            a, b = (int(i) for i in np.searchsorted(raw, np.asarray(bounds, dtype=float)))

            def key(i: int) -> int:
                return int(_day_keys(np.asarray(times(time, np.array([i])).values))[0])

            n = len(raw)
            edges = [i for i in (a - 1, a, b - 1, b) if 0 <= i < n]
            day = dict(
                zip(edges, _day_keys(np.asarray(times(time, np.array(edges)).values)), strict=True)
            )
            settled = (
                (a == 0 or day[a - 1] < start_key)
                and (a == n or day[a] >= start_key)
                and (b == 0 or day[b - 1] <= end_key)
                and (b == n or day[b] > end_key)
            )
            if settled:  # the usual case: the bisection's edges, decoded at once, hold
                return np.arange(a, max(a, b))
            while a > 0 and key(a - 1) >= start_key:
                a -= 1
            while a < n and key(a) < start_key:
                a += 1
            while b < n and key(b) <= end_key:
                b += 1
            while b > a and key(b - 1) > end_key:
                b -= 1
            return np.arange(a, max(a, b))
    decoded = np.asarray(times(time, np.arange(len(raw))).values)
    keys = _day_keys(decoded)
    return np.flatnonzero((keys >= start_key) & (keys <= end_key))


def column_runs(idx: np.ndarray) -> list[slice]:
    """Contiguous runs of sorted indices as slices."""
    cuts = np.flatnonzero(np.diff(idx) != 1) + 1
    return [slice(int(r[0]), int(r[-1]) + 1) for r in np.split(idx, cuts) if len(r)]


def window(
    da: xr.DataArray | xr.Dataset, spec: KernelSpec
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the selected steps, rows and columns, whatever the grid's conventions.

    Works on descending latitudes and 0..360 longitudes alike, and on boxes that
    cross the antimeridian, by index masks instead of label slices (a reversed
    label slice on a descending axis silently selects nothing).
    """
    t_idx = _steps_between(da["time"], spec.start_key, spec.end_key)
    west, south, east, north = spec.bbox
    lat = np.asarray(da["lat"], dtype=float)
    lon = (np.asarray(da["lon"], dtype=float) + 180.0) % 360.0 - 180.0
    y_idx = np.flatnonzero((lat >= south) & (lat <= north))
    x_mask = (lon >= west) & (lon <= east) if west <= east else (lon >= west) | (lon <= east)
    x_idx = np.flatnonzero(x_mask)
    if not len(y_idx) or not len(x_idx):
        raise EmptySelection(f"box {spec.bbox} contains no grid-cell centre of this grid")
    return t_idx, y_idx, x_idx


def read_slab(var: xr.Variable, t: slice, y_idx: np.ndarray, x_runs: list[slice]) -> np.ndarray:
    """One slab as float numpy: contiguous rows, one read per run of columns."""
    y = slice(int(y_idx[0]), int(y_idx[-1]) + 1)
    parts = [np.asarray(var[t, y, x].values) for x in x_runs]
    out = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=2)
    if len(y_idx) != y.stop - y.start:
        out = out[:, y_idx - y.start]
    return out if out.dtype.kind == "f" else out.astype("f8")


def blocks(spec: KernelSpec, block_bytes: int = BLOCK_BYTES) -> list[Block]:
    """Split the spec's assets into tasks of whole time chunks, about ``block_bytes`` each
    (a Zarr store's ``ZARR_BLOCK_BYTES / BLOCK_BYTES`` times that).
    """
    out = []
    for i, asset in enumerate(spec.assets):
        if not (asset.steps and asset.time_chunk and asset.nbytes):
            out.append(Block(asset=i))
            continue
        size = (
            block_bytes * ZARR_BLOCK_BYTES // BLOCK_BYTES if asset.format == "zarr" else block_bytes
        )
        chunks = math.ceil(asset.steps / asset.time_chunk)
        parts = max(1, min(chunks, round(asset.nbytes / size)))
        edges = [chunks * p // parts for p in range(parts + 1)]
        out += [Block(asset=i, first=a, stop=b) for a, b in itertools.pairwise(edges)]
    return out


def time_chunk(da: xr.DataArray, asset: AssetRef) -> int:
    """Time steps per on-disk chunk of the opened variable."""
    return int(da.encoding.get("preferred_chunks", {}).get("time") or asset.time_chunk or 24)


def block_steps(
    da: xr.DataArray | xr.Dataset, block: Block, chunk: int, t_idx: np.ndarray
) -> np.ndarray:
    """The selected steps that fall in ``block``'s chunks."""
    lo = block.first * chunk
    hi = da.sizes["time"] if block.stop is None else min(block.stop * chunk, da.sizes["time"])
    return t_idx[(t_idx >= lo) & (t_idx < hi)]


def block_partial(root: str, spec: KernelSpec, block: Block) -> tuple[xr.Dataset | None, int]:
    """Partial aggregates of one block, read once; (None, 0) when it holds no selected step.

    Returns:
        (the partial aggregates or None, decoded bytes of the selected data read).
    """
    asset = spec.assets[block.asset]
    da = open_asset(root, asset, spec.variable, block, decode_times=False)
    try:
        t_idx, y_idx, x_idx = window(da, spec)
        chunk = time_chunk(da, asset)
        t_idx = block_steps(da, block, chunk, t_idx)
        if not len(t_idx):
            return None, 0
        keys = step_keys(times(da["time"], t_idx), spec.over, spec.group_by)
        acc = Accumulator(
            spec.reduction,
            spec.over,
            spec.group_by,
            np.asarray(da["lat"])[y_idx],
            np.asarray(da["lon"])[x_idx],
        )
        x_runs = column_runs(x_idx)
        cell_bytes = len(y_idx) * len(x_idx) * da.dtype.itemsize
        per_slab = max(chunk, SLAB_BYTES // max(cell_bytes, 1) // chunk * chunk)
        if asset.format == "zarr":  # one chunk a read: decoded and summed while in cache
            per_slab = chunk
        var = da.variable
        first = 0
        while first < len(t_idx):
            # steps of this slab: up to ``per_slab`` steps, ending on a chunk boundary
            edge = (int(t_idx[first]) // chunk) * chunk + per_slab
            stop = int(np.searchsorted(t_idx, edge))
            steps = t_idx[first:stop]
            slab = read_slab(var, slice(int(steps[0]), int(steps[-1]) + 1), y_idx, x_runs)
            if len(steps) != slab.shape[0]:
                slab = slab[steps - steps[0]]
            if asset.scale != 1.0 or asset.offset != 0.0:
                slab = slab * asset.scale + asset.offset
            acc.add(slab, keys[first:stop])
            first = stop
        return acc.result(), int(len(t_idx) * cell_bytes)
    finally:
        da.close()


def _runs(idx: np.ndarray) -> list[list[int]]:
    return [[r.start, r.stop] for r in column_runs(idx)]


# Each worker process keeps the coordinates of the files it identified, by live stamp:
# an unchanged file has unchanged coordinates (the partial store's own premise), and an
# open per file was most of a region's lookup of stored blocks (~5 ms a NetCDF file).
HEADERS_KEPT = 8192
_headers: OrderedDict[tuple[str, str, str, tuple[int, ...]], tuple[xr.Dataset, int]] = OrderedDict()
_headers_lock = threading.Lock()


def _header(
    root: str, asset: AssetRef, variable: str, stamp: tuple[int, ...]
) -> tuple[xr.Dataset, int]:
    """The asset's coordinates (times as the file's numbers) and time chunk, at ``stamp``."""
    key = (root, asset.path, variable, stamp)
    with _headers_lock:
        got = _headers.get(key)
        if got is not None:
            _headers.move_to_end(key)
            return got
    da = open_asset(root, asset, variable, decode_times=False)
    try:
        got = (da.coords.to_dataset().load(), time_chunk(da, asset))
    finally:
        da.close()
    with _headers_lock:
        _headers[key] = got
        while len(_headers) > HEADERS_KEPT:
            _headers.popitem(last=False)
    return got


def block_identities(root: str, spec: KernelSpec, todo: list[Block]) -> list[dict | None]:
    """Everything each block's partial aggregates depend on, from its file's stamp and
    coordinates only (no data read; the coordinates kept per process by stamp); None
    for a block that holds no selected step.

    The box and the time range enter as the grid and step indices they select, so two
    spellings of one box (0..360 or -180..180 longitudes) or two requests whose ranges
    both cover a block whole share it; the stamp (size, newest mtime and ctime) is read
    live, so a file rewritten in place, even with its mtime restored, is new.

    Raises:
        EmptySelection: The box contains no grid-cell centre of an asset's grid.
    """
    out: list[dict | None] = [None] * len(todo)
    for index in sorted({b.asset for b in todo}):
        asset = spec.assets[index]
        stamp = tree_stat(inside(root, asset.path))
        head, chunk = _header(root, asset, spec.variable, tuple(stamp))
        t_all, y_idx, x_idx = window(head, spec)
        for i, block in enumerate(todo):
            if block.asset != index:
                continue
            t_idx = block_steps(head, block, chunk, t_all)
            if len(t_idx):
                out[i] = {
                    "kernel": KERNEL_VERSION,
                    "asset": asset.path,
                    "stamp": list(stamp),
                    "variable": spec.variable,
                    "reduction": spec.reduction,
                    "over": spec.over,
                    "group_by": spec.group_by,
                    "steps": _runs(t_idx),
                    "rows": _runs(y_idx),
                    "columns": _runs(x_idx),
                    "units": [asset.scale, asset.offset],
                }
    return out


def unchanged_since(root: str, identity: dict) -> bool:
    """Whether the identity's asset still has the stamp it was identified at."""
    return list(tree_stat(inside(root, identity["asset"]))) == identity["stamp"]


__all__ = [
    "KERNEL_VERSION",
    "AssetRef",
    "Block",
    "EmptySelection",
    "KernelSpec",
    "block_identities",
    "block_partial",
    "blocks",
    "open_asset",
    "unchanged_since",
]
