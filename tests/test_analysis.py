"""Cross-region analyses equal a plain-xarray reference over all files in one process."""

import asyncio
import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from pydantic import ValidationError

from flows.cross_region_analysis import analyze
from proxima.analysis.cf import data_variable
from proxima.analysis.plan import PlanningError
from proxima.analysis.request import AnalysisRequest
from tests.cli import proxima

CFT = xr.coders.CFDatetimeCoder(use_cftime=True)


def _files(settings, pattern_by_region):
    out = []
    for region, pattern in pattern_by_region.items():
        out += sorted(settings.region_root(region).glob(pattern))
    return out


def _reference_era5(settings, variable, start, end, bbox):
    files = _files(
        settings,
        {
            "us-east-1": f"era5-pds/2020/*/data/{variable}.nc",
            "us-west-2": f"era5-pds/2020/*/data/{variable}.nc",
        },
    )
    parts = []
    for f in files:
        ds = xr.open_dataset(f, engine="h5netcdf")
        da = ds[variable]
        parts.append(da.rename({next(d for d in da.dims if d.startswith("time")): "time"}))
    da = xr.concat(parts, "time").sortby("time").sel(time=slice(start, end + "T23:59"))
    return _box(da, bbox)


def _box(da, bbox):
    w, s, e, n = bbox
    lon = ((da.lon + 180) % 360) - 180
    lon_ok = ((lon >= w) & (lon <= e)) if w <= e else ((lon >= w) | (lon <= e))
    lat_ok = (da.lat >= s) & (da.lat <= n)
    return da.isel(lon=np.nonzero(lon_ok.values)[0], lat=np.nonzero(lat_ok.values)[0]).astype("f8")


def _reduce(da, reduction, over, group_by):
    dims = {"time": ["time"], "space": ["lat", "lon"], "both": ["time", "lat", "lon"]}[over]
    weighted = over != "time" and reduction in ("mean", "std")

    def red(x, dims):
        if weighted:
            w = x.weighted(np.cos(np.deg2rad(x.lat.astype("f8"))))
            return getattr(w, reduction)(dims)
        return getattr(x, reduction)(dims)

    if group_by:
        dims = ["time"] if over == "time" else ["time", "lat", "lon"]
        return da.groupby(getattr(da.time.dt, group_by).rename(group_by)).map(red, dims=dims)
    return red(da, dims)


def _run(request: dict) -> tuple[dict, xr.Dataset]:
    summary = analyze(AnalysisRequest.model_validate(request))
    result = xr.open_dataset(summary["result_path"], engine="h5netcdf")
    return summary, result


def _assert_close(actual: xr.DataArray, expected: xr.DataArray):
    actual = actual.transpose(*expected.dims)
    for dim in expected.dims:
        np.testing.assert_allclose(
            np.asarray(actual[dim], dtype=float), np.asarray(expected[dim], dtype=float)
        )
    np.testing.assert_allclose(actual.values, expected.values, rtol=1e-6, atol=1e-9)


PACIFIC = [170.0, -40.0, -160.0, 40.0]  # crosses the antimeridian


@pytest.mark.parametrize("reduction", ["mean", "min", "max", "std"])
@pytest.mark.parametrize("group_by", [None, "month"])
def test_era5_split_across_regions_equals_reference(catalog, settings, reduction, group_by):
    request = {
        "selection": {
            "variable": "air_temperature",
            "dataset": "era5",
            "start": "2020-01-10",
            "end": "2020-04-20",
            "bbox": PACIFIC,
        },
        "reduction": reduction,
        "over": "time",
        "group_by": group_by,
    }
    summary, result = _run(request)
    ref = _reduce(
        _reference_era5(
            settings, "air_temperature_at_2_metres", "2020-01-10", "2020-04-20", PACIFIC
        ),
        reduction,
        "time",
        group_by,
    )
    _assert_close(data_variable(result), ref)
    regions = {r["region"]: r for r in summary["regions"]}
    assert set(regions) == {"us-east-1", "us-west-2"}
    # each region's task ran on that region's own workers (recorded in the result)
    assert result.attrs["worker_regions"] == "us-east-1=us-east-1,us-west-2=us-west-2"
    for r in regions.values():
        assert r["worker"] == f"{r['region']}-worker"
        assert r["bytes_returned"] < 64 * 1024 < r["bytes_read"]
    assert summary["bytes_crossed_regions"] == regions["us-west-2"]["bytes_returned"]


