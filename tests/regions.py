"""A one-dataset region for tests that need a ``Region`` but no running stack."""

from __future__ import annotations

from typing import Any

from proxima.config import DatasetConfig
from proxima.platform import Region


def era5_region(**fields: Any) -> Region:
    """us-east-1 holding January 2020 of ERA5 2 m temperature in ``era5-pds``."""
    dataset = DatasetConfig(
        name="era5",
        kind="era5",
        bucket="era5-pds",
        start="2020-01",
        end="2020-01",
        variables=["air_temperature_at_2_metres"],
    )
    return Region.model_validate(
        {"name": "us-east-1", "root": "/fsx", "datasets": [dataset]} | fields
    )
