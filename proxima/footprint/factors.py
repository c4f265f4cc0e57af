"""The footprint's factors: the cited table in ``factors.yaml`` with a deployment's overrides."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from proxima.errors import ProximaError

TABLE = Path(__file__).with_name("factors.yaml")
REGIONAL = ("grid_gco2e_per_kwh", "vcpu_hour_usd")
GLOBAL = ("pue", "vcpu_watts_idle", "vcpu_watts_max", "network_kwh_per_gb")


class FootprintError(ProximaError):
    """A footprint cannot be stated: a region or a factor is missing from the table."""


class Factor(BaseModel):
    """One value with where it comes from."""

    model_config = ConfigDict(extra="forbid")

    value: float
    source: str
    year: int | None = None


class RegionFactors(BaseModel):
    """Every factor that applies to one region."""

    region: str
    pue: Factor
    vcpu_watts_idle: Factor
    vcpu_watts_max: Factor
    network_kwh_per_gb: Factor
    grid_gco2e_per_kwh: Factor
    vcpu_hour_usd: Factor


@cache
def _table() -> dict[str, Any]:
    table: dict[str, Any] = yaml.safe_load(TABLE.read_text())
    return table


def for_region(region: str, overrides: dict[str, dict[str, float]] | None = None) -> RegionFactors:
    """The factors of ``region``: the table's, with ``overrides`` (``{region|defaults:
    {factor: value}}``) applied and named as their source.

    Raises:
        FootprintError: the region is in neither the table nor the overrides, or an
            override names a factor that does not exist.
    """
    overrides = overrides or {}
    for scope, values in overrides.items():
        unknown = set(values) - set(REGIONAL + GLOBAL)
        if unknown:
            raise FootprintError(
                f"unknown footprint factor(s) {sorted(unknown)} for {scope!r}; known: "
                f"{', '.join(GLOBAL + REGIONAL)}"
            )
    table = _table()
    merged: dict[str, Any] = {k: Factor(**v) for k, v in table["defaults"].items()}
    merged |= {k: Factor(**v) for k, v in table["regions"].get(region, {}).items()}
    for scope in ("defaults", region):
        for name, value in overrides.get(scope, {}).items():
            merged[name] = Factor(value=value, source=f"deployment override ({scope})")
    missing = [name for name in REGIONAL if name not in merged]
    if missing:
        raise FootprintError(
            f"no footprint factors {missing} for region {region!r}: add the region to "
            f"{TABLE} or to the deployment's footprint overrides"
        )
    return RegionFactors(region=region, **merged)