@pytest.mark.parametrize(
    ("reduction", "over", "group_by"),
    [
        ("mean", "time", "month"),
        ("std", "time", None),
        ("mean", "space", None),
        ("max", "both", "season"),
    ],
)
def test_only_minimal_partials_cross_and_the_estimate_holds(
    catalog, settings, reduction, over, group_by
):
    """What crosses regions is the result's size plus a small envelope (for a monthly
    mean: the sums and one count per month), and the dry-run estimate is within 20%."""
    request = {
        "selection": {
            "variable": "air_temperature",
            "dataset": "era5",
            "start": "2020-01-01",
            "end": "2020-04-30",
        },
        "reduction": reduction,
        "over": over,
        "group_by": group_by,
    }
    planned = analyze(AnalysisRequest.model_validate({**request, "dry_run": True}))
    summary, result = _run(request)
    result_bytes = data_variable(result).size * 8
    west = next(r for r in summary["regions"] if r["region"] == "us-west-2")  # the TLS region
    assert summary["bytes_crossed_regions"] == west["bytes_returned"]
    share = result_bytes * 3 / 6 if group_by == "month" else result_bytes
    assert west["bytes_returned"] <= share + 256 * 1024
    estimate = next(r["bytes_out_est"] for r in planned["plan"] if r["region"] == "us-west-2")
    assert abs(estimate - west["bytes_returned"]) <= 0.2 * west["bytes_returned"], (
        estimate,
        west["bytes_returned"],
    )


