"""Typed stack configuration: services, data regions and their datasets.

Loaded from the YAML file named by ``ProximaSettings.stack_config``. Ports in the
file are shifted by ``ProximaSettings.port_offset`` when loaded, so an isolated
test stack and a developer's stack can run side by side.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from proxima.errors import ConfigurationError
from proxima.settings import ProximaSettings, get_settings

# USD per GB leaving a region, keyed "src->dst", with a "default" (AWS list prices).
EGRESS_PRICES_DEFAULT: dict[str, float] = {
    "default": 0.02,
    "us-east-1->us-east-2": 0.01,
    "us-east-2->us-east-1": 0.01,
}

_YEAR_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PrefectService(_Strict):
    """The Prefect server (started locally unless ``url`` is set)."""

    port: int = Field(default=4200, ge=1, le=65535, description="Port of the local server.")
    host: str = Field(default="127.0.0.1", description="Address the local server listens on.")
    url: str | None = Field(default=None, description="Use this API URL instead of starting one.")
    work_pool: str = Field(default="proxima-local", description="The process work pool.")
    database: Literal["postgresql", "sqlite"] = Field(
        default="postgresql",
        description="The local server's database. SQLite answers concurrent writes with "
        "503s that cost the client a 2 s back-off; PostgreSQL does not.",
    )
    db_port: int = Field(default=5432, ge=1, le=65535, description="Port of its PostgreSQL.")

    @property
    def api_url(self) -> str:
        """The Prefect API URL (ends in ``/api``)."""
        if self.url:
            return self.url.rstrip("/")
        return f"http://{self.host}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        """The Prefect UI URL."""
        return self.api_url.removesuffix("/api")


class OpenSearchService(_Strict):
    """The OpenSearch node (started locally unless ``url`` is set)."""

    port: int = Field(default=9200, ge=1, le=65535)
    host: str = Field(default="127.0.0.1", description="Address the local node listens on.")
    transport_port: int = Field(default=9300, ge=1, le=65535)
    url: str | None = Field(
        default=None, description="Use this OpenSearch instead of starting one."
    )
    heap: str = Field(default="768m", pattern=r"^\d+[mg]$", description="JVM heap (512m-1g).")
    alias: str = Field(default="proxima-assets", description="The catalog's read/write alias.")

    @property
    def endpoint(self) -> str:
        """The OpenSearch HTTP endpoint."""
        return (self.url or f"http://{self.host}:{self.port}").rstrip("/")


class DatasetConfig(_Strict):
    """A dataset published in a region's data repository."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", description="Collection name.")
    kind: Literal["era5", "cmip6"] = Field(description="Which publication layout it follows.")
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", description="S3 bucket.")
    start: str = Field(description="First month held, YYYY-MM.")
    end: str = Field(description="Last month held, YYYY-MM.")
    variables: list[str] = Field(min_length=1)
    resolution: float = Field(default=2.0, gt=0.05, le=30.0, description="Grid spacing, degrees.")
    area: list[float] | None = Field(
        default=None,
        min_length=4,
        max_length=4,
        description="ERA5 only: a limited-area grid [west, south, east, north] (0..360 allowed).",
    )

    @field_validator("start", "end")
    @classmethod
    def _year_month(cls, value: str) -> str:
        if not _YEAR_MONTH.match(value):
            raise ValueError(f"{value!r} is not a month in the form YYYY-MM")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> DatasetConfig:
        if self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")
        return self


def dataset_named(region: str, datasets: list[DatasetConfig], name: str) -> DatasetConfig:
    """The dataset ``name`` of ``region``, or an error listing those it holds."""
    for dataset in datasets:
        if dataset.name == name:
            return dataset
    known = ", ".join(d.name for d in datasets) or "none"
    raise ConfigurationError(f"region {region} has no dataset {name!r} (it has: {known})")


