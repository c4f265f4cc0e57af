"""Seal the deployments' parameter forms after `prefect deploy`.

Prefect builds each deployment's JSON schema from the flow's signature and validates
new runs' parameters against it, but the schema it writes allows any extra top-level
parameter. The run then dies before the flow starts (SignatureMismatchError: the state
is *Crashed*, the reason only in the worker's log). Sealed, the API refuses such a run
at once (409) with the parameter named.
"""

from __future__ import annotations

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import DeploymentUpdate
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags

PROXIMA_TAG = "proxima"


def seal_parameter_schemas() -> list[str]:
    """Forbid parameters the flows do not take on every Proxima deployment.

    Returns:
        The ``flow/deployment`` names sealed.
    """
    sealed = []
    with get_client(sync_client=True) as client:
        mine = DeploymentFilter(tags=DeploymentFilterTags(all_=[PROXIMA_TAG]))
        for deployment in client.read_deployments(deployment_filter=mine):
            schema = dict(deployment.parameter_openapi_schema or {})
            if schema.get("additionalProperties") is not False:
                schema["additionalProperties"] = False
                client.update_deployment(
                    deployment.id, DeploymentUpdate(parameter_openapi_schema=schema)
                )
            flow = client.read_flow(deployment.flow_id)
            sealed.append(f"{flow.name}/{deployment.name}")
    return sorted(sealed)
