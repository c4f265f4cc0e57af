"""CMIP6 NetCDF as ESGF publishes it (issue #14): facets from the global attributes,
the DRS path and the file name as fallbacks, disagreements reported; bounds variables,
``bnds``/``axis_nbounds`` dimensions and the CMIP6 calendars read as they are.
"""

from __future__ import annotations

import cftime
import numpy as np
import pytest
import xarray as xr

from proxima.catalog.extract import extract
from proxima.catalog.facets import from_file_name, from_path

ATTRS = {
    "Conventions": "CF-1.7 CMIP-6.2",
    "activity_id": "ScenarioMIP",
    "institution_id": "NOAA-GFDL",
    "source_id": "GFDL-ESM4",
    "experiment_id": "ssp585",
    "member_id": "r1i1p1f1",
    "variant_label": "r1i1p1f1",
    "table_id": "Amon",
    "grid_label": "gr1",
    "variable_id": "tas",
    "frequency": "mon",
    "tracking_id": "hdl:21.14100/0b5e3b5c-0000-4000-8000-000000000000",
}
DRS = "CMIP6/ScenarioMIP/NOAA-GFDL/GFDL-ESM4/ssp585/r1i1p1f1/Amon/tas/gr1/v20180701"
NAME = "tas_Amon_GFDL-ESM4_ssp585_r1i1p1f1_gr1_201501-201912.nc"


def _esgf_file(path, calendar: str, attrs: dict, bounds_dim: str = "bnds") -> None:
    """Five years of monthly ``tas`` with time, lat and lon bounds, as ESGF serves it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    months = [(2015 + m // 12, m % 12 + 1) for m in range(60)]
    mid = [cftime.datetime(y, mo, 15, calendar=calendar) for y, mo in months]
    start = [cftime.datetime(y, mo, 1, calendar=calendar) for y, mo in months]
    end = [*start[1:], cftime.datetime(2020, 1, 1, calendar=calendar)]
    lat, lon = np.arange(-85.0, 90.0, 10.0), np.arange(5.0, 360.0, 10.0)
    ds = xr.Dataset(
        {
            "tas": (
                ("time", "lat", "lon"),
                np.full((60, lat.size, lon.size), 288.0, "f4"),
                {"standard_name": "air_temperature", "units": "K", "cell_methods": "time: mean"},
            ),
            "time_bnds": (("time", bounds_dim), np.array([start, end], dtype=object).T),
            "lat_bnds": (("lat", bounds_dim), np.stack([lat - 5, lat + 5], axis=1)),
            "lon_bnds": (("lon", bounds_dim), np.stack([lon - 5, lon + 5], axis=1)),
        },
        coords={
            "time": ("time", mid, {"axis": "T", "bounds": "time_bnds"}),
            "lat": ("lat", lat, {"standard_name": "latitude", "units": "degrees_north"}),
            "lon": ("lon", lon, {"standard_name": "longitude", "units": "degrees_east"}),
        },
        attrs=attrs,
    )
    enc = {"time": {"units": "days since 1850-01-01", "calendar": calendar}}
    ds.to_netcdf(path, engine="netcdf4", encoding=enc)


@pytest.mark.parametrize(
    ("calendar", "bounds_dim"),
    [("noleap", "bnds"), ("360_day", "axis_nbounds"), ("proleptic_gregorian", "bnds")],
)
def test_esgf_netcdf_facets_come_from_its_global_attributes(tmp_path, calendar, bounds_dim):
    rel = f"cmip6-pds/{DRS}/{NAME}"
    _esgf_file(tmp_path / rel, calendar, ATTRS, bounds_dim)
    doc = extract(str(tmp_path), rel, "us-west-2", "cmip6", "cmip6-pds")
    assert not doc["quarantined"], doc["error_message"]
    assert doc["facets"] == {
        "activity_id": "ScenarioMIP",
        "institution_id": "NOAA-GFDL",
        "source_id": "GFDL-ESM4",
        "experiment_id": "ssp585",
        "member_id": "r1i1p1f1",
        "table_id": "Amon",
        "grid_label": "gr1",
        "version": "v20180701",  # only the path knows the version
    }
    assert doc["facet_conflicts"] == []
    assert [v["name"] for v in doc["variables"]] == ["tas"]  # bounds are not data
    assert doc["time"]["calendar"] == calendar
    assert doc["time"]["frequency"] == "mon"
    assert doc["time"]["start_native"].startswith("2015-01-15")


def test_without_attributes_the_drs_path_then_the_file_name_give_the_facets(tmp_path):
    bare = {"Conventions": "CF-1.7"}
    in_drs = f"cmip6-pds/{DRS}/{NAME}"
    _esgf_file(tmp_path / in_drs, "noleap", bare)
    doc = extract(str(tmp_path), in_drs, "us-west-2", "cmip6", "cmip6-pds")
    assert doc["facets"]["source_id"] == "GFDL-ESM4"
    assert doc["facets"]["activity_id"] == "ScenarioMIP"
    flat = f"cmip6-pds/flat/{NAME}"
    _esgf_file(tmp_path / flat, "noleap", bare)
    doc = extract(str(tmp_path), flat, "us-west-2", "cmip6", "cmip6-pds")
    assert doc["facets"] == {
        "source_id": "GFDL-ESM4",
        "experiment_id": "ssp585",
        "member_id": "r1i1p1f1",
        "table_id": "Amon",
        "grid_label": "gr1",
    }


def test_attributes_that_disagree_with_the_path_are_reported_on_the_asset(tmp_path):
    rel = f"cmip6-pds/{DRS}/{NAME}"
    _esgf_file(tmp_path / rel, "noleap", {**ATTRS, "source_id": "CESM2"})
    doc = extract(str(tmp_path), rel, "us-west-2", "cmip6", "cmip6-pds")
    assert doc["facets"]["source_id"] == "CESM2"  # the file's own word wins
    assert doc["facet_conflicts"] == [
        "source_id: global attributes 'CESM2', DRS path 'GFDL-ESM4', file name 'GFDL-ESM4'"
    ]


def test_paths_and_names_that_are_not_cmip6_give_no_facets():
    assert from_path("era5-pds/2020/01/data/air_temperature_at_2_metres.nc") == {}
    assert from_path("cmip6-pds/CMIP6/ScenarioMIP/too/short") == {}
    assert from_file_name("air_temperature_at_2_metres.nc") == {}
