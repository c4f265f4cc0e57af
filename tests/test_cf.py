"""Results are CF-1.8: named after the input, described (units, standard_name,
cell_methods, coordinates), with provenance, and clean under a CF checker."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import xarray as xr

from flows.cross_region_analysis import analyze
from proxima.analysis.cf import data_variable
from proxima.analysis.request import AnalysisRequest

ERA5 = {
    "variable": "air_temperature",
    "dataset": "era5",
    "start": "2020-01-01",
    "end": "2020-04-30",
}
UKESM = {
    "variable": "tas",
    "dataset": "cmip6",
    "start": "2015-01-01",
    "end": "2016-12-31",
    "facets": {"source_id": "UKESM1-0-LL"},
}
SUBSET = {
    "reduction": "none",
    "coarsen": {"time": "day", "space": 2},
    "output_format": "netcdf",
    "selection": {**ERA5, "end": "2020-01-10", "bbox": [0, -30, 60, 30]},
}
KINDS = {
    "subset": (SUBSET, "air_temperature_at_2_metres", "time: mean lat: lon: mean"),
    "map": ({"over": "time"}, "air_temperature_at_2_metres", "time: mean"),
    "series": ({"over": "space"}, "air_temperature_at_2_metres", "area: mean"),
    "number": (
        {"over": "both", "reduction": "max"},
        "air_temperature_at_2_metres",
        "time: area: maximum",
    ),
    "monthly": (
        {"over": "both", "group_by": "month"},
        "air_temperature_at_2_metres",
        "time: area: mean",
    ),
    "count": ({"over": "time", "reduction": "count"}, "air_temperature_at_2_metres", "time: sum"),
    "comparison": (
        {"over": "time", "baseline": ERA5, "selection": UKESM},
        "tas_anomaly",
        "time: mean",
    ),
}


def cf_errors(path: Path) -> list[str]:
    """What the IOOS compliance checker (cf:1.8) reports as errors (high priority)."""
    report = path.with_suffix(".cf.json")
    subprocess.run(
        [
            str(Path(sys.executable).parent / "compliance-checker"),
            "--test",
            "cf:1.8",
            "-f",
            "json_new",
            "-o",
            str(report),
            str(path),
        ],
        capture_output=True,
        check=False,
        timeout=120,
    )
    (result,) = json.loads(report.read_text()).values()
    return [m for item in result["cf:1.8"]["high_priorities"] for m in item["msgs"]]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_output_kind_is_cf_clean(catalog, kind):
    changes, name, methods = KINDS[kind]
    request = {"selection": ERA5, "output_name": f"cf-{kind}", "overwrite": True, **changes}
    summary = analyze(AnalysisRequest.model_validate(request))
    path = Path(summary["result_path"])
    assert cf_errors(path) == []
    ds = xr.open_dataset(path, engine="h5netcdf")
    answer = data_variable(ds)
    assert answer.name == name
    assert answer.attrs.get("cell_methods") == methods
    assert ds.attrs["Conventions"] == "CF-1.8"
    assert json.loads(ds.attrs["software_versions"])["xarray"] == xr.__version__
    assets = json.loads(ds.attrs["catalog_assets"])
    assert assets and all(paths for paths in assets.values())
    if kind == "count":
        assert answer.attrs["units"] == "1"
        assert answer.attrs["standard_name"] == "air_temperature number_of_observations"
    elif kind == "comparison":
        assert "standard_name" not in answer.attrs and "minus" in answer.attrs["long_name"]
        assert set(assets) == {"selection:us-west-2", "baseline:us-east-1", "baseline:us-west-2"}
    else:
        assert answer.attrs["standard_name"] == "air_temperature"
        assert answer.attrs["units"] == "K"
    if "lat" in answer.dims:
        assert ds["lat"].attrs["units"] == "degrees_north"
        assert ds["lon"].attrs["standard_name"] == "longitude"
    if kind in ("map", "number"):  # the period reduced, as a bounded scalar time
        bounds = ds["time_bnds"].values
        assert str(bounds[0])[:10] == "2020-01-01" and str(bounds[1])[:10] == "2020-05-01"
