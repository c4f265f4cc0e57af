"""Partial aggregates and the regional kernel, without services: pieces combined equal
the whole, the kernel over files equals plain xarray, and only minimal partials exist."""

import itertools

import cftime
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from proxima.analysis.kernels import AssetRef, KernelSpec, blocks
from proxima.analysis.partials import combine, fields, finalize, from_array
from proxima.analysis.plan import out_bytes
from proxima.analysis.regional import compute_partial

REDUCTIONS = ["mean", "min", "max", "sum", "std", "count"]


def _cube(calendar: str = "standard") -> xr.DataArray:
    rng = np.random.default_rng(1)
    times = [cftime.datetime(2020, m, d, calendar=calendar) for m in range(1, 13) for d in (1, 15)]
    lat = np.array([60.0, 30.0, 0.0, -30.0])
    lon = np.array([0.0, 90.0, 180.0, 270.0])
    # Near 288 K with a small spread: where Σx²/n − mean² loses about half its digits.
    values = 288.0 + 1e-3 * rng.standard_normal((len(times), 4, 4))
    values[3, 1, 2] = np.nan
    values[:, 3, 3] = np.nan  # a cell with no valid value at all
    return xr.DataArray(
        values, dims=("time", "lat", "lon"), coords={"time": times, "lat": lat, "lon": lon}
    )


def _reference(da: xr.DataArray, reduction: str, over: str, group_by: str | None):
    """Plain xarray: weighted by cos(lat) for mean and std over space, as documented."""
    dims = {"time": ["time"], "space": ["lat", "lon"], "both": ["time", "lat", "lon"]}[over]
    is_weighted = over in ("space", "both") and reduction in ("mean", "std")

    def reduce(d, dims):
        if is_weighted:
            w = d.weighted(np.cos(np.deg2rad(d.lat)))
            return w.mean(dims) if reduction == "mean" else w.std(dims)
        if reduction == "count":
            return d.count(dims).astype(float)
        if reduction == "sum":
            return d.sum(dims, min_count=1)
        return getattr(d, reduction)(dims)

    if group_by:
        dims = ["time"] if over == "time" else ["time", "lat", "lon"]
        key = {"month": da.time.dt.month, "year": da.time.dt.year}[group_by]
        return da.groupby(key.rename(group_by)).map(lambda g: reduce(g, dims))
    return reduce(da, dims)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("over", ["time", "space", "both"])
@pytest.mark.parametrize("group_by", [None, "month"])
@pytest.mark.parametrize("missing", [True, False])
def test_split_then_combine_equals_whole(reduction, over, group_by, missing):
    da = _cube("360_day")
    if not missing:  # counts are then kept once per group: they must broadcast back
        da = da.fillna(288.0)
    pieces = [da.isel(time=slice(0, 7)), da.isel(time=slice(7, 16)), da.isel(time=slice(16, None))]
    parts = [from_array(p, reduction, over, group_by) for p in pieces]
    combined = finalize(combine(parts), reduction)
    expected = _reference(da, reduction, over, group_by)
    xr.testing.assert_allclose(combined.transpose(*expected.dims), expected, rtol=1e-12)
    assert set(combined.dims) == set(expected.dims)


def test_std_near_288_kelvin_keeps_its_digits():
    da = _cube().isel(lat=[0], lon=[0])
    exact = float(np.nanstd(da.values.astype(np.float64)))
    halves = [from_array(da.isel(time=slice(0, 11)), "std", "time", None)]
    halves.append(from_array(da.isel(time=slice(11, None)), "std", "time", None))
    ours = float(finalize(combine(halves), "std").values.squeeze())
    assert ours == pytest.approx(exact, rel=1e-9)
    # the textbook one-pass formula loses most digits on the same numbers
    x = da.values.reshape(-1)
    naive = np.sqrt(max((x * x).mean() - x.mean() ** 2, 0.0))
    assert abs(naive - exact) / exact > 1e-6


def test_combine_is_order_independent():
    da = _cube()
    a = from_array(da.isel(time=slice(0, 5)), "std", "time", None)
    b = from_array(da.isel(time=slice(5, None)), "std", "time", None)
    xr.testing.assert_allclose(finalize(combine([a, b]), "std"), finalize(combine([b, a]), "std"))


