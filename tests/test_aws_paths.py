"""AWS code paths that cannot run here, checked by what they send: SigV4-signed
OpenSearch requests (through a recording proxy in front of the real node), block
documents from stack outputs, and a dask-cloudprovider cluster on existing resources."""

from __future__ import annotations

import json

import pytest

from proxima import opensearch
from proxima.aws_outputs import DaskClusterSpec, blocks_from_outputs
from proxima.errors import ConfigurationError


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
        "ClientVpcId": "vpc-1",
    },
    "proxima-data-us-west-2": {
        "SchedulerAddress": "tls://scheduler.us-west-2.proxima.internal:8786",
        "FsxMount": "/fsx",
        "FsxFileSystemId": "fs-0123456789abcdef0",
        "DataRepositoryUri": "s3://cmip6-pds",
    },
}


def test_blocks_from_stack_outputs(tmp_path):
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(OUTPUTS))
    out = blocks_from_outputs(path)
    assert out["regions"] == [
        {
            "region": "us-west-2",
            "scheduler_address": "tls://scheduler.us-west-2.proxima.internal:8786",
            "dashboard_url": None,
            "mount": "/fsx",
            "fsx_file_system_id": "fs-0123456789abcdef0",
            "data_repository_uri": "s3://cmip6-pds",
        }
    ]
    assert out["catalog"] == {
        "hosts": [OUTPUTS["proxima-client"]["OpenSearchEndpoint"]],
        "auth": "sigv4",
        "aws_region": "us-east-1",
    }
    assert out["results"] == {"bucket": "proxima-results-abc"}
    from blocks import DataRegion, OpenSearchCatalog, ResultsStore

    DataRegion(**out["regions"][0])  # the fields are exactly the blocks' own
    OpenSearchCatalog(**out["catalog"])
    ResultsStore(**out["results"])


def test_missing_output_is_named(tmp_path):
    broken = json.loads(json.dumps(OUTPUTS))
    del broken["proxima-data-us-west-2"]["FsxMount"]
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(broken))
    with pytest.raises(ConfigurationError, match="no output FsxMount"):
        blocks_from_outputs(path)


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
