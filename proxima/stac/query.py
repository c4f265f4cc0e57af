"""STAC item search (bbox, datetime, CQL2 ``filter``, ``sortby``, paging) as OpenSearch DSL.

Only the catalog fields below can be filtered and sorted on; anything else is refused
with a :class:`StacQueryError` that lists them (a filter on an unknown property must
not quietly match nothing).
"""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from proxima.catalog.geo import envelope, normalize_bbox
from proxima.catalog.model import FACET_KEYS
from proxima.errors import ProximaError

# STAC property -> catalog field, for filter and sortby.
PROPERTIES: dict[str, str] = {
    "id": "_id",
    "collection": "dataset",
    "proxima:dataset": "dataset",
    "proxima:region": "region",
    "proxima:variables": "variable_names",
    "proxima:standard_names": "standard_names",
    "proxima:format": "format",
    "proxima:frequency": "time.frequency",
    "proxima:calendar": "time.calendar",
    "proxima:path": "path",
    "file:size": "size",
    "datetime": "time.start",
    "start_datetime": "time.start",
    "end_datetime": "time.end",
    **{f"cmip6:{k}": f"facets.{k}" for k in FACET_KEYS},
}
TEMPORAL = {"time.start", "time.end"}
# Every page sorts on these last: (region, path) is unique, so search_after never skips.
TIEBREAK = ("region", "path")
MAX_LIMIT = 10_000


class StacQueryError(ProximaError):
    """A search the catalog cannot answer as asked (answered 400)."""


class SortKey(BaseModel):
    """One ``sortby`` entry."""

    field: str
    direction: Literal["asc", "desc"] = "asc"


class ItemSearch(BaseModel):
    """An item search, from GET parameters or a POST body.

    Example:
        ```python
        ItemSearch(bbox=[170, -10, -170, 10], datetime="2020-01-01T00:00:00Z/..",
                   filter={"op": "=", "args": [{"property": "cmip6:experiment_id"}, "ssp585"]})
        ```
    """

    model_config = ConfigDict(extra="forbid")

    collections: list[str] | None = None
    ids: list[str] | None = None
    bbox: list[float] | None = None
    intersects: dict[str, Any] | None = None
    start: datetime | None = None
    end: datetime | None = None
    filter: dict[str, Any] | None = Field(default=None, description="CQL2-JSON.")
    sortby: list[SortKey] = Field(default_factory=list)
    limit: int = Field(default=10, ge=1)
    token: str | None = None


# Namespaces whose every property is known here: a name in them that is not in
# PROPERTIES is a mistake (400), never a property that just happens to be null.
OWN_PREFIXES = ("proxima:", "cmip6:", "storage:", "file:", "cube:", "xarray:")
ABSENT = "__absent__"  # a property no item has (another extension's): always null


def field_of(prop: str, *, sorting: bool = False) -> str:
    """The catalog field of STAC property ``prop`` (``properties.`` prefix allowed).

    A property of another extension (``eo:cloud_cover``) is null on every item, as CQL2
    reads a property an item lacks; a misspelt one of ours is refused.
    """
    name = prop.removeprefix("properties.")
    if name not in PROPERTIES and not sorting and ":" in name and not name.startswith(OWN_PREFIXES):
        return ABSENT
    if name not in PROPERTIES:
        raise StacQueryError(
            f"{prop!r} cannot be searched or sorted on; queryable: {', '.join(sorted(PROPERTIES))}"
        )
    return PROPERTIES[name]


def encode_token(values: list[Any]) -> str:
    """A page token: the last hit's sort values."""
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode()


def decode_token(token: str) -> list[Any]:
    """The sort values a page token carries (400 for a token this API did not issue)."""
    try:
        values = json.loads(base64.urlsafe_b64decode(token.encode()))
    except ValueError as exc:
        raise StacQueryError(f"token {token!r} was not issued by this API") from exc
    if not isinstance(values, list):
        raise StacQueryError(f"token {token!r} was not issued by this API")
    return values


def to_body(search: ItemSearch) -> dict[str, Any]:
    """The OpenSearch request body for one page of ``search``."""
    filters: list[dict[str, Any]] = [
        {"term": {"quarantined": False}},
        # STAC items need a time; an asset without one is in the catalog, not the API
        {"exists": {"field": "time.start"}},
    ]
    if search.bbox is not None and search.intersects is not None:
        raise StacQueryError("bbox and intersects cannot both be given")
    if search.ids:
        filters.append({"ids": {"values": search.ids}})
    if search.collections:
        filters.append({"terms": {"dataset": search.collections}})
    if search.bbox is not None:
        box = _bbox(search.bbox)
        filters.append({"geo_shape": {"extent": {"shape": envelope(*box)}}})
    if search.intersects is not None:
        filters.append({"geo_shape": {"extent": {"shape": search.intersects}}})
    if search.end:
        filters.append({"range": {"time.start": {"lte": _iso(search.end)}}})
    if search.start:
        filters.append({"range": {"time.end": {"gte": _iso(search.start)}}})
    if search.filter:
        filters.append(cql2_to_dsl(search.filter))
    sort = [{field_of(k.field, sorting=True): {"order": k.direction}} for k in search.sortby]
    sort += [{f: {"order": "asc"}} for f in TIEBREAK]
    body: dict[str, Any] = {
        "query": {"bool": {"filter": filters}},
        "sort": sort,
        "size": min(search.limit, MAX_LIMIT),
        "track_total_hits": True,
    }
    if search.token:
        after = decode_token(search.token)
        if len(after) != len(sort):
            raise StacQueryError("the token belongs to a search with another sortby")
        body["search_after"] = after
    return body