def test_all_missing_cell_is_nan_not_zero():
    da = _cube()
    assert np.isnan(finalize(from_array(da, "mean", "time", None), "mean").sel(lat=-30, lon=270))
    assert finalize(from_array(da, "count", "time", None), "count").sel(lat=-30, lon=270) == 0


def test_partials_are_minimal_per_reduction():
    da = _cube().fillna(280.0)  # nothing missing
    mean = from_array(da, "mean", "time", "month")
    assert set(mean.data_vars) == {"sum", "count"}
    assert mean["sum"].dims == ("month", "lat", "lon") and mean["sum"].dtype == np.float64
    assert mean["count"].dims == ("month",)  # once per group: no cell is missing
    assert set(from_array(da, "mean", "space", None).data_vars) == {"wsum", "weight"}
    assert set(from_array(da, "std", "time", None).data_vars) == {"count", "mean", "m2"}
    assert set(from_array(da, "min", "time", None).data_vars) == {"min"}
    assert set(from_array(da, "count", "time", None).data_vars) == {"count"}
    with_gap = from_array(_cube(), "mean", "time", "month")
    assert with_gap["count"].dims == ("month", "lat", "lon")  # cells differ: kept per cell
    for reduction, over in itertools.product(REDUCTIONS, ("time", "space", "both")):
        assert set(from_array(da, reduction, over, None).data_vars) == set(fields(reduction, over))


def test_mean_partial_bytes_are_sum_plus_one_count_per_group():
    """What crosses regions for monthly mean maps: the sums, a count per month, coords."""
    import cloudpickle

    lat, lon = np.linspace(90, -90, 181), np.arange(0, 360, 1.0)
    times = pd.date_range("2020-01-01", "2020-03-31 23:00", freq="6h")
    values = np.random.default_rng(0).normal(280, 5, (len(times), 181, 360)).astype("f4")
    da = xr.DataArray(
        values, dims=("time", "lat", "lon"), coords=dict(time=times, lat=lat, lon=lon)
    )
    part = from_array(da, "mean", "time", "month")
    sums = 3 * 181 * 360 * 8
    pickled = len(cloudpickle.dumps(part))
    assert sums <= pickled <= sums + 16 * 1024
    estimate = out_bytes("mean", "time", "month", keys=3, nlat=181, nlon=360)
    assert abs(estimate - pickled) / pickled < 0.2


def _era5_file(path, month: int, nan_cell: bool) -> np.ndarray:
    """One month of hourly ERA5-like NetCDF: descending lat, 0..360 lon, day chunks."""
    days = pd.Period(f"2020-{month:02d}").days_in_month
    lat, lon = np.arange(90.0, -90.1, -10.0), np.arange(0.0, 360.0, 10.0)
    rng = np.random.default_rng(month)
    values = (288 + 5 * rng.standard_normal((24 * days, lat.size, lon.size))).astype("f4")
    if nan_cell:
        values[30:40, 4, 7] = np.nan
    ds = xr.Dataset(
        {"t2m": (("time0", "lat", "lon"), values, {"units": "K"})},
        coords={
            "time0": pd.date_range(f"2020-{month:02d}-01", periods=24 * days, freq="h"),
            "lat": lat,
            "lon": lon,
        },
    )
    enc = {"t2m": {"chunksizes": (24, lat.size, lon.size), "zlib": True, "complevel": 1}}
    ds.to_netcdf(path, engine="netcdf4", encoding=enc)
    return values


def _era5_assets(root, nan_month: int | None = None) -> list[AssetRef]:
    """January to March 2020 written under ``root``, as the plan would describe them."""
    assets = []
    for month, days in ((1, 31), (2, 29), (3, 31)):
        _era5_file(root / f"2020{month:02d}.nc", month, nan_cell=month == nan_month)
        steps = 24 * days
        assets.append(
            AssetRef(
                path=f"2020{month:02d}.nc",
                format="netcdf",
                steps=steps,
                nbytes=steps * 19 * 36 * 4,
                time_chunk=24,
            )
        )
    return assets


