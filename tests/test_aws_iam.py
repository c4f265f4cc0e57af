"""infra/aws's IAM is derived from the calls the code makes: the workflows run on the
local stack with every OpenSearch and AWS call recorded (proxima/call_log.py), and each
call must be allowed by the synthesized policy of the role that makes it on AWS:

* the catalog-refresh flow's own process: the client stack's RefreshRole;
* the analysis flow's own process (and the notebook client): its AnalystRole;
* a regional Dask worker (imports, header extraction, catalog writes): the task role of
  that data region's Worker task definition.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.stub import Stubber

from flows.catalog_refresh import catalog_refresh
from flows.cross_region_analysis import analyze
from proxima import call_log, repository
from proxima.analysis.request import AnalysisRequest
from proxima.platform import from_stack
from proxima.stack.services import calls_dir
from tests import iam

REQUEST = {
    "selection": {
        "variable": "air_temperature",
        "dataset": "era5",
        "start": "2020-01-01",
        "end": "2020-01-31",
    },
    "reduction": "mean",
    "over": "time",
    "output_name": "iam-calls",
    "overwrite": True,
}


@pytest.fixture(scope="module")
def stacks() -> dict[str, tuple[str, dict[str, Any]]]:
    return iam.synthesized()


@pytest.fixture(scope="module")
def roles(stacks) -> dict[str, iam.Role]:
    """Who makes calls on AWS: 'refresh', 'analyst' (and 'stac', 'workstation' with its
    grants), and 'worker:<region>'."""
    region, client = stacks["proxima-client"]
    found = {
        "refresh": iam.role_named("proxima-client", client, "RefreshRole", region),
        "analyst": iam.role_named("proxima-client", client, "AnalystRole", region),
        "stac": iam.role_named("proxima-client", client, "StacRole", region),
        "workstation": iam.role_named("proxima-client", client, "WorkstationRole", region),
    }
    for name, (region, template) in stacks.items():
        if name.startswith("proxima-data-"):
            found[f"worker:{region}"] = iam.task_role(name, template, "Worker", region)
    return found


@pytest.fixture(scope="module")
def workflow_calls(data, catalog, settings, config) -> list[tuple[str, dict[str, Any]]]:
    """(who, call) for every call of a refresh, a full rebuild and an analysis."""
    assert config.record_calls, "tests/stack.yaml must set record_calls: true"
    directory = calls_dir(settings)
    started = time.time()
    # a changed file per region: its workers read it and bulk-write its document; the
    # rebuild's workers copy the unchanged documents inside OpenSearch
    for region in config.regions:
        os.utime(next(settings.region_root(region.name).rglob("*.nc")))
    with call_log.recording(directory):
        catalog_refresh()
        catalog_refresh(full_rebuild=True)
        analysis_started = time.time()
        analyze(AnalysisRequest.model_validate(REQUEST))
    # this process's calls and the regional workers'; not those of a flow run another
    # process makes meanwhile (a scheduled refresh of the test stack)
    calls = [
        c for c in call_log.read(directory, since=started) if c["region"] or c["pid"] == os.getpid()
    ]

    def who(call: dict[str, Any]) -> str:
        if call["region"]:
            return f"worker:{call['region']}"
        return "refresh" if call["t"] < analysis_started else "analyst"

    made = [(who(c), c) for c in calls]
    assert any(w.startswith("worker:") for w, _ in made), (
        "the regional Dask workers recorded nothing: restart the test stack so they "
        "run with tests/stack.yaml's record_calls"
    )
    return made


def _denied(
    roles: dict[str, iam.Role], made: list[tuple[str, dict[str, Any]]]
) -> list[tuple[str, str, str]]:
    denied = set()
    for who, call in made:
        role = roles[who]
        region = who.split(":", 1)[1] if ":" in who else "us-east-1"
        for action, resource in iam.required(call, region):
            if not role.allows(action, resource):
                denied.add((who, action, resource))
    return sorted(denied)


def test_every_catalog_call_of_the_workflows_is_allowed_to_its_role(roles, workflow_calls):
    kinds = {(who, c["action"], c["resource"]) for who, c in workflow_calls}
    assert any(w == "analyst" and "_search" in r for w, _, r in kinds)  # what was recorded
    assert any(w.startswith("worker:") and r == "/_bulk" for w, _, r in kinds)
    assert any(w.startswith("worker:") and r == "/_reindex" for w, _, r in kinds)
    assert not _denied(roles, workflow_calls)


def test_removing_a_grant_the_calls_need_is_caught(roles, workflow_calls):
    for who in [w for w in roles if w.startswith("worker:")]:
        crippled = roles | {who: roles[who].without("_bulk")}
        assert any(
            action == "es:ESHttpPost" and resource.endswith("/_bulk")
            for _, action, resource in _denied(crippled, workflow_calls)
        )
    crippled = roles | {"analyst": iam.Role("none", "none", [], {})}
    assert {w for w, _, _ in _denied(crippled, workflow_calls)} == {"analyst"}


def test_every_catalog_call_of_the_stac_api_is_allowed_to_its_role(roles, catalog, stack, settings):
    """The STAC service's searches, item reads, collection aggregations and the
    intake-esm rows, recorded by its process on the local stack, against StacRole.
    """
    import httpx

    from proxima.stack import manager

    pid = {r.name: r.pid for r in manager.status(settings, stack)}["stac-api"]
    started = time.time()
    url = stack.stac.url
    page = httpx.post(
        f"{url}/search",
        json={
            "limit": 2,
            "filter": {"op": "=", "args": [{"property": "cmip6:experiment_id"}, "ssp585"]},
        },
    ).json()
    item = page["features"][0]
    for path in (
        "/collections",
        f"/collections/{item['collection']}/items/{item['id']}",
        f"/collections/{item['collection']}/items?limit=1",
        "/intake-esm/proxima.csv",
    ):
        assert httpx.get(f"{url}{path}", timeout=60).is_success, path
    calls = [c for c in call_log.read(calls_dir(settings), since=started) if c["pid"] == pid]
    assert {c["resource"].rsplit("/", 1)[-1] for c in calls} >= {"_search"}
    made = [("stac", c) for c in calls]
    assert not _denied(roles, made)
    assert _denied(roles | {"stac": iam.Role("none", "none", [], {})}, made)


def test_the_fsx_import_of_a_region_is_allowed_to_its_workers(roles, settings, config, tmp_path):
    region = from_stack(config, settings).region("us-east-1")
    region = region.model_copy(update={"fsx_file_system_id": iam.FILE_SYSTEM_ID})
    import boto3

    fsx = boto3.client(
        "fsx", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    task = {
        "TaskId": "task-0123456789abcdef0",
        "Lifecycle": "SUCCEEDED",
        "Type": "IMPORT_METADATA_FROM_REPOSITORY",
        "CreationTime": datetime(2026, 1, 1, tzinfo=UTC),
    }
    with Stubber(fsx) as stub, call_log.recording(tmp_path):
        stub.add_response("create_data_repository_task", {"DataRepositoryTask": task})
        stub.add_response("describe_data_repository_tasks", {"DataRepositoryTasks": [task]})
        repository.fsx_import(region, ["/era5-pds"], poll_s=0, fsx_client=fsx)
    made = [("worker:us-east-1", c) for c in call_log.read(tmp_path)]
    assert {c["action"] for _, c in made} == {
        "fsx:CreateDataRepositoryTask",
        "fsx:DescribeDataRepositoryTasks",
    }
    assert not _denied(roles, made)


@pytest.mark.parametrize("who", ["analyst", "refresh", "workstation"])
def test_a_run_may_wake_each_regions_workers_and_only_those(roles, settings, config, tmp_path, who):
    """The minimal profile scales each region's worker service to none when idle; an
    analysis or a refresh sets it back to the region's worker count (proxima/ecs.py),
    and does nothing when the workers are up."""
    import boto3

    from proxima import ecs

    made = []
    for name in ("us-east-1", "us-west-2"):
        region = (
            from_stack(config, settings)
            .region(name)
            .model_copy(
                update={
                    "ecs_worker_service": f"proxima-{name}/proxima-{name}-workers",
                    "workers": 4,
                }
            )
        )
        client = boto3.client(
            "ecs", region_name=name, aws_access_key_id="x", aws_secret_access_key="x"
        )
        service = {"serviceName": f"proxima-{name}-workers", "desiredCount": 0}
        with Stubber(client) as stub, call_log.recording(tmp_path / name):
            stub.add_response("describe_services", {"services": [service]})
            stub.add_response(
                "update_service",
                {"service": service | {"desiredCount": 4}},
                {"cluster": f"proxima-{name}", "service": f"proxima-{name}-workers",
                 "desiredCount": 4},
            )  # fmt: skip
            assert ecs.wake_workers(region, client)
            stub.add_response("describe_services", {"services": [service | {"desiredCount": 4}]})
            assert not ecs.wake_workers(region, client)  # already up: no update
            stub.assert_no_pending_responses()
        made += [(who, c) for c in call_log.read(tmp_path / name)]
    assert [c["action"] for _, c in made].count("ecs:UpdateService") == 2
    assert not _denied(roles, made)
    elsewhere = json.loads(made[0][1]["resource"]) | {"cluster": "other", "services": ["other"]}
    assert _denied(roles, [(who, made[0][1] | {"resource": json.dumps(elsewhere)})])


# What prefect-aws's ECS worker calls to start and watch a flow run (it cannot run here
# without AWS, so this list stands in for its recording), each without a condition
# the call cannot satisfy: the task-definition and network lookups.
PREFECT_ECS_WORKER = [
    ("ecs:RegisterTaskDefinition", "*"),
    ("ecs:DescribeTaskDefinition", "*"),
    ("ecs:DeregisterTaskDefinition", "*"),
    ("ec2:DescribeVpcs", "*"),
    ("ec2:DescribeSubnets", "*"),
    ("ec2:DescribeSecurityGroups", "*"),
]


def test_the_prefect_worker_may_register_task_definitions_and_look_up_the_network(stacks):
    region, client = stacks["proxima-client"]
    worker = iam.task_role("proxima-client", client, "worker", region)
    assert [c for c in PREFECT_ECS_WORKER if not worker.allows(*c)] == []
    # RunTask stays conditioned on the one cluster (the evaluator never counts it)
    assert not worker.allows("ecs:RunTask", "*")
    assert any(
        "ecs:RunTask" in str(s.get("Action")) and "ecs:cluster" in str(s.get("Condition"))
        for s in worker.statements
    )


def test_fine_grained_access_maps_every_role_that_calls_the_catalog(stacks, roles):
    """OpenSearch's own roles (FGAC) must map each IAM role the calls come from, or
    every request of that role gets 403 whatever its IAM policy allows.
    """
    import importlib.util
    from pathlib import Path

    region, client = stacks["proxima-client"]
    (mapping,) = [
        r["Properties"]
        for r in client["Resources"].values()
        if r["Type"] == "AWS::CloudFormation::CustomResource"
    ]
    refs = roles["analyst"].refs
    resolved = {
        key: [iam.resolve(v, refs) for v in value] if isinstance(value, list) else value
        for key, value in mapping.items()
    }
    assert resolved["AnalystRoleArns"] == [
        f"<{roles['analyst'].logical_id}.Arn>",
        f"<{roles['stac'].logical_id}.Arn>",
        f"<{roles['workstation'].logical_id}.Arn>",
    ]
    assert resolved["RefreshRoleArns"] == [f"<{roles['refresh'].logical_id}.Arn>"]
    for name, (data_region, template) in stacks.items():
        if name.startswith("proxima-data-"):
            worker = roles[f"worker:{data_region}"]
            role_name = template["Resources"][worker.logical_id]["Properties"]["RoleName"]
            assert any(arn.endswith(f":role/{role_name}") for arn in resolved["WorkerRoleArns"])
    # the domain's master user is the mapping function's role, and it may make its calls
    (domain,) = [
        r for r in client["Resources"].values() if r["Type"] == "AWS::OpenSearchService::Domain"
    ]
    master = domain["Properties"]["AdvancedSecurityOptions"]["MasterUserOptions"]["MasterUserARN"]
    mapper = iam.role("proxima-client", client, master["Fn::GetAtt"][0], region)
    spec = importlib.util.spec_from_file_location(
        "catalog_roles_handler",
        Path(iam.__file__).resolve().parents[1]
        / "infra/aws/proxima_infra/catalog_roles_handler/index.py",
    )
    handler = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(handler)
    planned = handler.plan(resolved)
    assert {p for _, p, _ in planned} >= {
        "/_plugins/_security/api/rolesmapping/proxima_analyst",
        "/_plugins/_security/api/rolesmapping/proxima_refresh",
        "/_plugins/_security/api/rolesmapping/proxima_worker",
        "/_plugins/_security/api/rolesmapping/all_access",
    }
    for method, path, _ in planned:
        assert mapper.allows(f"es:ESHttp{method.title()}", f"{iam.DOMAIN_ARN}{path}"), path
    analyst = dict((p, b) for _, p, b in planned)["/_plugins/_security/api/roles/proxima_analyst"]
    assert analyst["index_permissions"][0]["index_patterns"] == ["proxima-assets*"]
