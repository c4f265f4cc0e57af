"""A region's slots for an analysis, held through Prefect global concurrency limits, and
the queue of runs each region serves, read back from the runs' own log lines.

Each regional share of a run takes one slot of its region's limit (and of the large
lane when it reads much); the rest wait, and say so. Slots are leases the holder
renews: a flow-run process that crashes or is killed stops renewing, and the server
frees its slots when the lease runs out (``LEASE_S``).

Prefect 3.9's server keeps a limit's holders but serves no list of them (nor of who
waits), so a run says on its own log where it stands on each region: ``waiting``,
``admitted``, ``released``. :func:`queues` folds those lines of the runs in flight into
each region's queue, for ``proxima runs`` and for a waiting run's "N ahead".
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Literal
from uuid import UUID

from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    LogFilter,
    LogFilterFlowRunId,
    LogFilterName,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort, LogSort
from prefect.concurrency.asyncio import concurrency
from prefect.exceptions import ObjectAlreadyExists
from prefect.logging.handlers import APILogHandler
from pydantic import BaseModel

from flows.progress import PROGRESS, progress_logger
from proxima.admission import lanes
from proxima.analysis.plan import Plan, RegionPlan
from proxima.platform import Platform, Region
from proxima.settings import get_settings

LEASE_S = 60.0  # the shortest lease Prefect 3.9's server accepts
ANALYSIS_FLOW = "cross-region-analysis"
_LINE = re.compile(rf"^{PROGRESS} (?P<region>\S+): (?P<step>waiting|admitted|released)\b")


class InFlight(BaseModel):
    """A run's place on one region: waiting for a slot, or holding one."""

    flow_run_id: UUID
    flow_run_name: str
    region: str
    step: Literal["waiting", "admitted"]
    since: datetime
    position: int = 0  # among the region's waiting runs, 1 first; 0 when admitted


Held = dict[str, tuple[int, int]]  # a limit's name: (slots in use, limit)


async def ensure_limits(platform: Platform) -> Held:
    """Create or resize every region's limits to its cluster (idempotent, and safe
    when several runs of a new server do it at once); return each limit's use as read.
    """
    async with get_client() as client:
        existing = {
            gcl.name: (gcl.active_slots, gcl.limit)
            for gcl in await client.read_global_concurrency_limits(limit=200)
        }
        held: Held = {}
        for region in platform.regions:
            for name, limit in lanes.limits(region).items():
                held[name] = (existing.get(name, (0, limit))[0], limit)
                if name in existing and existing[name][1] == limit:
                    continue
                try:
                    await client.upsert_global_concurrency_limit_by_name(name, limit)
                except ObjectAlreadyExists:  # another run created it meanwhile
                    continue
        return held


async def pending(client: PrefectClient) -> list[FlowRun]:
    """The analysis runs submitted and not yet started (waiting for a work-pool worker)."""
    return await client.read_flow_runs(
        flow_filter=FlowFilter(name=FlowFilterName(any_=[ANALYSIS_FLOW])),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(
                type=FlowRunFilterStateType(any_=[StateType.SCHEDULED, StateType.PENDING])
            )
        ),
        sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        limit=200,
    )


async def queues(client: PrefectClient) -> dict[str, list[InFlight]]:
    """Each region's runs in flight, admitted first, then the waiting in arrival order."""
    running = await client.read_flow_runs(
        flow_filter=FlowFilter(name=FlowFilterName(any_=[ANALYSIS_FLOW])),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))
        ),
        limit=200,
    )
    if not running:
        return {}
    names = {r.id: r.name for r in running}
    logs = await client.read_logs(
        log_filter=LogFilter(
            flow_run_id=LogFilterFlowRunId(any_=list(names)),
            name=LogFilterName(any_=[progress_logger().name]),
        ),
        sort=LogSort.TIMESTAMP_ASC,
    )
    latest: dict[tuple[UUID, str], InFlight | None] = {}
    for log in logs:
        line = _LINE.match(log.message)
        if line is None or log.flow_run_id is None:
            continue
        step, region = line["step"], line["region"]
        key = (log.flow_run_id, region)
        latest[key] = (
            None
            if step == "released"
            else InFlight(
                flow_run_id=log.flow_run_id,
                flow_run_name=names[log.flow_run_id],
                region=region,
                step=step,
                since=log.timestamp,
            )
        )
    out: dict[str, list[InFlight]] = {}
    for entry in sorted(
        (e for e in latest.values() if e), key=lambda e: (e.step != "admitted", e.since)
    ):
        here = out.setdefault(entry.region, [])
        if entry.step == "waiting":
            entry.position = 1 + sum(e.step == "waiting" for e in here)
        here.append(entry)
    return out