@pytest.mark.parametrize(
    ("reduction", "over", "group_by", "bbox"),
    [
        ("mean", "time", "month", [-180, -90, 180, 90]),
        ("std", "time", None, [160, -30, -150, 30]),  # crosses the antimeridian
        ("mean", "space", None, [-30, -60, 40, 60]),  # crosses 0° on a 0..360 grid
        ("sum", "both", "month", [-180, -90, 180, 90]),
        ("max", "space", "season", [0, 0, 90, 90]),
        ("count", "time", "month", [-180, -90, 180, 90]),
    ],
)
def test_kernel_over_files_equals_plain_xarray(tmp_path, reduction, over, group_by, bbox):
    assets = _era5_assets(tmp_path, nan_month=2)
    spec = KernelSpec(
        variable="t2m",
        reduction=reduction,
        start_key=20200110,
        end_key=20200315,
        bbox=bbox,
        over=over,
        group_by=group_by,
        assets=assets,
    )
    todo = blocks(spec, block_bytes=200_000)  # several tasks per file
    assert len(todo) > len(assets)
    agg, nbytes = compute_partial(str(tmp_path), spec)
    ours = finalize(agg, reduction)

    ds = xr.open_mfdataset(sorted(tmp_path.glob("*.nc")), engine="netcdf4").rename(time0="time")
    da = ds["t2m"].sel(time=slice("2020-01-10", "2020-03-15")).astype("f8")
    lon = (da.lon + 180) % 360 - 180
    west, south, east, north = bbox
    xmask = (lon >= west) & (lon <= east) if west <= east else (lon >= west) | (lon <= east)
    da = da.where((da.lat >= south) & (da.lat <= north), drop=True).where(xmask, drop=True)
    da = da.load()
    if group_by == "season":
        da = da.assign_coords(season=da.time.dt.season)
        expected = da.groupby("season").max(["time", "lat", "lon"])
    else:
        expected = _reference(da, reduction, over, group_by)
    if over == "space" and group_by is None:
        ours = ours.assign_coords(time=expected.time.values)
    xr.testing.assert_allclose(ours.transpose(*expected.dims), expected, rtol=1e-12)
    assert nbytes == da.size * 4  # decoded float32 bytes of the selection


def test_the_graph_is_shaped_by_the_data_one_task_per_block(tmp_path):
    """Monthly groups over 3 files on a real (in-process) Dask cluster: as many tasks as
    blocks of whole time chunks, however many groups and chunks there are."""
    from distributed import Client, get_task_stream

    spec = KernelSpec(
        variable="t2m",
        reduction="mean",
        start_key=20200101,
        end_key=20200331,
        bbox=[-180, -90, 180, 90],
        over="time",
        group_by="month",
        assets=_era5_assets(tmp_path),
    )
    expected = len(blocks(spec))
    assert expected == 3  # each file is smaller than one block: one task per file
    with (
        Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as c,
        get_task_stream(c) as stream,
    ):
        agg, _ = compute_partial(str(tmp_path), spec, c)
    assert len(stream.data) == expected
    assert {t["key"].split("-")[0] for t in stream.data} == {"block_partial"}
    assert agg["sum"].sizes["month"] == 3 and agg["count"].dims == ("month",)


@pytest.mark.parametrize("reduction", [r for r in REDUCTIONS if r != "std"])
@pytest.mark.parametrize("over", ["time", "space", "both"])
@pytest.mark.parametrize("group_by", [None, "month", "season"])
def test_the_in_place_combine_gives_what_the_aligned_merge_gives(
    reduction, over, group_by, monkeypatch
):
    """Pieces with different keys (a month in one piece only), missing values, the same
    pieces twice: the fast path's result is identical (values, dtypes, coordinates)."""
    import proxima.analysis.partials as partials_module

    da = _cube()
    pieces = [da.isel(time=slice(a, b)) for a, b in [(0, 5), (5, 11), (11, 24), (3, 9)]]
    parts = [from_array(p, reduction, over, group_by) for p in pieces]
    fast = partials_module._combine_in_place(parts)
    assert fast is not None
    monkeypatch.setattr(partials_module, "_combine_in_place", lambda _: None)
    xr.testing.assert_identical(fast, combine(parts))


