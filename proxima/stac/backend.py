"""The STAC API's backend: stac-fastapi's core and filter clients over the catalog alias.

Every request reads the live catalog through its alias (the index a refresh swaps in),
never a copy, so the API can never drift from what Proxima itself searches.
"""

from __future__ import annotations

import json
from typing import Any, cast

import attr
from opensearchpy import OpenSearch
from stac_fastapi.extensions.filter.client import BaseFiltersClient
from stac_fastapi.types.core import BaseCoreClient
from stac_fastapi.types.errors import NotFoundError
from stac_fastapi.types.rfc3339 import str_to_interval
from stac_fastapi.types.stac import Collection, Collections, Item, ItemCollection
from stac_pydantic.shared import BBox
from starlette.requests import Request

from proxima import opensearch
from proxima.stac import items
from proxima.stac.query import (
    PROPERTIES,
    TEMPORAL,
    ItemSearch,
    SortKey,
    StacQueryError,
    encode_token,
    to_body,
)

_LEAN = {"excludes": ["attributes_text", "error_message"]}


def base_url(request: Request) -> str:
    """The API's root URL as the client reached it."""
    return str(request.base_url).rstrip("/")


def _sortby(values: Any) -> list[SortKey]:
    keys = []
    for value in values or []:
        if isinstance(value, str):
            direction = "desc" if value.startswith("-") else "asc"
            keys.append(SortKey(field=value.lstrip("+-"), direction=direction))
        else:
            data = value if isinstance(value, dict) else value.model_dump()
            keys.append(SortKey(field=data["field"], direction=data["direction"]))
    return keys


def _interval(datetime: str | None) -> tuple[Any, Any]:
    if not datetime:
        return None, None
    parsed = str_to_interval(datetime)
    if isinstance(parsed, tuple):
        return parsed
    return parsed, parsed


def _filter(value: Any, lang: str | None) -> dict[str, Any] | None:
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        return value
    import cql2

    try:
        if lang == "cql2-json" or value.lstrip().startswith("{"):
            return dict(json.loads(value))
        return dict(cql2.parse_text(value).to_json())
    except (ValueError, cql2.ParseError) as exc:
        raise StacQueryError(f"filter: {exc}") from exc


