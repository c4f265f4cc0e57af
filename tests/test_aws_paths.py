"""AWS code paths that cannot run here, checked by what they send: SigV4-signed
OpenSearch requests (through a recording proxy in front of the real node), block
documents from stack outputs, and a dask-cloudprovider cluster on existing resources."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from proxima import dask_tls, opensearch
from proxima.aws_outputs import DaskClusterSpec, blocks_from_outputs, read_outputs
from proxima.errors import ConfigurationError
from tests import iam


@pytest.mark.reliability
def test_sigv4_requests_are_signed(stack):
    from tests.faultproxy import FaultProxy

    with FaultProxy(stack.opensearch.endpoint, fail_first=0) as proxy:
        conn = opensearch.CatalogConnection(
            hosts=[proxy.url],
            auth="sigv4",
            aws_region="eu-west-1",
            aws_access_key_id="AKIDEXAMPLE",
            aws_secret_access_key="secret",
        )
        client = opensearch.connect_catalog(conn)
        assert client.info()["version"]["number"].startswith("2.19")
    auth = proxy.headers[-1]["authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/es/aws4_request" in auth and "Signature=" in auth
    assert proxy.headers[-1]["x-amz-date"]


@pytest.mark.reliability
def test_basic_auth_is_sent(stack):
    from tests.faultproxy import FaultProxy

    with FaultProxy(stack.opensearch.endpoint, fail_first=0) as proxy:
        conn = opensearch.CatalogConnection(
            hosts=[proxy.url], auth="basic", username="reader", password="s3cret"
        )
        opensearch.connect_catalog(conn).info()
    assert proxy.headers[-1]["authorization"] == "Basic cmVhZGVyOnMzY3JldA=="


OUTPUTS = {
    "proxima-client": {
        "OpenSearchEndpoint": "https://vpc-proxima.us-east-1.es.amazonaws.com",
        "ResultsBucket": "proxima-results-abc",
        "CatalogReplicas": "1",
        "ClientVpcId": "vpc-1",
        "PrefectClusterArn": "arn:aws:ecs:us-east-1:111122223333:cluster/proxima-prefect",
        "FlowRunExecutionRoleArn": "arn:aws:iam::111122223333:role/exec",
        "AnalystRoleArn": "arn:aws:iam::111122223333:role/analyst",
        "RefreshRoleArn": "arn:aws:iam::111122223333:role/refresh",
        "FlowRunImage": "111122223333.dkr.ecr.us-east-1.amazonaws.com/cdk-assets:abc",
        "FlowRunSubnets": "subnet-1,subnet-2",
        "FlowRunSecurityGroup": "sg-1",
    },
    "proxima-data-us-west-2": {
        "SchedulerAddress": "tls://scheduler.us-west-2.proxima.internal:8786",
        "FsxMount": "/fsx",
        "FsxFileSystemId": "fs-0123456789abcdef0",
        "DataRepositoryUri": "s3://cmip6-pds",
        "EcsWorkerService": "proxima-us-west-2/proxima-us-west-2-workers",
        "Workers": "4",
    },
}


DATASETS = {
    "us-west-2": [
        {"name": "cmip6", "kind": "cmip6", "bucket": "cmip6-pds", "start": "1850-01",
         "end": "2100-12", "variables": ["tas"]}
    ]
}  # fmt: skip


def test_blocks_from_stack_outputs(tmp_path):
    with pytest.raises(ConfigurationError, match="TLS-only"):
        # a block without the client certificate cannot connect
        blocks_from_outputs(OUTPUTS, datasets=DATASETS)
    with pytest.raises(ConfigurationError, match="no datasets for us-west-2"):
        blocks_from_outputs(OUTPUTS)  # its refresh would scan nothing
    files = dask_tls.ensure_certificates(tmp_path / "tls", {"cluster": []})
    out = blocks_from_outputs(OUTPUTS, tls=files.client(), datasets=DATASETS)
    assert out["regions"] == [
        {
            "region": "us-west-2",
            "scheduler_address": "tls://scheduler.us-west-2.proxima.internal:8786",
            "dashboard_url": None,
            "mount": "/fsx",
            "fsx_file_system_id": "fs-0123456789abcdef0",
            "data_repository_uri": "s3://cmip6-pds",
            "ecs_worker_service": "proxima-us-west-2/proxima-us-west-2-workers",
            "workers": 4,
            "datasets": DATASETS["us-west-2"],
            "tls_ca_file": files.ca.read_text(),
            "tls_client_cert": files.cert("client").read_text(),
            "tls_client_key": files.key("client").read_text(),
        }
    ]
    assert out["catalog"] == {
        "hosts": [OUTPUTS["proxima-client"]["OpenSearchEndpoint"]],
        "auth": "sigv4",
        "aws_region": "us-east-1",
        "replicas": 1,
    }
    assert out["results"] == {"bucket": "proxima-results-abc"}
    from blocks import DataRegion, OpenSearchCatalog, ResultsStore

    DataRegion(**out["regions"][0])  # the fields are exactly the blocks' own
    OpenSearchCatalog(**out["catalog"])
    ResultsStore(**out["results"])


def test_the_outputs_of_several_deploy_commands_are_merged(tmp_path):
    """`cdk deploy --outputs-file` writes only its own command's stacks: the client's
    and the data regions' files together are the whole platform."""
    client, data = tmp_path / "outputs-client.json", tmp_path / "outputs-data.json"
    client.write_text(json.dumps({"proxima-client": OUTPUTS["proxima-client"]}))
    data.write_text(json.dumps({"proxima-data-us-west-2": OUTPUTS["proxima-data-us-west-2"]}))
    assert read_outputs([client, data]) == OUTPUTS
    with pytest.raises(ConfigurationError, match="no stack proxima-client"):
        blocks_from_outputs(read_outputs([data]), datasets=DATASETS)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"proxima-client": {"ResultsBucket": "another"}}))
    with pytest.raises(ConfigurationError, match="other outputs"):
        read_outputs([client, other])


