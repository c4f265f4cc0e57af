"""`proxima aws-up`: docs/aws.md's deployment as one command, from empty accounts to a
first answer.

1. ``cdk deploy`` the client stack, then each data-region stack with the client's
   outputs as its parameters (skipped with ``deploy=False``: stacks already there).
2. Every stack's outputs, read from CloudFormation in its own region.
3. The blocks: DataRegion per region *with its datasets* (infra/aws/config.yaml),
   OpenSearchCatalog (SigV4) and ResultsStore.
4. The ECS work pool, created or updated with the job template from the outputs.
5. The deployments of prefect.yaml on that pool, registered with the caller's own
   Prefect (``PREFECT_API_URL``/``PREFECT_API_KEY`` as Prefect reads them; never the
   local stack's), their parameter schemas sealed, the refresh as the refresh role.
6. A first catalog refresh and, given a request, a first analysis.

Every step is idempotent: a run stopped anywhere is run again from the top.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from blocks import DataRegion, OpenSearchCatalog, ResultsStore
from flows.deploy import seal_parameter_schemas
from proxima.analysis.request import AnalysisRequest
from proxima.aws_outputs import Stacks, blocks_from_outputs, ecs_work_pool_template
from proxima.config import DatasetConfig
from proxima.dask_tls import DaskTls
from proxima.errors import ConfigurationError, ProximaError
from proxima.platform.blocks import CATALOG_BLOCK, RESULTS_BLOCK
from proxima.settings import PROJECT_ROOT
from proxima.stack.services import BIN

INFRA_DIR = PROJECT_ROOT / "infra" / "aws"
IMAGE_WORKDIR = "/opt/proxima"  # infra/aws/Dockerfile's WORKDIR: the flows' code
REFRESH = ("catalog-refresh", "catalog-full-rebuild")  # deployments run as the refresh role
DONE = {"CREATE_COMPLETE", "UPDATE_COMPLETE"}
Say = Callable[[str], None]


class _Region(BaseModel):
    model_config = ConfigDict(extra="ignore")

    region: str


class _DataRegion(_Region):
    datasets: list[DatasetConfig] = Field(min_length=1)


class Infra(BaseModel):
    """What the runbook reads of infra/aws/config.yaml (the CDK app checks the rest)."""

    model_config = ConfigDict(extra="ignore")

    project: str = "proxima"
    client: _Region
    data_regions: list[_DataRegion] = Field(min_length=1)

    @classmethod
    def load(cls, path: Path = INFRA_DIR / "config.yaml") -> Infra:
        """The configuration file, validated."""
        return cls.model_validate(yaml.safe_load(path.read_text()))

    @property
    def client_stack(self) -> str:
        """The client-region stack's name."""
        return f"{self.project}-client"

    @property
    def stacks(self) -> dict[str, str]:
        """Every stack's name and its region, the client's first."""
        data = {f"{self.project}-data-{r.region}": r.region for r in self.data_regions}
        return {self.client_stack: self.client.region} | data

    @property
    def pool(self) -> str:
        """The ECS work pool's name."""
        return f"{self.project}-ecs"

    def datasets(self) -> dict[str, list[dict[str, Any]]]:
        """Each data region's datasets, as block fields."""
        return {r.region: [d.model_dump() for d in r.datasets] for r in self.data_regions}


def _run(argv: list[str], cwd: Path) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise ProximaError(f"`{' '.join(argv[:3])} …` failed:\n{tail}")
    return done.stdout


def cdk_deploy(infra: Infra, admin_role_arn: str, outputs: Callable[[], Stacks], cdk: str) -> None:
    """Deploy the client stack, then each data region's with the client's outputs."""

    def deploy(stack: str, parameters: dict[str, str]) -> None:
        given = [a for k, v in parameters.items() for a in ("--parameters", f"{k}={v}")]
        _run([cdk, "deploy", stack, "--require-approval", "never", *given], INFRA_DIR)

    deploy(infra.client_stack, {"CatalogAdminRoleArn": admin_role_arn})
    client = outputs()[infra.client_stack]
    for stack in list(infra.stacks)[1:]:
        deploy(
            stack,
            {k: client[k] for k in ("ClientVpcId", "ClientRouteTableIds", "CatalogDomainArn")},
        )


def stack_outputs(infra: Infra, cloudformation: Callable[[str], Any]) -> Stacks:
    """Every stack's outputs, from CloudFormation in the stack's region.

    Args:
        infra: The configuration.
        cloudformation: A boto3 CloudFormation client for a region name.

    Raises:
        ConfigurationError: a stack is missing or not in a completed state.
    """
    from botocore.exceptions import ClientError

    found: Stacks = {}
    for stack, region in infra.stacks.items():
        try:
            (described,) = cloudformation(region).describe_stacks(StackName=stack)["Stacks"]
        except ClientError as exc:
            raise ConfigurationError(f"stack {stack} in {region}: {exc}") from exc
        if described["StackStatus"] not in DONE:
            raise ConfigurationError(
                f"stack {stack} in {region} is {described['StackStatus']}: deploy it "
                "(or read its events) first"
            )
        found[stack] = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    return found


