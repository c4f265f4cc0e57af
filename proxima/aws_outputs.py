"""From CloudFormation stack outputs to the block documents the flows read: DataRegion
per data region (with its datasets), OpenSearchCatalog (SigV4) and ResultsStore (S3),
and the ECS work pool's job template.

The outputs are ``{stack: {OutputKey: OutputValue}}``: read from CloudFormation
(``proxima aws-up``) or merged from ``cdk deploy --outputs-file`` files, one per
deploy command (the CDK CLI writes only the stacks of the command that wrote it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from proxima.dask_tls import DaskTls
from proxima.errors import ConfigurationError


class DaskClusterSpec(BaseModel):
    """A dask-cloudprovider ECSCluster on resources the stacks already created.

    Nothing is created at run time: the cluster, roles, security groups, VPC and
    subnets all come from the stack outputs.
    """

    cluster_arn: str = Field(pattern=r"^arn:aws[a-z-]*:ecs:")
    execution_role_arn: str = Field(pattern=r"^arn:aws[a-z-]*:iam::")
    task_role_arn: str = Field(pattern=r"^arn:aws[a-z-]*:iam::")
    security_groups: list[str] = Field(min_length=1)
    vpc: str = Field(pattern=r"^vpc-")
    subnets: list[str] = Field(min_length=1)
    image: str
    n_workers: int = Field(default=2, ge=1)
    region: str

    def ecs_cluster_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``dask_cloudprovider.aws.ECSCluster``."""
        return {
            "cluster_arn": self.cluster_arn,
            "execution_role_arn": self.execution_role_arn,
            "task_role_arn": self.task_role_arn,
            "task_role_policies": [],
            "security_groups": self.security_groups,
            "vpc": self.vpc,
            "subnets": self.subnets,
            "image": self.image,
            "n_workers": self.n_workers,
            "region_name": self.region,
            "fargate_scheduler": False,
            "fargate_workers": False,
            "skip_cleanup": True,
            "cloudwatch_logs_group": None,
        }


def _need(outputs: dict[str, str], stack: str, key: str) -> str:
    try:
        return outputs[key]
    except KeyError:
        raise ConfigurationError(
            f"stack {stack} has no output {key}; has: {sorted(outputs)}"
        ) from None


Stacks = dict[str, dict[str, str]]


def read_outputs(paths: list[Path]) -> Stacks:
    """The stacks of every ``cdk deploy --outputs-file`` JSON in ``paths``, merged.

    Raises:
        ConfigurationError: a file is unreadable, or two files disagree on a stack.
    """
    merged: Stacks = {}
    for path in paths:
        try:
            data: Stacks = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot use {path}: {exc}") from exc
        for stack, outputs in data.items():
            if merged.get(stack, outputs) != outputs:
                raise ConfigurationError(f"{path} gives stack {stack} other outputs than before")
            merged[stack] = outputs
    return merged


def _client(data: Stacks, project: str) -> dict[str, str]:
    """The client stack's outputs (named in the error when missing)."""
    name = f"{project}-client"
    if name not in data:
        raise ConfigurationError(f"the outputs have no stack {name}; they have: {sorted(data)}")
    return data[name]


def _client_tls(tls: DaskTls | None, regions: list[dict[str, Any]]) -> dict[str, Any]:
    """The client certificate's PEM text for DataRegion blocks (their schedulers are
    TLS-only and refuse clients without one).
    """
    if tls is None:
        if any(r["scheduler_address"].startswith("tls://") for r in regions):
            raise ConfigurationError(
                "the data regions' schedulers are TLS-only: give the directory of "
                "`proxima aws-tls` (--tls-dir) so the blocks carry the client certificate"
            )
        return {}
    return {
        "tls_ca_file": Path(tls.ca).read_text(),
        "tls_client_cert": Path(tls.cert).read_text(),
        "tls_client_key": Path(tls.key.get_secret_value()).read_text(),
    }