@pytest.mark.reliability
def test_monthly_model_data_by_year_estimate_holds_and_the_cap_refuses(catalog, settings):
    """Issue 15's reproduction: monthly CMIP6 grouped by year was estimated as if hourly
    (8,760 steps a year). The estimate now comes from the output's shape."""
    request = {
        "selection": {
            "variable": "tas",
            "dataset": "cmip6",
            "start": "2015-01-01",
            "end": "2016-12-31",
            "facets": {"source_id": "UKESM1-0-LL"},
        },
        "reduction": "mean",
        "over": "time",
        "group_by": "year",
    }
    planned = analyze(AnalysisRequest.model_validate({**request, "dry_run": True}))
    (row,) = [r for r in planned["plan"] if r["region"] == "us-west-2"]
    summary, result = _run(request)
    assert dict(data_variable(result).sizes)["year"] == 2
    (west,) = [r for r in summary["regions"] if r["region"] == "us-west-2"]
    measured = west["bytes_returned"]
    assert abs(row["bytes_out_est"] - measured) <= 0.2 * measured, (row, measured)
    with pytest.raises(PlanningError, match="max_transfer_bytes"):
        analyze(AnalysisRequest.model_validate({**request, "max_transfer_bytes": measured // 2}))


@pytest.mark.parametrize(
    ("over", "group_by", "convert"),
    [("space", None, None), ("both", "month", "K->degC"), ("both", None, None)],
)
def test_space_and_total_reductions_equal_reference(catalog, settings, over, group_by, convert):
    bbox = [-30.0, -60.0, 60.0, 60.0]
    request = {
        "selection": {
            "variable": "air_temperature_at_2_metres",
            "dataset": "era5",
            "start": "2020-02-25",
            "end": "2020-03-03",
            "bbox": bbox,
        },
        "reduction": "mean",
        "over": over,
        "group_by": group_by,
        "convert": convert,
    }
    _, result = _run(request)
    ref = _reduce(
        _reference_era5(settings, "air_temperature_at_2_metres", "2020-02-25", "2020-03-03", bbox),
        "mean",
        over,
        group_by,
    )
    if convert:
        ref = ref - 273.15
        assert data_variable(result).attrs["units"] == "degC"
    if over == "space":
        np.testing.assert_allclose(data_variable(result).values, ref.values, rtol=1e-6)
        assert result.sizes["time"] == ref.sizes["time"] == 8 * 24
    else:
        np.testing.assert_allclose(
            np.atleast_1d(data_variable(result).values), np.atleast_1d(ref.values), rtol=1e-6
        )


def test_projection_minus_reanalysis_on_the_coarser_grid(catalog, settings):
    bbox = [0.0, -50.0, 359.0, 50.0]
    request = {
        "selection": {
            "variable": "tas",
            "dataset": "cmip6",
            "start": "2015-01-01",
            "end": "2016-12-31",
            "bbox": bbox,
            "facets": {"source_id": "UKESM1-0-LL"},
        },
        "baseline": {
            "variable": "air_temperature",
            "dataset": "era5",
            "start": "2020-01-01",
            "end": "2020-04-30",
            "bbox": bbox,
        },
        "reduction": "mean",
        "over": "time",
        "convert": "K->degC",
    }
    summary, result = _run(request)
    store = sorted(
        settings.region_root("us-west-2").glob(
            "cmip6-pds/CMIP6/ScenarioMIP/MOHC/UKESM1-0-LL/ssp585/*/Amon/tas/*/*"
        )
    )[0]
    tas = xr.open_zarr(store, decode_times=CFT)["tas"]
    b = _box(tas, request["selection"]["bbox"] and [-180.0, -50.0, 179.0, 50.0]).mean("time")
    a = _reduce(
        _reference_era5(
            settings,
            "air_temperature_at_2_metres",
            "2020-01-01",
            "2020-04-30",
            [-180.0, -50.0, 179.0, 50.0],
        ),
        "mean",
        "time",
        None,
    )
    assert b.sizes["lat"] * b.sizes["lon"] < a.sizes["lat"] * a.sizes["lon"]  # UKESM coarser
    a_on_b = a.sortby("lat").sortby("lon").interp(lat=b.lat, lon=b.lon, kwargs={"fill_value": None})
    expected = b - a_on_b
    _assert_close(data_variable(result), expected.transpose("lat", "lon"))
    assert {r["role"] for r in summary["regions"]} == {"selection", "baseline"}


def test_dry_run_plans_and_runs_nothing(catalog, stack):
    before = _analysis_subflow_runs()
    out = analyze(
        AnalysisRequest.model_validate(
            {
                "selection": {
                    "variable": "precipitation_flux",
                    "dataset": "cmip6",
                    "start": "2013-01-01",
                    "end": "2016-12-31",
                    "facets": {"source_id": "GFDL-ESM4"},
                },
                "over": "both",
                "dry_run": True,
            }
        )
    )
    assert out["dry_run"] and out["bytes_read_est"] > 0
    assert [r["region"] for r in out["plan"]] == ["us-west-2"]
    assert out["egress_usd_est"] > 0  # us-west-2 -> us-east-1 crosses
    assert _analysis_subflow_runs() == before


def _analysis_subflow_runs() -> int:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    async def count():
        async with get_client() as client:
            return len(
                await client.read_flow_runs(
                    flow_filter=FlowFilter(
                        name=FlowFilterName(any_=["analyze-us-east-1", "analyze-us-west-2"])
                    )
                )
            )

    return asyncio.run(count())


BASE = {
    "variable": "air_temperature",
    "dataset": "era5",
    "start": "2020-01-01",
    "end": "2020-01-31",
}


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (
            {"selection": {**BASE, "variable": "sea_ice_thickness"}},
            "unknown variable 'sea_ice_thickness'; the catalog has: .*air_temperature",
        ),
        (
            {"selection": {**BASE, "start": "1990-01-01", "end": "1990-12-31"}},
            "no asset of 'air_temperature' in dataset 'era5' overlaps",
        ),
        ({"selection": {**BASE, "dataset": None}}, "several datasets"),
        (
            {"selection": {**BASE, "variable": "tas", "dataset": "cmip6", "start": "2014-01-01"}},
            "mixes 2 models",
        ),
        ({"selection": BASE, "max_read_bytes": 1000}, "above max_read_bytes"),
        ({"selection": BASE, "convert": "kg m-2 s-1->mm/day"}, "allowed for it: \\['K->degC'\\]"),
    ],
)
@pytest.mark.reliability
def test_bad_requests_fail_before_any_cluster_is_touched(catalog, request_, message):
    before = _analysis_subflow_runs()
    with pytest.raises(PlanningError, match=message):
        analyze(AnalysisRequest.model_validate(request_))
    assert _analysis_subflow_runs() == before


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"selection": {**BASE, "start": "2020-02-01", "end": "2020-01-01"}}, "is after end"),
        ({"selection": {**BASE, "bbox": [0, -95, 10, 10]}}, "outside -90..90"),
        ({"selection": {**BASE, "bbox": [0, 0, 400, 10]}}, "outside -180..180"),
        ({"selection": BASE, "reduction": "median"}, "'mean', 'min', 'max', 'sum', 'std'"),
        ({"selection": {**BASE, "facets": {"colour": "red"}}}, "unknown facet"),
        ({"selection": BASE, "output_name": "../../etc/passwd"}, "pattern"),
    ],
)
def test_invalid_requests_are_refused_by_the_model(request_, message):
    with pytest.raises(ValidationError, match=message):
        AnalysisRequest.model_validate(request_)


