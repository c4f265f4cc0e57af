"""Subsets (``reduction: none``): the selected data themselves, optionally coarsened in
their region before they move.

Each task reads one block of whole on-disk chunks (as the reduction kernel does) and
returns sums and counts of valid values per output cell, so that a day or month split
across blocks or files is still averaged exactly. The region merges its blocks and
sends only the finished values.
"""

from __future__ import annotations

import cftime
import numpy as np
import xarray as xr

from proxima.analysis.kernels import (
    Block,
    KernelSpec,
    block_steps,
    column_runs,
    open_asset,
    read_slab,
    time_chunk,
    window,
)
from proxima.errors import ProximaError


class OverlappingPieces(ProximaError):
    """Two regions returned values for the same time step."""


def _period_labels(times: np.ndarray, per: str) -> np.ndarray:
    """Each step's day or month, as a time of that calendar (its first instant)."""
    out = []
    for t in times:
        day = t.day if per == "day" else 1
        out.append(cftime.datetime(t.year, t.month, day, calendar=t.calendar))
    return np.array(out, dtype=object)


def block_subset(root: str, spec: KernelSpec, block: Block) -> tuple[xr.Dataset | None, int]:
    """One block's selected values as sums and counts per output cell.

    Returns:
        (``sum`` and ``count`` over (time, lat, lon), or None when the block holds no
        selected step; decoded bytes read).
    """
    asset = spec.assets[block.asset]
    da = open_asset(root, asset, spec.variable)
    try:
        t_idx, y_idx, x_idx = window(da, spec)
        t_idx = block_steps(da, block, time_chunk(da, asset), t_idx)
        if not len(t_idx):
            return None, 0
        # West to east across the box, antimeridian included (170, 180, 190, ...), so
        # that blocks of cells and the longitude coordinate are contiguous.
        west = spec.bbox[0]
        lon = (np.asarray(da["lon"], dtype=float)[x_idx] - west) % 360.0 + west
        order = np.argsort(lon, kind="stable")
        x_idx, lon = x_idx[order], lon[order]
        t0 = int(t_idx[0])
        slab = read_slab(da.variable, slice(t0, int(t_idx[-1]) + 1), y_idx, column_runs(x_idx))
        slab = slab[t_idx - t0]
        if asset.scale != 1.0 or asset.offset != 0.0:
            slab = slab * asset.scale + asset.offset
        coords = {
            "time": da["time"].values[t_idx],
            "lat": np.asarray(da["lat"])[y_idx],
            "lon": lon,
        }
        values = xr.DataArray(slab, dims=("time", "lat", "lon"), coords=coords)
        nbytes = int(len(t_idx) * len(y_idx) * len(x_idx) * da.dtype.itemsize)
        source_dtype = str(da.dtype)
    finally:
        da.close()
    valid = values.notnull()
    sums, counts = values.fillna(0.0), valid.astype("int32")
    if spec.coarsen_time:
        labels = xr.DataArray(_period_labels(coords["time"], spec.coarsen_time), dims="time")
        sums = sums.groupby(labels.rename("time")).sum()
        counts = counts.groupby(labels.rename("time")).sum()
    if spec.coarsen_space:
        n = spec.coarsen_space
        blocks_of = {"lat": n, "lon": n}
        sums = sums.coarsen(blocks_of, boundary="trim").sum()
        counts = counts.coarsen(blocks_of, boundary="trim").sum()
    piece = xr.Dataset({"sum": sums, "count": counts})
    piece.attrs["source_dtype"] = source_dtype
    return piece, nbytes


def merge_blocks(pieces: list[xr.Dataset]) -> xr.Dataset:
    """One region's blocks as one piece: sums and counts of a shared period added."""
    merged = xr.concat(pieces, dim="time")
    if merged.indexes["time"].has_duplicates:
        merged = merged.groupby("time").sum()
    merged.attrs = pieces[0].attrs
    return merged.sortby("time")


def finish(piece: xr.Dataset) -> xr.Dataset:
    """The values a region sends: mean of its valid values per cell (NaN where none), in
    the source's precision.
    """
    dtype = "float32" if piece.attrs.get("source_dtype") == "float32" else "float64"
    value = (piece["sum"] / piece["count"].where(piece["count"] > 0)).astype(dtype)
    return xr.Dataset({"value": value})


def concatenate(pieces: list[xr.Dataset]) -> xr.DataArray:
    """The regions' pieces in time order.

    Raises:
        OverlappingPieces: Two regions returned the same time step.
    """
    whole = xr.concat([p["value"] for p in pieces], dim="time").sortby("time")
    repeated = whole.indexes["time"].duplicated()
    if repeated.any():
        first = whole["time"].values[repeated][0]
        raise OverlappingPieces(
            f"two regions returned data for {first}; their assets overlap in time"
        )
    return whole
