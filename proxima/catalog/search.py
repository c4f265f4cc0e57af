"""Typed catalog queries, translated to OpenSearch DSL on allow-listed fields only."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from opensearchpy import OpenSearch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from proxima import opensearch
from proxima.catalog.geo import envelope, normalize_bbox
from proxima.catalog.model import FACET_KEYS, check_facets


class CatalogQuery(BaseModel):
    """What a scientist asks the catalog.

    Example:
        ```python
        CatalogQuery(variable="air_temperature", start="2020-01-01", end="2020-02-01",
                     bbox=[170, -10, -170, 10], facets={"experiment_id": "ssp585"})
        ```
    """

    model_config = ConfigDict(extra="forbid")

    dataset: str | None = Field(default=None, description="Dataset (collection) name.")
    variable: str | None = Field(default=None, description="A variable name or a CF standard_name.")
    start: datetime | None = Field(default=None, description="Overlaps this start (inclusive).")
    end: datetime | None = Field(default=None, description="Overlaps this end (inclusive).")
    bbox: list[float] | None = Field(
        default=None,
        description="[west, south, east, north]; west > east crosses the antimeridian.",
    )
    facets: dict[str, str] = Field(default_factory=dict, description="CMIP6 facets.")
    text: str | None = Field(default=None, max_length=200, description="Free text in attributes.")
    region: str | None = Field(default=None)
    include_quarantined: bool = False

    @field_validator("bbox")
    @classmethod
    def _bbox(cls, value: list[float] | None) -> list[float] | None:
        return normalize_bbox(value) if value is not None else None

    @field_validator("facets")
    @classmethod
    def _facets(cls, value: dict[str, str]) -> dict[str, str]:
        return check_facets(value)

    @model_validator(mode="after")
    def _order(self) -> CatalogQuery:
        if self.start and self.end and _naive(self.start) > _naive(self.end):
            raise ValueError(f"start {self.start} is after end {self.end}")
        return self


def _naive(value: datetime) -> datetime:
    return value.replace(tzinfo=None)


def to_dsl(query: CatalogQuery) -> dict[str, Any]:
    """The OpenSearch bool query for ``query`` (term/range/geo only)."""
    filters: list[dict[str, Any]] = []
    if not query.include_quarantined:
        filters.append({"term": {"quarantined": False}})
    if query.dataset:
        filters.append({"term": {"dataset": query.dataset}})
    if query.region:
        filters.append({"term": {"region": query.region}})
    if query.variable:
        filters.append(
            {
                "bool": {
                    "should": [
                        {"term": {"variable_names": query.variable}},
                        {"term": {"standard_names": query.variable}},
                    ],
                    "minimum_should_match": 1,
                }
            }
        )
    if query.end:
        filters.append({"range": {"time.start": {"lte": _naive(query.end).isoformat()}}})
    if query.start:
        filters.append({"range": {"time.end": {"gte": _naive(query.start).isoformat()}}})
    if query.bbox:
        filters.append(
            {"geo_shape": {"extent": {"shape": envelope(*query.bbox), "relation": "intersects"}}}
        )
    for key, value in sorted(query.facets.items()):
        filters.append({"term": {f"facets.{key}": value}})
    must: list[dict[str, Any]] = []
    if query.text:
        must.append({"match": {"attributes_text": {"query": query.text, "operator": "and"}}})
    return {"bool": {"filter": filters, "must": must}}


class SearchResult(BaseModel):
    """Assets matching a query, and per-region totals."""

    assets: list[dict[str, Any]]
    by_region: dict[str, dict[str, int]]

    @property
    def total(self) -> int:
        """Number of assets."""
        return len(self.assets)


def search(client: OpenSearch, alias: str, query: CatalogQuery) -> SearchResult:
    """Every asset matching ``query`` (complete beyond 10,000 hits)."""
    assets = []
    by_region: dict[str, dict[str, int]] = defaultdict(lambda: {"count": 0, "bytes": 0})
    with opensearch.reporting("search"):
        for hit in opensearch.scan(client, alias, to_dsl(query)):
            doc = {"id": hit["_id"], **hit["_source"]}
            assets.append(doc)
            by_region[doc["region"]]["count"] += 1
            by_region[doc["region"]]["bytes"] += int(doc.get("size", 0))
    return SearchResult(assets=assets, by_region=dict(by_region))


def facet_counts(
    client: OpenSearch, alias: str, query: CatalogQuery, size: int = 100
) -> dict[str, dict[str, int]]:
    """What is available: counts per facet value (and per variable and region)."""
    fields = {f: f"facets.{f}" for f in FACET_KEYS} | {
        "region": "region",
        "dataset": "dataset",
        "standard_name": "standard_names",
        "variable": "variable_names",
    }
    body = {
        "size": 0,
        "query": to_dsl(query),
        "aggs": {name: {"terms": {"field": field, "size": size}} for name, field in fields.items()},
    }
    with opensearch.reporting("count facets"):
        aggs = client.search(index=alias, body=body)["aggregations"]
    return {
        name: {b["key"]: b["doc_count"] for b in agg["buckets"]}
        for name, agg in aggs.items()
        if agg["buckets"]
    }


def known_variables(client: OpenSearch, alias: str) -> list[str]:
    """All variable names and standard_names in the catalog (for error messages)."""
    counts = facet_counts(client, alias, CatalogQuery())
    return sorted(set(counts.get("variable", {})) | set(counts.get("standard_name", {})))
