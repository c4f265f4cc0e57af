"""Submit an analysis to its deployment (what the UI's Run button and
`prefect deployment run` do), optionally under an idempotency key.
"""

from __future__ import annotations

from typing import Any

from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment

from proxima.analysis.request import AnalysisRequest
from proxima.errors import ProximaError
from proxima.prefect_api import ANALYSIS_DEPLOYMENT


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

    Raises:
        ProximaError: the deployment is not registered with this Prefect.
    """
    from prefect.exceptions import ObjectNotFound

    parameters: dict[str, Any] = {"request": request.model_dump(mode="json")}
    try:
        run: FlowRun = run_deployment(  # type: ignore[assignment]
            name=deployment,
            parameters=parameters,
            idempotency_key=idempotency_key,
            timeout=wait_seconds,
            as_subflow=False,
        )
    except ObjectNotFound:
        raise ProximaError(
            f"no deployment {deployment} on this Prefect server: run `proxima deploy` "
            "(or `proxima analyze --here` to run in this process)"
        ) from None
    return run


def summary_of(run: FlowRun) -> dict[str, Any]:
    """The summary a completed analysis run returned (its persisted result).

    Raises:
        ProximaError: the run kept no result to read (persisted where this process
            cannot reach it, or removed since).
    """
    try:
        summary: dict[str, Any] = run.state.result()  # type: ignore[union-attr]
    except Exception as exc:
        raise ProximaError(
            f"the run {run.name} completed but its summary cannot be read: {exc}"
        ) from exc
    return summary
