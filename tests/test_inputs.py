"""Bad input never escapes as an unhandled exception, and no path leaves a region root."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from proxima.analysis.request import AnalysisRequest
from proxima.catalog.search import CatalogQuery, to_dsl
from proxima.paths import UnsafePath, inside

anything = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)
dates = st.one_of(st.dates().map(str), st.text(max_size=12), st.integers())
numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-1000, 1000))
selection = st.fixed_dictionaries(
    {"variable": st.one_of(st.text(max_size=40), st.none()), "start": dates, "end": dates},
    optional={
        "bbox": st.lists(numbers, max_size=6),
        "dataset": st.text(max_size=20),
        "facets": st.dictionaries(st.text(max_size=15), st.text(max_size=15), max_size=3),
        "junk": anything,
    },
)
request = st.fixed_dictionaries(
    {"selection": selection},
    optional={
        "baseline": selection,
        "reduction": st.sampled_from(["mean", "min", "max", "sum", "std", "count", "x"]),
        "over": st.sampled_from(["time", "space", "both", "bogus"]),
        "group_by": st.sampled_from(["month", "season", "year", None, "week"]),
        "convert": st.sampled_from(["K->degC", "kg m-2 s-1->mm/day", "m->mm", "F"]),
        "output_name": st.text(max_size=40),
        "max_transfer_bytes": st.integers(),
        "dry_run": anything,
    },
)

pytestmark = pytest.mark.reliability


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(request)
def test_analysis_request_only_raises_validation_errors(raw):
    try:
        req = AnalysisRequest.model_validate(raw)
    except ValidationError:
        return
    assert req.selection.start <= req.selection.end
    w, s, e, n = req.selection.bbox
    assert -90 <= s <= n <= 90 and -180 <= w <= 180 and -180 <= e <= 180
    if req.output_name:
        assert "/" not in req.output_name and not req.output_name.startswith(".")


query = st.fixed_dictionaries(
    {},
    optional={
        "dataset": st.text(max_size=20),
        "variable": st.text(max_size=40),
        "start": dates,
        "end": dates,
        "bbox": st.lists(numbers, max_size=6),
        "facets": st.dictionaries(st.text(max_size=15), st.text(max_size=15), max_size=3),
        "text": st.text(max_size=250),
        "region": st.text(max_size=20),
        "x": anything,
    },
)


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(query)
def test_catalog_query_only_raises_validation_errors_and_never_uses_query_string(raw):
    try:
        q = CatalogQuery.model_validate(raw)
    except ValidationError:
        return
    dsl = str(to_dsl(q))
    assert "query_string" not in dsl and "script" not in dsl


TRAVERSAL = [
    "../etc/passwd",
    "a/../../etc/passwd",
    "/etc/passwd",
    "era5/\x00.nc",
    "",
    "a/" * 600,
    "..",
    "era5-pds/../../../root",
]


@pytest.mark.parametrize("bad", TRAVERSAL)
def test_path_traversal_corpus_is_refused(tmp_path, bad):
    with pytest.raises(UnsafePath):
        inside(tmp_path, bad)


def test_symlink_leaving_the_root_is_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "escape").symlink_to(tmp_path)
    (root / "fine.nc").write_bytes(b"x")
    assert inside(root, "fine.nc") == (root / "fine.nc").resolve()
    with pytest.raises(UnsafePath):
        inside(root, "escape/secret")


def test_extract_and_kernels_refuse_escaping_paths(tmp_path):
    from proxima.analysis.kernels import AssetRef, open_asset
    from proxima.catalog.extract import extract

    # extraction never opens it: the entry is quarantined (one bad entry never blocks a
    # region's refresh), with the reason
    doc = extract(str(tmp_path), "../../etc/passwd", "us-east-1", "era5", "era5-pds")
    assert doc["quarantined"] and doc["error_class"] == "UnsafePath"
    assert "leaves the region root" in doc["error_message"] and not doc["variables"]
    with pytest.raises(UnsafePath):
        open_asset(str(tmp_path), AssetRef(path="/etc/passwd", format="netcdf"), "t")


def test_result_write_killed_midway_leaves_no_file_at_the_final_path(tmp_path):
    script = (
        "import sys, numpy as np, xarray as xr; from pathlib import Path;"
        "from proxima.analysis.results import write_atomic;"
        "ds = xr.Dataset({'result': (('a','b'), np.random.rand(8000, 8000))});"
        "write_atomic(ds, Path(sys.argv[1]), 'killed', 'netcdf')"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(tmp_path.glob(".partial-*")):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(tmp_path.glob(".partial-*")), "the write finished before it could be killed"
    assert not (tmp_path / "killed.nc").exists()