@attr.s
class CatalogClient(BaseCoreClient):
    """STAC core and item search over the catalog alias."""

    catalog: OpenSearch = attr.ib(default=None)
    alias: str = attr.ib(default="proxima-assets")
    roots: dict[str, str] = attr.ib(factory=dict)

    def search_items(
        self, search: ItemSearch, request: Request, post_body: dict[str, Any] | None = None
    ) -> ItemCollection:
        """One page of ``search``, with the next page's link when there is one.

        Args:
            search: The search.
            request: The HTTP request (for links).
            post_body: The body of a POST search, repeated in its next link.
        """
        body = to_body(search)
        with opensearch.reporting("search the STAC API"):
            resp = self.catalog.search(index=self.alias, body=body | {"_source": _LEAN})
        hits = resp["hits"]["hits"]
        base = base_url(request)
        features = [
            items.item(
                {"id": h["_id"], **h["_source"]}, self.roots.get(h["_source"]["region"]), base
            )
            for h in hits
        ]
        matched = resp["hits"]["total"]["value"]
        links: list[dict[str, Any]] = [
            {"rel": "root", "type": "application/json", "href": f"{base}/"},
            {"rel": "self", "type": "application/geo+json", "href": str(request.url)},
        ]
        if hits and len(hits) == body["size"]:
            links.append(_next(request, encode_token(hits[-1]["sort"]), post_body))
        return ItemCollection(
            type="FeatureCollection",
            features=cast(list[Item], features),
            links=links,
            numberMatched=matched,
            numberReturned=len(features),
        )

    def post_search(self, search_request: Any, **kwargs: Any) -> ItemCollection:
        """``POST /search``."""
        start, end = _interval(search_request.datetime)
        intersects = search_request.intersects
        search = ItemSearch(
            collections=search_request.collections,
            ids=search_request.ids,
            bbox=list(search_request.bbox) if search_request.bbox else None,
            intersects=intersects.model_dump(exclude_none=True) if intersects else None,
            start=start,
            end=end,
            filter=_filter(getattr(search_request, "filter_expr", None), None),
            sortby=_sortby(getattr(search_request, "sortby", None)),
            limit=search_request.limit or 10,
            token=getattr(search_request, "token", None),
        )
        post_body = search_request.model_dump(mode="json", by_alias=True, exclude_none=True)
        return self.search_items(search, kwargs["request"], post_body)

    def get_search(
        self,
        collections: list[str] | None = None,
        ids: list[str] | None = None,
        bbox: BBox | None = None,
        intersects: Any = None,
        datetime: str | None = None,
        limit: int | None = 10,
        **kwargs: Any,
    ) -> ItemCollection:
        """``GET /search``."""
        start, end = _interval(datetime)
        search = ItemSearch(
            collections=collections,
            ids=ids,
            bbox=list(bbox) if bbox else None,
            intersects=json.loads(intersects) if isinstance(intersects, str) else intersects,
            start=start,
            end=end,
            filter=_filter(kwargs.get("filter_expr"), kwargs.get("filter_lang")),
            sortby=_sortby(kwargs.get("sortby")),
            limit=limit or 10,
            token=kwargs.get("token"),
        )
        return self.search_items(search, kwargs["request"])

    def item_collection(
        self,
        collection_id: str,
        bbox: BBox | None = None,
        datetime: str | None = None,
        limit: int = 10,
        token: str | None = None,
        **kwargs: Any,
    ) -> ItemCollection:
        """``GET /collections/{id}/items``."""
        self.get_collection(collection_id, **kwargs)
        return self.get_search(
            collections=[collection_id],
            bbox=bbox,
            datetime=datetime,
            limit=limit,
            token=token,
            **kwargs,
        )

    def get_item(self, item_id: str, collection_id: str, **kwargs: Any) -> Item:
        """``GET /collections/{collection_id}/items/{item_id}``."""
        with opensearch.reporting("read a STAC item"):
            hit = self.catalog.get(
                index=self.alias, id=item_id, _source_excludes=_LEAN["excludes"], ignore=[404]
            )
        doc = hit.get("_source") if hit.get("found") else None
        if (
            not doc
            or doc["dataset"] != collection_id
            or doc.get("quarantined")
            or not doc.get("time")
        ):
            raise NotFoundError(f"no item {item_id} in collection {collection_id}")
        root = self.roots.get(doc["region"])
        return cast(Item, items.item({"id": item_id, **doc}, root, base_url(kwargs["request"])))

    def _collection_stats(self, dataset: str | None = None) -> list[dict[str, Any]]:
        query: dict[str, Any] = {
            "bool": {
                "filter": [
                    {"term": {"quarantined": False}},
                    {"exists": {"field": "time.start"}},
                    *([{"term": {"dataset": dataset}}] if dataset else []),
                ]
            }
        }
        body = {
            "size": 0,
            "query": query,
            "aggs": {
                "datasets": {
                    "terms": {"field": "dataset", "size": 10_000},
                    "aggs": {
                        "start": {"min": {"field": "time.start"}},
                        "end": {"max": {"field": "time.end"}},
                        "bounds": {"geo_bounds": {"field": "extent"}},
                        "regions": {"terms": {"field": "region", "size": 100}},
                        "variables": {"terms": {"field": "variable_names", "size": 1000}},
                    },
                }
            },
        }
        with opensearch.reporting("describe the STAC collections"):
            buckets = self.catalog.search(index=self.alias, body=body)["aggregations"]["datasets"][
                "buckets"
            ]
        return [
            {
                "dataset": b["key"],
                "count": b["doc_count"],
                "start": b["start"].get("value_as_string"),
                "end": b["end"].get("value_as_string"),
                "bbox": _bounds(b["bounds"]),
                "regions": [r["key"] for r in b["regions"]["buckets"]],
                "variables": [v["key"] for v in b["variables"]["buckets"]],
            }
            for b in buckets
        ]

    def all_collections(self, **kwargs: Any) -> Collections:
        """``GET /collections``: one per dataset."""
        base = base_url(kwargs["request"])
        cols = [cast(Collection, items.collection(s, base)) for s in self._collection_stats()]
        return Collections(
            collections=cols,
            links=[
                {"rel": "root", "type": "application/json", "href": f"{base}/"},
                {"rel": "self", "type": "application/json", "href": f"{base}/collections"},
            ],
            numberMatched=len(cols),
            numberReturned=len(cols),
        )

    def get_collection(self, collection_id: str, **kwargs: Any) -> Collection:
        """``GET /collections/{collection_id}``."""
        stats = self._collection_stats(collection_id)
        if not stats:
            raise NotFoundError(f"no collection {collection_id}")
        return cast(Collection, items.collection(stats[0], base_url(kwargs["request"])))


def _next(request: Request, token: str, post_body: dict[str, Any] | None) -> dict[str, Any]:
    link = {"rel": "next", "type": "application/geo+json"}
    if post_body is not None:
        return link | {
            "method": "POST",
            "href": str(request.url),
            "body": post_body | {"token": token},
        }
    return link | {"method": "GET", "href": str(request.url.include_query_params(token=token))}


def _bounds(agg: dict[str, Any]) -> list[float]:
    box = agg.get("bounds")
    if not box:
        return list(items.WORLD)
    tl, br = box["top_left"], box["bottom_right"]
    west, east = round(tl["lon"], 6), round(br["lon"], 6)
    if west >= east and (west - east) % 360 < 1e-3:  # wrapped all the way round: global
        west, east = -180.0, 180.0
    return [west, round(br["lat"], 6), east, round(tl["lat"], 6)]


def _schema(field: str) -> dict[str, Any]:
    """The JSON schema of a queryable from the catalog field it maps to."""
    if field in TEMPORAL:
        return {"type": "string", "format": "date-time"}
    if field == "size":
        return {"type": "integer"}
    if field in ("variable_names", "standard_names"):
        return {"type": "array", "items": {"type": "string"}}
    return {"type": "string"}


@attr.s
class Queryables(BaseFiltersClient):
    """``GET /queryables``: the properties a CQL2 filter may name."""

    def get_queryables(self, collection_id: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """The queryable properties (the same for every collection)."""
        props: dict[str, Any] = {name: _schema(field) for name, field in PROPERTIES.items()} | {
            "geometry": {"$ref": "https://geojson.org/schema/Geometry.json"}
        }
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"{base_url(kwargs['request'])}/queryables",
            "type": "object",
            "title": "Proxima catalog",
            "properties": props,
            # another extension's property may be named: it is null on every item
            "additionalProperties": True,
        }
