"""Generated datasets look like ERA5 and CMIP6; the import is atomic and incremental."""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from proxima import datagen, repository, s3
from proxima.config import DatasetConfig
from proxima.datagen import fields
from proxima.datagen.era5 import VARIABLES as ERA5_VARS
from proxima.platform import from_stack

CFT = xr.coders.CFDatetimeCoder(use_cftime=True)


def test_era5_file_follows_the_published_conventions(data, settings):
    root = settings.region_root("us-east-1") / "era5-pds"
    path = root / "2020" / "01" / "data" / "air_temperature_at_2_metres.nc"
    ds = xr.open_dataset(path, engine="h5netcdf")
    da = ds["air_temperature_at_2_metres"]
    assert da.dims == ("time0", "lat", "lon")
    assert da.attrs["standard_name"] == "air_temperature" and da.attrs["units"] == "K"
    assert da.sizes["time0"] == 31 * 24
    assert float(ds.lat[0]) == 90.0 and float(ds.lat[-1]) == -90.0
    assert float(ds.lon[0]) == 0.0 and float(ds.lon[-1]) == 350.0
    precip = xr.open_dataset(
        root / "2020/01/data/precipitation_amount_1hour_Accumulation.nc", engine="h5netcdf"
    )
    assert "time1" in precip.dims
    # A known value from the seed: recompute hour 5 of 2020-01-03 independently.
    hour = datetime(2020, 1, 3, 5)
    key = int((hour - datetime(1900, 1, 1)).total_seconds() // 3600)
    doy = np.array([hour.timetuple().tm_yday + 5 / 24])
    yrs = np.array([(hour - datetime(2000, 1, 1)).total_seconds() / 31557600])
    expected = fields.field(
        "temperature",
        42,
        "air_temperature_at_2_metres",
        doy,
        yrs,
        np.array([key]),
        ds.lat.values,
        ds.lon.values,
    )[0]
    np.testing.assert_allclose(da.sel(time0=hour).values, expected, rtol=1e-6)
    assert 200 < float(da.isel(time0=0).mean()) < 300


def test_cmip6_store_decodes_its_calendar_and_facets(data, settings):
    base = settings.region_root("us-west-2") / "cmip6-pds" / "CMIP6"
    stores = {p.parts[-7]: p for p in base.glob("*/*/*/*/*/Amon/tas/*/*")}
    assert set(stores) == {"GFDL-ESM4", "UKESM1-0-LL"}
    ukesm = sorted(base.glob("ScenarioMIP/MOHC/UKESM1-0-LL/ssp585/*/Amon/tas/gn/*"))[0]
    ds = xr.open_zarr(ukesm, decode_times=CFT)
    assert ds.time.values[0].calendar == "360_day"
    assert ds.attrs["experiment_id"] == "ssp585" and ds.attrs["source_id"] == "UKESM1-0-LL"
    assert ds.attrs["table_id"] == "Amon" and ds.tas.attrs["units"] == "K"
    assert float(ds.lat[0]) == -90.0  # CMIP6 grids ascend
    gfdl = sorted(base.glob("CMIP/NOAA-GFDL/GFDL-ESM4/historical/*/Amon/pr/gr1/*"))[0]
    pr = xr.open_zarr(gfdl, decode_times=CFT)
    assert pr.time.values[0].calendar == "noleap"
    assert pr.pr.attrs["units"] == "kg m-2 s-1"
    assert 0 < float(pr.pr.mean()) < 1e-3
    assert json.loads((gfdl / ".zmetadata").read_text())["zarr_consolidated_format"] == 1


def _scratch(stack, bucket: str):
    region = from_stack(stack).region("us-east-1")
    ds = DatasetConfig(
        name=bucket,
        kind="era5",
        bucket=bucket,
        start="2020-01",
        end="2020-01",
        variables=["air_temperature_at_2_metres"],
    )
    region = region.model_copy(update={"datasets": [ds]})
    client = s3.client(region)
    s3.ensure_bucket(client, bucket, region.name)
    for obj in client.list_objects_v2(Bucket=bucket).get("Contents", []):  # a reused stack
        client.delete_object(Bucket=bucket, Key=obj["Key"])
    return region, client


def test_import_is_idempotent_and_follows_changes(stack, tmp_path):
    region, client = _scratch(stack, "scratch-sync")
    for i in range(3):
        client.put_object(Bucket="scratch-sync", Key=f"a/{i}.nc", Body=b"x" * (100 + i))
    first = repository.import_region(region, tmp_path)
    assert (first.copied, first.bytes_copied) == (3, 303)
    second = repository.import_region(region, tmp_path)
    assert (second.copied, second.bytes_copied, second.skipped) == (0, 0, 3)
    client.put_object(Bucket="scratch-sync", Key="a/0.nc", Body=b"changed")
    client.delete_object(Bucket="scratch-sync", Key="a/1.nc")
    client.put_object(Bucket="scratch-sync", Key="b/new.nc", Body=b"new")
    third = repository.import_region(region, tmp_path)
    assert (third.copied, third.deleted, third.skipped) == (2, 1, 1)
    root = tmp_path / "scratch-sync"
    assert (root / "a/0.nc").read_bytes() == b"changed"
    assert not (root / "a/1.nc").exists()
    assert (root / "b/new.nc").read_bytes() == b"new"


@pytest.mark.reliability
def test_killed_import_leaves_no_partial_file_under_a_final_name(stack, tmp_path):
    region, client = _scratch(stack, "scratch-kill")
    payload = os.urandom(200 * 2**20)
    client.put_object(Bucket="scratch-kill", Key="big/file.nc", Body=payload)
    script = (
        "import sys; from pathlib import Path; from proxima import repository;"
        "from proxima.platform import Region;"
        "r = Region.model_validate_json(sys.argv[1]);"
        "repository.import_region(r, Path(sys.argv[2]))"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, region.model_dump_json(), str(tmp_path)])
    final = tmp_path / "scratch-kill" / "big" / "file.nc"
    deadline = time.monotonic() + 60
    partials: list[Path] = []
    while time.monotonic() < deadline and not partials and proc.poll() is None:
        partials = list((tmp_path / "scratch-kill").rglob(".proxima-partial-*"))
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert partials, "the import finished before it could be killed; use a bigger object"
    assert not final.exists(), "a partial file is visible under its final name"
    report = repository.import_region(region, tmp_path)
    assert report.copied == 1
    assert final.stat().st_size == len(payload)
    assert not list((tmp_path / "scratch-kill").rglob(".proxima-partial-*"))
    assert not (tmp_path / "scratch-kill" / repository.UNFINISHED).exists()
    # an import that finished leaves nothing to clean: the next one does not walk the tree
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Path, "rglob", lambda *_: pytest.fail("walked the tree"))
        assert repository.import_region(region, tmp_path).copied == 0
    client.delete_object(Bucket="scratch-kill", Key="big/file.nc")


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"variables": ["no_such_var"]}, "unknown ERA5 variable"),
        ({"resolution": 0.1, "start": "2000-01", "end": "2020-12"}, "above the limit"),
    ],
)
def test_bad_generation_requests_write_nothing(stack, update, message):
    region = from_stack(stack).region("us-east-1")
    ds = DatasetConfig(
        name="refused",
        kind="era5",
        bucket="refused-bucket",
        start="2020-01",
        end="2020-01",
        variables=list(ERA5_VARS)[:1],
    ).model_copy(update=update)
    with pytest.raises(datagen.GenerationError, match=message):
        datagen.generate(region, ds)
    names = {b["Name"] for b in s3.client(region).list_buckets()["Buckets"]}
    assert "refused-bucket" not in names


def test_unreachable_endpoint_is_a_clear_error(stack):
    region = (
        from_stack(stack)
        .region("us-east-1")
        .model_copy(update={"s3_endpoint": "http://127.0.0.1:1"})
    )
    ds = DatasetConfig(
        name="x",
        kind="era5",
        bucket="xbucket",
        start="2020-01",
        end="2020-01",
        variables=["air_temperature_at_2_metres"],
    )
    with pytest.raises(datagen.GenerationError, match="cannot reach the S3 endpoint"):
        datagen.generate(region, ds)


def test_cli_refuses_unknown_region_and_bad_dates(stack):
    out = subprocess.run(
        [sys.executable, "-m", "proxima.cli", "data", "import", "--region", "eu-west-9"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 1 and "unknown region 'eu-west-9'" in out.stderr
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "proxima.cli",
            "data",
            "generate",
            "--region",
            "us-east-1",
            "--start",
            "2021-05",
            "--end",
            "2021-01",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 1 and "after end" in out.stderr
