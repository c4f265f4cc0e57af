"""The infrastructure configuration (infra/aws/config.yaml), typed."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

import yaml
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from constructs import Construct
from pydantic import BaseModel, Field, model_validator

from proxima.config import DatasetConfig


class ClientRegion(BaseModel):
    """Where the scientist, the catalog and Prefect's ECS worker live."""

    region: str
    cidr: str
    opensearch_instance_type: str = "r6g.large.search"
    create_opensearch_service_role: bool = Field(
        default=True,
        description="Create OpenSearch's service-linked role, without which a VPC domain "
        "is refused; false in an account that already has "
        "AWSServiceRoleForAmazonOpenSearchService (creating it again fails).",
    )


class DataRegion(BaseModel):
    """A region with datasets, FSx for Lustre and a Dask cluster."""

    region: str
    cidr: str
    datasets: list[DatasetConfig] = Field(
        min_length=1,
        description="What the region's buckets hold, as the local stack declares it: the "
        "FSx file system links each bucket, and the region's DataRegion block carries the "
        "list (the catalog refresh scans by it).",
    )
    fsx_path: str = "/fsx"
    fsx_storage_gib: int = Field(default=1200, ge=1200)
    workers: int = Field(default=2, ge=1, le=100)
    instance_type: str = "r6i.2xlarge"

    @property
    def buckets(self) -> list[str]:
        """The dataset buckets, each once, in the order first declared."""
        return list(dict.fromkeys(d.bucket for d in self.datasets))


class InfraConfig(BaseModel):
    """Everything the CDK app needs."""

    project: str = "proxima"
    profile: Literal["minimal", "production"] = Field(
        default="minimal",
        description="minimal: one OpenSearch node without dedicated masters, Dask hosts "
        "scaled to zero when idle; production: two zone-aware data nodes, three dedicated "
        "masters, one Dask host kept warm (docs/aws.md gives the cost of each).",
    )
    image: str = Field(
        default="asset",
        description="'asset': build infra/aws/Dockerfile and push it to the stacks' ECR "
        "repository at deploy; or an image URI already in a registry.",
    )
    client: ClientRegion
    data_regions: list[DataRegion] = Field(min_length=1)

    @model_validator(mode="after")
    def _cidrs_do_not_overlap(self) -> InfraConfig:
        nets = [ipaddress.ip_network(self.client.cidr)] + [
            ipaddress.ip_network(r.cidr) for r in self.data_regions
        ]
        for i, a in enumerate(nets):
            for b in nets[i + 1 :]:
                if a.overlaps(b):
                    raise ValueError(f"CIDRs {a} and {b} overlap; peered VPCs need disjoint ranges")
        return self


def container_image(scope: Construct, cfg: InfraConfig) -> tuple[ecs.ContainerImage, str]:
    """The project's image and its URI: built from infra/aws/Dockerfile into the stack's
    ECR repository at deploy, or the configured URI.
    """
    if cfg.image != "asset":
        return ecs.ContainerImage.from_registry(cfg.image), cfg.image
    root = Path(__file__).resolve().parents[3]
    asset = ecr_assets.DockerImageAsset(
        scope,
        "ProjectImage",
        directory=str(root),
        file="infra/aws/Dockerfile",
        # the hosts are x86 (r6i): built on an ARM laptop, an unpinned image would fail
        # "exec format error" on them
        platform=ecr_assets.Platform.LINUX_AMD64,
        # only what the Dockerfile copies matters; dot-directories hold the local venv
        # and stack state (gigabytes), and would change the asset's hash on every run
        exclude=[
            ".*",
            "*.egg-info",
            "**/__pycache__",
            *("tests", "benchmarks", "docs", "examples", "test-artifacts", "deployments"),
            "infra/*",
            "!infra/aws",
            "infra/aws/*",
            "!infra/aws/Dockerfile",
        ],
    )
    return ecs.ContainerImage.from_docker_image_asset(asset), asset.image_uri


def cluster_name(project: str, region: str) -> str:
    """The data region's ECS cluster (a fixed name: the client stack grants on it)."""
    return f"{project}-{region}"


def worker_service_name(project: str, region: str) -> str:
    """The data region's Dask worker service, which flow runs wake (a fixed name)."""
    return f"{project}-{region}-workers"


def load(path: Path | None = None) -> InfraConfig:
    """Read and validate the configuration file."""
    path = path or Path(__file__).resolve().parents[1] / "config.yaml"
    return InfraConfig.model_validate(yaml.safe_load(path.read_text()))