class RegionConfig(_Strict):
    """One data region: its Dask cluster, S3 endpoint and datasets."""

    name: str = Field(pattern=r"^[a-z]{2}-[a-z]+-\d$", description="AWS region name.")
    scheduler_port: int = Field(default=8786, ge=1, le=65535)
    dashboard_port: int = Field(default=8787, ge=1, le=65535)
    s3_port: int = Field(default=5101, ge=1, le=65535)
    host: str = Field(default="127.0.0.1", description="Address the region's services use.")
    netns: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9-]{1,15}$",
        description="Testbed: the network namespace the region's services run in.",
    )
    scheduler_url: str | None = Field(
        default=None, description="A remote scheduler address (overrides scheduler_port)."
    )
    s3_url: str | None = Field(
        default=None, description="A remote S3 endpoint (overrides s3_port); 'aws' for AWS's own."
    )
    tls: bool = Field(
        default=False,
        description="Dask over mutual TLS only: the scheduler and workers refuse peers "
        "without a certificate from the stack's CA.",
    )
    workers: int = Field(default=1, ge=1, le=16)
    threads_per_worker: int = Field(default=2, ge=1, le=32)
    memory_limit: str = Field(default="2GiB")
    interactive_worker: bool = Field(
        default=False,
        description="One more worker process (one thread), kept for small shares: the "
        "blocks of other runs never go to it, so a one-month question does not wait "
        "for a large run's running blocks to finish (proxima.admission.workers).",
    )
    datasets: list[DatasetConfig] = Field(default_factory=list)
    fsx_file_system_id: str | None = Field(
        default=None,
        pattern=r"^fs-[0-9a-f]{8,17}$",
        description="AWS only: import with an FSx data repository task instead of copying.",
    )

    @property
    def scheduler_address(self) -> str:
        """The Dask scheduler's address."""
        scheme = "tls" if self.tls else "tcp"
        return self.scheduler_url or f"{scheme}://{self.host}:{self.scheduler_port}"

    @property
    def dashboard_url(self) -> str:
        """The Dask dashboard URL."""
        return f"http://{self.host}:{self.dashboard_port}/status"

    @property
    def s3_endpoint(self) -> str | None:
        """The region's S3 endpoint (S3Proxy locally; None means AWS's own)."""
        if self.s3_url:
            return None if self.s3_url == "aws" else self.s3_url
        return f"http://{self.host}:{self.s3_port}"

    def dataset(self, name: str) -> DatasetConfig:
        """Return the dataset ``name`` held in this region."""
        return dataset_named(self.name, self.datasets, name)


class StacService(_Strict):
    """The STAC API and intake-esm service over the catalog (read-only)."""

    port: int = Field(default=8090, ge=1, le=65535)
    host: str = Field(default="127.0.0.1", description="Address it listens on.")

    @property
    def url(self) -> str:
        """The STAC API's landing page."""
        return f"http://{self.host}:{self.port}"


class StackConfig(_Strict):
    """The whole local stack."""

    prefect: PrefectService = PrefectService()
    opensearch: OpenSearchService = OpenSearchService()
    stac: StacService = StacService()
    regions: list[RegionConfig] = Field(min_length=1)
    client_region: str = Field(
        default="us-east-1",
        description="Where the scientist (flow client) sits: results land here.",
    )
    egress_prices: dict[str, float] = Field(
        default_factory=lambda: dict(EGRESS_PRICES_DEFAULT),
        description="USD per GB between regions, keyed 'src->dst', with a 'default'.",
    )
    footprint: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Footprint factors overriding proxima/footprint/factors.yaml: "
        "{region or 'defaults': {factor: value}}.",
    )
    record_calls: bool = Field(
        default=False,
        description="The stack's processes record every OpenSearch and AWS call under "
        "<state>/calls (proxima/call_log.py; the test of infra/aws's IAM reads them).",
    )

    @model_validator(mode="after")
    def _unique(self) -> StackConfig:
        names = [r.name for r in self.regions]
        if len(set(names)) != len(names):
            raise ValueError(f"region names repeat: {names}")
        ports = [
            self.prefect.port,
            self.opensearch.port,
            self.opensearch.transport_port,
            self.stac.port,
        ]
        for r in self.regions:
            ports += [r.scheduler_port, r.dashboard_port, r.s3_port]
        dupes = sorted({p for p in ports if ports.count(p) > 1})
        if dupes:
            raise ValueError(f"ports used twice: {dupes}")
        return self

    def region(self, name: str) -> RegionConfig:
        """Return region ``name`` or raise a ConfigurationError listing the known ones."""
        for region in self.regions:
            if region.name == name:
                return region
        raise ConfigurationError(
            f"unknown region {name!r}; configured regions: {', '.join(self.region_names)}"
        )

    @property
    def region_names(self) -> list[str]:
        """Names of all configured regions."""
        return [r.name for r in self.regions]

    def fingerprint(self) -> str:
        """A stable hash of the configuration (detects `up` with a changed config)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _shift_ports(config: StackConfig, offset: int) -> StackConfig:
    if not offset:
        return config
    raw = config.model_dump()
    raw["prefect"]["port"] += offset
    raw["prefect"]["db_port"] += offset
    raw["opensearch"]["port"] += offset
    raw["opensearch"]["transport_port"] += offset
    raw["stac"]["port"] += offset
    for region in raw["regions"]:
        for key in ("scheduler_port", "dashboard_port", "s3_port"):
            region[key] += offset
    return StackConfig.model_validate(raw)


def load_stack_config(
    path: Path | None = None, settings: ProximaSettings | None = None
) -> StackConfig:
    """Load and validate the stack configuration.

    Args:
        path: The YAML file; defaults to ``settings.stack_config``.
        settings: Settings that supply the default path and the port offset.

    Returns:
        The validated configuration, ports shifted by the offset.

    Raises:
        ConfigurationError: The file is missing, not YAML, or not a valid configuration.
    """
    settings = settings or get_settings()
    path = path or settings.stack_config
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigurationError(f"stack configuration not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"stack configuration {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigurationError(f"stack configuration {path} must be a mapping")
    try:
        config = StackConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigurationError(f"invalid stack configuration {path}:\n{exc}") from exc
    return _shift_ports(config, settings.port_offset)
