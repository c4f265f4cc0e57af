"""CF-1.8 names and metadata for results: what a notebook user (and a CF checker)
needs to know what a result holds without reading the request.
"""

from __future__ import annotations

import json
from importlib import metadata
from typing import Any

import numpy as np
import xarray as xr
from xarray.coding.times import contains_cftime_datetimes

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
SPACE = {"space": "area", "time": "time", "both": "time: area"}
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


def cell_methods(request: AnalysisRequest) -> str | None:
    """CF cell_methods of the reduction (``time: mean``, ``area: maximum``,
    ``time: area: mean`` for a joint reduction); None for a count or a plain subset.
    """
    if request.reduction == "count":
        return None
    if request.reduction == "none":
        coarsen = request.coarsen
        parts = []
        if coarsen and coarsen.time:
            parts.append("time: mean")
        if coarsen and coarsen.space:
            parts.append("lat: lon: mean")  # plain block means, not area-weighted
        return " ".join(parts) or None
    return f"{SPACE[request.over]}: {METHODS[request.reduction]}"


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


def _attrs(request: AnalysisRequest, main: SelectionPlan, units: str) -> dict[str, Any]:
    counted = request.reduction == "count"
    attrs: dict[str, Any] = {
        "long_name": _long_name(request, main.long_name or main.variable),
        "units": "1" if counted else units,
    }
    if main.standard_name:
        modifier = " number_of_observations" if counted else ""
        attrs["standard_name"] = main.standard_name + modifier
    methods = cell_methods(request)
    if methods:
        attrs["cell_methods"] = methods
    return attrs


def describe(
    answer: xr.DataArray, request: AnalysisRequest, plan: Plan
) -> tuple[str, dict[str, Any], dict[str, dict[str, str]]]:
    """The result variable's name and attributes, and each coordinate's attributes."""
    main = plan.selections[0]
    units = str(answer.attrs.get("units", ""))
    attrs = _attrs(request, main, units)
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
    name, attrs, coords = describe(answer, request, plan)
    ds = answer.rename(name).assign_attrs(attrs).to_dataset()
    for coord in ("month", "year"):  # CF 2.2 has no 64-bit integers
        if coord in ds.coords:
            ds[coord] = ds[coord].astype("int32")
    if request.over != "space" and not request.group_by and request.reduction != "none":
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
