"""The catalog's document model: one Asset per NetCDF file or Zarr store."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

SCHEMA_VERSION = 1
FACET_KEYS = (
    "activity_id",
    "institution_id",
    "source_id",
    "experiment_id",
    "member_id",
    "table_id",
    "grid_label",
    "version",
)


def check_facets(value: dict[str, str]) -> dict[str, str]:
    """Refuse facet names outside FACET_KEYS, listing the allowed ones."""
    unknown = sorted(set(value) - set(FACET_KEYS))
    if unknown:
        raise ValueError(f"unknown facet(s) {unknown}; allowed: {list(FACET_KEYS)}")
    return value


def asset_id(region: str, path: str) -> str:
    """Stable document id: a hash of region and path (re-sends are idempotent)."""
    return hashlib.sha256(f"{region}\x00{path}".encode()).hexdigest()[:32]


class Variable(BaseModel):
    """A data variable of an asset, from its header."""

    name: str
    standard_name: str | None = None
    long_name: str | None = None
    units: str | None = None
    dims: list[str] = Field(default_factory=list)
    shape: list[int] = Field(default_factory=list)
    dtype: str | None = None
    chunks: list[int] | None = None
    nbytes: int = 0


class TimeCoverage(BaseModel):
    """Time span of an asset, in its own calendar and as comparable dates."""

    start: datetime = Field(description="First time step, mapped to a proleptic date.")
    end: datetime = Field(description="Last time step, mapped to a proleptic date.")
    start_native: str
    end_native: str
    calendar: str = "standard"
    frequency: str | None = None
    steps: int = 0


class Asset(BaseModel):
    """One catalog document."""

    id: str
    region: str
    dataset: str
    path: str = Field(description="Path relative to the region's file-system root.")
    uri: str = Field(description="Data-repository URI (s3://bucket/key).")
    format: Literal["netcdf", "zarr", "unknown"]
    size: int
    mtime_ns: int
    ctime_ns: int = Field(default=0, description="Newest inode change time (0: not known).")
    etag: str | None = None
    variables: list[Variable] = Field(default_factory=list)
    variable_names: list[str] = Field(default_factory=list)
    standard_names: list[str] = Field(default_factory=list)
    time: TimeCoverage | None = None
    bbox: list[float] | None = Field(default=None, description="[west, south, east, north].")
    extent: dict[str, Any] | None = Field(default=None, description="GeoJSON geo_shape.")
    lon_convention: Literal["0-360", "-180-180"] | None = None
    lat_descending: bool | None = None
    facets: dict[str, str] = Field(default_factory=dict)
    facet_conflicts: list[str] = Field(
        default_factory=list,
        description="Facets on which the global attributes, DRS path and file name disagree.",
    )
    attributes_text: str = ""
    quarantined: bool = False
    error_class: str | None = None
    error_message: str | None = None
    indexed_at: datetime | None = None
    catalog_version: int = SCHEMA_VERSION

    def document(self) -> dict[str, Any]:
        """The JSON body stored in OpenSearch."""
        return self.model_dump(mode="json", exclude={"id"})


# The catalog index's mapping: one document per asset, as ``Asset`` describes it.
MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "region": {"type": "keyword"},
        "dataset": {"type": "keyword"},
        "path": {"type": "keyword"},
        "uri": {"type": "keyword"},
        "format": {"type": "keyword"},
        "size": {"type": "long"},
        "mtime_ns": {"type": "long"},
        "ctime_ns": {"type": "long"},
        "etag": {"type": "keyword"},
        "variables": {
            "type": "nested",
            "properties": {
                "name": {"type": "keyword"},
                "standard_name": {"type": "keyword"},
                "long_name": {"type": "text"},
                "units": {"type": "keyword"},
                "dims": {"type": "keyword"},
                "shape": {"type": "long"},
                "dtype": {"type": "keyword"},
                "chunks": {"type": "long"},
                "nbytes": {"type": "long"},
            },
        },
        "variable_names": {"type": "keyword"},
        "standard_names": {"type": "keyword"},
        "time": {
            "properties": {
                "start": {"type": "date"},
                "end": {"type": "date"},
                "start_native": {"type": "keyword"},
                "end_native": {"type": "keyword"},
                "calendar": {"type": "keyword"},
                "frequency": {"type": "keyword"},
                "steps": {"type": "long"},
            }
        },
        "bbox": {"type": "float"},
        "extent": {"type": "geo_shape"},
        "lon_convention": {"type": "keyword"},
        "lat_descending": {"type": "boolean"},
        "facets": {"properties": {k: {"type": "keyword"} for k in FACET_KEYS}},
        "facet_conflicts": {"type": "keyword"},
        "attributes_text": {"type": "text"},
        "quarantined": {"type": "boolean"},
        "error_class": {"type": "keyword"},
        "error_message": {"type": "text"},
        "indexed_at": {"type": "date"},
        "catalog_version": {"type": "integer"},
    },
}
