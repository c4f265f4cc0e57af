"""The one place Proxima reads its environment.

Every knob that differs between machines (state directory, stack configuration,
port offset, the region a Dask worker serves) lives in :class:`ProximaSettings`,
read from ``PROXIMA_*`` variables. No other module calls ``os.getenv``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class ProximaSettings(BaseSettings):
    """Machine-level settings, from ``PROXIMA_*`` environment variables.

    Example:
        ```bash
        PROXIMA_STATE_DIR=/tmp/proxima PROXIMA_PORT_OFFSET=100 proxima stack up
        ```
    """

    model_config = SettingsConfigDict(env_prefix="PROXIMA_", extra="ignore")

    state_dir: Path = Field(
        default=PROJECT_ROOT / ".state",
        description="Directory for logs, PID files, databases and the regional file systems.",
    )
    stack_config: Path = Field(
        default=PROJECT_ROOT / "deployments" / "local" / "stack.yaml",
        description="The stack configuration file: services, regions and their datasets.",
    )
    port_offset: int = Field(
        default=0,
        ge=0,
        le=20000,
        description="Added to every port of the stack configuration (isolated test stacks).",
    )
    region: str | None = Field(
        default=None, description="Set on a regional Dask worker: the region it serves."
    )
    java: str = Field(default="java", description="The Java 17+ executable for OpenSearch.")
    maven: str = Field(default="mvn", description="The Maven executable that resolves OpenSearch.")
    health_timeout_s: float = Field(
        default=180.0, gt=0, description="How long `stack up` waits for each service."
    )
    prefect_auth: SecretStr | None = Field(
        default=None,
        description="'user:password' for the local Prefect server's basic auth: the "
        "server requires it and every client of the stack sends it.",
    )
    dask_tls: SecretStr | None = Field(
        default=None,
        description="A Dask TLS secret (JSON: ca, cert, key) that an ECS task on AWS "
        "writes to files before starting dask (python -m proxima.dask_tls).",
    )
    record_calls: Path | None = Field(
        default=None,
        description="A directory where every OpenSearch REST call and AWS API call of "
        "this process is recorded (the test that checks infra/aws's IAM reads it).",
    )
    large_run_nice: int = Field(
        default=0,
        ge=0,
        le=19,
        description="Set on work-pool flow runs that share one machine's CPU (the local "
        "stack): the niceness a run that is not small in some region lowers its own "
        "process to, so that small, interactive runs are served first. 0: never.",
    )
    worker_query_seconds: float = Field(
        default=0.5,
        gt=0,
        description="Prefect worker polling interval (seconds): the longest a UI or CLI "
        "run waits to be picked up.",
    )

    @property
    def logs_dir(self) -> Path:
        """Where each service writes its log file."""
        return self.state_dir / "logs"

    @property
    def state_file(self) -> Path:
        """The JSON record of the running stack (PIDs, URLs, configuration hash)."""
        return self.state_dir / "stack.json"

    @property
    def tls_dir(self) -> Path:
        """The stack's Dask certificate authority and certificates."""
        return self.state_dir / "tls"

    def region_root(self, region: str) -> Path:
        """The directory that plays the region's FSx for Lustre file system."""
        return self.state_dir / "fsx" / region


@lru_cache(maxsize=1)
def get_settings() -> ProximaSettings:
    """Return the process-wide settings (read once)."""
    return ProximaSettings()
