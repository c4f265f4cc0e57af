"""Catalog documents as STAC items and collections (datacube, storage, xarray-assets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from proxima.catalog import export
from proxima.catalog.model import FACET_KEYS

STAC_VERSION = "1.1.0"
EXTENSIONS = [
    "https://stac-extensions.github.io/datacube/v2.2.0/schema.json",
    "https://stac-extensions.github.io/storage/v2.0.0/schema.json",
    "https://stac-extensions.github.io/xarray-assets/v1.0.0/schema.json",
    "https://stac-extensions.github.io/file/v2.1.0/schema.json",
]
WORLD = [-180.0, -90.0, 180.0, 90.0]
MEDIA = {"netcdf": "application/x-netcdf", "zarr": "application/vnd+zarr"}
# What xarray needs to open each format. NetCDF goes through h5netcdf: netCDF-C is not
# thread-safe and xarray's netCDF4 backend reads variable metadata outside its lock
# (pydata/xarray#9779), which crashes readers that open files from threads.
OPEN_KWARGS: dict[str, dict[str, Any]] = {
    "netcdf": {"engine": "h5netcdf"},
    "zarr": {"engine": "zarr", "consolidated": True},
}
_X = {"lon", "longitude", "x", "rlon"}
_Y = {"lat", "latitude", "y", "rlat"}


def _stamp(value: str | None) -> str | None:
    """A catalog date (naive, proleptic) as RFC 3339 UTC."""
    if not value:
        return None
    return value if value.endswith("Z") or "+" in value[10:] else f"{value}Z"


def _s3_scheme(doc: dict[str, Any]) -> dict[str, Any]:
    bucket = doc["uri"].removeprefix("s3://").split("/", 1)[0]
    return {
        "type": "aws-s3",
        "platform": "https://{bucket}.s3.{region}.amazonaws.com",
        "bucket": bucket,
        "region": doc["region"],
    }


def _cube(doc: dict[str, Any], start: str | None, end: str | None) -> dict[str, Any]:
    w, s, e, n = doc.get("bbox") or WORLD
    dims: dict[str, Any] = {}
    variables: dict[str, Any] = {}
    for var in doc.get("variables", []):
        for i, dim in enumerate(var.get("dims", [])):
            name = dim.lower()
            if name.startswith("time"):
                dims[dim] = {"type": "temporal", "extent": [start, end]}
            elif name in _X:
                dims[dim] = {"type": "spatial", "axis": "x", "extent": [w, e]}
            elif name in _Y:
                dims[dim] = {"type": "spatial", "axis": "y", "extent": [s, n]}
            else:
                shape = var.get("shape") or []
                dims.setdefault(dim, {"type": "other", "extent": [0, shape[i] - 1]})
        entry: dict[str, Any] = {"dimensions": var.get("dims", []), "type": "data"}
        if var.get("units"):
            entry["unit"] = var["units"]
        if var.get("long_name"):
            entry["description"] = var["long_name"]
        if var.get("standard_name"):
            entry["standard_name"] = var["standard_name"]
        if var.get("dtype"):
            entry["data_type"] = var["dtype"]
        variables[var["name"]] = entry
    return {"cube:dimensions": dims, "cube:variables": variables}


def item(doc: dict[str, Any], root: str | None, base_url: str) -> dict[str, Any]:
    """One asset's STAC item.

    Args:
        doc: The catalog document, with its ``id``.
        root: The region's file-system root (the FSx mount), if known here.
        base_url: The API's root URL, for the item's links.
    """
    t = doc.get("time") or {}
    start, end = _stamp(t.get("start")), _stamp(t.get("end"))
    fmt = doc["format"]
    props: dict[str, Any] = {
        "datetime": None,
        "start_datetime": start,
        "end_datetime": end,
        "proxima:region": doc["region"],
        "storage:schemes": {"s3": _s3_scheme(doc)},
        "proxima:dataset": doc["dataset"],
        "proxima:path": doc["path"],
        "proxima:format": fmt,
        "proxima:variables": doc.get("variable_names", []),
        "proxima:standard_names": doc.get("standard_names", []),
        "proxima:calendar": t.get("calendar"),
        "proxima:frequency": t.get("frequency"),
        "proxima:time_native": [t.get("start_native"), t.get("end_native")],
        **{f"cmip6:{k}": v for k, v in (doc.get("facets") or {}).items() if k in FACET_KEYS},
        **_cube(doc, start, end),
    }
    media = MEDIA.get(fmt, "application/octet-stream")
    assets: dict[str, Any] = {
        "data": {
            "href": doc["uri"],
            "type": media,
            "roles": ["data"],
            "title": "In the region's data repository (S3)",
            "file:size": doc.get("size"),
            "storage:refs": ["s3"],
            "xarray:open_kwargs": OPEN_KWARGS.get(fmt, {}),
        }
    }
    if root is not None:
        local = str(Path(root) / doc["path"])
        assets["fsx"] = {
            "href": f"file://{local}",
            "type": media,
            "roles": ["data", "local"],
            "title": f"On {doc['region']}'s file system (FSx for Lustre)",
            "xarray:open_kwargs": OPEN_KWARGS.get(fmt, {}),
        }
    collection = doc["dataset"]
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": EXTENSIONS,
        "id": doc["id"],
        "collection": collection,
        "geometry": export.item_geometry(doc),
        "bbox": list(doc.get("bbox") or WORLD),
        "properties": {k: v for k, v in props.items() if v is not None or k == "datetime"},
        "assets": assets,
        "links": [
            {"rel": "self", "type": "application/geo+json", "href": _item_href(base_url, doc)},
            {"rel": "collection", "type": "application/json", "href": _col(base_url, collection)},
            {"rel": "parent", "type": "application/json", "href": _col(base_url, collection)},
            {"rel": "root", "type": "application/json", "href": f"{base_url}/"},
        ],
    }


def _col(base_url: str, collection: str) -> str:
    return f"{base_url}/collections/{collection}"


def _item_href(base_url: str, doc: dict[str, Any]) -> str:
    return f"{_col(base_url, doc['dataset'])}/items/{doc['id']}"


def collection(stats: dict[str, Any], base_url: str) -> dict[str, Any]:
    """One dataset's STAC collection from its aggregated extent.

    Args:
        stats: ``dataset``, ``count``, ``bbox``, ``start``, ``end``, ``regions`` and
            ``variables`` of the dataset, as :func:`proxima.stac.backend` aggregates them.
        base_url: The API's root URL.
    """
    name = stats["dataset"]
    return {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "stac_extensions": [],
        "id": name,
        "title": name,
        "description": f"{name}: {stats['count']} assets in {', '.join(stats['regions'])}",
        "license": "other",
        "extent": {
            "spatial": {"bbox": [stats["bbox"]]},
            "temporal": {"interval": [[_stamp(stats["start"]), _stamp(stats["end"])]]},
        },
        "summaries": {
            "proxima:region": stats["regions"],
            "proxima:variables": stats["variables"],
        },
        "links": [
            {"rel": "self", "type": "application/json", "href": _col(base_url, name)},
            {
                "rel": "items",
                "type": "application/geo+json",
                "href": f"{_col(base_url, name)}/items",
            },
            {"rel": "parent", "type": "application/json", "href": f"{base_url}/"},
            {"rel": "root", "type": "application/json", "href": f"{base_url}/"},
        ],
    }