def _say(line: str, now: bool = False) -> None:
    progress_logger().info(f"{PROGRESS} {line}")
    if now:  # read by the other waiting runs, at once (lines otherwise go in 2 s batches)
        APILogHandler().flush()


async def _say_if_waiting(names: list[str], region: str) -> bool:
    async with get_client() as client:
        for name in names:
            gcl = await client.read_global_concurrency_limit_by_name(name)
            if gcl.active_slots >= gcl.limit:
                waiting = [e for e in (await queues(client)).get(region, []) if e.position]
                _say(
                    f"{region}: waiting for a slot, {len(waiting)} ahead "
                    f"({name}: {gcl.active_slots} of {gcl.limit} in use)",
                    now=True,
                )
                return True
    return False


SAY_AFTER_S = 0.5  # a run not admitted by then, though the limits had room, says so


@asynccontextmanager
async def region_slot(
    region: Region, plan: RegionPlan, held: Held | None = None
) -> AsyncIterator[dict[str, float]]:
    """Hold ``plan``'s slot on ``region`` for the body (its limits made by
    ``ensure_limits``); yields {"waited_s": seconds}.

    With ``held`` (the limits' use as ``ensure_limits`` just read it) showing room, the
    slot is asked for at once, and the run says it waits only if it is still not
    admitted after ``SAY_AFTER_S``: two reads of the limits fewer per region and run.
    """
    names = lanes.names(region, plan)
    started = time.perf_counter()
    said: list[bool] = []
    later = None
    if held is not None and all(held[n][0] < held[n][1] for n in names if n in held):

        async def say_later() -> None:
            await asyncio.sleep(SAY_AFTER_S)
            said.append(await _say_if_waiting(names, region.name))

        later = asyncio.create_task(say_later())
    else:
        said.append(await _say_if_waiting(names, region.name))
    async with concurrency(names, lease_duration=LEASE_S, strict=True):
        if later is not None:
            later.cancel()
        waited = round(time.perf_counter() - started, 3)
        _say(f"{region.name}: admitted after {waited:.1f} s", now=any(said))
        try:
            yield {"waited_s": waited}
        finally:
            _say(f"{region.name}: released")


def yield_cpu(plan: Plan) -> bool:
    """Lower this process's CPU priority (every thread's) to ``large_run_nice`` when
    ``plan`` is not small in some region, on a machine whose work-pool flow runs share
    its cores (the setting is 0 elsewhere: a notebook's kernel or its own container is
    left alone). The slots bound how many analyses a cluster runs; this orders the
    orchestration's own CPU the same way: a one-month question first.

    Returns:
        Whether the priority was lowered.
    """
    nice = get_settings().large_run_nice
    if not nice or all(lanes.lane(r) == "small" for s in plan.selections for r in s.regions):
        return False
    if not os.path.isdir("/proc/self/task"):
        os.setpriority(os.PRIO_PROCESS, 0, nice)
        return True
    for tid in os.listdir("/proc/self/task"):  # Linux: a thread's niceness is its own
        try:
            os.setpriority(os.PRIO_PROCESS, int(tid), nice)
        except (PermissionError, ProcessLookupError):
            continue  # a thread that ended; raising one's niceness needs no rights
    return True
