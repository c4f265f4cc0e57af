"""The live STAC API and intake-esm datastore, checked with the peers' own tools.

stac-api-validator for core, features, item search and filter; pystac-client's search
against Proxima's own; intake-esm's ``to_dataset_dict()`` in fresh processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import xarray as xr

from proxima.catalog.search import CatalogQuery, search

HERE = Path(__file__).resolve().parent
PACIFIC = [170.0, -10.0, -170.0, 10.0]  # crosses the antimeridian


@pytest.fixture(scope="module")
def stac_url(catalog, stack):
    return stack.stac.url


def _ours(os_client, alias, query):
    return {a["id"] for a in search(os_client, alias, query).assets if a.get("time")}


def test_stac_api_validator_passes_core_features_item_search_and_filter(stac_url):
    out = subprocess.run(
        [
            sys.executable,
            str(HERE / "stac_validator_offline.py"),
            "--root-url",
            stac_url,
            *("--conformance", "core", "--conformance", "features"),
            *("--conformance", "item-search", "--conformance", "filter"),
            # a regional dataset: the validator probes just outside an item's bbox,
            # which for a global item would be an invalid box (181, 91, ...)
            *("--collection", "era5-europe"),
            "--geometry",
            json.dumps(
                {
                    "type": "Polygon",
                    "coordinates": [[[0, 40], [10, 40], [10, 50], [0, 50], [0, 40]]],
                }
            ),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0 and "Errors: none" in out.stdout, (
        out.stdout[-4000:] + out.stderr[-2000:]
    )


def test_pystac_client_finds_what_proxima_finds(stac_url, os_client, stack):
    from pystac_client import Client

    api = Client.open(stac_url)
    alias = stack.opensearch.alias
    questions = [
        ({"bbox": PACIFIC}, CatalogQuery(bbox=PACIFIC)),
        (
            {"datetime": "2020-02-01T00:00:00Z/2020-02-29T23:59:59Z"},
            CatalogQuery(start="2020-02-01T00:00:00", end="2020-02-29T23:59:59"),
        ),
        (
            {
                "filter": "\"cmip6:experiment_id\" = 'ssp585'",
                "filter_lang": "cql2-text",
                "method": "GET",
            },
            CatalogQuery(facets={"experiment_id": "ssp585"}),
        ),
        (
            {
                "filter": {
                    "op": "a_contains",
                    "args": [{"property": "proxima:standard_names"}, ["air_temperature"]],
                },
                "collections": ["era5", "era5-pacific"],
            },
            CatalogQuery(variable="air_temperature", dataset=None),
        ),
    ]
    for params, query in questions:
        # four per page: every answer crosses pages, so paging must neither skip nor repeat
        found = [
            i.id
            for i in api.search(max_items=None, limit=4, **({"method": "POST"} | params)).items()
        ]
        assert len(found) == len(set(found)), params
        expected = _ours(os_client, alias, query)
        if "collections" in params:
            expected = {
                a["id"]
                for a in search(os_client, alias, query).assets
                if a["dataset"] in params["collections"] and a.get("time")
            }
        assert set(found) == expected and expected, params
    # GET and POST give the same answer
    get = {i.id for i in api.search(bbox=PACIFIC, method="GET", limit=3).items()}
    assert get == _ours(os_client, alias, CatalogQuery(bbox=PACIFIC))


def test_items_carry_their_region_datacube_and_how_to_open_them(stac_url, os_client, stack):
    items = httpx.post(f"{stac_url}/search", json={"collections": ["era5-pacific"]}).json()
    (item,) = items["features"]
    assert item["bbox"][0] > item["bbox"][2] and item["geometry"]["type"] == "MultiPolygon"
    props = item["properties"]
    assert props["proxima:region"] == props["storage:schemes"]["s3"]["region"] == "us-east-1"
    assert props["storage:schemes"]["s3"]["bucket"] == "era5-pacific"
    cube = props["cube:variables"]["air_temperature_at_2_metres"]
    assert cube["unit"] == "K" and cube["standard_name"] == "air_temperature"
    assert {d["type"] for d in props["cube:dimensions"].values()} == {"temporal", "spatial"}
    local = item["assets"]["fsx"]
    assert local["href"].startswith("file://") and item["assets"]["data"]["href"].startswith(
        "s3://"
    )
    # the keys xarray needs are enough to open it, and it is the file the catalog lists
    path = local["href"].removeprefix("file://")
    with xr.open_dataset(path, **local["xarray:open_kwargs"]) as ds:
        assert "air_temperature_at_2_metres" in ds
    one = httpx.get(f"{stac_url}/collections/era5-pacific/items/{item['id']}").json()
    assert one["id"] == item["id"]
    assert httpx.get(f"{stac_url}/collections/era5/items/{item['id']}").status_code == 404


def test_bad_filters_are_refused_and_foreign_properties_are_null(stac_url):
    typo = httpx.get(f"{stac_url}/search", params={"filter": "\"cmip6:experment_id\" = 'x'"})
    assert typo.status_code == 400 and "cmip6:experiment_id" in typo.text
    cloud = httpx.get(f"{stac_url}/search", params={"filter": '"eo:cloud_cover" < 10'}).json()
    assert cloud["numberMatched"] == 0
    every = httpx.get(f"{stac_url}/search", params={"filter": '"eo:cloud_cover" IS NULL'}).json()
    assert every["numberMatched"] == httpx.get(f"{stac_url}/search").json()["numberMatched"] > 0
    bad = httpx.get(f"{stac_url}/search", params={"token": "not-ours"})
    assert bad.status_code == 400


LOAD = """
import sys, intake, json
col = intake.open_esm_datastore(sys.argv[1])
dsets = col.to_dataset_dict(progressbar=False)
print(json.dumps({k: sorted(ds.data_vars) for k, ds in dsets.items()}))
"""


def test_intake_esm_loads_every_group_of_the_live_datastore_in_fresh_processes(stac_url):
    url = f"{stac_url}/intake-esm/proxima.json"
    spec = httpx.get(url).json()
    frame = httpx.get(spec["catalog_file"]).text.splitlines()
    assert len(frame) > 10 and "reference::" in frame[1] + "".join(frame)
    groups = None
    for run in range(10):
        out = subprocess.run(
            [sys.executable, "-X", "faulthandler", "-W", "ignore", "-c", LOAD, url],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert out.returncode == 0, f"run {run}: rc {out.returncode}\n{out.stderr[-3000:]}"
        loaded = json.loads(out.stdout.splitlines()[-1])
        assert groups is None or loaded == groups
        groups = loaded
    assert groups and len(groups) > 4 and all(groups.values())


def test_a_reference_reads_the_values_of_its_file(stac_url, os_client, stack):
    alias = stack.opensearch.alias
    asset = next(
        a
        for a in search(os_client, alias, CatalogQuery(dataset="era5")).assets
        if a["format"] == "netcdf"
    )
    ref = f"reference::{stac_url}/intake-esm/references/{asset['id']}.json"
    root = {r.name: r for r in stack.regions}
    assert asset["region"] in root
    item = httpx.get(f"{stac_url}/collections/era5/items/{asset['id']}").json()
    path = item["assets"]["fsx"]["href"].removeprefix("file://")
    with (
        xr.open_dataset(ref, engine="zarr") as via_ref,
        xr.open_dataset(path, engine="netcdf4") as direct,
    ):
        for name in direct.variables:
            np.testing.assert_array_equal(via_ref[name].values, direct[name].values)
        assert via_ref.attrs == direct.attrs
    assert httpx.get(f"{stac_url}/intake-esm/references/nope.json").status_code == 404
