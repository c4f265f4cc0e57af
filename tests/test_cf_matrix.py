"""Every reduction x over x group_by (and every coarsening of a subset) says truly what
its numbers are: each value is recomputed from the source files by reading the result's
own ``cell_methods`` and time bounds (or climatology bounds), never from a table of
expected strings. A wrong method, a missing bound or bounds that cover other days than
were reduced give another number and fail.

The regions' work runs in this process (``compute_partial`` without a cluster) on the
real catalog's plan: this test is about what the result says, not about orchestration.
"""

from __future__ import annotations

import itertools
import re
from datetime import date
from pathlib import Path

import cf_xarray  # noqa: F401  (registers the .cf accessor)
import numpy as np
import pytest
import xarray as xr

from proxima import opensearch
from proxima.analysis import cf
from proxima.analysis.assemble import RegionOutcome, assemble
from proxima.analysis.plan import Plan, make_plan
from proxima.analysis.regional import compute_partial
from proxima.analysis.request import AnalysisRequest
from proxima.analysis.time_cells import SEASON_MONTHS
from proxima.platform import load as load_platform
from tests.test_cf import UKESM, cf_errors

ERA5 = {
    "variable": "air_temperature",
    "dataset": "era5",
    "start": "2020-01-01",
    "end": "2020-04-30",
    "bbox": [0, -60, 90, 60],
}
# Two years of monthly CMIP6: a month or season recurs, so its values are climatological.
CMIP6 = {**UKESM, "start": "2014-01-01", "end": "2015-12-31"}
REDUCTIONS = ["mean", "min", "max", "sum", "std", "count"]
OVERS = ["time", "space", "both"]
GROUPS = [None, "month", "season", "year"]
COARSEN = [{"time": "day"}, {"time": "month"}, {"space": 2}, {"time": "day", "space": 3}]
NUMPY = {
    "mean": None,  # weighted: below
    "standard_deviation": None,
    "sum": np.nansum,
    "minimum": np.nanmin,
    "maximum": np.nanmax,
}
METHOD = re.compile(r"((?:\w+: )+)(\w+)(?: (within|over) years)?(?: \(comment: ([^)]*)\))?")


def parse(methods: str) -> list[tuple[list[str], str, str | None, str | None]]:
    """``cell_methods`` as (names, method, within/over, comment) in order (CF 7.3)."""
    out = []
    pos = 0
    for m in METHOD.finditer(methods):
        assert methods[pos : m.start()].strip() == "", f"unparsed {methods[pos : m.start()]!r}"
        names = [n.strip() for n in m.group(1).split(":") if n.strip()]
        out.append((names, m.group(2), m.group(3), m.group(4)))
        pos = m.end()
    assert methods[pos:].strip() == "", f"unparsed tail {methods[pos:]!r}"
    return out


def run(request: dict) -> tuple[xr.Dataset, Plan]:
    """The request answered by the library on the real catalog, in this process."""
    req = AnalysisRequest.model_validate(request)
    platform = load_platform()
    catalog = opensearch.connect_catalog(platform.catalog)
    plan = make_plan(
        req, catalog, platform.catalog_alias, platform.client_region, platform.egress_prices
    )
    outcomes = []
    for sel in plan.selections:
        for r in sel.regions:
            partial, nbytes = compute_partial(platform.region(r.region).root, r.spec, None)
            outcomes.append(
                RegionOutcome(
                    role=sel.role,
                    region=r.region,
                    worker="here",
                    worker_region=r.region,
                    bytes_read=nbytes,
                    bytes_returned=0,
                    seconds=0.0,
                    started_at=0.0,
                    partial=partial,
                )
            )
    return assemble(req, plan, outcomes, [], platform.client_region).dataset, plan


def source(plan: Plan, role: str = "selection") -> xr.DataArray:
    """The selected values straight from the files the plan names, (time, lat, lon)."""
    platform = load_platform()
    sel = next(s for s in plan.selections if s.role == role)
    pieces = []
    for r in sel.regions:
        root = Path(platform.region(r.region).root)
        for asset in r.spec.assets:
            path = root / asset.path
            ds = (
                xr.open_zarr(path, decode_times=xr.coders.CFDatetimeCoder(use_cftime=True))
                if asset.format == "zarr"
                else xr.open_dataset(
                    path, engine="h5netcdf", decode_times=xr.coders.CFDatetimeCoder(use_cftime=True)
                )
            )
            da = ds[r.spec.variable]
            names = {"latitude": "lat", "longitude": "lon", "time0": "time"}  # as ERA5 spells them
            da = da.rename({d: names[d] for d in da.dims if d in names})
            pieces.append(da.load().astype("f8") * asset.scale + asset.offset)
    da = xr.concat(pieces, "time").sortby("time")
    _, unique = np.unique(da["time"].values, return_index=True)
    da = da.isel(time=np.sort(unique))
    return da.transpose("time", "lat", "lon")


