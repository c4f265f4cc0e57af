"""Exports open in intake-esm (same assets as Proxima's search) and validate as STAC."""

import intake
import pystac

from proxima.catalog import export
from proxima.catalog.search import CatalogQuery, search
from tests.cli import proxima


def test_intake_esm_search_matches_proxima_search(catalog, data, settings, os_client, tmp_path):
    alias = data.opensearch.alias
    assets = search(os_client, alias, CatalogQuery()).assets
    roots = {r.name: str(settings.region_root(r.name)) for r in data.regions}
    spec = export.write_esm_collection(assets, roots, tmp_path)
    col = intake.open_esm_datastore(str(spec))
    for facets in ({"experiment_id": "ssp585"}, {"source_id": "GFDL-ESM4", "variable_id": "pr"}):
        ours = search(
            os_client,
            alias,
            CatalogQuery(
                facets={k: v for k, v in facets.items() if k != "variable_id"},
                variable=facets.get("variable_id"),
            ),
        )
        theirs = col.search(**facets).df
        assert sorted(p.removeprefix("file://") for p in theirs["path"]) == sorted(
            roots[a["region"]] + "/" + a["path"] for a in ours.assets
        )
    # and the Zarr stores open through intake-esm as datasets
    one = col.search(source_id="UKESM1-0-LL", variable_id="tas", experiment_id="historical")
    dsets = one.to_dataset_dict(
        xarray_open_kwargs={"consolidated": True, "use_cftime": True}, progressbar=False
    )
    (ds,) = dsets.values()
    assert "tas" in ds and ds.time.size > 0


def test_the_whole_mixed_catalog_loads_in_intake_esm(catalog, data, settings, os_client, tmp_path):
    """ERA5 (no CMIP6 facets) next to CMIP6 in one export: intake-esm opens it and
    every group loads (a column mixing empty and set facets was
    refused: "should either be all NaN or there should be no NaNs").
    """
    import xarray as xr

    assets = search(os_client, data.opensearch.alias, CatalogQuery()).assets
    roots = {r.name: str(settings.region_root(r.name)) for r in data.regions}
    # threaded=False and group by group: intake-esm otherwise opens files and groups in
    # threads, and netCDF4 opening files in threads crashed the HDF5 library here now
    # and then ("NetCDF: HDF error", a bus error) — a limit of the readers, not the export
    spec = export.write_esm_collection(assets, roots, tmp_path)
    col = intake.open_esm_datastore(str(spec), threaded=False)
    assert {"era5", "era5-pacific", "era5-europe", "cmip6"} <= set(col.df["dataset"])
    decode = xr.coders.CFDatetimeCoder(use_cftime=True)
    dsets = {key: col[key](xarray_open_kwargs={"decode_times": decode}).to_dask() for key in col}
    groups = col.esmcat.aggregation_control.groupby_attrs
    assert len(dsets) == col.df.groupby(groups).ngroups > 4
    for key, ds in dsets.items():
        assert ds.data_vars and max(ds.sizes.get("time", 0), ds.sizes.get("time0", 0)) > 0, key


def test_stac_export_validates(catalog, data, os_client, tmp_path):
    assets = search(os_client, data.opensearch.alias, CatalogQuery(dataset="era5-pacific")).assets
    collection = export.stac_collection(assets, "era5-pacific")
    collection.normalize_hrefs(str(tmp_path))
    items = list(collection.get_items())
    assert len(items) == len(assets) == 1
    for item in items:
        item.validate()
        assert item.bbox[0] > item.bbox[2]  # crosses the antimeridian
        assert item.geometry["type"] == "MultiPolygon"
    collection.validate_all()
    collection.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    assert pystac.Collection.from_file(str(tmp_path / "collection.json")).id == "era5-pacific"


def test_export_to_an_unwritable_place_is_one_clear_line(catalog, stack, settings, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    out = proxima(stack, settings, "catalog", "export", str(blocker / "out"))
    assert out.returncode == 1
    assert f"cannot write the export to {blocker / 'out'}" in out.stderr
    assert "Traceback" not in out.stdout + out.stderr
