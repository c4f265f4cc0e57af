"""Submit an analysis to its deployment (what the UI's Run button and
`prefect deployment run` do), optionally under an idempotency key.
"""

from __future__ import annotations

import threading
import time
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
)
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import LogSort
from prefect.deployments import run_deployment

from proxima.analysis.request import AnalysisRequest

ANALYSIS_DEPLOYMENT = "cross-region-analysis/cross-region-analysis"
PROGRESS = "progress"  # the first word of the regional tasks' progress log lines


def submit_analysis(
    request: AnalysisRequest,
    idempotency_key: str | None = None,
    wait_seconds: float | None = 0,
    deployment: str = ANALYSIS_DEPLOYMENT,
) -> FlowRun:
    """Create a flow run of the analysis deployment.

    The request is validated here, before anything is submitted. With an idempotency
    key, submitting the same key again returns the existing run instead of a new one
    (Prefect deduplicates per deployment), so a retried submission never runs twice.

    Args:
        request: The validated analysis request.
        idempotency_key: Deduplication key (e.g. a notebook cell id or a job id).
        wait_seconds: How long to wait for the run to finish (0: return at once,
            None: wait until it ends).
        deployment: ``flow-name/deployment-name``.

    Returns:
        The flow run (in its final state when waited for).
    """
    parameters: dict[str, Any] = {"request": request.model_dump(mode="json")}
    run: FlowRun = run_deployment(  # type: ignore[assignment]
        name=deployment,
        parameters=parameters,
        idempotency_key=idempotency_key,
        timeout=wait_seconds,
        as_subflow=False,
    )
    return run


def watch_named(name: str, say: Callable[[str], None], stop: threading.Event) -> None:
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
    say: Callable[[str], None],
    poll_s: float = 1.0,
    stop: threading.Event | None = None,
) -> FlowRun:
    """Wait for a flow run to end (or ``stop``), saying each state change of it and of
    its regional subflows (``analyze-<region>``), and their progress lines.

    Returns:
        The flow run in its last state seen.
    """
    seen: dict[str, str] = {}
    said: set[UUID] = set()
    ending = False
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            children = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])
                )
            )
            for item in [run, *sorted(children, key=lambda r: r.name)]:
                label = "run" if item.id == run.id else item.name
                if item.state_name and seen.get(label) != item.state_name:
                    seen[label] = item.state_name
                    say(f"{label}: {item.state_name}")
            if children:
                logs = client.read_logs(
                    log_filter=LogFilter(
                        flow_run_id=LogFilterFlowRunId(any_=[c.id for c in children])
                    ),
                    sort=LogSort.TIMESTAMP_ASC,
                )
                for log in logs:
                    if log.id not in said and log.message.startswith(PROGRESS):
                        said.add(log.id)
                        say(log.message.removeprefix(PROGRESS).strip())
            if ending:
                return run
            # One more look once it ended: workers send their last log lines in batches.
            ending = bool((run.state and run.state.is_final()) or (stop and stop.is_set()))
            time.sleep(poll_s)
