"""Minimal exact partial aggregates: what a region returns, and how they combine.

Each reduction keeps only what it needs, in float64 (counts as integers):

| reduction | unweighted (over time)   | weighted (over space / both) |
|-----------|--------------------------|------------------------------|
| mean      | ``sum``, ``count``       | ``wsum`` (Σwx), ``weight`` (Σw) |
| sum       | ``sum``, ``count``       | ``sum``, ``count``           |
| std       | ``count``, ``mean``, ``m2`` | ``weight``, ``mean``, ``m2`` |
| min / max | ``min`` / ``max``        | ``min`` / ``max``            |
| count     | ``count``                | ``count``                    |

Weights are cos(latitude) for mean and std over space; sum, count, min and max are
unweighted. Standard deviations merge (n, mean, M2) with Chan et al.'s update, which
stays exact to rounding near 288 K where Σx²/n − mean² loses about half the digits.
A count that is the same for every cell of a group is stored once per group.

The accumulators take plain numpy blocks (time, lat, lon) and a key per time step —
the group label, or the time itself when every step is its own output — so a task
reads a block once and folds it in without building a Dask graph per group.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, cast

import numpy as np
import xarray as xr

ADDITIVE = ("sum", "wsum", "count", "weight")
COUNT_FIELDS = ("count", "weight")
SEASONS = {12: "DJF", 1: "DJF", 2: "DJF", 3: "MAM", 4: "MAM", 5: "MAM"}
SEASONS.update({6: "JJA", 7: "JJA", 8: "JJA", 9: "SON", 10: "SON", 11: "SON"})
KEY = "key"


def weighted(reduction: str, over: str) -> bool:
    """Whether cells are weighted by cos(latitude)."""
    return over in ("space", "both") and reduction in ("mean", "std")


def fields(reduction: str, over: str) -> tuple[str, ...]:
    """The partial fields a reduction returns."""
    w = weighted(reduction, over)
    return {
        "mean": ("wsum", "weight") if w else ("sum", "count"),
        "sum": ("sum", "count"),
        "std": ("weight" if w else "count", "mean", "m2"),
        "min": ("min",),
        "max": ("max",),
        "count": ("count",),
    }[reduction]


def key_dim(over: str, group_by: str | None) -> str | None:
    """The output's leading dimension: the group, the time (a series), or none."""
    if group_by:
        return group_by
    return "time" if over == "space" else None


def step_keys(time: xr.DataArray, over: str, group_by: str | None) -> np.ndarray:
    """The output key of every time step: its group label, the time itself when every
    step is its own output (a series), or one key for all.
    """
    if group_by in ("month", "year", "season"):
        field = "year" if group_by == "year" else "month"
        values = time.values
        if values.dtype == object:  # cftime: read the field (``.dt`` builds an index first)
            got = np.fromiter((getattr(t, field) for t in values), dtype="i8", count=len(values))
        else:
            got = np.asarray(getattr(time.dt, field), dtype="i8")
        return np.array([SEASONS[int(m)] for m in got]) if group_by == "season" else got
    if over == "space":
        return np.asarray(time.values)
    return np.zeros(time.size, dtype="i8")


def chan(n_a: Any, mean_a: Any, m2_a: Any, n_b: Any, mean_b: Any, m2_b: Any) -> tuple:
    """Merge two (weight, mean, M2) triples (Chan, Golub & LeVeque 1979); empty-safe.

    Works on numpy values and on DataArrays (which broadcast a count kept per group).
    """
    n = n_a + n_b
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.divide(n_b, n)
    frac = frac.fillna(0.0) if isinstance(frac, xr.DataArray) else np.nan_to_num(frac, nan=0.0)
    delta = mean_b - mean_a
    return n, mean_a + delta * frac, m2_a + m2_b + delta * delta * n_a * frac


class _Stats:
    """Running statistics of one key: arrays over cells (over=time) or scalars."""

    __slots__ = ("hi", "lo", "m2", "mean", "n", "s")

    def __init__(self) -> None:
        self.n: Any = 0
        self.s: Any = 0.0
        self.mean: Any = 0.0
        self.m2: Any = 0.0
        self.lo: Any = None
        self.hi: Any = None

    def add(self, reduction: str, n: Any, s: Any, m2: Any, lo: Any, hi: Any) -> None:
        if reduction in ("min", "max"):
            self.lo = lo if self.lo is None else np.fmin(self.lo, lo)
            self.hi = hi if self.hi is None else np.fmax(self.hi, hi)
        elif reduction == "std":
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = np.where(n > 0, s / np.where(n > 0, n, 1), 0.0)
            self.n, self.mean, self.m2 = chan(self.n, self.mean, self.m2, n, mean, m2)
        else:
            self.n = self.n + n
            self.s = self.s + s


