"""Deterministic synthetic climate fields: smooth in space, a seasonal cycle, a trend, noise.

The same (seed, variable, time) always gives the same values, whichever file or
chunk they land in, so results over generated data are reproducible and checkable.
"""

from __future__ import annotations

import hashlib

import numpy as np

# Per variable kind: (mean profile in SI units, seasonal amplitude, trend per year, noise sd).
_KINDS = {
    "temperature": (288.0, 10.0, 0.03, 1.5),  # K
    "precipitation_flux": (3.0e-5, 1.0e-5, 2.0e-8, 5.0e-6),  # kg m-2 s-1
    "precipitation_amount": (1.0e-4, 3.0e-5, 5.0e-8, 2.0e-5),  # m per hour
}


def _stable(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little")


def field(
    kind: str,
    seed: int,
    variable: str,
    day_of_year: np.ndarray,
    years_since_2000: np.ndarray,
    time_keys: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
) -> np.ndarray:
    """Values of one variable at the given times on a lat/lon grid, as float32.

    Args:
        kind: One of ``temperature``, ``precipitation_flux``, ``precipitation_amount``.
        seed: Dataset seed.
        variable: Variable name (part of the noise key).
        day_of_year: Fractional day of year per time step (calendar-aware).
        years_since_2000: Fractional years since 2000 per time step.
        time_keys: Integer per time step that keys its noise (e.g. hours since 1900).
        lat: Latitudes in degrees.
        lon: Longitudes in degrees (any convention).

    Returns:
        An array of shape (time, lat, lon).
    """
    mean, season_amp, trend, noise_sd = _KINDS[kind]
    phi = np.deg2rad(lat)[None, :, None]
    lam = np.deg2rad(lon)[None, None, :]
    season = np.cos(2 * np.pi * (day_of_year[:, None, None] - 200.0) / 365.25)
    if kind == "temperature":
        base = mean + 12.0 - 50.0 * np.sin(phi) ** 2 + 3.0 * np.cos(2 * lam) * np.cos(phi)
        seasonal = season_amp * np.sin(phi) * season
    else:
        base = mean * (1.0 + 0.8 * np.cos(2 * phi) ** 2 + 0.3 * np.sin(lam) * np.cos(phi))
        seasonal = season_amp * np.cos(phi) * season
    out = base + seasonal + trend * years_since_2000[:, None, None]
    noise = np.empty((len(time_keys), len(lat), len(lon)), dtype=np.float64)
    var_key = _stable(seed, variable)
    for i, key in enumerate(time_keys):
        noise[i] = np.random.default_rng([var_key, int(key)]).standard_normal((len(lat), len(lon)))
    out = out + noise_sd * noise
    if kind != "temperature":
        out = np.maximum(out, 0.0)
    return out.astype(np.float32)


def grid(
    resolution: float, *, descending_lat: bool, area: list[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A grid: latitudes -90..90 (or 90..-90) and longitudes 0..360 (exclusive).

    With ``area`` ([west, south, east, north]) the grid is limited to that box;
    its longitudes run eastwards from ``west`` and wrap at 360 (350, 355, 0, 5).
    """
    if area is None:
        n_lat = round(180.0 / resolution) + 1
        lat = np.linspace(-90.0, 90.0, n_lat)
        lon = np.arange(0.0, 360.0, resolution)
    else:
        west, south, east, north = area
        lat = np.arange(south, north + resolution / 2, resolution)
        width = (east - west) % 360.0 or 360.0
        lon = np.mod(west + np.arange(0.0, width + resolution / 2, resolution), 360.0)
    if descending_lat:
        lat = lat[::-1].copy()
    return lat, lon
