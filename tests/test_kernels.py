"""Pure-logic checks of partial aggregates: combining pieces equals computing on the whole."""

import cftime
import numpy as np
import pytest
import xarray as xr

from proxima.analysis.kernels import combine, finalize, partial


def _cube(calendar: str = "standard") -> xr.DataArray:
    rng = np.random.default_rng(1)
    times = [cftime.datetime(2020, m, d, calendar=calendar) for m in range(1, 13) for d in (1, 15)]
    lat = np.array([60.0, 30.0, 0.0, -30.0])
    lon = np.array([0.0, 90.0, 180.0, 270.0])
    values = 280 + 10 * rng.standard_normal((len(times), 4, 4))
    values[3, 1, 2] = np.nan
    return xr.DataArray(
        values, dims=("time", "lat", "lon"), coords={"time": times, "lat": lat, "lon": lon}
    )


def _reference(da: xr.DataArray, reduction: str, over: str, group_by: str | None):
    dims = {"time": ["time"], "space": ["lat", "lon"], "both": ["time", "lat", "lon"]}[over]
    weighted = over in ("space", "both") and reduction in ("mean", "std")
    if group_by:
        dims = ["time"] if over == "time" else ["time", "lat", "lon"]
        key = {"month": da.time.dt.month, "year": da.time.dt.year}[group_by]
        return da.groupby(key.rename(group_by)).map(lambda g: _reduce(g, reduction, dims, weighted))
    return _reduce(da, reduction, dims, weighted)


def _reduce(da, reduction, dims, weighted):
    if weighted:
        w = da.weighted(np.cos(np.deg2rad(da.lat)))
        return w.mean(dims) if reduction == "mean" else w.std(dims)
    if reduction == "count":
        return da.count(dims).astype(float)
    return getattr(da, reduction)(dims)


@pytest.mark.parametrize("reduction", ["mean", "min", "max", "sum", "std", "count"])
@pytest.mark.parametrize("over", ["time", "space", "both"])
@pytest.mark.parametrize("group_by", [None, "month"])
def test_split_then_combine_equals_whole(reduction, over, group_by):
    da = _cube("360_day")
    pieces = [da.isel(time=slice(0, 7)), da.isel(time=slice(7, 16)), da.isel(time=slice(16, None))]
    combined = finalize(combine([partial(p, over, group_by) for p in pieces]), reduction)
    expected = _reference(da, reduction, over, group_by)
    xr.testing.assert_allclose(combined.transpose(*expected.dims), expected, rtol=1e-9)


def test_combine_is_order_independent():
    da = _cube()
    a, b = (
        partial(da.isel(time=slice(0, 5)), "time", None),
        partial(da.isel(time=slice(5, None)), "time", None),
    )
    xr.testing.assert_allclose(finalize(combine([a, b]), "std"), finalize(combine([b, a]), "std"))


def test_all_missing_cell_is_nan_not_zero():
    da = _cube()
    da[:, 0, 0] = np.nan
    out = finalize(combine([partial(da, "time", None)]), "mean")
    assert np.isnan(out.sel(lat=60.0, lon=0.0))
    assert finalize(combine([partial(da, "time", None)]), "count").sel(lat=60.0, lon=0.0) == 0
