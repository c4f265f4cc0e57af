"""`proxima aws-up` against emulated AWS: CloudFormation from moto's server (the stacks
as `cdk deploy` leaves them, their outputs named as the synthesized templates name
them) and a real, empty Prefect server (Prefect's own test harness) as the deployment's
Prefect. Everything after the CDK deploy runs: outputs, blocks with their datasets,
the ECS work pool, the deployments and the first runs."""

from __future__ import annotations

import json
import socket
from typing import Any

import boto3
import pytest

from proxima import aws_runbook, dask_tls
from proxima.analysis.request import AnalysisRequest
from proxima.errors import ConfigurationError
from tests import iam

ACCOUNT = "111122223333"
FAKE = {  # an output's value by its key: what a deployed stack would give
    "OpenSearchEndpoint": "https://vpc-proxima.us-east-1.es.amazonaws.com",
    "ResultsBucket": "proxima-results-abc",
    "CatalogReplicas": "0",
    "CatalogDomainArn": f"arn:aws:es:us-east-1:{ACCOUNT}:domain/proxima",
    "ClientVpcId": "vpc-0c11e47",
    "ClientRouteTableIds": "rtb-1,rtb-2",
    "PrefectClusterArn": f"arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/proxima-prefect",
    "FlowRunExecutionRoleArn": f"arn:aws:iam::{ACCOUNT}:role/proxima-exec",
    "AnalystRoleArn": f"arn:aws:iam::{ACCOUNT}:role/proxima-analyst",
    "RefreshRoleArn": f"arn:aws:iam::{ACCOUNT}:role/proxima-refresh",
    "FlowRunImage": f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/cdk-assets:abc",
    "FlowRunSubnets": "subnet-1,subnet-2",
    "FlowRunSecurityGroup": "sg-1",
    "StacApiUrl": "http://stac.proxima.internal:8090",
    "FsxMount": "/fsx",
    "FsxFileSystemId": "fs-0123456789abcdef0",
    "VpcPeeringId": "pcx-1",
    "WorkstationId": "i-0123456789abcdef0",
}
REQUEST = json.loads(
    (aws_runbook.PROJECT_ROOT / "examples" / "requests" / "era5-january-box.json").read_text()
)


def _value(region: str, key: str) -> str:
    if key == "SchedulerAddress":
        return f"tls://scheduler.{region}.proxima.internal:8786"
    if key == "DashboardUrl":
        return f"http://scheduler.{region}.proxima.internal:8787/status"
    if key == "EcsWorkerService":
        return f"proxima-{region}/proxima-{region}-workers"
    if key == "Workers":
        return "4"
    if key == "DataRepositoryUri":
        infra = aws_runbook.Infra.load()
        (mine,) = [r for r in infra.data_regions if r.region == region]
        return ",".join(f"s3://{d.bucket}" for d in mine.datasets)
    return FAKE[key]


