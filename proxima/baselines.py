"""What a scientist without Proxima would do: pull the assets from each region's S3
endpoint to the client and reduce them there. Used by the locality benchmark and test.
"""

from __future__ import annotations

from typing import Any

import s3fs
import xarray as xr

from proxima import s3
from proxima.analysis.kernels import EmptySelection, KernelSpec, partial, subset
from proxima.config import RegionConfig


def pull_partial(region: RegionConfig, spec: KernelSpec) -> xr.Dataset:
    """Read the region's selected assets over S3 and compute the same partial aggregates
    on the client (dask's threaded scheduler). Only NetCDF assets are supported.
    """
    fs = s3fs.S3FileSystem(**s3.storage_options(region))
    pieces = []
    handles: list[Any] = []
    try:
        for asset in spec.assets:
            bucket, key = asset.path.split("/", 1)
            handle = fs.open(f"{bucket}/{key}", "rb", block_size=8 * 2**20)
            handles.append(handle)
            ds = xr.open_dataset(handle, engine="h5netcdf", chunks={})
            da = ds[spec.variable]
            tdim = next(d for d in da.dims if d not in ("lat", "lon"))
            da = subset(da.rename({tdim: "time"}).transpose("time", "lat", "lon"), spec)
            if da.sizes["time"]:
                pieces.append(da)
        if not pieces:
            raise EmptySelection("nothing selected")
        da = xr.concat(pieces, dim="time", coords="minimal", compat="override", join="override")
        return partial(da.sortby("time"), spec.over, spec.group_by).compute(scheduler="threads")
    finally:
        for handle in handles:
            handle.close()