def test_the_ecs_dask_commands_run_a_tls_cluster_that_only_the_client_block_reaches(tmp_path):
    """The scheduler and worker commands of the synthesized task definitions, run here
    with the secret ECS would inject, form a TLS cluster; the DataRegion block's
    credentials reach it and a client without a certificate is refused.
    """
    import shutil
    import socket
    import subprocess
    import sys

    from distributed import Client

    from proxima.platform.blocks import region_from_block

    _, template = iam.synthesized()["proxima-data-us-east-1"]
    commands = {
        c["Name"]: c["Command"]
        for res in template["Resources"].values()
        if res["Type"] == "AWS::ECS::TaskDefinition"
        for c in res["Properties"]["ContainerDefinitions"]
    }
    files = dask_tls.ensure_certificates(
        tmp_path / "ca", {"cluster": ["127.0.0.1", "scheduler.us-east-1.proxima.internal"]}
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def local(command: list[str], name: str) -> list[str]:
        script = (
            command[2]
            .replace("/tmp/dask-tls", str(tmp_path / f"tls-{name}"))
            .replace("scheduler.us-east-1.proxima.internal:8786", f"127.0.0.1:{port}")
            .replace("--port 8786", f"--port {port} --host 127.0.0.1")
            .replace("--dashboard-address :8787", "--dashboard-address 127.0.0.1:0")
        )
        return [*command[:2], script]

    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PROXIMA_DASK_TLS": dask_tls.secret_text(files, "cluster"),
    }
    started = [
        subprocess.Popen(local(commands[name], name), env=env, cwd=tmp_path)
        for name in ("Scheduler", "Worker")
    ]
    try:
        outputs = {
            **OUTPUTS,
            "proxima-data-us-west-2": {
                **OUTPUTS["proxima-data-us-west-2"],
                "SchedulerAddress": f"tls://127.0.0.1:{port}",
            },
        }
        from blocks import DataRegion

        fields = blocks_from_outputs(outputs, tls=files.client(), datasets=DATASETS)["regions"][0]
        region = region_from_block(DataRegion(**fields))
        with Client(
            region.scheduler_address, security=region.dask_security(), timeout=60
        ) as client:
            client.wait_for_workers(1, timeout=60)
            assert client.submit(sum, [1, 2]).result() == 3
        with pytest.raises(Exception):  # noqa: B017 - refused at the TLS handshake or after
            Client(f"tls://127.0.0.1:{port}", timeout=5)
    finally:
        for proc in started:
            proc.terminate()
            proc.wait(30)
        shutil.rmtree(tmp_path / "tls-Scheduler", ignore_errors=True)
    assert (tmp_path / "tls-Worker" / "key.pem").stat().st_mode & 0o077 == 0


