"""netCDF-C in a multi-threaded process: one lock for every call into it.

netCDF-C (and the HDF5 under it) is not thread-safe. xarray's netcdf4 backend locks its
data reads but reads a file's metadata while opening it without a lock, so two tasks
opening files at once in one Dask worker crashed it now and then (SIGBUS / SIGSEGV in
``open_store_variable``, caught by the workers' faulthandler). Every netCDF-C call of
Proxima — opening, metadata, data reads through xarray, catalog header reads — holds
this one reentrant lock. HDF5 serialises decoding anyway, so nothing is lost.
"""

from __future__ import annotations

import threading
from pathlib import Path

import xarray as xr

LOCK = threading.RLock()


def open_dataset(path: Path | str, **kwargs: object) -> xr.Dataset:
    """``xr.open_dataset(path, engine="netcdf4")`` with its opening and every later read
    of its variables under :data:`LOCK`.
    """
    with LOCK:
        return xr.open_dataset(path, engine="netcdf4", lock=LOCK, **kwargs)  # type: ignore[arg-type]