class Accumulator:
    """Folds blocks of one request's data into minimal partial aggregates.

    Args:
        reduction: mean, sum, std, min, max or count.
        over: time (a map per key), space (a value per key, area-weighted where the
            reduction is), or both.
        group_by: month, season, year, or None.
        lat: Latitudes of the block's rows (for the weights and the output).
        lon: Longitudes of the block's columns (for the output).
    """

    def __init__(
        self,
        reduction: str,
        over: str,
        group_by: str | None,
        lat: np.ndarray,
        lon: np.ndarray,
    ) -> None:
        self.reduction, self.over, self.group_by = reduction, over, group_by
        self.lat, self.lon = np.asarray(lat, dtype="f8"), np.asarray(lon, dtype="f8")
        self.wlat = (
            np.cos(np.deg2rad(self.lat)) if weighted(reduction, over) else np.ones_like(self.lat)
        )
        self.stats: dict[Hashable, _Stats] = {}

    def add(self, block: np.ndarray, keys: Sequence[Hashable] | np.ndarray) -> None:
        """Fold a (time, lat, lon) block whose steps carry ``keys`` (in contiguous runs)."""
        keys = np.asarray(keys)
        if not len(keys):
            return
        cuts = np.flatnonzero(keys[1:] != keys[:-1]) + 1
        runs = list(zip(np.r_[0, cuts], np.r_[cuts, len(keys)], strict=True))
        fold = self._fold_cells if self.over == "time" else self._fold_space
        fold(block, keys, runs)

    def _key(self, keys: np.ndarray, i: int) -> Hashable:
        k = keys[i]
        return k.item() if isinstance(k, np.generic) and not isinstance(k, np.datetime64) else k

    def _fold_cells(self, block: np.ndarray, keys: np.ndarray, runs: list) -> None:
        """Per cell, over each run's steps (unweighted)."""
        red = self.reduction
        for a, b in runs:
            seg = block[a:b]
            st = self.stats.setdefault(self._key(keys, a), _Stats())
            if red in ("min", "max"):
                st.add(red, 0, 0, 0, np.fmin.reduce(seg, axis=0), np.fmax.reduce(seg, axis=0))
                continue
            s = seg.sum(axis=0, dtype="f8")
            valid = None
            if np.isnan(s).any():  # the slow path only where data is missing
                valid = ~np.isnan(seg)
                n: Any = valid.sum(axis=0, dtype="i8")
                s = np.where(valid, seg, 0).sum(axis=0, dtype="f8")
            else:
                n = np.full(s.shape, len(seg), dtype="i8")
            m2: Any = 0.0
            if red == "std":
                with np.errstate(invalid="ignore", divide="ignore"):
                    mean = np.where(n > 0, s / np.where(n > 0, n, 1), 0.0)
                dev = seg.astype("f8") - mean
                if valid is not None:
                    dev = np.where(valid, dev, 0.0)
                m2 = np.einsum("t...,t...->...", dev, dev)
            st.add(red, n, s, m2, None, None)

    def _fold_space(self, block: np.ndarray, keys: np.ndarray, runs: list) -> None:
        """Over cells, cos(lat)-weighted where the reduction is: per step (vectorised),
        then per run.
        """
        red = self.reduction
        t = len(block)
        if red in ("min", "max"):
            flat = block.reshape(t, -1)
            lo_t, hi_t = np.fmin.reduce(flat, axis=1), np.fmax.reduce(flat, axis=1)
            for a, b in runs:
                st = self.stats.setdefault(self._key(keys, a), _Stats())
                st.add(red, 0, 0, 0, np.fmin.reduce(lo_t[a:b]), np.fmax.reduce(hi_t[a:b]))
            return
        rows = block.sum(axis=2, dtype="f8")  # (t, lat)
        valid = None
        if np.isnan(rows).any():
            valid = ~np.isnan(block)
            vrows = valid.sum(axis=2, dtype="f8")
            rows = np.where(valid, block, 0).sum(axis=2, dtype="f8")
        else:
            vrows = np.full(rows.shape, block.shape[2], dtype="f8")
        n_t, s_t = vrows @ self.wlat, rows @ self.wlat
        if red != "std":
            if not weighted(red, self.over):
                n_t = np.rint(n_t).astype("i8")
            for a, b in runs:
                st = self.stats.setdefault(self._key(keys, a), _Stats())
                st.add(red, n_t[a:b].sum(), s_t[a:b].sum(), 0, None, None)
            return
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_t = np.where(n_t > 0, s_t / np.where(n_t > 0, n_t, 1), 0.0)
        dev = block.astype("f8") - mean_t[:, None, None]
        if valid is not None:
            dev = np.where(valid, dev, 0.0)
        m2_t = np.einsum("tyx,tyx->ty", dev, dev) @ self.wlat
        for a, b in runs:
            n = n_t[a:b].sum()
            mean = (n_t[a:b] * mean_t[a:b]).sum() / n if n > 0 else 0.0
            d = mean_t[a:b] - mean
            m2 = m2_t[a:b].sum() + (n_t[a:b] * d * d).sum()
            st = self.stats.setdefault(self._key(keys, a), _Stats())
            st.add(red, n, n * mean, m2, None, None)

    def result(self) -> xr.Dataset:
        """The partial aggregates as a Dataset: only the fields the reduction needs."""
        kdim = key_dim(self.over, self.group_by)
        keys: list[Any] = sorted(self.stats)
        cells = ("lat", "lon") if self.over == "time" else ()
        shape = (len(self.lat), len(self.lon)) if cells else ()
        names = fields(self.reduction, self.over)
        attr = {"sum": "s", "wsum": "s", "count": "n", "weight": "n", "min": "lo", "max": "hi"}
        data: dict[str, Any] = {}
        for name in names:
            arrays = [
                np.broadcast_to(np.asarray(getattr(self.stats[k], attr.get(name, name))), shape)
                for k in keys
            ]
            values = np.stack(arrays) if arrays else np.empty((0, *shape))
            data[name] = ((KEY, *cells), values.astype("i8" if name == "count" else "f8"))
        ds = xr.Dataset(data, coords={KEY: _key_values(keys)})
        if cells:
            ds = ds.assign_coords(lat=self.lat, lon=self.lon)
        ds = _compress_counts(ds, names)
        if kdim is None:
            return ds.squeeze(KEY, drop=True) if ds.sizes[KEY] == 1 else ds
        return ds.rename({KEY: kdim})