@pytest.mark.parametrize(
    "calendar", ["standard", "proleptic_gregorian", "noleap", "360_day", "julian", "all_leap"]
)
@pytest.mark.parametrize(
    ("units", "step", "noise"),
    [
        ("hours since 1900-01-01 00:00:00.0", 1.0, 0.0),  # ERA5's hourly steps
        ("days since 1850-1-1", 1.0, 0.0),  # CMIP6's daily, unpadded units
        ("days since 2000-01-01", 0.25, 1e-12),  # 6-hourly, 86 ns before midnight
        ("seconds since 1970-01-01", 1800.0, 0.0),  # half-hourly
    ],
)
def test_the_steps_of_a_range_are_those_decoding_every_step_gives(calendar, units, step, noise):
    """Bisecting the file's numbers selects exactly the steps that decoding them all and
    comparing their days selects, on every calendar, across midnights off by a rounding
    error, and for days a calendar lacks (decoded whole then)."""
    from proxima.analysis.kernels import _day_keys, _steps_between, times

    start = cftime.date2num(cftime.datetime(2019, 12, 20, calendar=calendar), units, calendar)
    raw = start + np.arange(
        0, 90 * 24 * 3600 / {"hours": 3600, "days": 86400, "seconds": 1}[units.split()[0]], step
    )
    raw = raw - noise * (np.arange(len(raw)) % 4 == 0)  # the midnights, just before
    time = xr.DataArray(raw, dims=("time",), attrs={"units": units, "calendar": calendar})
    decoded = np.asarray(times(time, np.arange(len(raw))).values)
    keys = _day_keys(decoded)
    for lo, hi in [
        (20200101, 20200131),
        (20200229, 20200301),
        (20200130, 20200230),
        (20191201, 20191231),
        (20200315, 20201231),
        (20200105, 20200105),
    ]:
        want = np.flatnonzero((keys >= lo) & (keys <= hi))
        np.testing.assert_array_equal(_steps_between(time, lo, hi), want, err_msg=f"{lo}-{hi}")
    # a decoded axis (the subset path) gives the same steps
    decoded_axis = xr.DataArray(decoded, dims=("time",))
    np.testing.assert_array_equal(
        _steps_between(decoded_axis, 20200101, 20200131),
        np.flatnonzero((keys >= 20200101) & (keys <= 20200131)),
    )


def test_identities_open_a_file_once_per_stamp(tmp_path, monkeypatch):
    """A worker identifies an unchanged file from the coordinates it kept, and opens a
    file again once its stamp changes (here its ctime alone)."""
    import os

    from proxima.analysis import kernels

    times = pd.date_range("2020-01-01", periods=48, freq="h")
    ds = xr.Dataset(
        {"tas": (("time", "lat", "lon"), np.ones((48, 3, 4), "f4"), {"units": "K"})},
        coords={"time": times, "lat": [10.0, 0.0, -10.0], "lon": [0.0, 10.0, 20.0, 30.0]},
    )
    path = tmp_path / "tas.nc"
    ds.to_netcdf(path, engine="netcdf4")
    asset = AssetRef(path="tas.nc", format="netcdf", steps=48, time_chunk=24, nbytes=48 * 48)
    spec = KernelSpec(
        variable="tas",
        start_key=20200102,
        end_key=20200102,
        bbox=[-180, -90, 180, 90],
        over="time",
        assets=[asset],
    )
    opened = []
    real = kernels.open_asset
    monkeypatch.setattr(kernels, "open_asset", lambda *a, **k: opened.append(1) or real(*a, **k))
    todo = blocks(spec)
    first = kernels.block_identities(str(tmp_path), spec, todo)
    again = kernels.block_identities(str(tmp_path), spec, todo)
    assert first == again and len(opened) == 1
    assert first[0]["steps"] == [[24, 48]]
    stat = path.stat()
    path.chmod(0o644)  # same bytes, same size and mtime: only the ctime moves
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    rewritten = kernels.block_identities(str(tmp_path), spec, todo)
    assert len(opened) == 2 and rewritten[0]["stamp"] != first[0]["stamp"]
