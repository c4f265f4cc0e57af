"""The STAC API application: stac-fastapi's routes and extensions over the catalog.

Read-only: no transaction extension is registered. The catalog is read with the
platform's own connection (basic auth or SigV4 where the catalog has it).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from stac_fastapi.api.app import StacApi
from stac_fastapi.api.errors import DEFAULT_STATUS_CODES
from stac_fastapi.api.models import create_get_request_model, create_post_request_model
from stac_fastapi.extensions import SortExtension, TokenPaginationExtension
from stac_fastapi.extensions.filter import SearchFilterExtension
from stac_fastapi.types.config import ApiSettings

from proxima import opensearch, paths
from proxima.catalog.search import CatalogQuery, search
from proxima.opensearch import CatalogConnection
from proxima.stac import intake_esm
from proxima.stac.backend import CatalogClient, Queryables, base_url
from proxima.stac.query import StacQueryError

TITLE = "Proxima catalog"
DESCRIPTION = "Every dataset, file and variable Proxima knows, in every region."


def build_app(connection: CatalogConnection, roots: dict[str, str]) -> FastAPI:
    """The STAC API (core, features, item search, filter, sort, token paging) and the
    live intake-esm datastore.

    Args:
        connection: The catalog (its alias is what every request reads).
        roots: Each region's file-system root, where this service can read it (the
            local stack); items then carry an ``fsx`` asset and the datastore's NetCDF
            files are served as references.
    """
    catalog = opensearch.connect_catalog(connection)
    extensions = [
        SearchFilterExtension(client=Queryables()),
        SortExtension(),
        TokenPaginationExtension(),
    ]
    api = StacApi(
        settings=ApiSettings(
            enable_response_models=False,
            stac_fastapi_title=TITLE,
            stac_fastapi_description=DESCRIPTION,
            stac_fastapi_landing_id="proxima",
        ),
        client=CatalogClient(catalog=catalog, alias=connection.alias, roots=roots),
        extensions=extensions,
        title=TITLE,
        description=DESCRIPTION,
        search_get_request_model=create_get_request_model(extensions),
        search_post_request_model=create_post_request_model(extensions),
        exceptions=DEFAULT_STATUS_CODES | {StacQueryError: 400},
        health_check=lambda: {"status": "UP", "catalog": catalog.ping()},
    )
    app = api.app
    _intake_routes(app, catalog, connection.alias, roots)
    return app


def _intake_routes(app: FastAPI, catalog: Any, alias: str, roots: dict[str, str]) -> None:
    references = intake_esm.References()

    def rows(request: Request) -> list[dict[str, str]]:
        assets = search(catalog, alias, CatalogQuery()).assets
        return intake_esm.datastore_rows(assets, roots, base_url(request))

    @app.get("/intake-esm/{name}.json", tags=["intake-esm"])
    def datastore(name: str, request: Request) -> JSONResponse:
        """The ESM collection spec; its catalog file is the live CSV."""
        return JSONResponse(intake_esm.datastore_json(name, base_url(request)))

    @app.get("/intake-esm/{name}.csv", tags=["intake-esm"])
    def datastore_csv(name: str, request: Request) -> Response:
        """One row per (asset, variable) of the current catalog."""
        return Response(intake_esm.datastore_csv(rows(request)), media_type="text/csv")

    @app.get("/intake-esm/references/{asset_id}.json", tags=["intake-esm"])
    def reference(asset_id: str) -> Response:
        """A NetCDF asset's kerchunk references (its HDF5 chunk map)."""
        hit = catalog.get(index=alias, id=asset_id, ignore=[404])
        doc = hit.get("_source") if hit.get("found") else None
        if not doc or doc["format"] != "netcdf" or doc.get("quarantined"):
            raise HTTPException(404, f"no NetCDF asset {asset_id}")
        root = roots.get(doc["region"])
        if root is None:
            raise HTTPException(404, f"region {doc['region']} is not mounted here")
        try:
            path = str(paths.inside(root, doc["path"]))
            refs = references.get(path, int(doc["mtime_ns"]))
        except (OSError, paths.UnsafePath) as exc:
            raise HTTPException(409, f"{doc['path']} cannot be read: {exc}") from exc
        return Response(json.dumps(refs), media_type="application/json")