def _key_values(keys: list[Hashable]) -> np.ndarray:
    """Keys as a coordinate: integers, numpy datetimes, or objects (labels, cftime)."""
    if keys and all(isinstance(k, (int, np.integer)) for k in keys):
        return np.array(keys, dtype="i8")
    if keys and all(isinstance(k, np.datetime64) for k in keys):
        return np.array(keys, dtype="datetime64[ns]")
    out = np.empty(len(keys), dtype=object)
    out[:] = keys
    return out


def _compress_counts(ds: xr.Dataset, names: Sequence[str]) -> xr.Dataset:
    """Store a count once per key when every cell of that key has it (nothing missing)."""
    if len(names) < 2:
        return ds  # the count is the answer itself: keep its cells
    for name in COUNT_FIELDS:
        if name in ds and {"lat", "lon"} <= set(ds[name].dims):
            values = ds[name].values
            first = values.reshape(values.shape[0], -1)[:, :1]
            if values.size and (values.reshape(values.shape[0], -1) == first).all():
                ds[name] = ((ds[name].dims[0],), first[:, 0])
    return ds


def from_array(da: xr.DataArray, reduction: str, over: str, group_by: str | None) -> xr.Dataset:
    """The partial aggregates of an in-memory (time, lat, lon) array."""
    acc = Accumulator(reduction, over, group_by, da["lat"].values, da["lon"].values)
    values = np.asarray(da.transpose("time", "lat", "lon").values)
    acc.add(values, step_keys(da["time"], over, group_by))
    return acc.result()


def combine(partials: Sequence[xr.Dataset]) -> xr.Dataset:
    """Merge partial aggregates of several pieces: exact and order-independent."""
    if not partials:
        raise ValueError("nothing to combine")
    if len(partials) == 1:
        return partials[0]
    fast = _combine_in_place(partials)
    if fast is not None:
        return fast
    aligned = xr.align(*partials, join="outer")
    out = aligned[0]
    for other in aligned[1:]:
        out = _merge(out, other)
    if "count" in out and np.isfinite(out["count"]).all():
        out["count"] = out["count"].astype("i8")  # NaN fills of the alignment made it float
    return _compress_counts(out, [str(n) for n in out.data_vars])


