"""Custom resource: OpenSearch fine-grained access control roles for Proxima.

Runs as the domain's master user (its execution role is the master user ARN) inside
the VPC. On Create/Update it defines three security roles and maps IAM roles to them;
the IAM policies of infra/aws decide which REST paths each may call, these roles which
indices and actions OpenSearch itself then allows:

* ``proxima_analyst``: read and point-in-time scans of the catalog indices;
* ``proxima_refresh``: everything on the catalog indices and the rebuild lease index,
  alias changes and ``_reindex``;
* ``proxima_worker``: everything on the catalog indices (bulk writes from Dask workers,
  and ``_reindex`` copies of unchanged documents in a rebuild).

``all_access`` is mapped to the administrators' role and to this function's role.
Nothing is removed on Delete: the domain is deleted or retained with its stack.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

API = "_plugins/_security/api"
PIT = ["indices:data/read/point_in_time/create", "indices:data/read/point_in_time/delete"]


def plan(props: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """The requests (method, path, body) that set the roles and their mappings."""
    alias, locks = props["CatalogAlias"], props["LocksIndex"]
    catalog = [f"{alias}*"]
    roles = {
        "proxima_analyst": {
            "cluster_permissions": ["cluster_composite_ops_ro", *PIT],
            "index_permissions": [{"index_patterns": catalog, "allowed_actions": ["read", *PIT]}],
        },
        "proxima_refresh": {
            "cluster_permissions": ["cluster_composite_ops", "cluster_monitor", *PIT],
            "index_permissions": [
                {"index_patterns": [*catalog, locks], "allowed_actions": ["indices_all"]}
            ],
        },
        "proxima_worker": {
            "cluster_permissions": ["cluster_composite_ops", *PIT],
            "index_permissions": [{"index_patterns": catalog, "allowed_actions": ["indices_all"]}],
        },
    }
    mappings = {
        "proxima_analyst": props["AnalystRoleArns"],
        "proxima_refresh": props["RefreshRoleArns"],
        "proxima_worker": props["WorkerRoleArns"],
        "all_access": props["AdminRoleArns"],
    }
    requests = [("PUT", f"/{API}/roles/{name}", body) for name, body in roles.items()]
    requests += [
        ("PUT", f"/{API}/rolesmapping/{name}", {"backend_roles": sorted(arns)})
        for name, arns in mappings.items()
    ]
    return requests


def _send(endpoint: str, method: str, path: str, body: dict[str, Any]) -> None:
    import boto3
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    session = boto3.session.Session()
    data = json.dumps(body).encode()
    request = AWSRequest(
        method=method,
        url=f"{endpoint}{path}",
        data=data,
        headers={"Content-Type": "application/json"},
    )
    SigV4Auth(session.get_credentials(), "es", session.region_name).add_auth(request)
    prepared = urllib.request.Request(
        request.url, data=data, headers=dict(request.headers), method=method
    )
    with urllib.request.urlopen(prepared, timeout=30) as response:  # https: the endpoint
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: HTTP {response.status}")


def handler(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    """The custom-resource provider's onEvent."""
    props = event["ResourceProperties"]
    if event["RequestType"] in ("Create", "Update"):
        endpoint = f"https://{props['DomainEndpoint']}"
        for method, path, body in plan(props):
            _send(endpoint, method, path, body)
    return {"PhysicalResourceId": "proxima-catalog-roles"}