def blocks_from_outputs(
    data: Stacks,
    project: str = "proxima",
    tls: DaskTls | None = None,
    datasets: dict[str, list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Block fields from stack outputs: {"regions": [...], "catalog": {...}, "results": {...}}.

    Args:
        data: The stacks' outputs (``read_outputs`` or CloudFormation).
        project: The stacks' name prefix.
        tls: The Dask client certificate (paths) for the TLS-only regional schedulers.
        datasets: Each data region's datasets (infra/aws/config.yaml); a region without
            any is refused, since its refresh would scan nothing.

    Raises:
        ConfigurationError: a stack or an output the blocks need is missing, or a data
            region has no datasets.
    """
    client_name = f"{project}-client"
    client = _client(data, project)
    regions: list[dict[str, Any]] = []
    for stack, outputs in sorted(data.items()):
        prefix = f"{project}-data-"
        if not stack.startswith(prefix):
            continue
        name = stack.removeprefix(prefix)
        held = (datasets or {}).get(name)
        if not held:
            raise ConfigurationError(
                f"no datasets for {name} (infra/aws/config.yaml data_regions): "
                "its refresh would import and scan nothing"
            )
        regions.append(
            {
                "region": name,
                "scheduler_address": _need(outputs, stack, "SchedulerAddress"),
                "dashboard_url": outputs.get("DashboardUrl"),
                "mount": _need(outputs, stack, "FsxMount"),
                "fsx_file_system_id": _need(outputs, stack, "FsxFileSystemId"),
                "ecs_worker_service": _need(outputs, stack, "EcsWorkerService"),
                "workers": int(_need(outputs, stack, "Workers")),
                "data_repository_uri": outputs.get("DataRepositoryUri", ""),
                "datasets": held,
            }
        )
    if not regions:
        raise ConfigurationError(f"the outputs have no {project}-data-<region> stack")
    credentials = _client_tls(tls, regions)
    regions = [r | credentials for r in regions]
    endpoint = _need(client, client_name, "OpenSearchEndpoint")
    return {
        "regions": regions,
        "catalog": {
            "hosts": [endpoint],
            "auth": "sigv4",
            "aws_region": endpoint.split(".")[1] if "." in endpoint else None,
            "replicas": int(client.get("CatalogReplicas", "0")),
        },
        "results": {"bucket": _need(client, client_name, "ResultsBucket")},
    }


def ecs_work_pool_template(data: Stacks, project: str = "proxima") -> dict[str, Any]:
    """The ECS work pool's base job template (prefect-aws's default, with the client
    stack's cluster, network, roles and image as the defaults): flow runs start in the
    private subnets as the analyst role; the catalog-refresh deployment sets
    ``task_role_arn`` to the refresh role (``refresh_role_arn`` of the result).

    Returns:
        {"template": <base job template>, "refresh_role_arn": <ARN>}

    Raises:
        ConfigurationError: the client stack or one of its outputs is missing.
    """
    from prefect_aws.workers.ecs_worker import ECSWorker

    name = f"{project}-client"
    outputs = _client(data, project)
    template = ECSWorker.get_default_base_job_template()
    defaults = {
        "cluster": _need(outputs, name, "PrefectClusterArn"),
        "vpc_id": _need(outputs, name, "ClientVpcId"),
        "execution_role_arn": _need(outputs, name, "FlowRunExecutionRoleArn"),
        "task_role_arn": _need(outputs, name, "AnalystRoleArn"),
        "image": _need(outputs, name, "FlowRunImage"),
        "network_configuration": {
            "subnets": _need(outputs, name, "FlowRunSubnets").split(","),
            "securityGroups": [_need(outputs, name, "FlowRunSecurityGroup")],
            "assignPublicIp": "DISABLED",
        },
    }
    for variable, value in defaults.items():
        template["variables"]["properties"][variable]["default"] = value
    return {"template": template, "refresh_role_arn": _need(outputs, name, "RefreshRoleArn")}
