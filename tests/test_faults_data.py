"""Data faults that need no services: a Zarr store with a missing chunk is refused,
never read back as fill values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from proxima.analysis.kernels import AssetRef, KernelSpec
from proxima.analysis.partials import finalize
from proxima.analysis.regional import compute_partial
from proxima.zarr_chunks import MissingChunks

pytestmark = pytest.mark.reliability


def _store(root):
    values = np.arange(6 * 3 * 4, dtype="f4").reshape(6, 3, 4) + 250.0
    ds = xr.Dataset(
        {"tas": (("time", "lat", "lon"), values, {"units": "K"})},
        coords={
            "time": pd.date_range("2020-01-01", periods=6, freq="D"),
            "lat": [10.0, 0.0, -10.0],
            "lon": [0.0, 10.0, 20.0, 30.0],
        },
    ).chunk({"time": 2})
    path = root / "bucket" / "x.zarr"
    ds.to_zarr(path, zarr_format=2, consolidated=True)
    return path, values


def _spec():
    return KernelSpec(
        variable="tas",
        start_key=20200101,
        end_key=20200131,
        bbox=[-180, -90, 180, 90],
        over="time",
        assets=[AssetRef(path="bucket/x.zarr", format="zarr")],
    )


def test_a_zarr_store_with_a_missing_chunk_is_refused_not_read_as_fill(tmp_path):
    path, values = _store(tmp_path)
    agg, _ = compute_partial(str(tmp_path), _spec())
    np.testing.assert_allclose(finalize(agg, "mean").values, values.mean(axis=0), rtol=1e-6)

    (path / "tas" / "1.0.0").unlink()  # the second of three time chunks
    silently = xr.open_zarr(path)["tas"]  # what plain Zarr does: fill values, no error
    assert int(silently.isnull().sum()) == 2 * 3 * 4
    with pytest.raises(MissingChunks, match=r"1 of 3 chunks are missing \(first: \['1.0.0'\]\)"):
        compute_partial(str(tmp_path), _spec())


def test_a_zarr_coordinate_with_a_missing_chunk_is_quarantined_at_extraction(tmp_path):
    from proxima.catalog.extract import extract

    path, _ = _store(tmp_path)
    healthy = extract(str(tmp_path), "bucket/x.zarr", "us-east-1", "d", "bucket")
    assert not healthy["quarantined"] and healthy["time"]["steps"] == 6
    (path / "time" / "0").unlink()  # the only chunk of the time coordinate
    doc = extract(str(tmp_path), "bucket/x.zarr", "us-east-1", "d", "bucket")
    assert doc["quarantined"] and doc["error_class"] == "MissingChunks", doc


def test_a_blocks_check_looks_up_its_own_chunks_and_finds_the_missing_one(tmp_path):
    """A block's reads are checked against its own time chunks: a block clear of the
    lost chunk reads, one that holds it is refused, naming it."""
    from proxima.zarr_chunks import check_chunks

    path, _ = _store(tmp_path)
    (path / "tas" / "1.0.0").unlink()
    check_chunks(path, "tas", first=0, stop=1)
    check_chunks(path, "tas", first=2, stop=None)
    with pytest.raises(MissingChunks, match=r"1 of 1 chunks are missing \(first: \['1.0.0'\]\)"):
        check_chunks(path, "tas", first=1, stop=2)
    with pytest.raises(MissingChunks, match=r"1 of 2 chunks are missing"):
        check_chunks(path, "tas", first=1)
