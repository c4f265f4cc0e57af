"""A region's slots for an analysis, held through Prefect global concurrency limits.

Each regional share of a run takes one slot of its region's limit (and of the large
lane when it reads much); the rest wait, and say so. Slots are leases the holder
renews: a flow-run process that crashes or is killed stops renewing, and the server
frees its slots when the lease runs out (``LEASE_S``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.concurrency.asyncio import concurrency
from prefect.exceptions import ObjectAlreadyExists

from proxima.admission import lanes
from proxima.analysis.plan import RegionPlan
from proxima.platform import Platform, Region

LEASE_S = 60.0  # the shortest lease Prefect 3.9's server accepts


async def ensure_limits(platform: Platform) -> None:
    """Create or resize every region's limits to its cluster (idempotent, and safe
    when several runs of a new server do it at once).
    """
    async with get_client() as client:
        existing = {
            gcl.name: gcl.limit for gcl in await client.read_global_concurrency_limits(limit=200)
        }
        for region in platform.regions:
            for name, limit in lanes.limits(region).items():
                if existing.get(name) == limit:
                    continue
                try:
                    await client.upsert_global_concurrency_limit_by_name(name, limit)
                except ObjectAlreadyExists:  # another run created it meanwhile
                    continue


async def _say_if_waiting(names: list[str], region: str) -> None:
    async with get_client() as client:
        for name in names:
            gcl = await client.read_global_concurrency_limit_by_name(name)
            if gcl.active_slots >= gcl.limit:
                get_run_logger().info(
                    "waiting for a slot on %s (%s: %d of %d in use)",
                    region,
                    name,
                    gcl.active_slots,
                    gcl.limit,
                )
                return


@asynccontextmanager
async def region_slot(region: Region, plan: RegionPlan) -> AsyncIterator[dict[str, float]]:
    """Hold ``plan``'s slot on ``region`` for the body (its limits made by
    ``ensure_limits``); yields {"waited_s": seconds}.
    """
    names = lanes.names(region, plan)
    started = time.perf_counter()
    await _say_if_waiting(names, region.name)
    async with concurrency(names, lease_duration=LEASE_S, strict=True):
        yield {"waited_s": round(time.perf_counter() - started, 3)}
