"""Following a run as it goes: the state of each regional subflow and the progress
lines their tasks log (blocks done, bytes read), for the CLI and notebooks.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterName,
    FlowRunFilterParentFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
    LogFilterTimestamp,
)
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import LogSort
from prefect.logging.handlers import APILogHandler

PROGRESS = "progress"  # the first word of the regional tasks' progress log lines
EVERY_S = 2.0
Say = Callable[[str], None]


def progress_logger() -> logging.Logger:
    """A logger whose lines always reach the API (a run's ``prefect`` loggers obey
    ``PREFECT_LOGGING_LEVEL``, which a quiet setup puts above INFO).
    """
    logger = logging.getLogger("proxima.progress")
    if not any(isinstance(h, APILogHandler) for h in logger.handlers):
        logger.addHandler(APILogHandler())
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


def reporter(region: str, unit: str) -> Callable[[int, int, int], None]:
    """A callback logging ``done/total <unit>, bytes read`` at most every few seconds
    (and at the end), from a task of ``region``, to the run's logs.
    """
    logger = progress_logger()
    last = [0.0]

    def report(done: int, total: int, read: int) -> None:
        if done == total or time.monotonic() - last[0] >= EVERY_S:
            last[0] = time.monotonic()
            logger.info(f"{PROGRESS} {region}: {done}/{total} {unit}, {read / 1e6:.1f} MB read")
        if done == total:
            # Logs travel in batches every 2 s: the last line must reach the API before
            # the task ends, or a watcher that stops with the run never sees it.
            APILogHandler().flush()

    return report


def watch_named(name: str, say: Say, stop: threading.Event) -> None:
    """Follow the flow run called ``name`` (once it exists) until it ends or ``stop``."""
    with get_client(sync_client=True) as client:
        while not stop.is_set():
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name]))
            )
            if runs:
                watch_run(runs[0].id, say, stop=stop)
                return
            stop.wait(0.5)


def watch_run(
    flow_run_id: UUID,
    say: Say,
    poll_s: float = 1.0,
    stop: threading.Event | None = None,
) -> FlowRun:
    """Wait for a flow run to end (or ``stop``), saying each state change of it and of
    its regional subflows (by their flows' names, ``analyze-<region>``), and their
    progress lines.

    Returns:
        The flow run in its last state seen.
    """
    said: set[UUID] = set()  # progress log lines
    states_said: set[UUID] = set()
    flow_names: dict[UUID, str] = {}  # a subflow is known by its flow's name
    since: Any = None  # the newest log seen: each poll reads only what came after
    ending = False
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            children = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])
                )
            )
            # every state the run and its subflows went through, in order (a warm run,
            # or a region with nothing to do, passes through Running between two polls)
            for child in children:
                if child.flow_id not in flow_names:
                    flow_names[child.flow_id] = client.read_flow(child.flow_id).name
            subflows = sorted((flow_names[c.flow_id], c.id) for c in children)
            for label, run_id in [("run", flow_run_id), *subflows]:
                history = client.read_flow_run_states(run_id)
                for state in sorted(history, key=lambda s: s.timestamp):
                    if state.id not in states_said:
                        states_said.add(state.id)
                        say(f"{label}: {state.name}")
            # the run's own lines too: it says when it waits for a region's slot
            logs = client.read_logs(
                log_filter=LogFilter(
                    flow_run_id=LogFilterFlowRunId(any_=[flow_run_id, *(c.id for c in children)]),
                    timestamp=LogFilterTimestamp(after_=since),
                ),
                sort=LogSort.TIMESTAMP_ASC,
            )
            for log in logs:
                since = max(since, log.timestamp) if since else log.timestamp
                if log.id not in said and log.message.startswith(PROGRESS):
                    said.add(log.id)
                    say(log.message.removeprefix(PROGRESS).strip())
            if ending:
                return run
            # One more look once it ended, at once: a regional task flushes its last
            # progress line before it ends, so the lines are in by the run's end.
            ending = bool((run.state and run.state.is_final()) or (stop and stop.is_set()))
            if ending:
                continue
            if stop:
                stop.wait(poll_s)  # set when the caller's flow returns: no interval to sit out
            else:
                time.sleep(poll_s)


def wait_run(flow_run_id: UUID) -> FlowRun:
    """Wait for a flow run to end, told by the server's event stream: polling its state
    every 0.25 s from each waiting client was a third of the server's CPU under load.
    """
    from prefect.flow_runs import wait_for_flow_run

    run: FlowRun = asyncio.run(wait_for_flow_run(flow_run_id, timeout=None))
    return run


def run_watched(flow: Any, say: Say, **parameters: Any) -> Any:
    """Run ``flow`` in this process, telling ``say`` its regions' states and progress."""
    name = f"{flow.name}-{uuid.uuid4().hex[:10]}"
    named = flow.with_options(flow_run_name=name)
    stop = threading.Event()
    # The thread sees the caller's Prefect settings (context variables) too.
    context = contextvars.copy_context()
    watcher = threading.Thread(target=context.run, args=(watch_named, name, say, stop), daemon=True)
    watcher.start()
    try:
        if asyncio.iscoroutinefunction(flow.fn):
            return asyncio.run(named(**parameters))
        return named(**parameters)
    finally:
        stop.set()
        watcher.join(timeout=10)
