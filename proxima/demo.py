"""`make demo`: the whole platform, end to end, on the local stack."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from proxima.analysis.request import AnalysisRequest

DEMO_REQUEST: dict[str, Any] = {
    "selection": {
        "variable": "air_temperature",
        "dataset": "era5",
        "start": "2020-01-01",
        "end": "2020-06-30",
        "bbox": [160, -30, -150, 30],
    },
    "reduction": "mean",
    "over": "both",
    "group_by": "month",
    "convert": "K->degC",
    "output_name": "demo-tropical-pacific-monthly-t2m",
}


def demo_request() -> AnalysisRequest:
    """The analysis the demo runs: monthly mean 2 m temperature over the tropical
    Pacific (a box across the antimeridian), from ERA5 split across two regions.
    """
    return AnalysisRequest.model_validate(DEMO_REQUEST)


Step = Callable[[str], None]
