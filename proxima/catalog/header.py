"""A NetCDF file's header as the catalog needs it, read with as few netCDF-C calls as
that takes.

netCDF4-python's ``Dataset`` builds a Python object per variable and dimension and
asks netCDF-C for each one's every property and attribute: 1.1-1.2 ms per 196 KB
ERA5 file here, of which opening the file in netCDF-C is ~0.3-0.5 ms. The catalog
needs the global attributes, each variable's dimensions, shape, type and chunks, five
of its attributes (:data:`VARIABLE_ATTRIBUTES`) and the 1-D coordinates' values, so
:func:`read` asks the same netCDF-C library (the one netCDF4-python loaded, checked
by its version) for exactly those through its C API (0.7-0.8 ms). Whatever that path
does not read exactly as netCDF4-python does (user-defined types, character or string
coordinates, any error) goes through netCDF4-python instead, which also gives every
unreadable file its usual error. h5py's low-level API was measured too: ~30 us per
attribute in HDF5 calls, 1.9-2.5 ms per file, slower than both.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from proxima import netcdf

VARIABLE_ATTRIBUTES = ("standard_name", "long_name", "units", "axis", "calendar")
"""The only per-variable attributes the catalog reads."""

_NC_GLOBAL = -1
_NC_NOWRITE = 0
_NC_CHUNKED = 0
_NC_CHAR = 2
_NC_STRING = 12
_NC_ENOTATT = -43
_MAX_NAME = 256  # NC_MAX_NAME
_MAX_DIMS = 1024  # NC_MAX_VAR_DIMS
_NUMERIC: dict[int, np.dtype] = {
    1: np.dtype("i1"),
    3: np.dtype("i2"),
    4: np.dtype("i4"),
    5: np.dtype("f4"),
    6: np.dtype("f8"),
    7: np.dtype("u1"),
    8: np.dtype("u2"),
    9: np.dtype("u4"),
    10: np.dtype("i8"),
    11: np.dtype("u8"),
}
_DTYPES: dict[int, np.dtype] = {**_NUMERIC, _NC_CHAR: np.dtype("S1"), _NC_STRING: np.dtype(str)}
"""netCDF types as netCDF4-python's ``Variable.dtype`` names them."""


@dataclass
class HeaderVariable:
    """One variable the catalog reads: a 1-D coordinate or one of two or more dimensions."""

    name: str
    attrs: dict[str, Any]
    """Its attributes among :data:`VARIABLE_ATTRIBUTES`, as :func:`plain` values."""
    dims: tuple[str, ...]
    shape: list[int]
    dtype: np.dtype
    chunks: list[int] | None
    values: np.ndarray | None = None
    """The raw values (no scale, offset or mask), for a 1-D coordinate only."""


@dataclass
class Header:
    """A file's global attributes and its variables, in netCDF's order."""

    attrs: dict[str, Any]
    """As :func:`plain` values."""
    variables: list[HeaderVariable] = field(default_factory=list)


def plain(value: Any) -> Any:
    """An attribute's value as plain JSON-ready data: text decoded, a one-element array
    as its element, a longer one as a list.
    """
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size > 1 else value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value


def is_coordinate(name: str, dims: tuple[str, ...]) -> bool:
    """A 1-D variable named after its dimension."""
    return len(dims) == 1 and dims[0] == name


def _wanted(name: str, dims: tuple[str, ...]) -> bool:
    return len(dims) >= 2 or is_coordinate(name, dims)


class _Declined(Exception):
    """The C path leaves this file to netCDF4-python."""


@functools.cache
def _library() -> Any | None:
    """netCDF-C as netCDF4-python loaded it (same version), typed; None if not found."""
    import netCDF4

    here = Path(netCDF4.__file__).parent.parent
    candidates = [str(p) for p in sorted(here.glob("netcdf4.libs/libnetcdf-*.so*"))]
    candidates.append(ctypes.util.find_library("netcdf") or "")
    for candidate in filter(None, candidates):
        try:
            lib = ctypes.CDLL(candidate)
        except OSError:
            continue
        lib.nc_inq_libvers.restype = ctypes.c_char_p
        version = lib.nc_inq_libvers().decode().split()[0]
        if version == netCDF4.__netcdf4libversion__.split()[0]:
            return _typed(lib)
    return None


def _typed(lib: Any) -> Any:
    i, ip, s, p = ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.c_char_p, ctypes.c_void_p
    zp = ctypes.POINTER(ctypes.c_size_t)
    for name, args in {
        "nc_open": [s, i, ip],
        "nc_close": [i],
        "nc_inq": [i, ip, ip, ip, ip],
        "nc_inq_attname": [i, i, i, s],
        "nc_inq_att": [i, i, s, ip, zp],
        "nc_get_att": [i, i, s, p],
        "nc_free_string": [ctypes.c_size_t, ctypes.POINTER(s)],
        "nc_inq_var": [i, i, s, ip, ip, ip, ip],
        "nc_inq_dimname": [i, i, s],
        "nc_inq_dimlen": [i, i, zp],
        "nc_inq_var_chunking": [i, i, ip, zp],
        "nc_get_var": [i, i, p],
    }.items():
        getattr(lib, name).argtypes = args
        getattr(lib, name).restype = i
    return lib


def _ok(status: int) -> None:
    if status != 0:
        raise _Declined(status)