def cut(da: xr.DataArray, bbox: list[float], start: str, end: str) -> xr.DataArray:
    """The cells whose centres fall in the box (west < east here) and the days asked."""
    west, south, east, north = bbox
    lat_ok = (da["lat"] >= south) & (da["lat"] <= north)
    if east - west >= 360:
        lon_ok = da["lon"] == da["lon"]
    else:
        lon = (da["lon"] - west) % 360
        lon_ok = lon <= east - west
    days = np.array([date(t.year, t.month, t.day) for t in da["time"].values])
    t_ok = (days >= date.fromisoformat(start)) & (days <= date.fromisoformat(end))
    return da.isel(
        time=np.flatnonzero(t_ok), lat=np.flatnonzero(lat_ok), lon=np.flatnonzero(lon_ok)
    )


def reduce(
    values: np.ndarray, axes: tuple[int, ...], method: str, weights: np.ndarray
) -> np.ndarray:
    """``method`` over ``axes`` with nan-skipping; mean and standard deviation weighted."""
    if method in ("mean", "standard_deviation"):
        w = np.where(np.isnan(values), 0.0, np.broadcast_to(weights, values.shape))
        x = np.nan_to_num(values)
        total = w.sum(axis=axes, keepdims=True)
        mean = (w * x).sum(axis=axes, keepdims=True) / total
        if method == "mean":
            return np.squeeze(mean, axis=axes)
        return np.squeeze(
            np.sqrt((w * (x - mean) ** 2).sum(axis=axes, keepdims=True) / total), axis=axes
        )
    return NUMPY[method](values, axis=axes)


def group_of(t, group_by: str):
    if group_by == "month":
        return t.month
    if group_by == "year":
        return t.year
    return next(s for s, months in SEASON_MONTHS.items() if t.month in months)


def season_year(t, group_by: str) -> int:
    """The year a step's group occurrence belongs to (December's DJF to the next year)."""
    return t.year + 1 if group_by == "season" and t.month == 12 else t.year


def in_bounds(times: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    a, b = (date.fromisoformat(str(x)[:10]) for x in bounds)
    days = np.array([date(t.year, t.month, t.day) for t in times])
    return (days >= a) & (days < b)


def expected(
    ds: xr.DataArray, data: xr.DataArray, request: AnalysisRequest, answer: xr.DataArray
) -> np.ndarray:
    """Each value of ``answer`` recomputed from ``data`` as its metadata describe it."""
    counted = "number_of_observations" in answer.attrs.get("standard_name", "")
    values = (~np.isnan(data.values)).astype("f8") if counted else data.values
    wlat = np.cos(np.deg2rad(data["lat"].values.astype("f8")))[None, :, None]
    steps = parse(answer.attrs["cell_methods"])
    time = ds["time"] if "time" in ds.coords else None
    names = {n for s in steps for n in s[0]}
    if "time" not in names:  # a series: every step its own value, over the box
        ((_, method, _, _),) = steps
        return reduce(values, (1, 2), method, wlat)
    assert time is not None, "a reduction over time without a time coordinate"
    key = "climatology" if "climatology" in time.attrs else "bounds"
    bounds = ds[time.attrs[key]].values
    group = request.group_by
    times = data["time"].values
    out = []
    for i in range(answer.shape[0] if group else 1):
        b = bounds[i] if group else bounds
        mask = in_bounds(times, b)
        if key == "climatology":  # the group's own steps within the climatology's span
            label = answer[group].values[i]
            mask &= np.array([group_of(t, group) == label for t in times])
        elif group:
            label = answer[group].values[i]
            assert all(group_of(t, group) == label for t in times[mask]), (label, b)
        x = values[mask]
        space = "area" in names
        if key == "climatology" and steps[-1][3] is None:  # within years, then over years
            area = [s for s in steps if "area" in s[0]]
            if area:
                x = reduce(x, (1, 2), area[0][1], wlat)[:, None, None]
            within = next(s[1] for s in steps if s[2] == "within")
            over = next(s[1] for s in steps if s[2] == "over")
            years = np.array([season_year(t, group) for t in times[mask]])
            yearly = np.stack(
                [reduce(x[years == y], (0,), within, np.ones(1)) for y in np.unique(years)]
            )
            out.append(reduce(yearly, (0,), over, np.ones(1)))
        else:  # one joint (pooled) reduction over the steps and, with area, the cells
            method = steps[-1][1]
            out.append(
                reduce(x, (0, 1, 2) if space else (0,), method, wlat if space else np.ones(1))
            )
    result = np.stack(out) if group else out[0]
    return result.reshape(answer.shape)


def check(request: dict) -> xr.Dataset:
    ds, plan = run(request)
    answer = cf.data_variable(ds)
    req = AnalysisRequest.model_validate(request)
    sel = request["selection"]
    data = cut(source(plan), sel.get("bbox", [-180, -90, 180, 90]), sel["start"], sel["end"])
    want = expected(ds, data, req, answer)
    if "baseline" in request:
        base = request["baseline"]
        data_a = cut(
            source(plan, "baseline"),
            base.get("bbox", [-180, -90, 180, 90]),
            base["start"],
            base["end"],
        )
        ds_a, _ = run({k: v for k, v in request.items() if k != "baseline"} | {"selection": base})
        want = want - expected(ds_a, data_a, req, cf.data_variable(ds_a))
    np.testing.assert_allclose(answer.values, want, rtol=1e-9, atol=1e-9)
    return ds


MATRIX = [(red, over, group) for red, over, group in itertools.product(REDUCTIONS, OVERS, GROUPS)]


@pytest.mark.parametrize(("reduction", "over", "group_by"), MATRIX)
def test_every_reduction_says_what_it_computed(catalog, reduction, over, group_by):
    ds = check({"selection": ERA5, "reduction": reduction, "over": over, "group_by": group_by})
    time = ds.cf["time"] if over != "space" or group_by else None
    if time is not None:  # cf-xarray finds the time and, in a series of groups, its bounds
        assert "time" in ds.cf.coordinates.get("time", ["time"])
        assert "climatology" not in time.attrs  # 2020 only: no group recurs
        assert ds.cf.get_bounds("time").name == "time_bnds"


@pytest.mark.parametrize(
    ("reduction", "over", "group_by"),
    [(r, o, g) for r, o, g in itertools.product(REDUCTIONS, OVERS, ["month", "season"])],
)
def test_a_recurring_group_is_a_climatology(catalog, reduction, over, group_by):
    ds = check({"selection": CMIP6, "reduction": reduction, "over": over, "group_by": group_by})
    time = ds["time"]
    assert time.attrs["climatology"] == "climatology_bnds" and "bounds" not in time.attrs
    methods = cf.data_variable(ds).attrs["cell_methods"]
    assert "within years" in methods and "over years" in methods


@pytest.mark.parametrize(
    "coarsen", COARSEN, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items())
)
def test_a_coarsened_subset_says_what_it_averaged(catalog, coarsen):
    sel = {**ERA5, "start": "2020-01-30", "end": "2020-03-02"}
    ds, _ = run(
        {"selection": sel, "reduction": "none", "coarsen": coarsen, "output_format": "netcdf"}
    )
    answer = cf.data_variable(ds)
    methods = parse(answer.attrs.get("cell_methods", ""))
    assert ({"time"} in [set(m[0]) for m in methods]) == ("time" in coarsen)
    assert ({"lat", "lon"} in [set(m[0]) for m in methods]) == ("space" in coarsen)
    if "time" in coarsen:  # every step's bounds hold exactly the source steps it averaged
        bounds = ds[ds["time"].attrs["bounds"]].values
        assert str(bounds[0][0])[:10] == "2020-01-30"  # a month's mean of its selected days
        assert str(bounds[-1][1])[:10] == "2020-03-03"
        assert (ds["time"].values >= bounds[:, 0]).all() and (
            ds["time"].values < bounds[:, 1]
        ).all()
        starts, ends = bounds[:, 0], bounds[:, 1]
        assert (ends[:-1] == starts[1:]).all()  # contiguous, no step counted twice
    else:
        assert "bounds" not in ds["time"].attrs


