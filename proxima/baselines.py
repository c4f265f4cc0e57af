"""What a scientist without Proxima does: copy the assets from each region's S3
endpoint to the client and reduce them there. Used by the locality benchmark and test.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import xarray as xr

from proxima import s3
from proxima.analysis.kernels import KernelSpec
from proxima.analysis.regional import compute_partial
from proxima.platform.model import Region


def pull_partial(region: Region, spec: KernelSpec) -> xr.Dataset:
    """Download every selected asset of the region whole (one GET per object), then
    compute the same partial aggregates on the client with the same kernel, in this
    process. NetCDF assets only.
    """
    client = s3.client(region)
    with tempfile.TemporaryDirectory(prefix="proxima-pull-") as tmp:
        for asset in spec.assets:
            bucket, key = asset.path.split("/", 1)
            target = Path(tmp) / asset.path
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, key, str(target))
        return compute_partial(tmp, spec)[0]
