"""The partial store and block identities, without services: a stored partial is used
whole or not at all, the cap evicts the least recently used, and every input that
changes a block's partial changes its identity."""

from __future__ import annotations

import os

import xarray as xr

from proxima.analysis.kernels import KernelSpec, block_identities, blocks
from proxima.analysis.partials import finalize
from proxima.analysis.regional import compute_partial, storing_block_partial
from proxima.reuse.store import MAGIC, PartialStore
from tests.test_kernels import _era5_assets

BOX = [160.0, -30.0, -150.0, 30.0]


def _spec(assets, **change) -> KernelSpec:
    base = {
        "variable": "t2m",
        "reduction": "mean",
        "start_key": 20200110,
        "end_key": 20200315,
        "bbox": BOX,
        "over": "time",
        "group_by": "month",
        "assets": assets,
    }
    return KernelSpec.model_validate(base | change)


def test_an_entry_round_trips_and_a_damaged_one_is_dropped(tmp_path):
    store = PartialStore(directory=str(tmp_path / "store"))
    value = xr.Dataset({"sum": ("x", [1.0, 2.0])})
    store.put({"a": 1}, value)
    got, status = store.get({"a": 1})
    assert status == "reused"
    xr.testing.assert_identical(got, value)
    (entry,) = store.entries()
    path = tmp_path / "store" / entry.key[:2] / entry.key
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF  # one flipped bit in the payload
    path.write_bytes(bytes(raw))
    assert store.get({"a": 1}) == (None, "corrupt")
    assert not path.exists() and store.entries() == []
    store.put({"a": 1}, value)
    path.write_bytes(MAGIC)  # truncated after the magic
    assert store.get({"a": 1}) == (None, "corrupt")
    assert store.get({"a": 2}) == (None, "computed")
    assert not list((tmp_path / "store").rglob(".tmp-*"))


def test_the_cap_evicts_the_least_recently_used(tmp_path):
    store = PartialStore(directory=str(tmp_path), max_bytes=10_000)
    blob = b"x" * 3_000
    for i in range(3):
        store.put({"i": i}, blob)
        path = tmp_path / store.entries()[-1].key[:2] / store.entries()[-1].key
        os.utime(path, ns=(i * 10**9, i * 10**9))  # a clock that ticks between puts
    store.get({"i": 0})  # 0 is used again: 1 is now the oldest
    store.put({"i": 3}, blob)
    assert store.get({"i": 1}) == (None, "computed")
    assert all(store.get({"i": i})[1] == "reused" for i in (0, 2, 3))
    assert sum(e.bytes for e in store.entries()) <= 10_000
    assert store.clear() == 3 and store.entries() == []


def test_reading_through_the_store_equals_reading_the_files(tmp_path):
    assets = _era5_assets(tmp_path, nan_month=2)
    spec = _spec(assets)
    store = PartialStore(directory=str(tmp_path / ".proxima"))
    plain, nbytes = compute_partial(str(tmp_path), spec, block_bytes=200_000)
    first, read = compute_partial(str(tmp_path), spec, block_bytes=200_000, store=store)
    again, reread = compute_partial(str(tmp_path), spec, block_bytes=200_000, store=store)
    assert read == nbytes > 0 and reread == 0
    for agg in (first, again):
        xr.testing.assert_allclose(finalize(agg, "mean"), finalize(plain, "mean"), rtol=1e-12)


def block_identity(root, spec, block):
    (identity,) = block_identities(root, spec, [block])
    return identity


def test_what_changes_a_partial_changes_its_identity(tmp_path):
    assets = _era5_assets(tmp_path)
    spec = _spec(assets)
    block = blocks(spec)[0]
    base = block_identity(str(tmp_path), spec, block)
    assert base is not None
    assert block_identity(str(tmp_path), spec, block) == base  # deterministic
    # a range that also covers the block whole: the same (equivalent boxes: test_reuse)
    assert block_identity(str(tmp_path), _spec(assets, end_key=20200331), block) == base
    scaled = [assets[0].model_copy(update={"scale": 2.0}), *assets[1:]]
    changes = [
        _spec(scaled),
        _spec(assets, bbox=[160.0, -20.0, -150.0, 30.0]),
        _spec(assets, group_by="season"),
        _spec(assets, reduction="std"),
        _spec(assets, over="both"),
        _spec(assets, start_key=20200111),
    ]
    for changed in changes:
        assert block_identity(str(tmp_path), changed, block) != base
    # a rewrite in place that keeps the size and restores the mtime changes the stamp
    path = tmp_path / assets[0].path
    st = path.stat()
    path.write_bytes(path.read_bytes())
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert block_identity(str(tmp_path), spec, block) != base


def test_a_block_whose_file_changed_while_it_was_read_is_not_kept(tmp_path):
    assets = _era5_assets(tmp_path)
    spec = _spec(assets)
    block = blocks(spec)[0]
    identity = block_identity(str(tmp_path), spec, block)
    store = PartialStore(directory=str(tmp_path / ".proxima"))
    path = tmp_path / assets[0].path
    path.write_bytes(path.read_bytes())  # rewritten after it was identified
    part, nbytes = storing_block_partial(store, identity, str(tmp_path), spec, block)
    assert part is not None and nbytes > 0
    assert store.entries() == []
    fresh = block_identity(str(tmp_path), spec, block)
    storing_block_partial(store, fresh, str(tmp_path), spec, block)
    assert len(store.entries()) == 1
