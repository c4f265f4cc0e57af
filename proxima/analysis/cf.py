"""CF-1.8 names and metadata for results: what a notebook user (and a CF checker)
needs to know what a result holds without reading the request.
"""

from __future__ import annotations

import json
from datetime import timedelta
from importlib import metadata
from typing import Any

import cftime
import numpy as np
import xarray as xr
from xarray.coding.times import contains_cftime_datetimes

from proxima.analysis import time_cells
from proxima.analysis.plan import Plan, SelectionPlan
from proxima.analysis.request import AnalysisRequest, Coarsen

CONVENTIONS = "CF-1.8"
# CF section 7.3 / Appendix E method names.
METHODS = {
    "mean": "mean",
    "min": "minimum",
    "max": "maximum",
    "sum": "sum",
    "std": "standard_deviation",
}
COORDS: dict[str, dict[str, str]] = {
    "lat": {
        "standard_name": "latitude",
        "long_name": "latitude",
        "units": "degrees_north",
        "axis": "Y",
    },
    "lon": {
        "standard_name": "longitude",
        "long_name": "longitude",
        "units": "degrees_east",
        "axis": "X",
    },
    "time": {"standard_name": "time", "long_name": "time", "axis": "T"},
    "month": {"long_name": "month of the year (1 = January)", "units": "1"},
    "season": {"long_name": "season of the year: DJF, MAM, JJA or SON"},
    "year": {"long_name": "calendar year", "units": "1"},
}
TIME_UNITS = "days since 1850-01-01"
SOFTWARE = ("proxima", "xarray", "numpy", "dask", "distributed", "h5py", "zarr")


def variable_name(plan: Plan) -> str:
    """The result's name: the input variable's (``tas``), ``<name>_anomaly`` for a
    comparison with a baseline.
    """
    name = plan.selections[0].variable
    return f"{name}_anomaly" if len(plan.selections) > 1 else name


def _joint(names: str, method: str) -> str:
    return f"{names}: {method}"


def cell_methods(request: AnalysisRequest, climatology: bool = False) -> str | None:
    """CF cell_methods true to the computation (CF 1.8 §7.3, §7.4).

    ``time: mean`` for a map, ``area: maximum`` for a series, ``time: area: mean`` when
    time and space were reduced together (over both, or over space within groups of time);
    a climatology (a group spanning several years) reduces ``within years`` then ``over
    years``. Means and standard deviations of a climatology are pooled over every time
    step (not a mean of yearly values), which the comment says. A count is the ``sum`` of
    valid values (its standard_name carries ``number_of_observations``); a subset names
    only what its coarsening averaged, or None.
    """
    if request.reduction == "none":
        coarsen = request.coarsen or Coarsen()
        parts = []
        if coarsen.time:
            parts.append("time: mean")
        if coarsen.space:
            parts.append("lat: lon: mean")  # plain block means, not area-weighted
        return " ".join(parts) or None
    method = "sum" if request.reduction == "count" else METHODS[request.reduction]
    space = request.over in ("space", "both")
    time = request.over in ("time", "both") or request.group_by is not None
    if not time:
        return _joint("area", method)
    if not climatology:
        return _joint("time: area" if space else "time", method)
    within = f"time: {method} within years time: {method} over years"
    if request.reduction in ("mean", "std"):
        within += " (comment: pooled over every time step of every year)"
    return f"area: {method} {within}" if space else within


def _long_name(request: AnalysisRequest, what: str) -> str:
    grouped = f" by {request.group_by}" if request.group_by else ""
    if request.reduction == "count":
        return f"number of valid values of {what} over {request.over}{grouped}"
    if request.reduction != "none":
        return f"{request.reduction} of {what} over {request.over}{grouped}"
    coarsen = request.coarsen or Coarsen()
    made = []
    if coarsen.time:
        made.append(("daily" if coarsen.time == "day" else "monthly") + " means")
    if coarsen.space:
        made.append(f"means of {coarsen.space}x{coarsen.space} cells")
    return what + (f" ({', '.join(made)})" if made else "")


def _attrs(
    request: AnalysisRequest, main: SelectionPlan, units: str, climatology: bool
) -> dict[str, Any]:
    counted = request.reduction == "count"
    attrs: dict[str, Any] = {
        "long_name": _long_name(request, main.long_name or main.variable),
        "units": "1" if counted else units,
    }
    if main.standard_name:
        modifier = " number_of_observations" if counted else ""
        attrs["standard_name"] = main.standard_name + modifier
    methods = cell_methods(request, climatology)
    if methods:
        attrs["cell_methods"] = methods
    return attrs


def describe(
    answer: xr.DataArray, request: AnalysisRequest, plan: Plan, climatology: bool = False
) -> tuple[str, dict[str, Any], dict[str, dict[str, str]]]:
    """The result variable's name and attributes, and each coordinate's attributes."""
    main = plan.selections[0]
    units = str(answer.attrs.get("units", ""))
    attrs = _attrs(request, main, units, climatology)
    if len(plan.selections) > 1:
        base = plan.selections[1]
        attrs.pop("standard_name", None)  # CF has no modifier for a difference
        attrs["long_name"] = (
            f"{attrs['long_name']} minus the same of {base.long_name or base.variable} "
            f"({base.dataset}, {request.baseline.start if request.baseline else ''}.."
            f"{request.baseline.end if request.baseline else ''})"
        )
    coords = {name: COORDS[name] for name in answer.coords if name in COORDS}
    return variable_name(plan), attrs, coords


