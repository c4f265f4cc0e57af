"""Exports to the tools scientists already use: intake-esm collections and STAC."""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pystac

from proxima.catalog.model import FACET_KEYS

NO_FACET = "none"
ESM_COLUMNS = [
    "region",
    "dataset",
    "path",
    "uri",
    "format",
    "variable_id",
    "standard_name",
    "units",
    "frequency",
    "calendar",
    "start_time",
    "end_time",
    *FACET_KEYS,
]


def esm_rows(assets: list[dict[str, Any]], roots: dict[str, str]) -> list[dict[str, str]]:
    """One CSV row per (asset, variable); ``path`` is absolute on the region's mount."""
    rows = []
    for asset in assets:
        if asset.get("quarantined"):
            continue
        t = asset.get("time") or {}
        local = str(Path(roots[asset["region"]]) / asset["path"])
        if asset["format"] == "zarr":  # zarr 3 wants an fsspec URI when given storage options
            local = f"file://{local}"
        for var in asset["variables"]:
            row = {
                "region": asset["region"],
                "dataset": asset["dataset"],
                "path": local,
                "uri": asset["uri"],
                "format": asset["format"],
                "variable_id": var["name"],
                "standard_name": var.get("standard_name") or "",
                "units": var.get("units") or "",
                "frequency": t.get("frequency") or "",
                "calendar": t.get("calendar") or "",
                "start_time": t.get("start_native", ""),
                "end_time": t.get("end_native", ""),
            }
            facets = asset.get("facets") or {}
            # intake-esm groups by facets and refuses a column mixing empty and set
            # values (ERA5 next to CMIP6): an absent facet is the value "none"
            row |= {k: facets.get(k) or NO_FACET for k in FACET_KEYS}
            rows.append(row)
    return rows


def esm_spec(name: str = "proxima") -> dict[str, Any]:
    """The ESM collection spec (0.1.0) of Proxima's rows, without its catalog file."""
    return {
        "esmcat_version": "0.1.0",
        "id": name,
        "description": "Proxima catalog export: assets on each region's file system.",
        "attributes": [
            {"column_name": c, "vocabulary": ""}
            for c in ESM_COLUMNS
            if c not in ("path", "uri", "format")
        ],
        "assets": {"column_name": "path", "format_column_name": "format"},
        "aggregation_control": {
            "variable_column_name": "variable_id",
            "groupby_attrs": [
                "region",
                "dataset",
                "source_id",
                "experiment_id",
                "member_id",
                "table_id",
                "grid_label",
            ],
            "aggregations": [
                {"type": "union", "attribute_name": "variable_id"},
                {
                    "type": "join_existing",
                    "attribute_name": "start_time",
                    "options": {"dim": "time", "coords": "minimal", "compat": "override"},
                },
            ],
        },
    }


def write_esm_collection(
    assets: list[dict[str, Any]], roots: dict[str, str], out: Path, name: str = "proxima"
) -> Path:
    """Write ``{name}.json`` (ESM collection spec 0.1.0) and ``{name}.csv``."""
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out / f"{name}.csv", out / f"{name}.json"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=ESM_COLUMNS)
        writer.writeheader()
        writer.writerows(esm_rows(assets, roots))
    spec = esm_spec(name) | {"catalog_file": csv_path.name}
    json_path.write_text(json.dumps(spec, indent=2))
    return json_path


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def item_geometry(asset: dict[str, Any]) -> dict[str, Any]:
    """An asset's GeoJSON geometry from its geo_shape extent (two polygons when it
    crosses the antimeridian, else its box).
    """
    w, s, e, n = asset.get("bbox") or [-180.0, -90.0, 180.0, 90.0]
    extent = asset.get("extent") or {}
    if extent.get("type") == "multipolygon":
        return {"type": "MultiPolygon", "coordinates": extent["coordinates"]}
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def stac_item(asset: dict[str, Any]) -> pystac.Item:
    """A STAC item for one asset (bbox, time range, variables, facets)."""
    w, s, e, n = asset.get("bbox") or [-180.0, -90.0, 180.0, 90.0]
    t = asset.get("time") or {}
    geometry = item_geometry(asset)
    props: dict[str, Any] = {
        "proxima:region": asset["region"],
        "proxima:dataset": asset["dataset"],
        "proxima:variables": asset["variable_names"],
        "proxima:standard_names": asset["standard_names"],
        "proxima:calendar": t.get("calendar"),
        **{f"cmip6:{k}": v for k, v in (asset.get("facets") or {}).items()},
    }
    item = pystac.Item(
        id=asset["id"],
        geometry=geometry,
        bbox=[w, s, e, n],
        datetime=None,
        start_datetime=_dt(t.get("start")),
        end_datetime=_dt(t.get("end")),
        properties={k: v for k, v in props.items() if v is not None},
    )
    media = "application/x-netcdf" if asset["format"] == "netcdf" else "application/vnd+zarr"
    item.add_asset("data", pystac.Asset(href=asset["uri"], media_type=media, roles=["data"]))
    return item


def stac_collection(assets: list[dict[str, Any]], collection_id: str) -> pystac.Collection:
    """A STAC collection holding one item per (non-quarantined) asset."""
    good = [a for a in assets if not a.get("quarantined") and a.get("time")]
    items = [stac_item(a) for a in good]
    starts = [i.common_metadata.start_datetime for i in items if i.common_metadata.start_datetime]
    ends = [i.common_metadata.end_datetime for i in items if i.common_metadata.end_datetime]
    boxes = [i.bbox for i in items if i.bbox]
    bbox = (
        [
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        ]
        if boxes
        else [-180.0, -90.0, 180.0, 90.0]
    )
    collection = pystac.Collection(
        id=collection_id,
        description=f"Proxima export of {collection_id}",
        extent=pystac.Extent(
            pystac.SpatialExtent([bbox]),
            pystac.TemporalExtent([[min(starts) if starts else None, max(ends) if ends else None]]),
        ),
        license="other",
    )
    collection.add_items(items)
    return collection


def write_all(assets: list[dict[str, Any]], roots: dict[str, str], out: Path) -> list[Path]:
    """Write the intake-esm collection and one STAC collection per dataset."""
    written = [write_esm_collection(assets, roots, out)]
    for dataset in sorted({a["dataset"] for a in assets}):
        collection = stac_collection([a for a in assets if a["dataset"] == dataset], dataset)
        target = out / "stac" / dataset
        collection.normalize_hrefs(str(target))
        collection.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
        written.append(target / "collection.json")
    return written
