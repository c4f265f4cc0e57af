"""One bad entry never blocks a region (issue #14): symlink loops, dangling links, links
out of the root, files gone since the scan and a time axis without units are each
quarantined with a reason a user understands, and the good files beside them indexed.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import xarray as xr

from proxima.catalog import refresh
from proxima.catalog.extract import extract
from tests.regions import era5_region


def _netcdf(path, time_units: bool = True) -> None:
    ds = xr.Dataset(
        {"tas": (("time", "lat", "lon"), np.zeros((24, 3, 4), "f4"), {"units": "K"})},
        coords={
            "time": pd.date_range("2020-01-01", periods=24, freq="h"),
            "lat": ("lat", [10.0, 0.0, -10.0], {"standard_name": "latitude"}),
            "lon": ("lon", [0.0, 10.0, 20.0, 30.0], {"standard_name": "longitude"}),
        },
    )
    ds.to_netcdf(path, engine="netcdf4")
    if not time_units:
        import netCDF4

        with netCDF4.Dataset(path, "a") as f:
            f["time"].delncattr("units")


def test_bad_entries_are_quarantined_with_reasons_and_good_files_indexed(tmp_path):
    root = tmp_path / "fsx"
    bucket = root / "era5-pds"
    bucket.mkdir(parents=True)
    _netcdf(bucket / "good.nc")
    _netcdf(bucket / "no-time-units.nc", time_units=False)
    os.symlink("loop-b.nc", bucket / "loop-a.nc")
    os.symlink("loop-a.nc", bucket / "loop-b.nc")
    os.symlink("missing.nc", bucket / "dangling.nc")
    outside = tmp_path / "elsewhere.nc"
    _netcdf(outside)
    os.symlink(outside, bucket / "escapes.nc")
    _netcdf(bucket / "vanishes.nc")
    region = era5_region(root=str(root))
    found = refresh.scan_region(region, str(root))  # never raises on a bad entry
    (bucket / "vanishes.nc").unlink()  # gone between the scan and the header read
    docs = {
        c.relpath.split("/")[-1]: extract(str(root), c.relpath, region.name, "era5", "era5-pds")
        for c in found
    }
    assert not docs["good.nc"]["quarantined"] and docs["good.nc"]["variable_names"] == ["tas"]
    reasons = {name: d["error_message"] for name, d in docs.items() if d["quarantined"]}
    assert sorted(reasons) == [
        "dangling.nc",
        "escapes.nc",
        "loop-a.nc",
        "loop-b.nc",
        "no-time-units.nc",
        "vanishes.nc",
    ]
    assert "symbolic link loop" in reasons["loop-a.nc"]
    assert "dangling symbolic link to missing.nc" in reasons["dangling.nc"]
    assert "leaves the region root" in reasons["escapes.nc"]
    assert "gone since the scan" in reasons["vanishes.nc"]
    assert "time coordinate has no 'units' attribute" in reasons["no-time-units.nc"]
