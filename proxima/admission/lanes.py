"""The clusters' slots: Prefect global concurrency limits per region, sized from the
cluster (one analysis per worker thread), in lanes by how much a share reads.

- ``proxima-region-<r>-small``: a share that is one block task (one asset, at most
  ``BLOCK_BYTES`` read) takes only this lane, so a one-month question never queues behind
  six-month maps or a subset of everything: it waits only for other small ones.
- ``proxima-region-<r>``: every other share.
- ``proxima-region-<r>-large``: shares over ``LARGE_BYTES`` take this narrower lane as
  well, so large ones never hold every slot of the lane above.

On the workers, the blocks of small shares go ahead of queued large blocks by their Dask
priority (``proxima.analysis.regional``): the lanes bound how many analyses a region
serves at once, the priority orders their work.
"""

from __future__ import annotations

from proxima.analysis.kernels import BLOCK_BYTES
from proxima.analysis.plan import RegionPlan
from proxima.platform.model import Region

LARGE_BYTES = 256 * 2**20  # decoded bytes a region reads, above which a share is large
PREFIX = "proxima-region-"


def lane(plan: RegionPlan) -> str:
    """Which lane ``plan``'s share of a request goes by: small, other or large."""
    if len(plan.spec.assets) <= 1 and plan.bytes_read <= BLOCK_BYTES:
        return "small"
    return "large" if plan.bytes_read > LARGE_BYTES else "other"


def limits(region: Region) -> dict[str, int]:
    """The limits of ``region``, by name."""
    every = f"{PREFIX}{region.name}"
    return {
        f"{every}-small": region.slots,
        every: region.slots,
        f"{every}-large": max(1, region.slots // 2),
    }


def capacity(region: Region) -> int:
    """How many analyses ``region`` serves at once at most (small ones and the others)."""
    return 2 * region.slots


def names(region: Region, plan: RegionPlan) -> list[str]:
    """The limits a share of a request takes one slot of."""
    every = f"{PREFIX}{region.name}"
    return {
        "small": [f"{every}-small"],
        "other": [every],
        "large": [every, f"{every}-large"],
    }[lane(plan)]
