"""The clusters' slots: one Prefect global concurrency limit per region, sized from the
cluster (one analysis per worker thread), and a narrower lane for large requests, so a
one-month question never waits behind more than half the cluster's large work.
"""

from __future__ import annotations

from proxima.analysis.plan import RegionPlan
from proxima.platform.model import Region

LARGE_BYTES = 256 * 2**20  # decoded bytes a region reads, above which a request is large
PREFIX = "proxima-region-"


def is_large(plan: RegionPlan) -> bool:
    """Whether ``plan``'s share of a request is large (reads over ``LARGE_BYTES``)."""
    return plan.bytes_read > LARGE_BYTES


def limits(region: Region) -> dict[str, int]:
    """The limits of ``region``: every analysis's, and the large lane's."""
    return {
        f"{PREFIX}{region.name}": region.slots,
        f"{PREFIX}{region.name}-large": max(1, region.slots // 2),
    }


def names(region: Region, plan: RegionPlan) -> list[str]:
    """The limits a share of a request takes one slot of."""
    every = f"{PREFIX}{region.name}"
    return [every, f"{every}-large"] if is_large(plan) else [every]
