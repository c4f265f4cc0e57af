"""Partial aggregates computed next to the data, and their exact combination.

A region returns, per output cell and group, seven numbers: the count ``n``,
the plain ``sum``, the weight sum ``sw``, the weighted sums ``swx`` and
``swx2``, and ``min``/``max``. Adding these across regions gives exactly what
one computation over all the data would give. Space reductions weight cells by
cos(latitude) for mean and std; sum, count, min and max are unweighted.
"""

from __future__ import annotations

from typing import Any, Literal, cast

import numpy as np
import xarray as xr
from pydantic import BaseModel

from proxima.catalog.geo import wrap180
from proxima.paths import inside
from proxima.zarr_chunks import check_chunks

AGGREGATES = ("n", "sum", "sw", "swx", "swx2", "min", "max")
SEASONS = {
    12: "DJF",
    1: "DJF",
    2: "DJF",
    3: "MAM",
    4: "MAM",
    5: "MAM",
    6: "JJA",
    7: "JJA",
    8: "JJA",
    9: "SON",
    10: "SON",
    11: "SON",
}


class AssetRef(BaseModel):
    """An asset a region reads."""

    path: str
    format: Literal["netcdf", "zarr", "unknown"]
    size: int = 0


class KernelSpec(BaseModel):
    """Everything a region needs to compute its partial aggregates."""

    variable: str
    start_key: int
    end_key: int
    bbox: list[float]
    over: Literal["time", "space", "both"]
    group_by: Literal["month", "season", "year"] | None = None
    assets: list[AssetRef]


class EmptySelection(ValueError):
    """The box or time range selects no grid cell or time step of an asset."""


def open_asset(root: str, asset: AssetRef, variable: str) -> xr.DataArray:
    """Open one asset lazily as (time, lat, lon), whatever its time dimension is called."""
    path = inside(root, asset.path)
    coder = xr.coders.CFDatetimeCoder(use_cftime=True)
    if asset.format == "zarr":
        check_chunks(path, variable)
        ds = xr.open_zarr(path, decode_times=coder, consolidated=True)
    else:
        ds = xr.open_dataset(path, engine="h5netcdf", decode_times=coder, chunks={})
    da = ds[variable]
    tdim = next(d for d in da.dims if d not in ("lat", "lon"))
    return da.rename({tdim: "time"}).transpose("time", "lat", "lon")


def _day_keys(time: xr.DataArray) -> np.ndarray:
    return np.asarray(time.dt.year * 10000 + time.dt.month * 100 + time.dt.day)


def subset(da: xr.DataArray, spec: KernelSpec) -> xr.DataArray:
    """Select the time range and the box (cell centres), whatever the grid's conventions.

    Works on descending latitudes and 0..360 longitudes alike, and on boxes that
    cross the antimeridian, by index masks instead of label slices (a reversed
    label slice on a descending axis silently selects nothing).
    """
    keys = _day_keys(da["time"])
    t_idx = np.nonzero((keys >= spec.start_key) & (keys <= spec.end_key))[0]
    west, south, east, north = spec.bbox
    lat = np.asarray(da["lat"], dtype=float)
    lon = np.array([wrap180(v) for v in np.asarray(da["lon"], dtype=float)])
    y_idx = np.nonzero((lat >= south) & (lat <= north))[0]
    if west <= east:
        x_mask = (lon >= west) & (lon <= east)
    else:
        x_mask = (lon >= west) | (lon <= east)
    x_idx = np.nonzero(x_mask)[0]
    if not len(y_idx) or not len(x_idx):
        raise EmptySelection(f"box {spec.bbox} contains no grid-cell centre of this grid")
    return da.isel(time=t_idx, lat=y_idx, lon=x_idx)


def labels(time: xr.DataArray, group_by: str) -> np.ndarray:
    """Group label of each time step."""
    if group_by == "month":
        return np.asarray(time.dt.month)
    if group_by == "year":
        return np.asarray(time.dt.year)
    return np.array([SEASONS[int(m)] for m in np.asarray(time.dt.month)])


