"""Each regional task's peak memory, estimated from the plan, against the workers' limit.

A worker runs ``threads_per_worker`` block tasks at once. A block task holds one slab of
decoded data (at most ``SLAB_BYTES``; a float64 copy of it when a scale or offset
applies and the deviations of a standard deviation besides) and its block's partials;
the region's own task merges the blocks' partials (for a subset, the region's whole
piece of the data). The estimate is that sum for the busiest worker; a request over
``FRACTION`` of the limit (where Dask pauses a worker) is refused by name.
"""

from __future__ import annotations

from pydantic import BaseModel

from proxima.analysis.kernels import SLAB_BYTES
from proxima.analysis.plan import Plan, PlanningError, RegionPlan
from proxima.platform.model import Region

FRACTION = 0.8  # distributed's default worker.memory.pause
# A subset's region task holds its blocks' pieces, their concatenation, the pickled
# return and its frames: at 3 copies, a 543 MiB piece was estimated at 2.3 GiB and
# killed 3 GiB workers (past their 95%) four times (benchmarks/load.py, first run).
SUBSET_COPIES = 6


class OverMemory(PlanningError):
    """A regional task would not fit a worker's memory."""


class MemoryEstimate(BaseModel):
    """One region's estimated peak per worker, and what it is made of."""

    region: str
    slab_bytes: int
    copies: int
    partial_bytes: int
    concurrent_blocks: int
    peak_bytes: int


def estimate(plan: RegionPlan, threads: int, reduction: str) -> MemoryEstimate:
    """The peak memory of the busiest worker for ``plan``'s share of a request."""
    assets = max(len(plan.spec.assets), 1)
    slab = min(SLAB_BYTES, max(plan.bytes_read // assets, 1))
    copies = 1 + 2 + (2 if reduction == "std" else 0)  # read, float64 copy, deviations
    concurrent = max(threads, 1)
    # partials: the merged ones, a batch no larger than them, and the sum being built
    merge = SUBSET_COPIES * plan.bytes_out if reduction == "none" else 3 * plan.bytes_out
    peak = concurrent * (slab * copies + plan.bytes_out) + merge
    return MemoryEstimate(
        region=plan.region,
        slab_bytes=slab,
        copies=copies,
        partial_bytes=plan.bytes_out,
        concurrent_blocks=concurrent,
        peak_bytes=peak,
    )


def check(plan: Plan, regions: dict[str, Region], reduction: str) -> list[MemoryEstimate]:
    """Every region's estimate; raises before any cluster is touched when one cannot fit.

    Raises:
        OverMemory: the estimate for a region exceeds ``FRACTION`` of its workers' limit.
    """
    out = []
    for sel in plan.selections:
        for r in sel.regions:
            region = regions.get(r.region)
            if region is None:
                continue
            est = estimate(r, region.threads_per_worker, reduction)
            out.append(est)
            limit = region.worker_memory_bytes
            if limit and est.peak_bytes > FRACTION * limit:
                raise OverMemory(
                    f"the {sel.role} would need about {est.peak_bytes / 2**20:,.0f} MiB on a "
                    f"worker of {r.region} ({est.concurrent_blocks} blocks at once, each "
                    f"{est.slab_bytes / 2**20:,.0f} MiB decoded x {est.copies} copies, "
                    f"partials {est.partial_bytes / 2**20:,.1f} MiB), over "
                    f"{FRACTION:.0%} of its {limit / 2**20:,.0f} MiB limit: select a smaller "
                    "box or period, coarsen, or reduce over more dimensions"
                )
    return out