def save_blocks(fields: dict[str, Any], say: Say) -> None:
    """Save the blocks ``blocks_from_outputs`` gave, replacing earlier versions."""
    for block in (DataRegion, OpenSearchCatalog, ResultsStore):
        block.register_type_and_schema()
    for region in fields["regions"]:
        DataRegion(**region).save(region["region"], overwrite=True)
        say(f"saved DataRegion {region['region']} ({len(region['datasets'])} dataset(s))")
    OpenSearchCatalog(**fields["catalog"]).save(CATALOG_BLOCK, overwrite=True)
    ResultsStore(**fields["results"]).save(RESULTS_BLOCK, overwrite=True)
    say(f"saved {CATALOG_BLOCK} and {RESULTS_BLOCK}")


def ensure_work_pool(name: str, template: dict[str, Any]) -> None:
    """Create the ECS work pool with ``template``, or give an existing one (e.g. made
    with defaults by the client stack's worker when it first polled) this template.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    with get_client(sync_client=True) as client:
        pool = WorkPoolCreate(name=name, type="ecs", base_job_template=template)
        client.create_work_pool(pool, overwrite=True)


def aws_deployments(pool: str, refresh_role_arn: str) -> dict[str, Any]:
    """prefect.yaml for AWS: every deployment on ``pool``, the code from the image's
    working directory, the refresh deployments as the refresh role.
    """
    spec: dict[str, Any] = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())
    spec["pull"] = [
        {"prefect.deployments.steps.set_working_directory": {"directory": IMAGE_WORKDIR}}
    ]
    spec.pop("definitions", None)
    for deployment in spec["deployments"]:
        deployment["work_pool"] = {"name": pool, "work_queue_name": "default"}
        if deployment["name"] in REFRESH:
            deployment["work_pool"]["job_variables"] = {"task_role_arn": refresh_role_arn}
    return spec


def deploy_flows(pool: str, refresh_role_arn: str) -> list[str]:
    """Register every deployment on ``pool`` with this process's Prefect and seal
    their parameter schemas; returns the ``flow/deployment`` names.
    """
    with tempfile.NamedTemporaryFile(
        "w", suffix=".yaml", dir=PROJECT_ROOT, prefix=".prefect-aws-", delete=False
    ) as f:
        yaml.safe_dump(aws_deployments(pool, refresh_role_arn), f, sort_keys=False)
    try:
        _run(
            [str(BIN / "prefect"), "--no-prompt", "deploy", "--all", "--prefect-file", f.name],
            PROJECT_ROOT,
        )
    finally:
        Path(f.name).unlink(missing_ok=True)
    return seal_parameter_schemas()


def first_runs(request: AnalysisRequest | None) -> list[Any]:
    """Start a catalog refresh and, given ``request``, an analysis; return the runs."""
    from prefect.deployments import run_deployment

    from flows.submit import submit_analysis

    runs = [run_deployment("catalog-refresh/catalog-refresh", timeout=0, as_subflow=False)]
    if request is not None:
        runs.append(submit_analysis(request, wait_seconds=0))
    return runs


def up(
    infra: Infra,
    tls: DaskTls | None,
    cloudformation: Callable[[str], Any],
    say: Say,
    deploy: bool = True,
    admin_role_arn: str | None = None,
    request: AnalysisRequest | None = None,
    cdk: str = "cdk",
) -> list[Any]:
    """Every step above, in order; returns the first runs (refresh, then analysis).

    Raises:
        ConfigurationError: a stack, output or dataset is missing.
        ProximaError: ``cdk deploy`` or ``prefect deploy`` failed (its last lines).
    """
    if deploy:
        if not admin_role_arn:
            raise ConfigurationError("deploying the stacks needs --admin-role-arn")
        say(f"deploying {', '.join(infra.stacks)}")
        cdk_deploy(infra, admin_role_arn, lambda: stack_outputs(infra, cloudformation), cdk)
    outputs = stack_outputs(infra, cloudformation)
    say(f"read the outputs of {len(outputs)} stacks")
    save_blocks(blocks_from_outputs(outputs, infra.project, tls, infra.datasets()), say)
    pool = ecs_work_pool_template(outputs, infra.project)
    ensure_work_pool(infra.pool, pool["template"])
    say(f"work pool {infra.pool}: the stacks' cluster, subnets, roles and image")
    for name in deploy_flows(infra.pool, pool["refresh_role_arn"]):
        say(f"deployed {name} on {infra.pool}")
    runs = first_runs(request)
    for run in runs:
        say(f"started {run.name} ({run.id})")
    return runs
