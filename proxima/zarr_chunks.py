"""Zarr v2 arrays whose chunk objects are all present.

Zarr returns an array's fill value for a chunk it cannot find, without an error: a
store synced halfway, or with one object lost, reads back as plausible numbers (or
as zeros when no fill value is set). Proxima refuses such arrays instead.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

from proxima.errors import ProximaError


class MissingChunks(ProximaError):
    """A Zarr array lacks chunk objects: reading would yield fill values silently."""


def check_chunks(
    store: Path,
    variable: str,
    zarray: dict[str, Any] | None = None,
    first: int = 0,
    stop: int | None = None,
) -> None:
    """Refuse a Zarr v2 array with missing chunks.

    Args:
        store: The Zarr store (a directory with consolidated metadata).
        variable: The array's name.
        zarray: Its ``.zarray`` metadata, when already read.
        first: The first chunk index along the first (time) axis to check.
        stop: The chunk index to stop before along it (None: to the end). A part of the
            array is checked by looking up its own chunk objects only; the whole array
            by listing the store.

    Raises:
        MissingChunks: Naming how many chunks are missing and the first few.
    """
    if zarray is None:
        meta = json.loads((store / ".zmetadata").read_text())["metadata"]
        zarray = meta[f"{variable}/.zarray"]
    grid = [math.ceil(n / c) for n, c in zip(zarray["shape"], zarray["chunks"], strict=True)]
    sep = zarray.get("dimension_separator", ".")
    ranges = list(map(range, grid))
    whole = not grid or (first <= 0 and (stop is None or stop >= grid[0]))
    if not whole:
        ranges[0] = range(max(first, 0), grid[0] if stop is None else min(grid[0], stop))
    expected = {sep.join(map(str, idx)) for idx in itertools.product(*ranges)}
    base = store / variable
    if whole:
        present = {
            p.relative_to(base).as_posix().replace("/", sep)
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        }
    else:
        present = {key for key in expected if (base / key).is_file()}
    missing = sorted(expected - present)
    if missing:
        raise MissingChunks(
            f"{store.name}/{variable}: {len(missing)} of {len(expected)} chunks are missing "
            f"(first: {missing[:3]}); refusing to read them as fill values"
        )
