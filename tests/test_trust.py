"""Answers a scientist can trust on messy archives (issue #15): mixed units are
converted or refused, never combined silently. Files are written as ERA5 publishes them
and described by the catalog's own extractor, then planned and computed.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from proxima.analysis.partials import finalize
from proxima.analysis.plan import estimate_selection
from proxima.analysis.regional import compute_partial
from proxima.analysis.request import AnalysisRequest
from proxima.analysis.units import UnitsError, harmonize, linear
from proxima.catalog.extract import extract
from proxima.catalog.model import Asset
from tests.test_kernels import _era5_file

pytestmark = pytest.mark.reliability

REQUEST = {
    "selection": {
        "variable": "t2m",
        "dataset": "era5",
        "start": "2020-01-01",
        "end": "2020-03-31",
    },
    "reduction": "mean",
    "over": "space",
    "group_by": "month",
}


def _archive(root, units_by_month: dict[int, str | None]) -> list[Asset]:
    """Three months of hourly ERA5-like files under ``root``/era5-pds, February
    rewritten in the units given (values converted, so the truth stays the same),
    described by the catalog extractor.
    """
    base = root / "era5-pds"
    base.mkdir()
    assets = []
    for month in (1, 2, 3):
        path = base / f"2020{month:02d}.nc"
        _era5_file(path, month, nan_cell=False)
        units = units_by_month.get(month, "K")
        if units != "K":
            ds = xr.open_dataset(path, engine="netcdf4").load()
            try:  # convertible units get converted values; others only a wrong label
                scale, offset = linear("K", units) if units else (1.0, 0.0)
            except UnitsError:
                scale, offset = 1.0, 0.0
            ds["t2m"] = (ds["t2m"].astype("f8") * scale + offset).astype("f4")
            if units:
                ds["t2m"].attrs["units"] = units
            else:
                ds["t2m"].attrs.pop("units", None)
            path.unlink()
            ds.to_netcdf(path, engine="netcdf4", encoding={"t2m": {"chunksizes": (24, 19, 36)}})
        doc = extract(str(root), f"era5-pds/{path.name}", "us-east-1", "era5", "era5-pds")
        assert not doc["quarantined"], doc
        assets.append(Asset.model_validate(doc))
    return assets


def _plan(assets: list[Asset]):
    request = AnalysisRequest.model_validate(REQUEST)
    return estimate_selection(
        "selection", request.selection, request, assets, "us-east-1", {"default": 0.02}
    )


def test_mixed_but_compatible_units_are_converted_per_asset(tmp_path):
    assets = _archive(tmp_path, {2: "degC"})
    plan = _plan(assets)
    assert plan.units == "K"  # what most of the assets use
    spec = plan.regions[0].spec
    february = next(a for a in spec.assets if a.path.endswith("202002.nc"))
    assert (february.scale, february.offset) == pytest.approx((1.0, 273.15))
    agg, _ = compute_partial(str(tmp_path), spec)
    ours = finalize(agg, "mean")

    truth = xr.open_mfdataset(
        sorted((tmp_path / "era5-pds").glob("*.nc")), engine="netcdf4", combine="by_coords"
    )["t2m"].astype("f8")
    kelvin = xr.where(truth.time0.dt.month == 2, truth + 273.15, truth).load()
    weights = np.cos(np.deg2rad(kelvin.lat))
    expected = kelvin.weighted(weights).mean(["lat", "lon"]).groupby("time0.month").mean()
    np.testing.assert_allclose(ours.values, expected.values, rtol=1e-6)
    assert 280 < float(ours.sel(month=2)) < 296  # the December-in-degC mistake gave ~10


@pytest.mark.parametrize(
    ("units", "message"),
    [
        ("kg m-2 s-1", r"incompatible units elsewhere: 'kg m-2 s-1' in \['us-east-1:era5-pds/2020"),
        (None, r"no units in 1 asset\(s\) \['us-east-1:era5-pds/202002.nc'\]"),
        ("furlongs per fortnight", "not UDUNITS units|incompatible"),
    ],
)
def test_incompatible_or_missing_units_are_refused_naming_the_assets(tmp_path, units, message):
    assets = _archive(tmp_path, {2: units})
    with pytest.raises(UnitsError, match=message):
        _plan(assets)


def test_the_common_unit_is_the_majority_and_spellings_of_one_unit_agree():
    common, conversions = harmonize(
        "selection", "tas", {"a": "K", "b": "kelvin", "c": "K", "d": "degC"}
    )
    assert common == "K"
    assert set(conversions) == {"d"}  # "kelvin" is K: nothing to do


def _md5(path) -> str:
    import hashlib

    return hashlib.md5(path.read_bytes()).hexdigest()  # an S3 ETag of a single-part PUT


def _with_copy(tmp_path, strip_units: bool = False) -> list[Asset]:
    """January to March, plus a renamed copy of January (as a careless upload leaves)."""
    import shutil

    assets = _archive(tmp_path, {})
    base = tmp_path / "era5-pds"
    shutil.copy(base / "202001.nc", base / "202001-copy.nc")
    if strip_units:
        with xr.open_dataset(base / "202001-copy.nc", engine="netcdf4") as ds:
            stripped = ds.load()
        del stripped["t2m"].attrs["units"]
        stripped.to_netcdf(base / "stripped.nc", engine="netcdf4")
        (base / "stripped.nc").replace(base / "202001-copy.nc")
    for name in ("202001.nc", "202001-copy.nc", "202002.nc", "202003.nc"):
        doc = extract(
            str(tmp_path), f"era5-pds/{name}", "us-east-1", "era5", "era5-pds", _md5(base / name)
        )
        assets = [a for a in assets if a.path != doc["path"]] + [Asset.model_validate(doc)]
    return assets


def test_an_identical_copy_is_read_once(tmp_path):
    assets = _with_copy(tmp_path)
    plan = _plan_with(assets, reduction="count", over="both", group_by=None)
    assert plan.dropped == [
        "us-east-1:era5-pds/202001.nc (a copy of us-east-1:era5-pds/202001-copy.nc)"
    ] or plan.dropped == [
        "us-east-1:era5-pds/202001-copy.nc (a copy of us-east-1:era5-pds/202001.nc)"
    ]
    agg, _ = compute_partial(str(tmp_path), plan.regions[0].spec)
    once = _plan_with(
        [a for a in assets if "copy" not in a.path], reduction="count", over="both", group_by=None
    )
    agg_once, _ = compute_partial(str(tmp_path), once.regions[0].spec)
    assert float(finalize(agg, "count")) == float(finalize(agg_once, "count")) == 91 * 24 * 19 * 36


def test_a_differing_copy_is_refused_naming_both(tmp_path):
    from proxima.analysis.coverage import OverlapError

    assets = _with_copy(tmp_path, strip_units=True)
    with pytest.raises(OverlapError, match=r"202001-copy.nc and .*202001.nc|202001.nc and .*copy"):
        _plan_with(assets, reduction="count", over="both", group_by=None)


def test_the_newest_cmip6_version_wins_where_versions_overlap():
    from proxima.analysis.coverage import deduplicate

    old, new = (_cmip6("v20190101", "aaa"), _cmip6("v20200101", "bbb"))
    kept, dropped = deduplicate("selection", "tas", [old, new])
    assert [a.facets["version"] for a in kept] == ["v20200101"]
    assert "superseded by" in dropped[0]


def _cmip6(version: str, etag: str, start: str = "1950-01-16", end: str = "2014-12-16") -> Asset:
    return Asset.model_validate(
        {
            "id": version,
            "region": "us-west-2",
            "dataset": "cmip6",
            "path": "cmip6-pds/CMIP6/CMIP/NOAA-GFDL/GFDL-ESM4/historical/r1i1p1f1/Amon/tas/"
            f"gr1/{version}/tas.nc",
            "uri": "s3://cmip6-pds/x",
            "format": "netcdf",
            "size": 1,
            "mtime_ns": 1,
            "etag": etag,
            "facets": {"source_id": "GFDL-ESM4", "member_id": "r1i1p1f1", "version": version},
            "time": {
                "start": f"{start}T12:00:00Z",
                "end": f"{end}T12:00:00Z",
                "start_native": start,
                "end_native": end,
                "calendar": "noleap",
                "frequency": "mon",
                "steps": 780,
            },
        }
    )


def test_coverage_counts_monthly_steps_as_whole_months_and_names_gaps():
    from datetime import date

    from proxima.analysis.coverage import coverage

    full = coverage([_cmip6("v1", "a")], date(1950, 1, 1), date(2014, 12, 31))
    assert full.complete and full.describe() == "complete"
    early = coverage([_cmip6("v1", "a")], date(1949, 1, 1), date(1950, 6, 30))
    assert early.missing == [(date(1949, 1, 1), date(1949, 12, 31))]
    gap = coverage(
        [_cmip6("v1", "a", end="1960-12-16"), _cmip6("v2", "b", start="1962-01-16")],
        date(1950, 1, 1),
        date(2014, 12, 31),
    )
    assert gap.describe() == "partial: missing 1961-01-01..1961-12-31"
    assert gap.answered_by(set()).missing == [(date(1950, 1, 1), date(2014, 12, 31))]


def test_a_period_beyond_the_data_is_refused_unless_partial_answers_are_allowed(tmp_path):
    from proxima.analysis.plan import PlanningError

    assets = _archive(tmp_path, {})
    with pytest.raises(
        PlanningError, match=r"only in part \(partial: missing 2019-12-01..2019-12-31\)"
    ):
        _plan_with(assets, start="2019-12-01")
    plan = _plan_with(assets, start="2019-12-01", allow_partial=True)
    assert plan.coverage.describe() == "partial: missing 2019-12-01..2019-12-31"
    without_feb = [a for a in assets if not a.path.endswith("202002.nc")]
    with pytest.raises(PlanningError, match=r"missing 2020-02-01\.\.2020-02-29"):
        _plan_with(without_feb)


def _plan_with(assets: list[Asset], **changes):
    request = {**REQUEST, "selection": dict(REQUEST["selection"])}
    for key in ("start", "end"):
        if key in changes:
            request["selection"][key] = changes.pop(key)
    parsed = AnalysisRequest.model_validate({**request, **changes})
    return estimate_selection(
        "selection", parsed.selection, parsed, assets, "us-east-1", {"default": 0.02}
    )


def test_a_region_never_sends_more_than_its_share_of_the_transfer_cap():
    from proxima.analysis.kernels import KernelSpec, TransferCapExceeded, check_transfer

    spec = KernelSpec(
        variable="t2m", start_key=0, end_key=1, bbox=[-180, -90, 180, 90], over="time", assets=[]
    )
    check_transfer("us-west-2", 10**9, spec)  # no share: the region does not cross
    spec.max_out_bytes = 1000
    check_transfer("us-west-2", 1000, spec)
    with pytest.raises(TransferCapExceeded, match=r"computed 1,001 bytes .* share 1,000"):
        check_transfer("us-west-2", 1001, spec)


def test_an_existing_result_is_kept_unless_overwrite(tmp_path):
    from proxima.analysis import results

    ds = xr.Dataset({"result": ("x", np.arange(3.0))})
    first = results.write_atomic(ds, tmp_path, "answer", "netcdf")
    with pytest.raises(results.OutputExists, match="already exists"):
        results.check_output(tmp_path, "answer", "netcdf", overwrite=False)
    with pytest.raises(results.OutputExists, match="another run meanwhile"):
        results.write_atomic(ds * 2, tmp_path, "answer", "netcdf")  # the race's loser
    assert float(xr.open_dataset(first, engine="h5netcdf")["result"][1]) == 1.0
    results.write_atomic(ds * 2, tmp_path, "answer", "netcdf", overwrite=True)
    assert float(xr.load_dataset(first, engine="h5netcdf")["result"][1]) == 2.0
    results.write_atomic(ds, tmp_path, "store", "zarr")
    with pytest.raises(results.OutputExists):
        results.write_atomic(ds, tmp_path, "store", "zarr")
    assert not list(tmp_path.glob(".partial-*"))  # nothing half-written left behind


def test_unnamed_results_finishing_in_the_same_second_get_files_of_their_own():
    """Two unnamed runs that differ only in their grouping once claimed one file name
    (variable, reduction and the second they ended): the second run failed."""
    from types import SimpleNamespace

    from proxima.analysis.assemble import output_name

    plan = SimpleNamespace(selections=[SimpleNamespace(variable="t2m")])
    requests = [
        AnalysisRequest.model_validate({**REQUEST, "over": "both", "group_by": g})
        for g in ("month", None)
    ]
    names = [output_name(r, plan) for r in requests * 20]
    assert len(set(names)) == len(names)
    assert all(n.startswith("t2m-mean-over-both-") for n in names)
    named = AnalysisRequest.model_validate({**REQUEST, "output_name": "answer"})
    assert output_name(named, plan) == "answer"


def test_an_output_name_of_the_other_format_is_refused_before_planning():
    with pytest.raises(ValueError, match=r"does not end in '.zarr'"):
        AnalysisRequest.model_validate({**REQUEST, "output_name": "x.nc", "output_format": "zarr"})