@pytest.fixture(scope="module")
def aws():
    """moto's server, a CloudFormation client factory for it, and the stacks created
    with the synthesized templates' output names."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()

    def cloudformation(region: str) -> Any:
        return boto3.client(
            "cloudformation",
            region_name=region,
            endpoint_url=f"http://127.0.0.1:{port}",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    try:
        yield cloudformation
    finally:
        server.stop()


@pytest.fixture(scope="module")
def created(aws) -> dict[str, dict[str, str]]:
    """The stacks in moto, as `cdk deploy` leaves them; {stack: outputs}."""
    return _create_stacks(aws)


def _create_stacks(cloudformation: Any) -> dict[str, dict[str, str]]:
    created = {}
    for name, (region, template) in iam.synthesized().items():
        outputs = {k: _value(region, k) for k in template["Outputs"]}
        body = {
            "Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
            "Outputs": {k: {"Value": v} for k, v in outputs.items()},
        }
        cloudformation(region).create_stack(StackName=name, TemplateBody=json.dumps(body))
        created[name] = outputs
    return created


def test_a_stack_that_is_not_there_is_named(aws):
    infra = aws_runbook.Infra.load().model_copy(update={"project": "undeployed"})
    with pytest.raises(ConfigurationError, match="stack undeployed-client in us-east-1"):
        aws_runbook.stack_outputs(infra, aws)


@pytest.mark.filterwarnings("ignore:Tried to parse")
def test_the_data_stacks_are_deployed_with_the_client_stacks_outputs(aws, created, tmp_path):
    """`cdk deploy` (a stand-in that records its arguments) for the client stack first,
    then each data region's, given the client's outputs as its parameters."""
    import stat

    calls = tmp_path / "calls"
    cdk = tmp_path / "cdk"
    cdk.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    cdk.chmod(cdk.stat().st_mode | stat.S_IEXEC)
    infra = aws_runbook.Infra.load()
    admin = f"arn:aws:iam::{ACCOUNT}:role/admins"
    aws_runbook.cdk_deploy(infra, admin, lambda: aws_runbook.stack_outputs(infra, aws), str(cdk))
    first, *data = calls.read_text().splitlines()
    never = "--require-approval never"
    assert first == f"deploy proxima-client {never} --parameters CatalogAdminRoleArn={admin}"
    client = created["proxima-client"]
    assert data == [
        f"deploy proxima-data-{r.region} {never} --parameters ClientVpcId={client['ClientVpcId']}"
        f" --parameters ClientRouteTableIds={client['ClientRouteTableIds']}"
        f" --parameters CatalogDomainArn={client['CatalogDomainArn']}"
        for r in infra.data_regions
    ]


def test_aws_up_takes_the_stacks_to_a_first_analysis(aws, created, tmp_path, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness
    from prefect_aws.workers.ecs_worker import ECSWorker

    from blocks import DataRegion

    infra = aws_runbook.Infra.load()
    files = dask_tls.ensure_certificates(tmp_path / "tls", {"cluster": []})
    said: list[str] = []
    with prefect_test_harness(server_startup_timeout=120):
        # `prefect deploy` runs as a subprocess: it reads the environment, as a user's does
        monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())
        runs = aws_runbook.up(
            infra, files.client(), aws, said.append, deploy=False,
            request=AnalysisRequest.model_validate(REQUEST),
        )  # fmt: skip
        # the client stack's ECS worker makes the pool with prefect-aws's defaults when it
        # first polls; a second run gives it the stacks' template again (and is idempotent)
        aws_runbook.ensure_work_pool(infra.pool, ECSWorker.get_default_base_job_template())
        aws_runbook.up(infra, files.client(), aws, said.append, deploy=False)
        with get_client(sync_client=True) as client:
            pool = client.read_work_pool(infra.pool)
            deployments = {d.name: d for d in client.read_deployments()}
            started = [client.read_flow_run(r.id) for r in runs]
        regions = {r.region: DataRegion.load(r.region) for r in infra.data_regions}

    # every data region's block has its datasets (the refresh scans by them) and outputs
    for region in infra.data_regions:
        block = regions[region.region]
        assert block.datasets == [d.model_dump() for d in region.datasets]
        stack = created[f"proxima-data-{region.region}"]
        assert block.scheduler_address == stack["SchedulerAddress"]
        assert block.ecs_worker_service == stack["EcsWorkerService"] and block.workers == 4
        assert block.tls_client_cert == files.cert("client").read_text()
    # the pool: the stacks' resources, the second run's template over a stale one
    variables = pool.base_job_template["variables"]["properties"]
    defaults = {k: v.get("default") for k, v in variables.items()}
    assert pool.type == "ecs"
    assert defaults["cluster"] == FAKE["PrefectClusterArn"]
    assert defaults["task_role_arn"] == FAKE["AnalystRoleArn"]
    assert defaults["network_configuration"]["subnets"] == ["subnet-1", "subnet-2"]
    # every deployment of prefect.yaml, on the pool, its code from the image
    import yaml

    local = yaml.safe_load((aws_runbook.PROJECT_ROOT / "prefect.yaml").read_text())
    assert set(deployments) == {d["name"] for d in local["deployments"]}
    for name, deployment in deployments.items():
        assert deployment.work_pool_name == infra.pool, name
        assert deployment.pull_steps == [
            {"prefect.deployments.steps.set_working_directory": {"directory": "/opt/proxima"}}
        ]
        assert deployment.parameter_openapi_schema["additionalProperties"] is False
        refresh = name in aws_runbook.REFRESH
        assert (deployment.job_variables.get("task_role_arn") == FAKE["RefreshRoleArn"]) is refresh
    # the first runs wait for the ECS worker; the request arrives as a request, not a string
    refresh_run, analysis_run = started
    assert refresh_run.deployment_id == deployments["catalog-refresh"].id
    assert analysis_run.deployment_id == deployments["cross-region-analysis"].id
    assert analysis_run.parameters["request"]["selection"]["bbox"] == REQUEST["selection"]["bbox"]
    assert refresh_run.state.is_scheduled() and analysis_run.state.is_scheduled()
    assert any("us-west-2 (1 dataset(s))" in line for line in said), said
