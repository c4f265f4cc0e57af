"""Subsets (reduction none): the selected data themselves, coarsened in their region if
asked, equal to xarray on the same files; refused over the transfer cap with a
coarsening that fits."""

import json

import numpy as np
import pytest
import xarray as xr

from flows.cross_region_analysis import analyze
from proxima.analysis.cf import data_variable
from proxima.analysis.plan import PlanningError
from proxima.analysis.request import AnalysisRequest
from tests.test_analysis import _reference_era5

PACIFIC = [170.0, -40.0, -150.0, 40.0]  # across the antimeridian
SELECTION = {
    "variable": "air_temperature",
    "dataset": "era5",
    "start": "2020-02-27",
    "end": "2020-03-02",  # February in us-east-1, March in us-west-2
    "bbox": PACIFIC,
}


def _reference(settings, coarsen):
    da = _reference_era5(
        settings, "air_temperature_at_2_metres", SELECTION["start"], SELECTION["end"], PACIFIC
    )
    west = PACIFIC[0]
    da = da.assign_coords(lon=(da.lon - west) % 360 + west).sortby("lon")
    if coarsen.get("time"):
        da = da.resample(time="1D" if coarsen["time"] == "day" else "1MS").mean()
    if coarsen.get("space"):
        n = coarsen["space"]
        da = da.coarsen(lat=n, lon=n, boundary="trim").mean()
    return da


@pytest.mark.parametrize("coarsen", [{}, {"time": "day", "space": 2}], ids=["raw", "daily-2x2"])
def test_a_subset_equals_xarray_on_the_same_files(catalog, settings, coarsen):
    request = {
        "selection": SELECTION,
        "reduction": "none",
        "coarsen": coarsen or None,
        "output_name": f"subset-{len(coarsen)}",
        "overwrite": True,
    }
    planned = analyze(AnalysisRequest.model_validate({**request, "dry_run": True}))
    summary = analyze(AnalysisRequest.model_validate(request))
    assert summary["result_path"].endswith(".zarr")
    got = data_variable(xr.open_zarr(summary["result_path"])).load()
    ref = _reference(settings, coarsen)
    assert got.dims == ("time", "lat", "lon")
    assert [str(t)[:13] for t in got["time"].values] == [str(t)[:13] for t in ref["time"].values]
    np.testing.assert_allclose(got["lat"], ref["lat"])
    np.testing.assert_allclose(got["lon"], ref["lon"])
    assert bool(np.all(np.diff(got["lon"].values) > 0))  # contiguous across 180°
    np.testing.assert_allclose(got.values, ref.values, rtol=1e-6)
    assert {r["region"] for r in summary["regions"]} == {"us-east-1", "us-west-2"}
    for row in planned["plan"]:
        measured = next(
            r["bytes_returned"] for r in summary["regions"] if r["region"] == row["region"]
        )
        assert abs(row["bytes_out_est"] - measured) <= 0.2 * measured, (row, measured)


def test_a_subset_over_the_cap_is_refused_with_a_coarsening_that_fits(catalog):
    """us-west-2's two hourly days cross regions (~11 kB): over a 4 kB cap the plan
    names the least coarsening that fits, and that request then runs within it."""
    request = {"selection": SELECTION, "reduction": "none", "max_transfer_bytes": 4_000}
    with pytest.raises(PlanningError, match="above max_transfer_bytes 4,000") as refused:
        analyze(AnalysisRequest.model_validate(request))
    hint = str(refused.value).split('"coarsen": ')[1].split(" would")[0]
    assert json.loads(hint) == {"time": "day"}
    fitted = {**request, "coarsen": json.loads(hint), "output_name": "fitted", "overwrite": True}
    summary = analyze(AnalysisRequest.model_validate(fitted))
    assert 0 < summary["bytes_crossed_regions"] <= 4_000


def test_a_daily_mean_of_monthly_model_data_is_refused(catalog):
    request = {
        "selection": {
            "variable": "tas",
            "dataset": "cmip6",
            "start": "2015-01-01",
            "end": "2015-12-31",
            "facets": {"source_id": "UKESM1-0-LL"},
        },
        "reduction": "none",
        "coarsen": {"time": "day"},
        "dry_run": True,
    }
    with pytest.raises(PlanningError, match=r"needs data finer than a day; these are \['mon'\]"):
        analyze(AnalysisRequest.model_validate(request))
