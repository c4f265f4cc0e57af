"""The live intake-esm datastore: the ESM collection JSON and CSV of the current catalog.

NetCDF assets are served as kerchunk references, opened as Zarr stores
(``reference::<url>``), so intake-esm opens every group through xarray's Zarr engine.
Opened by its default netCDF4 engine from intake-esm's threads, they crash the
process now and then: netCDF-C is not thread-safe and xarray's netCDF4 backend
reads variable metadata outside its lock (pydata/xarray#9779, intake/intake-esm#697).
A reference is the file's HDF5 chunk map (h5py reads it once; the bytes are the
file's own), so the values are the file's.

Not intake-esm's ``format: reference``: for it intake-esm writes each asset's URL into
one ``storage_options`` dict that every source of a call shares, so sources opened
from its threads can open each other's files (found here: a group's months came back
identical and would not concatenate). A chained URL carries its reference with it.
"""

from __future__ import annotations

import csv
import io
import json
import threading
from pathlib import Path
from typing import Any

from proxima.catalog import export

METADATA_KEYS = (".zgroup", ".zattrs", ".zarray")


def datastore_rows(
    assets: list[dict[str, Any]], roots: dict[str, str], base_url: str
) -> list[dict[str, str]]:
    """The CSV rows: Zarr stores as exported, NetCDF files as their reference's URL.

    Only assets of the regions mounted here (``roots``) are listed: a reference is
    made from the file itself.
    """
    assets = [a for a in assets if a["region"] in roots]
    by_path = {str(Path(roots[a["region"]]) / a["path"]): a for a in assets}
    rows = export.esm_rows(assets, roots)
    for row in rows:
        if row["format"] == "netcdf":
            asset = by_path[row["path"]]
            row["path"] = f"reference::{base_url}/intake-esm/references/{asset['id']}.json"
            row["format"] = "zarr"
    return rows


def datastore_csv(rows: list[dict[str, str]]) -> str:
    """The rows as the datastore's CSV."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=export.ESM_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def datastore_json(name: str, base_url: str) -> dict[str, Any]:
    """The ESM collection spec, its catalog file the live CSV beside it."""
    return export.esm_spec(name) | {"catalog_file": f"{base_url}/intake-esm/{name}.csv"}


class References:
    """Kerchunk references of NetCDF files, made once per file version."""

    def __init__(self, size: int = 4096) -> None:
        """Keep up to ``size`` references in memory."""
        self._size = size
        self._cache: dict[tuple[str, int], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def get(self, path: str, mtime_ns: int) -> dict[str, Any]:
        """The reference set of the file at ``path`` as of ``mtime_ns``."""
        key = (path, mtime_ns)
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        from kerchunk.hdf import SingleHdf5ToZarr

        refs = dict(SingleHdf5ToZarr(path, url=path, inline_threshold=300).translate())
        chunks = refs["refs"]
        # consolidated metadata: xarray's Zarr engine looks for it first
        chunks[".zmetadata"] = json.dumps(
            {
                "zarr_consolidated_format": 1,
                "metadata": {
                    k: json.loads(v) if isinstance(v, str) else v
                    for k, v in chunks.items()
                    if k.endswith(METADATA_KEYS)
                },
            }
        )
        with self._lock:
            if len(self._cache) >= self._size:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = refs
        return refs