def test_result_file_is_complete_netcdf_with_provenance(catalog, settings):
    summary, result = _run(
        {
            "selection": {**BASE, "bbox": PACIFIC},
            "over": "both",
            "output_name": "provenance-check",
            "overwrite": True,
        }
    )
    path = Path(summary["result_path"])
    assert path.name == "provenance-check.nc"
    assert not list(path.parent.glob(".partial-*"))
    req = json.loads(result.attrs["request"])
    assert req["selection"]["variable"] == "air_temperature"
    assert result.attrs["coverage"] == "complete"
    assert result.attrs["regions"] == "us-east-1"


@pytest.mark.reliability
def test_a_failed_region_is_named_or_reported_as_missing_coverage(catalog, stack, settings):
    from blocks.data_region import DataRegion
    from flows.cross_region_analysis import RegionFailed
    from proxima.platform.blocks import save_blocks

    save_blocks()
    broken = DataRegion.load("us-west-2")
    broken.scheduler_address = "tcp://127.0.0.1:9"  # nothing listens there
    broken.save("us-west-2", overwrite=True)
    request = {
        "selection": {**BASE, "end": "2020-04-30", "bbox": PACIFIC},
        "over": "both",
        "output_name": "partial-check",
        "overwrite": True,
    }
    (settings.state_dir / "results" / "partial-check.nc").unlink(missing_ok=True)
    try:
        with pytest.raises(RegionFailed, match="region us-west-2 failed"):
            analyze(AnalysisRequest.model_validate(request))
        assert not (settings.state_dir / "results" / "partial-check.nc").exists()
        summary, result = _run({**request, "allow_partial": True})
    finally:
        save_blocks()
    assert summary["missing_regions"] == ["us-west-2"]
    assert result.attrs["coverage"] == (
        "partial: missing 2020-03-01..2020-04-30 (no answer from us-west-2)"
    )
    assert summary["coverage"] == result.attrs["coverage"]
    assert [r["region"] for r in summary["regions"]] == ["us-east-1"]
    assert np.isfinite(data_variable(result).values).all()


def test_the_platform_loads_from_block_pages_and_names_a_missing_block(stack, monkeypatch):
    from prefect.client.orchestration import get_client

    from blocks.opensearch_catalog import OpenSearchCatalog
    from proxima.errors import ConfigurationError
    from proxima.platform import blocks, load
    from proxima.platform.blocks import CATALOG_BLOCK, save_blocks

    save_blocks()
    monkeypatch.setattr(blocks, "PAGE", 2)  # four documents or more: several pages
    platform = load()
    assert platform.region_names == ["us-east-1", "us-west-2"]
    assert (
        platform.region("us-west-2").scheduler_address
        == stack.region("us-west-2").scheduler_address
    )
    catalog = OpenSearchCatalog.load(CATALOG_BLOCK)
    with get_client(sync_client=True) as client:
        client.delete_block_document(catalog._block_document_id)
    try:
        with pytest.raises(ConfigurationError, match=r"no saved .* block named 'proxima-catalog'"):
            load()
    finally:
        save_blocks()


def test_zarr_output(catalog):
    request = {
        "selection": {**BASE, "bbox": PACIFIC},
        "over": "time",
        "output_format": "zarr",
        "output_name": "zarr-check",
        "overwrite": True,
    }
    summary = analyze(AnalysisRequest.model_validate(request))
    path = Path(summary["result_path"])
    assert path.suffix == ".zarr" and (path / ".zmetadata").exists()
    assert data_variable(xr.open_zarr(path)).dims == ("lat", "lon")