class _Reader:
    """One open file's header calls (buffers reused across calls)."""

    def __init__(self, lib: Any, ncid: int) -> None:
        self.lib, self.ncid = lib, ncid
        self.name = ctypes.create_string_buffer(_MAX_NAME + 1)
        self.xtype, self.length = ctypes.c_int(), ctypes.c_size_t()

    def attribute(self, varid: int, name: bytes) -> Any | None:
        """An attribute as netCDF4-python returns it; None if the variable has none."""
        lib, xtype, n = self.lib, self.xtype, self.length
        status = lib.nc_inq_att(self.ncid, varid, name, xtype, n)
        if status == _NC_ENOTATT:
            return None
        _ok(status)
        count = n.value
        if xtype.value == _NC_CHAR:
            text = ctypes.create_string_buffer(count + 1)
            _ok(lib.nc_get_att(self.ncid, varid, name, text))
            return text.raw[:count].decode(errors="replace").replace("\x00", "")
        if xtype.value == _NC_STRING:
            strings = (ctypes.c_char_p * count)()
            _ok(lib.nc_get_att(self.ncid, varid, name, strings))
            out = [(s or b"").decode(errors="replace").replace("\x00", "") for s in strings]
            lib.nc_free_string(count, strings)
            return out[0] if count == 1 else out
        dtype = _NUMERIC.get(xtype.value)
        if dtype is None:
            raise _Declined(f"attribute {name!r} of user-defined type {xtype.value}")
        values = np.empty(count, dtype)
        _ok(lib.nc_get_att(self.ncid, varid, name, values.ctypes.data))
        return values

    def header(self) -> Header:
        lib, ncid, name = self.lib, self.ncid, self.name
        ndims, nvars, ngatts, unlimited = (ctypes.c_int() for _ in range(4))
        _ok(lib.nc_inq(ncid, ndims, nvars, ngatts, unlimited))
        header = Header(attrs={})
        for index in range(ngatts.value):
            _ok(lib.nc_inq_attname(ncid, _NC_GLOBAL, index, name))
            header.attrs[name.value.decode()] = plain(self.attribute(_NC_GLOBAL, name.value))
        dimids = (ctypes.c_int * _MAX_DIMS)()
        sizes = (ctypes.c_size_t * _MAX_DIMS)()
        rank, natts, storage, xtype = ctypes.c_int(), ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        dims: dict[int, tuple[str, int]] = {}
        for varid in range(nvars.value):
            _ok(lib.nc_inq_var(ncid, varid, name, xtype, rank, dimids, natts))
            var = name.value.decode()
            ids = dimids[: rank.value]
            for dimid in ids:
                if dimid not in dims:
                    _ok(lib.nc_inq_dimname(ncid, dimid, name))
                    _ok(lib.nc_inq_dimlen(ncid, dimid, self.length))
                    dims[dimid] = (name.value.decode(), self.length.value)
            names = tuple(dims[d][0] for d in ids)
            if not _wanted(var, names):
                continue
            dtype = _DTYPES.get(xtype.value)
            if dtype is None:
                raise _Declined(f"variable {var!r} of user-defined type {xtype.value}")
            shape = [dims[d][1] for d in ids]
            values = None
            if is_coordinate(var, names):
                if xtype.value not in _NUMERIC:
                    raise _Declined(f"the coordinate {var!r} holds text")
                values = np.empty(shape, dtype)
                if values.size:
                    _ok(lib.nc_get_var(ncid, varid, values.ctypes.data))
            _ok(lib.nc_inq_var_chunking(ncid, varid, storage, sizes))
            attrs = {}
            for key in VARIABLE_ATTRIBUTES:
                value = self.attribute(varid, key.encode())
                if value is not None:
                    attrs[key] = plain(value)
            header.variables.append(
                HeaderVariable(
                    name=var,
                    attrs=attrs,
                    dims=names,
                    shape=shape,
                    dtype=dtype,
                    chunks=list(sizes[: len(ids)]) if storage.value == _NC_CHUNKED else None,
                    values=values,
                )
            )
        return header


def _through_c(lib: Any, path: Path) -> Header:
    ncid = ctypes.c_int()
    _ok(lib.nc_open(bytes(path), _NC_NOWRITE, ncid))
    try:
        return _Reader(lib, ncid.value).header()
    finally:
        lib.nc_close(ncid.value)


def through_netcdf4_python(path: Path) -> Header:
    """The header through netCDF4-python's ``Dataset`` (the reference, and the fallback)."""
    import netCDF4

    with netcdf.LOCK, netCDF4.Dataset(path, "r") as f:
        f.set_auto_maskandscale(False)
        header = Header(attrs={k: plain(f.getncattr(k)) for k in f.ncattrs()})
        for name, var in f.variables.items():
            dims = tuple(var.dimensions)
            if not _wanted(name, dims):
                continue
            present = set(var.ncattrs())
            chunking = var.chunking()
            header.variables.append(
                HeaderVariable(
                    name=name,
                    attrs={k: plain(var.getncattr(k)) for k in VARIABLE_ATTRIBUTES if k in present},
                    dims=dims,
                    shape=list(var.shape),
                    dtype=np.dtype(var.dtype),
                    chunks=list(chunking) if isinstance(chunking, list) else None,
                    values=np.asarray(var[:]) if is_coordinate(name, dims) else None,
                )
            )
    return header


def read(path: Path) -> Header:
    """A NetCDF-3 or NetCDF-4 file's header, through netCDF-C's C API where that reads
    it exactly as netCDF4-python does, through netCDF4-python otherwise.

    Args:
        path: The file.

    Returns:
        Its global attributes and its 1-D coordinates and variables of two or more
        dimensions, with the attributes in :data:`VARIABLE_ATTRIBUTES`.

    Raises:
        OSError: netCDF4-python's error for a file netCDF-C cannot open.
    """
    lib = _library()
    if lib is not None:
        with netcdf.LOCK:
            try:
                return _through_c(lib, path)
            except _Declined:
                pass
    return through_netcdf4_python(path)