def test_the_ecs_work_pool_template_runs_flows_on_the_stacks_resources():
    from prefect_aws.workers.ecs_worker import ECSJobConfiguration

    from proxima.aws_outputs import ecs_work_pool_template

    pool = ecs_work_pool_template(OUTPUTS)
    assert pool["refresh_role_arn"] == OUTPUTS["proxima-client"]["RefreshRoleArn"]
    defaults = {k: v.get("default") for k, v in pool["template"]["variables"]["properties"].items()}
    assert defaults["cluster"] == OUTPUTS["proxima-client"]["PrefectClusterArn"]
    assert defaults["task_role_arn"] == OUTPUTS["proxima-client"]["AnalystRoleArn"]
    assert defaults["network_configuration"]["subnets"] == ["subnet-1", "subnet-2"]
    assert defaults["network_configuration"]["assignPublicIp"] == "DISABLED"
    # every output the template needs comes from the synthesized client stack
    _, client = iam.synthesized()["proxima-client"]
    for output in (
        "PrefectClusterArn",
        "FlowRunExecutionRoleArn",
        "AnalystRoleArn",
        "RefreshRoleArn",
        "FlowRunImage",
        "FlowRunSubnets",
        "FlowRunSecurityGroup",
        "ClientVpcId",
    ):
        assert output in client["Outputs"], output
    assert set(ECSJobConfiguration.model_fields) >= set(pool["template"]["job_configuration"])


def test_missing_output_is_named():
    broken = json.loads(json.dumps(OUTPUTS))
    del broken["proxima-data-us-west-2"]["FsxMount"]
    with pytest.raises(ConfigurationError, match="no output FsxMount"):
        blocks_from_outputs(broken, datasets=DATASETS)


def test_cloud_cluster_uses_existing_resources_only():
    spec = DaskClusterSpec(
        cluster_arn="arn:aws:ecs:us-west-2:123456789012:cluster/proxima-us-west-2",
        execution_role_arn="arn:aws:iam::123456789012:role/exec",
        task_role_arn="arn:aws:iam::123456789012:role/task",
        security_groups=["sg-1"],
        vpc="vpc-1",
        subnets=["subnet-1"],
        image="public.ecr.aws/proxima/proxima:0.1.0-py3.11",
        region="us-west-2",
    )
    kwargs = spec.ecs_cluster_kwargs()
    import inspect

    from dask_cloudprovider.aws import ECSCluster

    accepted = inspect.signature(ECSCluster.__init__).parameters
    assert set(kwargs) <= set(accepted), set(kwargs) - set(accepted)
    # Given these, ECSCluster creates no cluster, role or security group of its own.
    assert kwargs["cluster_arn"] and kwargs["execution_role_arn"] and kwargs["task_role_arn"]
    assert kwargs["security_groups"] and kwargs["task_role_policies"] == []
    with pytest.raises(ValueError):
        DaskClusterSpec(**{**spec.model_dump(), "vpc": "default"})


def test_regional_runner_binds_an_address_or_an_ecs_cluster_on_existing_resources():
    from flows.runners import ECS_CLUSTER, regional_runner
    from proxima.platform import Region

    bound = regional_runner(Region(name="us-west-2", scheduler_address="tls://s:8786", root="/fsx"))
    assert bound.address == "tls://s:8786"
    spec = {
        "cluster_arn": "arn:aws:ecs:us-west-2:1:cluster/c",
        "execution_role_arn": "arn:aws:iam::1:role/e",
        "task_role_arn": "arn:aws:iam::1:role/t",
        "security_groups": ["sg-1"],
        "vpc": "vpc-1",
        "subnets": ["subnet-1"],
        "image": "img:1",
        "region": "us-west-2",
    }
    runner = regional_runner(Region(name="us-west-2", cluster_spec=spec, root="/fsx"))
    assert runner.cluster_class == ECS_CLUSTER or runner.cluster_class.__name__ == "ECSCluster"
    assert runner.cluster_kwargs["cluster_arn"] == spec["cluster_arn"]
    assert runner.cluster_kwargs["skip_cleanup"] is True
    with pytest.raises(ConfigurationError, match="neither"):
        regional_runner(Region(name="us-west-2", root="/fsx"))