def test_results_store_in_s3(catalog, stack, settings):
    from blocks.results_store import ResultsStore
    from proxima import s3
    from proxima.platform.blocks import save_blocks

    region = stack.region("us-east-1")
    client = s3.client(region)
    s3.ensure_bucket(client, "proxima-results", region.name)
    save_blocks()
    ResultsStore(bucket="proxima-results", prefix="runs/", s3_endpoint=region.s3_endpoint).save(
        "proxima-results", overwrite=True
    )
    try:
        summary = analyze(
            AnalysisRequest.model_validate(
                {
                    "selection": {**BASE, "bbox": PACIFIC},
                    "over": "both",
                    "output_name": "s3-check",
                    "overwrite": True,
                }
            )
        )
    finally:
        save_blocks()
    assert summary["result_uri"] == "s3://proxima-results/runs/s3-check.nc"
    body = client.get_object(Bucket="proxima-results", Key="runs/s3-check.nc")["Body"].read()
    assert body == Path(summary["result_path"]).read_bytes()


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            json.dumps({"selection": {**BASE, "variable": "sea_ice_thickness"}}),
            "unknown variable 'sea_ice_thickness'",
        ),
        ("[1, 2]", "a request is a JSON object, not list"),
        ("{not json", "cannot use"),
    ],
)
def test_cli_errors_are_one_clear_line_without_traceback(
    catalog, stack, settings, tmp_path, body, message
):

    request_file = tmp_path / "request.json"
    request_file.write_text(body)
    out = proxima(stack, settings, "analyze", str(request_file), "--here")
    assert out.returncode == 1, out.stdout + out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stdout + out.stderr


def test_the_answer_reads_as_a_table_in_the_cli_and_the_run_summary(deployed, settings, tmp_path):
    """Month names and units, not a dict repr; the summary artifact names each region's
    subflow and links its dashboard. The CLI's way: a run of the deployment, its
    summary read back from the run's result."""

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    request = {
        "selection": {**BASE, "end": "2020-04-30"},
        "reduction": "mean",
        "over": "both",
        "group_by": "month",
        "convert": "K->degC",
        "output_name": "readable",
        "overwrite": True,
    }
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    out = proxima(deployed, settings, "analyze", str(path))
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if "degC" in line]
    assert [r.split()[1] for r in rows] == ["Jan", "Feb", "Mar", "Apr"], out.stdout
    assert "{" not in out.stdout  # no dict repr
    with get_client(sync_client=True) as client:
        (latest, *_) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["analysis-summary"])),
            sort="CREATED_DESC",
            limit=1,
        )
    text = str(latest.data)
    assert "| Jan | " in text and "degC |" in text
    for region in ("us-east-1", "us-west-2"):
        assert f"| analyze-{region} |" in text
        assert deployed.region(region).dashboard_url in text
    # the picture the summary shows is the one written next to the result
    result = re.search(r"Result: `([^`]+)`", text).group(1)
    shown = base64.b64decode(re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", text).group(1))
    assert shown.startswith(b"\x89PNG\r\n\x1a\n")
    assert Path(f"{result}.png").read_bytes() == shown
    # the footprint: every region's compute, transfer and pull, the sources, a chart
    assert "### Footprint (measured)" in text and "EPA eGRID2020" in text
    for region in ("us-east-1", "us-west-2"):
        assert re.search(rf"\| {region} \| [0-9.e-]+ \| [0-9]+% \| \$", text), region
    assert len(re.findall(r"data:image/png;base64,", text)) == 1  # the result's map
    assert len(re.findall(r"data:image/svg\+xml;base64,", text)) == 1  # the footprint
    assert "footprint (measured):" in out.stdout and "vs a pull" in out.stdout


def test_answer_tables_name_groups_as_readers_do():
    import cftime

    from proxima.analysis.results import answer_table

    def series(dim, labels):
        return xr.DataArray(
            np.arange(len(labels), dtype=float),
            dims=dim,
            coords={dim: labels},
            attrs={"units": "K"},
        )

    assert answer_table(series("season", ["DJF", "JJA"]))[1] == ["JJA", "1 K"]
    assert answer_table(series("month", [1, 12]))[1] == ["Dec", "1 K"]
    assert answer_table(series("year", [2015, 2016]))[0] == ["2015", "0 K"]
    times = [cftime.datetime(2020, 1, d, calendar="360_day") for d in (1, 2)]
    assert answer_table(series("time", times))[1][0] == "2020-01-02"
    assert answer_table(xr.DataArray(3.5, name="tas", attrs={"units": "K"})) == [["tas", "3.5 K"]]
    big = xr.DataArray(np.ones((30, 2)), dims=("lat", "lon"), attrs={"units": "K"})
    assert [r[0] for r in answer_table(big)] == ["shape", "min", "mean", "max"]