def provenance(request: AnalysisRequest, plan: Plan) -> dict[str, str]:
    """Global attributes saying what was asked, what was read and with which software."""
    assets = {
        f"{s.role}:{r.region}": [a.path for a in r.spec.assets]
        for s in plan.selections
        for r in s.regions
    }
    versions = {}
    for package in SOFTWARE:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    sel = request.selection
    return {
        "Conventions": CONVENTIONS,
        "source": f"Proxima {versions.get('proxima', '')} cross-region analysis",
        "time_coverage_start": sel.start.isoformat(),
        "time_coverage_end": sel.end.isoformat(),
        "catalog_assets": json.dumps(assets),
        "software_versions": json.dumps(versions),
    }


def to_dataset(answer: xr.DataArray, request: AnalysisRequest, plan: Plan) -> xr.Dataset:
    """The answer as a CF-described dataset (global attributes added by the caller)."""
    groups = None
    if request.group_by and request.group_by in answer.dims:
        sel = request.selection
        groups = [
            time_cells.group_time(request.group_by, label, sel.start, sel.end)
            for label in answer[request.group_by].values
        ]
    climatology = bool(groups) and time_cells.is_climatology(groups or [])
    name, attrs, coords = describe(answer, request, plan, climatology)
    ds = answer.rename(name).assign_attrs(attrs).to_dataset()
    for coord in ("month", "year"):  # CF 2.2 has no 64-bit integers
        if coord in ds.coords:
            ds[coord] = ds[coord].astype("int32")
    if groups is not None and request.group_by:
        ds = _group_times(ds, request.group_by, groups, climatology)
    elif request.reduction == "none":
        if request.coarsen and request.coarsen.time:
            ds = _step_bounds(ds, request.coarsen.time, request)
    elif request.over != "space":
        ds = _period(ds, request)
    for coord, coord_attrs in coords.items():
        ds[coord].attrs.update(coord_attrs)
    ds.attrs.update(provenance(request, plan))
    return ds


def _period(ds: xr.Dataset, request: AnalysisRequest) -> xr.Dataset:
    """A scalar ``time`` with bounds: the period the reduction over time covered."""
    start = np.datetime64(request.selection.start, "s")
    end = np.datetime64(request.selection.end, "s") + np.timedelta64(1, "D")
    ds = ds.assign_coords(time=start + (end - start) // 2)
    ds["time_bnds"] = xr.DataArray(np.array([start, end]), dims="nv")
    ds["time"].attrs.update(COORDS["time"], bounds="time_bnds")
    return ds


def _group_times(
    ds: xr.Dataset, dim: str, groups: list[time_cells.GroupTime], climatology: bool
) -> xr.Dataset:
    """An auxiliary ``time`` along the group dimension, bounded by what each value covers:
    ``bounds`` for a series of months, seasons or years; ``climatology`` bounds (first to
    last occurrence) when a group spans several years (CF 1.8 §7.4).
    """
    bounds = np.array(
        [[np.datetime64(b, "s") for b in g.bounds] for g in groups], dtype="datetime64[s]"
    )
    middles = np.array([g.occurrences[0].middle for g in groups], dtype="datetime64[s]")
    name = "climatology_bnds" if climatology else "time_bnds"
    ds = ds.assign_coords(time=(dim, middles))
    ds[name] = xr.DataArray(bounds, dims=(dim, "nv"))
    attrs = {k: v for k, v in COORDS["time"].items() if k != "axis"}  # axis: coordinates only
    ds["time"].attrs.update(attrs, **{"climatology" if climatology else "bounds": name})
    return ds


def _step_bounds(ds: xr.Dataset, per: str, request: AnalysisRequest) -> xr.Dataset:
    """Bounds of each coarsened step: its day or month, clipped to the selection (a month
    the selection enters mid-way averaged only its selected days, and its time moves to
    the first of them).
    """
    times = ds["time"].values
    if not len(times):
        return ds
    sel = request.selection
    first, last = sel.start, sel.end + timedelta(days=1)
    if isinstance(times[0], cftime.datetime):
        calendar = times[0].calendar
        lo: Any = cftime.datetime(first.year, first.month, first.day, calendar=calendar)
        hi: Any = cftime.datetime(last.year, last.month, last.day, calendar=calendar)
    else:
        lo, hi = np.datetime64(first, "ns"), np.datetime64(last, "ns")
    starts = np.array([max(t, lo) for t in times], dtype=times.dtype)
    ends = np.array([min(time_cells.step_end(t, per), hi) for t in times], dtype=times.dtype)
    ds = ds.assign_coords(time=xr.DataArray(starts, dims="time", attrs=ds["time"].attrs))
    ds["time_bnds"] = xr.DataArray(np.stack([starts, ends], axis=1), dims=("time", "nv"))
    ds["time"].attrs["bounds"] = "time_bnds"
    return ds


def encoding(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    """How to write a result CF-clean: no fill value on coordinates and bounds, times as
    float64 offsets (CF 2.2 has no 64-bit integers).
    """
    out: dict[str, dict[str, Any]] = {}
    for name in [*ds.coords, *(v for v in ds.data_vars if str(v).endswith("_bnds"))]:
        out[str(name)] = {"_FillValue": None}
        var = ds[name].variable
        if np.issubdtype(var.dtype, np.datetime64) or contains_cftime_datetimes(var):
            # one reference for a time and its bounds (CF 7.1 wants them to agree)
            out[str(name)] |= {"dtype": "float64", "units": TIME_UNITS}
    return out


def data_variable(ds: xr.Dataset) -> xr.DataArray:
    """The one data variable of a Proxima result."""
    names = [n for n in ds.data_vars if not str(n).endswith("_bnds")]
    if len(names) != 1:
        raise ValueError(f"a Proxima result holds one data variable, this one {names}")
    return ds[names[0]]