def test_comparisons_say_what_their_selection_computed(catalog):
    projection = {**CMIP6, "start": "2015-01-01", "end": "2015-04-30"}
    for changes in ({"over": "both", "reduction": "max"}, {"over": "space", "group_by": "month"}):
        ds = check({"selection": projection, "baseline": ERA5, **changes})
        if "group_by" in changes:  # the selection's months, not the baseline's
            assert str(ds["time_bnds"].values[0][0])[:10] == "2015-01-01"


def test_a_comparison_of_different_groups_is_refused_not_emptied():
    with pytest.raises(
        ValueError, match=r"same months in the selection \(\[3, 4\]\) and the baseline \(\[1, 2\]\)"
    ):
        AnalysisRequest.model_validate(
            {
                "selection": {**ERA5, "start": "2020-03-01", "end": "2020-04-30"},
                "baseline": {**ERA5, "end": "2020-02-29"},
                "over": "space",
                "group_by": "month",
            }
        )


@pytest.mark.parametrize(
    "request_",
    [
        {"selection": ERA5, "over": "space", "group_by": "month"},
        {"selection": CMIP6, "over": "time", "group_by": "season", "reduction": "std"},
        {"selection": ERA5, "over": "both", "reduction": "count", "group_by": "year"},
        {
            "selection": {**ERA5, "end": "2020-01-05"},
            "reduction": "none",
            "coarsen": {"time": "day"},
            "output_format": "netcdf",
        },
    ],
    ids=["series-of-months", "climatology", "count", "daily-subset"],
)
def test_the_cf_checker_reads_grouped_and_coarsened_results_cleanly(catalog, tmp_path, request_):
    ds, _ = run(request_)
    path = tmp_path / "result.nc"
    ds.to_netcdf(path, engine="h5netcdf", encoding=cf.encoding(ds))
    assert cf_errors(path) == []
    back = xr.open_dataset(path, engine="h5netcdf")
    assert cf.data_variable(back).attrs.get("cell_methods") == cf.data_variable(ds).attrs.get(
        "cell_methods"
    )
    time = back.cf["time"]
    assert set(time.attrs) & {"bounds", "climatology"}, "every time says what it covers"
