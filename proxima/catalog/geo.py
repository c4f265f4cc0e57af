"""Longitude conventions and bounding boxes (RFC 7946: west > east crosses the antimeridian)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


def wrap180(lon: float) -> float:
    """Map a longitude to [-180, 180)."""
    return ((lon + 180.0) % 360.0) - 180.0


def lon_extent(lon: np.ndarray) -> tuple[float, float, bool]:
    """West and east edge of a longitude axis (cell edges) and whether it is global.

    The covered arc is the complement of the largest gap between neighbouring
    longitudes on the circle, so axes in 0..360, in -180..180, or wrapping
    (350, 355, 0, 5) are all handled.

    Returns:
        (west, east, global) with west/east in [-180, 180]; west > east when the
        span crosses the antimeridian.
    """
    import numpy as np  # here: validating a request's box (the CLI) needs no numpy

    values = np.sort(np.mod(np.asarray(lon, dtype=float), 360.0))
    if values.size == 0:
        raise ValueError("empty longitude axis")
    if values.size == 1:
        return wrap180(values[0]), wrap180(values[0]), False
    gaps = np.diff(np.append(values, values[0] + 360.0))
    step = float(np.min(gaps[gaps > 1e-9])) if np.any(gaps > 1e-9) else 0.0
    widest = int(np.argmax(gaps))
    if gaps[widest] <= step * 1.5 + 1e-6:
        return -180.0, 180.0, True
    first = values[(widest + 1) % values.size]  # westernmost point after the gap
    last = values[widest]
    west = wrap180(float(first) - step / 2)
    east = wrap180(float(last) + step / 2)
    if east == -180.0:
        east = 180.0
    return west, east, False


def envelope(west: float, south: float, east: float, north: float) -> dict[str, Any]:
    """A geo_shape for a box; split in two when it crosses the antimeridian."""
    if west <= east:
        return {"type": "envelope", "coordinates": [[west, north], [east, south]]}
    return {
        "type": "multipolygon",
        "coordinates": [
            [_ring(west, south, 180.0, north)],
            [_ring(-180.0, south, east, north)],
        ],
    }


def _ring(w: float, s: float, e: float, n: float) -> list[list[float]]:
    return [[w, s], [e, s], [e, n], [w, n], [w, s]]


def normalize_bbox(bbox: list[float]) -> list[float]:
    """Validate ``[west, south, east, north]`` and map longitudes to [-180, 180].

    Accepts longitudes in -180..180 or 0..360. Raises ValueError with what is allowed.
    """
    if len(bbox) != 4:
        raise ValueError(f"bbox must be [west, south, east, north], got {len(bbox)} numbers")
    west, south, east, north = (float(v) for v in bbox)
    if not all(math.isfinite(v) for v in (west, south, east, north)):
        raise ValueError("bbox values must be finite numbers")
    for name, value in (("south", south), ("north", north)):
        if not -90.0 <= value <= 90.0:
            raise ValueError(f"bbox {name} {value} is outside -90..90")
    if south > north:
        raise ValueError(f"bbox south {south} is above north {north}")
    for name, value in (("west", west), ("east", east)):
        if not -180.0 <= value <= 360.0:
            raise ValueError(f"bbox {name} {value} is outside -180..180 (or 0..360)")
    if east - west >= 360.0:
        return [-180.0, south, 180.0, north]
    w, e = wrap180(west), wrap180(east)
    if e == -180.0 and east > west:
        e = 180.0
    return [w, south, e, north]