def _aggregate(da: xr.DataArray, dims: list[str], weighted: bool) -> xr.Dataset:
    x = da.astype("f8")
    valid = x.notnull()
    lat = x["lat"].astype("f8")  # float32 weights would lose precision over many cells
    w = cast(xr.DataArray, np.cos(np.deg2rad(lat))) if weighted else xr.ones_like(lat)
    wv = w * valid
    return xr.Dataset(
        {
            "n": valid.sum(dims).astype("f8"),
            "sum": x.sum(dims),
            "sw": wv.sum(dims),
            "swx": (w * x).sum(dims),
            "swx2": (w * x * x).sum(dims),
            "min": x.min(dims),
            "max": x.max(dims),
        }
    )


def partial(da: xr.DataArray, over: str, group_by: str | None) -> xr.Dataset:
    """The lazy partial aggregates of ``da`` for the requested reduction."""
    weighted = over in ("space", "both")
    if group_by is None:
        dims = {"time": ["time"], "space": ["lat", "lon"], "both": ["time", "lat", "lon"]}[over]
        return _aggregate(da, dims, weighted)
    dims = ["time"] if over == "time" else ["time", "lat", "lon"]
    lab = labels(da["time"], group_by)
    parts = []
    for value in sorted(set(lab.tolist())):
        part = _aggregate(da.isel(time=np.nonzero(lab == value)[0]), dims, weighted)
        parts.append(part.expand_dims({group_by: [value]}))
    return xr.concat(parts, dim=group_by)


def regional_array(root: str, spec: KernelSpec) -> xr.DataArray:
    """All of a region's selected data as one lazy (time, lat, lon) array."""
    pieces = []
    for asset in spec.assets:
        da = subset(open_asset(root, asset, spec.variable), spec)
        if da.sizes["time"]:
            pieces.append(da)
    if not pieces:
        raise EmptySelection("no time step of the region's assets falls in the range")
    da = xr.concat(pieces, dim="time", coords="minimal", compat="override", join="override")
    return da.sortby("time")


_FILL = {"n": 0.0, "sum": 0.0, "sw": 0.0, "swx": 0.0, "swx2": 0.0, "min": np.inf, "max": -np.inf}


def combine(partials: list[xr.Dataset]) -> xr.Dataset:
    """Add partial aggregates from several regions: exact, order-independent."""
    if not partials:
        raise ValueError("nothing to combine")
    aligned = xr.align(*partials, join="outer", exclude=())
    filled = [_fill(ds) for ds in aligned]
    out = filled[0].copy()
    for ds in filled[1:]:
        for name in ("n", "sum", "sw", "swx", "swx2"):
            out[name] = out[name] + ds[name]
        out["min"] = np.fmin(out["min"], ds["min"])
        out["max"] = np.fmax(out["max"], ds["max"])
    return out


def _fill(ds: xr.Dataset) -> xr.Dataset:
    return xr.Dataset({k: ds[k].fillna(_FILL[k]) for k in AGGREGATES}, attrs=ds.attrs)


def finalize(agg: xr.Dataset, reduction: str) -> xr.DataArray:
    """The requested statistic from combined aggregates (NaN where nothing was valid)."""
    empty = agg["n"] == 0
    if reduction == "count":
        return agg["n"]
    if reduction == "sum":
        out = agg["sum"]
    elif reduction == "min":
        out = agg["min"]
    elif reduction == "max":
        out = agg["max"]
    else:
        mean = agg["swx"] / agg["sw"]
        if reduction == "mean":
            out = mean
        else:
            var = (agg["swx2"] / agg["sw"] - mean * mean).clip(min=0.0)
            out = cast(xr.DataArray, np.sqrt(var))
    return out.where(~empty)


def compute_partial(root: str, spec: KernelSpec, client: Any = None) -> tuple[xr.Dataset, int]:
    """Compute a region's partial aggregates (on ``client`` if given).

    Returns:
        (the small in-memory aggregates, bytes of data read).
    """
    da = regional_array(root, spec)
    lazy = partial(da, spec.over, spec.group_by)
    result = client.compute(lazy).result() if client is not None else lazy.compute()
    return result, int(da.size * da.dtype.itemsize)
