"""CMIP6 facets of an asset, as ESGF publishes them: global attributes first, then the
DRS path and the file name as fallbacks; disagreements between them are reported.

DRS path: ``CMIP6/<activity_id>/<institution_id>/<source_id>/<experiment_id>/
<member_id>/<table_id>/<variable_id>/<grid_label>/<version>/<file>``; file name:
``<variable_id>_<table_id>_<source_id>_<experiment_id>_<member_id>_<grid_label>[_<time
range>].nc``.
"""

from __future__ import annotations

import re
from typing import Any

from proxima.catalog.model import FACET_KEYS

_DRS = (
    "activity_id",
    "institution_id",
    "source_id",
    "experiment_id",
    "member_id",
    "table_id",
    "variable_id",
    "grid_label",
    "version",
)
_NAME = ("variable_id", "table_id", "source_id", "experiment_id", "member_id", "grid_label")
_VERSION = re.compile(r"^v\d{8}$")


def from_path(relpath: str) -> dict[str, str]:
    """Facets from a CMIP6 DRS directory path (empty if the path is not one)."""
    parts = relpath.strip("/").split("/")
    if "CMIP6" not in parts:
        return {}
    drs = parts[parts.index("CMIP6") + 1 :]
    if len(drs) < len(_DRS) or not _VERSION.match(drs[len(_DRS) - 1]):
        return {}
    return dict(zip(_DRS, drs[: len(_DRS)], strict=True))


def from_file_name(relpath: str) -> dict[str, str]:
    """Facets from a CMIP6 file name (empty if the name is not one)."""
    stem = relpath.rstrip("/").rsplit("/", 1)[-1].removesuffix(".nc").removesuffix(".zarr")
    fields = stem.split("_")
    if len(fields) not in (len(_NAME), len(_NAME) + 1) or not fields[4].startswith("r"):
        return {}
    return dict(zip(_NAME, fields[: len(_NAME)], strict=True))


def facets(attrs: dict[str, Any], relpath: str) -> tuple[dict[str, str], list[str]]:
    """The asset's facets and the disagreements between its sources.

    Returns:
        (facet → value, with attributes winning over the path and the path over the file
        name; one line per facet on which the sources disagree).
    """
    sources = {
        "global attributes": {k: str(attrs[k]) for k in (*FACET_KEYS, "variable_id") if k in attrs},
        "DRS path": from_path(relpath),
        "file name": from_file_name(relpath),
    }
    merged: dict[str, str] = {}
    conflicts = []
    for key in FACET_KEYS:
        seen = {name: found[key] for name, found in sources.items() if key in found}
        if seen:
            merged[key] = next(iter(seen.values()))
        if len(set(seen.values())) > 1:
            conflicts.append(
                f"{key}: " + ", ".join(f"{name} {value!r}" for name, value in seen.items())
            )
    return merged, conflicts