def _key_dim(ds: xr.Dataset) -> str | None:
    dims = {str(d) for v in ds.data_vars.values() for d in v.dims} - {"lat", "lon"}
    return dims.pop() if len(dims) == 1 else None


def _combine_in_place(partials: Sequence[xr.Dataset]) -> xr.Dataset | None:
    """``combine`` without xarray's alignment, for the common case: sums, counts and
    extremes (no M2) of pieces on one grid, each field with the same dimensions in every
    piece. Every piece is added into arrays over the union of the keys, in the order
    given: the same additions as merging one by one, so the same numbers. None when the
    pieces are not of that shape (the general path then merges them).
    """
    first = partials[0]
    names = [str(n) for n in first.data_vars]
    if "m2" in names or any([str(n) for n in p.data_vars] != names for p in partials):
        return None
    dims = {n: first[n].dims for n in names}
    if any(p[n].dims != dims[n] for p in partials for n in names):
        return None
    for axis in ("lat", "lon"):
        if axis in first.coords and not all(
            axis in p.coords and np.array_equal(p[axis].values, first[axis].values)
            for p in partials
        ):
            return None
    kdim = _key_dim(first)
    if kdim is None and any(d not in ("lat", "lon") for n in names for d in dims[n]):
        return None
    keys = None
    if kdim is not None:
        if any(kdim not in p.indexes for p in partials):
            return None
        keys = first.indexes[kdim]
        for p in partials[1:]:
            keys = keys.union(p.indexes[kdim])
    out: dict[str, Any] = {}
    for name in names:
        shape = tuple(
            len(keys) if d == kdim and keys is not None else first.sizes[d] for d in dims[name]
        )
        extreme = name in ("min", "max")
        acc = np.full(shape, np.nan) if extreme else np.zeros(shape, dtype="f8")
        for p in partials:
            values = p[name].values
            where: Any = (
                keys.get_indexer(p.indexes[kdim])
                if keys is not None and kdim in dims[name]
                else Ellipsis
            )
            if extreme:
                acc[where] = (np.fmin if name == "min" else np.fmax)(acc[where], values)
            else:
                acc[where] += np.where(np.isnan(values), 0.0, values)
        out[name] = (dims[name], acc)
    coords = {a: first[a].values for a in ("lat", "lon") if a in first.coords}
    if keys is not None and kdim is not None:
        coords[kdim] = keys.values
    merged = xr.Dataset(out, coords=coords)
    if "count" in merged and np.isfinite(merged["count"]).all():
        merged["count"] = merged["count"].astype("i8")
    return _compress_counts(merged, names)


def _filled(ds: xr.Dataset, name: str) -> xr.DataArray:
    return ds[name].fillna(0) if name in ADDITIVE or name in ("mean", "m2") else ds[name]


def _merge(a: xr.Dataset, b: xr.Dataset) -> xr.Dataset:
    out = xr.Dataset(coords=a.coords)
    n_name = next((n for n in COUNT_FIELDS if n in a and "m2" in a), None)
    if n_name:
        n, mean, m2 = chan(
            _filled(a, n_name),
            _filled(a, "mean"),
            _filled(a, "m2"),
            _filled(b, n_name),
            _filled(b, "mean"),
            _filled(b, "m2"),
        )
        out[n_name], out["mean"], out["m2"] = n, mean, m2
    for name in a.data_vars:
        if name in out:
            continue
        if name in ADDITIVE:
            out[name] = _filled(a, name) + _filled(b, name)
        elif name == "min":
            out[name] = np.fmin(a[name], b[name])
        elif name == "max":
            out[name] = np.fmax(a[name], b[name])
    return out


def finalize(agg: xr.Dataset, reduction: str) -> xr.DataArray:
    """The requested statistic from merged partials (NaN where nothing was valid)."""
    if reduction in ("min", "max"):
        return agg[reduction]
    n = agg["weight"] if "weight" in agg else agg["count"]
    if reduction == "count":
        return n.astype("f8")
    empty = n == 0
    if reduction == "mean":
        total = agg["wsum"] if "wsum" in agg else agg["sum"]
        out = total / n.where(~empty)
    elif reduction == "sum":
        out = agg["sum"].where(~empty)
    else:
        out = cast(xr.DataArray, np.sqrt((agg["m2"] / n.where(~empty)).clip(min=0.0)))
    shape_of = next(agg[f] for f in agg.data_vars if f not in COUNT_FIELDS)
    return out.broadcast_like(shape_of).transpose(*shape_of.dims)
