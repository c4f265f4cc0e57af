"""The catalog's header reader (issue #29): netCDF-C's C API where that reads a file
exactly as netCDF4-python does, netCDF4-python otherwise; every field either gives,
and every catalog document built from them, equal on the synthetic ERA5 and ESGF
CMIP6 files, on the real-world files the CF checker and xarray ship, and on messy
files of each kind the fast path must decline.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import netCDF4
import numpy as np
import pytest
from netCDF4.utils import _nc3tonc4 as nc3tonc4

from proxima.catalog import header
from proxima.catalog.extract import extract
from proxima.datagen import era5
from tests.test_esgf import ATTRS, _esgf_file

SHIPPED = sorted(
    path
    for package in ("compliance_checker", "xarray", "scipy")
    for path in Path(importlib.util.find_spec(package).origin).parent.rglob("tests/data/**/*.nc")
)


def _messy(path: Path, kind: str) -> None:
    """A file with one trait the C path has to get right or leave to netCDF4-python."""
    fmt = "NETCDF3_64BIT_OFFSET" if kind == "netcdf3" else "NETCDF4"
    with netCDF4.Dataset(path, "w", format=fmt) as f:
        f.createDimension("time", None)
        f.createDimension("lat", 3)
        f.createDimension("lon", 4)
        t = f.createVariable("time", "f8", ("time",))
        t.setncatts({"units": "days since 2000-01-01", "calendar": "noleap", "axis": "T"})
        t[:] = np.arange(5.0)
        f.createVariable("lat", "f4", ("lat",))[:] = [10, 0, -10]
        f.createVariable("lon", "f4", ("lon",))[:] = [0, 90, 180, 270]
        v = f.createVariable("tas", "f4", ("time", "lat", "lon"))
        v.units = "K"
        v[:] = np.ones((5, 3, 4))
        f.title = "messy"
        if kind == "netcdf3":
            f.history = b"bytes \xff not utf-8"
            f.setncattr("flag_values", np.array([1, 2, 3], "i2"))
            v.standard_name = ""
        elif kind == "attributes":
            f.setncattr_string("authors", ["a", "b"])
            f.setncattr_string("one_string", "x")
            f.setncattr("empty", "")
            f.setncattr("int64", np.int64(2**40))
            f.setncattr("doubles", np.array([1.5, 2.5]))
            f.setncattr("nul", "before\x00after")
            v.setncattr_string("long_name", "near-surface temperature")
            v.setncattr("units", np.float32(1.0))  # messy: a number where text belongs
        elif kind == "unlimited":
            f.createVariable("pr", "f4", ("time", "lat", "lon"))[:7] = np.zeros((7, 3, 4))
        elif kind == "text-coordinate":
            f.createDimension("station", 2)
            s = f.createVariable("station", str, ("station",))
            s[0], s[1] = "A", "B"
            f.createDimension("strlen", 4)
            f.createVariable("names", "S1", ("station", "strlen"))
        elif kind == "user-type":
            kinds = f.createEnumType(np.uint8, "cloud_t", {"clear": 0, "cloudy": 1})
            f.createVariable("cloud", kinds, ("lat", "lon"))
        elif kind == "compound-attribute":
            pair = f.createCompoundType(np.dtype([("a", "i4"), ("b", "f4")]), "pair_t")
            f.createVariable("pairs", pair, ("lat", "lon"))
        elif kind == "groups":
            g = f.createGroup("extra")
            g.createVariable("hidden", "f4", ("lat", "lon"))
        elif kind == "storage":
            f.createVariable("contiguous", "f4", ("lat", "lon"), contiguous=True)
            f.createVariable("chunked", "i2", ("time", "lat", "lon"), chunksizes=(2, 3, 1))
            f.createVariable("packed", "u8", ("lat", "lon"), zlib=True, shuffle=True)


MESSY = [
    "netcdf3",
    "attributes",
    "unlimited",
    "text-coordinate",
    "user-type",
    "compound-attribute",
    "groups",
    "storage",
]
FAST = {"netcdf3", "attributes", "unlimited", "groups", "storage"}
"""The messy kinds the C path reads itself; the rest it leaves to netCDF4-python."""


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("headers")
    made = {}
    era = root / "era5" / "2020" / "01" / "data" / "air_temperature_at_2_metres.nc"
    era.parent.mkdir(parents=True)
    era5.write_month(era, 2020, 1, "air_temperature_at_2_metres", 30.0, 1)
    made["era5"] = era
    for calendar, bounds in (("noleap", "bnds"), ("360_day", "axis_nbounds")):
        path = root / f"esgf-{calendar}" / "tas_Amon_GFDL-ESM4_ssp585_r1i1p1f1_gr1_201501-201912.nc"
        _esgf_file(path, calendar, ATTRS, bounds)
        made[f"esgf-{calendar}"] = path
    for kind in MESSY:
        made[kind] = root / f"{kind}.nc"
        _messy(made[kind], kind)
    for i, path in enumerate(SHIPPED):
        made[f"shipped-{i}"] = shutil.copy(path, root / f"shipped-{i}-{path.name}")
        with netCDF4.Dataset(path) as f:
            classic = f.data_model.startswith("NETCDF3")
        if classic:
            converted = root / f"shipped-{i}-nc4-{path.name}"  # the same layout in HDF5
            nc3tonc4(str(path), str(converted), unpackshort=False, quiet=True, clobber=True)
            made[f"shipped-{i}-nc4"] = converted
    (root / "not-netcdf.nc").write_bytes(b"this is not a NetCDF file at all")
    made["not-netcdf"] = root / "not-netcdf.nc"
    return made


def _fields(h: header.Header) -> list:
    return [h.attrs] + [
        (
            v.name,
            v.attrs,
            v.dims,
            v.shape,
            v.dtype,
            v.chunks,
            None if v.values is None else (v.values.dtype, v.values.tolist()),
        )
        for v in h.variables
    ]


def test_the_shipped_real_world_files_are_all_found():
    assert len(SHIPPED) >= 15, SHIPPED


def test_the_c_path_uses_the_netcdf_c_that_netcdf4_python_loaded():
    lib = header._library()
    assert lib is not None
    assert lib.nc_inq_libvers().decode().split()[0] == netCDF4.__netcdf4libversion__.split()[0]


def test_every_header_field_equals_netcdf4_pythons(files):
    compared = 0
    for name, path in files.items():
        if name == "not-netcdf":
            continue
        try:
            reference = header.through_netcdf4_python(path)
        except (OSError, ValueError) as exc:
            with pytest.raises(type(exc)):
                header.read(path)
            continue
        assert _fields(header.read(path)) == _fields(reference), name
        compared += 1
    assert compared >= len(files) - 3


@pytest.mark.parametrize("kind", ["era5", "esgf-noleap", "esgf-360_day", *sorted(FAST)])
def test_the_archives_files_take_the_c_path(files, kind):
    """The fast path really reads these (a path that always declined would pass the
    equality test while saving nothing).
    """
    got = header._through_c(header._library(), files[kind])
    assert _fields(got) == _fields(header.through_netcdf4_python(files[kind]))


@pytest.mark.parametrize("kind", sorted(set(MESSY) - FAST))
def test_what_the_c_path_cannot_read_exactly_it_leaves_to_netcdf4_python(files, kind):
    with pytest.raises(header._Declined):
        header._through_c(header._library(), files[kind])
    assert header.read(files[kind]).variables


def test_every_catalog_document_equals_the_one_netcdf4_python_gives(files, monkeypatch):
    rels = {n: p.relative_to(p.anchor).as_posix() for n, p in files.items()}

    def documents() -> dict[str, dict]:
        out = {}
        for name, rel in rels.items():
            doc = extract("/", rel, "us-east-1", "d", "b")
            doc.pop("indexed_at")
            out[name] = doc
        return out

    fast = documents()
    monkeypatch.setattr(header, "_library", lambda: None)
    assert documents() == fast
    assert not fast["era5"]["quarantined"] and fast["era5"]["time"]["steps"] == 744
    assert fast["esgf-noleap"]["facets"]["source_id"] == "GFDL-ESM4"
    assert fast["not-netcdf"]["quarantined"] and fast["not-netcdf"]["error_class"] == "OSError"