def _bbox(values: list[float]) -> list[float]:
    if len(values) == 6:  # 3-D boxes: the catalog's extents are 2-D
        values = [values[0], values[1], values[3], values[4]]
    try:
        return normalize_bbox(values)
    except ValueError as exc:
        raise StacQueryError(f"bbox: {exc}") from exc


def _iso(value: datetime) -> str:
    # the catalog stores naive proleptic dates, read as UTC
    return value.replace(tzinfo=None).isoformat()


def _literal(value: Any) -> Any:
    if isinstance(value, dict):
        if "timestamp" in value:
            return value["timestamp"]
        if "date" in value:
            return value["date"]
    return value


def _operands(args: list[Any]) -> tuple[str, Any]:
    """(field, literal) of a binary comparison, property on either side."""
    if len(args) != 2:
        raise StacQueryError(f"a comparison takes two arguments, got {args}")
    a, b = args
    if isinstance(a, dict) and "property" in a:
        return field_of(a["property"]), _literal(b)
    if isinstance(b, dict) and "property" in b:
        return field_of(b["property"]), _literal(a)
    raise StacQueryError(f"a comparison needs a property, got {args}")


_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}
_RANGE = {"<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}


def _like(pattern: str) -> str:
    out = []
    for ch in pattern:
        out.append({"%": "*", "_": "?"}.get(ch, re.sub(r"([*?\\])", r"\\\1", ch)))
    return "".join(out)


def _geometry(value: Any) -> dict[str, Any]:
    if isinstance(value, dict) and "bbox" in value:
        return envelope(*_bbox(value["bbox"]))
    if isinstance(value, dict) and "type" in value:
        return value
    raise StacQueryError(f"a spatial argument must be GeoJSON or a bbox, got {value}")


def cql2_to_dsl(expr: Any) -> dict[str, Any]:
    """Translate CQL2-JSON to an OpenSearch query.

    Supports and/or/not, = <> < <= > >=, like, in, between, isNull, s_intersects,
    s_within, s_contains, t_intersects, a_overlaps and a_contains. A comparison on a
    property no item has is unknown, as in CQL2, and an unknown filter matches nothing;
    ``isNull`` on it matches everything.
    """
    return _translate(expr) or {"match_none": {}}


def _translate(expr: Any) -> dict[str, Any] | None:
    """The query of ``expr``, or None when it is unknown (a comparison with null)."""
    if not isinstance(expr, dict) or "op" not in expr:
        if expr is True:
            return {"match_all": {}}
        raise StacQueryError(f"not a CQL2 expression: {expr!r}")
    op, args = expr["op"].lower(), expr.get("args", [])
    if op in ("and", "or", "not"):
        parts = [_translate(a) for a in args]
        known = [p for p in parts if p is not None]
        if op == "not":
            return {"bool": {"must_not": known}} if known else None
        if op == "and":
            return {"bool": {"filter": known}} if len(known) == len(parts) else None
        return {"bool": {"should": known, "minimum_should_match": 1}} if known else None
    dsl = _comparison(op, args, expr)
    return None if ABSENT in json.dumps(dsl) else dsl


def _comparison(op: str, args: list[Any], expr: dict[str, Any]) -> dict[str, Any]:
    if op == "isnull":
        field = field_of(args[0]["property"])
        if field == ABSENT:
            return {"match_all": {}}
        return {"bool": {"must_not": [{"exists": {"field": field}}]}}
    if op in ("=", "<>"):
        field, value = _operands(args)
        if field == "time.start" and isinstance(value, str):
            term: dict[str, Any] = {"range": {field: {"gte": value, "lte": value}}}
        else:
            term = {"term": {field: value}}
        return term if op == "=" else {"bool": {"must_not": [term]}}
    if op in _RANGE:
        if isinstance(args[0], dict) and "property" in args[0]:
            field, value = _operands(args)
        else:
            field, value = _operands(args)
            op = _FLIP[op]
        return {"range": {field: {_RANGE[op]: value}}}
    if op == "between":
        lo, hi = (_literal(v) for v in args[1:3])
        return {"range": {field_of(args[0]["property"]): {"gte": lo, "lte": hi}}}
    if op == "like":
        field, pattern = _operands(args)
        return {"wildcard": {field: {"value": _like(str(pattern))}}}
    if op == "in":
        return {"terms": {field_of(args[0]["property"]): [_literal(v) for v in args[1]]}}
    if op in ("a_overlaps", "a_contains"):
        field, values = field_of(args[0]["property"]), list(args[1])
        if op == "a_overlaps":
            return {"terms": {field: values}}
        return {"bool": {"filter": [{"term": {field: v}} for v in values]}}
    if op in ("s_intersects", "s_within", "s_contains"):
        if not (isinstance(args[0], dict) and args[0].get("property") == "geometry"):
            raise StacQueryError(f"{op} applies to the geometry property, got {args[0]}")
        relation = {"s_intersects": "intersects", "s_within": "within", "s_contains": "contains"}
        shape = _geometry(args[1])
        return {"geo_shape": {"extent": {"shape": shape, "relation": relation[op]}}}
    if op in ("t_intersects", "anyinteracts"):
        prop, value = args[0], args[1]
        if not (isinstance(prop, dict) and field_of(prop.get("property", "")) in TEMPORAL):
            raise StacQueryError(f"{op} applies to datetime, got {prop}")
        if isinstance(value, dict) and "interval" in value:
            lo, hi = (_literal(v) for v in value["interval"])
        else:
            lo = hi = _literal(value)
        parts: list[dict[str, Any]] = []
        if hi not in ("..", None):
            parts.append({"range": {"time.start": {"lte": hi}}})
        if lo not in ("..", None):
            parts.append({"range": {"time.end": {"gte": lo}}})
        return {"bool": {"filter": parts}}
    raise StacQueryError(f"CQL2 operator {expr['op']!r} is not supported")
