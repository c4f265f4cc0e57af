"""The services of the local stack: how each starts and how its health is checked."""

from __future__ import annotations

import hashlib
import os
import shlex
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from proxima.admission.workers import interactive_worker_name
from proxima.config import RegionConfig, StackConfig
from proxima.dask_tls import TlsFiles
from proxima.settings import PROJECT_ROOT, ProximaSettings
from proxima.stack import opensearch_node, postgres, s3_server
from proxima.stack.automations import HEARTBEAT_S

BIN = Path(sys.executable).parent
NICE = ("nice", "-n", "10")  # the local stack's regional workers


@dataclass
class Service:
    """One process of the stack.

    Attributes:
        name: Unique name, also the log file's stem.
        url: What a user opens or connects to.
        argv: Command line (built lazily: the OpenSearch one may run Maven).
        env: Extra environment for the process.
        ports: Ports it must be able to bind.
        healthy: A check that returns True once the service answers.
        after: Names of services that must be healthy before this one starts.
        region: The data region it belongs to, if any.
    """

    name: str
    url: str
    argv: Callable[[], list[str]]
    healthy: Callable[[], bool]
    env: dict[str, str] = field(default_factory=dict)
    ports: list[int] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    region: str | None = None
    host: str = "127.0.0.1"


# What a flow run imports before its first line, and what it imports later on first
# use (the blocks' prefect-aws, xarray's dask.array check, the result's writer and its
# plot, the encoder and graph helpers Prefect's engine takes at a subflow's start): the
# launcher imports it once. Lazily, that was 79 % of a small run's CPU.
PRELOADED = (
    "prefect.engine",
    "flows.cross_region_analysis",
    "flows.catalog_refresh",
    "proxima.platform.blocks",
    "dask.array",
    "h5netcdf",
    "fastapi.encoders",
    "prefect.utilities.visualization",
    "proxima.analysis.results:warm_up",
    "flows.prefect_clients:warm_up",
)


def launcher_socket(settings: ProximaSettings) -> Path:
    """Where the flow launcher listens (a short path: Unix sockets allow ~107 bytes)."""
    path = settings.state_dir / "flow-launcher.sock"
    if len(str(path)) < 100:
        return path
    digest = hashlib.sha256(str(settings.state_dir).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"proxima-{digest}.sock"


def launch_command(settings: ProximaSettings) -> str:
    """The process work pool's job command: a warm start through the flow launcher."""
    return shlex.join(
        [
            sys.executable,
            "-m",
            "proxima.stack.flow_launcher",
            "launch",
            str(launcher_socket(settings)),
        ]
    )


def unix_socket_answers(path: Path) -> bool:
    """Whether something accepts connections on the Unix socket ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        try:
            conn.connect(str(path))
        except OSError:
            return False
    return True


def prefect_auth(settings: ProximaSettings) -> httpx.BasicAuth | None:
    """Basic auth for the stack's Prefect API, when it is protected."""
    if settings.prefect_auth is None:
        return None
    user, _, password = settings.prefect_auth.get_secret_value().partition(":")
    return httpx.BasicAuth(user, password)


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """Whether ``url`` answers 2xx."""
    try:
        return httpx.get(url, timeout=timeout).is_success
    except httpx.HTTPError:
        return False


def dask_workers(address: str, timeout: float = 3.0, security: Any = None) -> list[dict]:
    """The workers a Dask scheduler knows (empty if it does not answer)."""
    from distributed import Client

    try:
        with Client(address, timeout=timeout, security=security) as client:
            return list(client.scheduler_info(n_workers=-1)["workers"].values())
    except OSError:
        return []


def prefect_workers_online(api_url: str, pool: str, auth: httpx.BasicAuth | None = None) -> int:
    """How many workers of ``pool`` the Prefect server sees as online."""
    try:
        resp = httpx.post(
            f"{api_url}/work_pools/{pool}/workers/filter", json={}, timeout=3, auth=auth
        )
        if not resp.is_success:
            return 0
        return sum(1 for w in resp.json() if w.get("status") == "ONLINE")
    except httpx.HTTPError:
        return 0


def client_env(config: StackConfig, settings: ProximaSettings) -> dict[str, str]:
    """Environment every Prefect client process of the stack needs.

    Dask workers run Prefect tasks and report them to the API themselves; without
    ``PREFECT_API_URL`` each would start a throwaway server and its task runs
    would vanish from the UI.
    """
    auth = (
        {"PREFECT_API_AUTH_STRING": settings.prefect_auth.get_secret_value()}
        if settings.prefect_auth
        else {}
    )
    return {
        **os.environ,
        **auth,
        "PREFECT_API_URL": config.prefect.api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # The stack's server and clients are one installation: each flow run's events
        # client otherwise asked the server its version (a TLS context and a request,
        # ~40 ms of every run's start, py-spy)
        "PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED": "false",
        # Flow runs report liveness; the stack's automation crashes silent ones.
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S),
        "PREFECT_HOME": str(settings.state_dir / "prefect"),
        "PROXIMA_STATE_DIR": str(settings.state_dir),
        "PROXIMA_STACK_CONFIG": str(settings.stack_config),
        "PROXIMA_PORT_OFFSET": str(settings.port_offset),
        "PYTHONUNBUFFERED": "1",
    } | ({"PROXIMA_RECORD_CALLS": str(calls_dir(settings))} if config.record_calls else {})


def calls_dir(settings: ProximaSettings) -> Path:
    """Where the stack's processes record their calls when the stack file asks them to."""
    return settings.state_dir / "calls"


def run_prefect(
    args: list[str], config: StackConfig, settings: ProximaSettings, timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    """``prefect ARGS`` as a user of the stack runs it (its client environment, from
    the project root); the caller decides what a failure means.
    """
    return subprocess.run(
        [str(BIN / "prefect"), *args],
        env=client_env(config, settings),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# The statistical profiler samples every thread every 10 ms: measured here, it cost each
# idle worker 7-8 % of a core, taken from the decoding the regions exist for.
DASK_LEAN = {
    "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False",
    # Dask's nanny gives its workers MALLOC_TRIM_THRESHOLD_=65536, which also switches off
    # glibc's dynamic mmap threshold: every array over 128 KiB was then mmapped and
    # faulted in page by page, and the kernel took twice the CPU per byte in a worker
    # that it takes in a plain process (49x the minor faults, 4x the system time,
    # measured). Both thresholds at 128 MiB keep a block's slabs in the reused heap.
    "DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON": repr(
        {"MALLOC_TRIM_THRESHOLD_": 128 * 2**20, "MALLOC_MMAP_THRESHOLD_": 128 * 2**20}
    ),
    # Idle, a scheduler and two workers took 1.3 CPU-s per 15 s with Dask's 20 ms event
    # loop tick check and 500 ms system monitor, 0.5 with these; on two cores that share
    # was taken from the blocks. The memory monitor (what keeps workers alive) keeps 100 ms.
    "DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL": "1s",
    "DASK_DISTRIBUTED__ADMIN__SYSTEM_MONITOR__INTERVAL": "2s",
    # A crash in a C extension (HDF5, netCDF-C) leaves every thread's stack in the log.
    "PYTHONFAULTHANDLER": "1",
}


def _region_services(
    region: RegionConfig, config: StackConfig, settings: ProximaSettings
) -> list[Service]:
    env = client_env(config, settings) | {"PROXIMA_REGION": region.name, **DASK_LEAN}
    scheduler = f"{region.name}-dask-scheduler"
    # Testbed: the region's processes run inside its network namespace.
    ns = ["ip", "netns", "exec", region.netns] if region.netns else []
    expected = region.workers
    tls = TlsFiles(directory=settings.tls_dir)
    member = f"{region.name}-cluster"

    def tls_args(role: str) -> list[str]:
        if not region.tls:
            return []
        extra = ["--protocol", "tls"] if role == "scheduler" else []
        return [
            *extra,
            "--tls-ca-file",
            str(tls.ca),
            "--tls-cert",
            str(tls.cert(member)),
            "--tls-key",
            str(tls.key(member)),
        ]

    def workers_up(also: int = 0) -> bool:
        security = tls.client().security() if region.tls else None
        found = dask_workers(region.scheduler_address, security=security)
        return len(found) >= expected + also

    def worker_argv(name: str, processes: int, threads: int, niced: bool = True) -> list[str]:
        return [
            *ns,
            # below the flows, the servers and the CLI on the machine they share here
            # (on AWS the workers have their own): an interactive run's orchestration
            # is never starved by a large run's decoding; the worker kept for small
            # shares is not niced, so their blocks are not starved either
            *(NICE if niced else ()),
            str(BIN / "dask"),
            "worker",
            region.scheduler_address,
            "--host",
            region.host,
            "--nworkers",
            str(processes),
            "--nthreads",
            str(threads),
            "--memory-limit",
            region.memory_limit,
            "--name",
            name,
            "--no-dashboard",
            # the worker's HTTP server (health, metrics) runs even without a
            # dashboard, and listens on every interface unless told otherwise
            "--dashboard-address",
            f"{region.host}:0",
            "--local-directory",
            str(settings.state_dir / "dask" / region.name),
            *tls_args("worker"),
        ]

    interactive = [
        Service(
            name=f"{region.name}-dask-interactive",
            url=region.dashboard_url,
            argv=lambda: worker_argv(interactive_worker_name(region.name), 1, 1, niced=False),
            healthy=lambda: workers_up(also=1),
            env=env,
            after=[scheduler],
            region=region.name,
        )
    ]
    return [
        Service(
            name=f"{region.name}-s3",
            url=region.s3_endpoint or "",
            argv=lambda: [*ns, *s3_server.argv(region, settings)],
            healthy=lambda: http_ok(f"{region.s3_endpoint}/"),
            ports=[] if region.netns else [region.s3_port],
            host=region.host,
            region=region.name,
        ),
        Service(
            name=scheduler,
            url=region.scheduler_address,
            argv=lambda: [
                *ns,
                str(BIN / "dask"),
                "scheduler",
                "--host",
                region.host,
                "--port",
                str(region.scheduler_port),
                "--dashboard-address",
                f"{region.host}:{region.dashboard_port}",
                *tls_args("scheduler"),
            ],
            healthy=lambda: http_ok(f"http://{region.host}:{region.dashboard_port}/health"),
            env=env,
            ports=[] if region.netns else [region.scheduler_port, region.dashboard_port],
            host=region.host,
            region=region.name,
        ),
        Service(
            name=f"{region.name}-dask-workers",
            url=region.dashboard_url,
            argv=lambda: worker_argv(
                f"{region.name}-worker", region.workers, region.threads_per_worker
            ),
            healthy=workers_up,
            env=env,
            after=[scheduler],
            region=region.name,
        ),
        *(interactive if region.interactive_worker else []),
    ]


def build_services(config: StackConfig, settings: ProximaSettings) -> list[Service]:
    """All services of the stack in start order (external ones left out)."""
    services: list[Service] = []
    if not config.opensearch.url:
        os_cfg = config.opensearch
        services.append(
            Service(
                name="opensearch",
                url=os_cfg.endpoint,
                argv=lambda: opensearch_node.argv(os_cfg, settings),
                healthy=lambda: http_ok(
                    f"{os_cfg.endpoint}/_cluster/health?wait_for_status=yellow&timeout=1s"
                ),
                ports=[os_cfg.port, os_cfg.transport_port],
                host=os_cfg.host,
            )
        )
    if not config.prefect.url:
        pf = config.prefect
        prefect_home = settings.state_dir / "prefect"
        database = f"sqlite+aiosqlite:///{prefect_home / 'prefect.db'}"
        if pf.database == "postgresql":
            database = postgres.url(pf.host, pf.db_port)
            services.append(
                Service(
                    name="prefect-db",
                    url=f"postgresql://{pf.host}:{pf.db_port}",
                    argv=lambda: postgres.argv(
                        settings.state_dir / "postgres", pf.host, pf.db_port
                    ),
                    healthy=lambda: postgres.ready(pf.host, pf.db_port),
                    ports=[pf.db_port],
                    host=pf.host,
                )
            )
        services.append(
            Service(
                name="prefect-server",
                url=pf.ui_url,
                argv=lambda: [
                    str(BIN / "prefect"),
                    "server",
                    "start",
                    "--host",
                    pf.host,
                    "--port",
                    str(pf.port),
                ],
                healthy=lambda: http_ok(f"{pf.api_url}/health"),
                env=client_env(config, settings)
                | {
                    "PREFECT_API_DATABASE_CONNECTION_URL": database,
                    "PREFECT_UI_API_URL": pf.api_url,
                    # schedule runs promptly (default loop: 60 s)
                    "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
                }
                | (
                    {"PREFECT_SERVER_API_AUTH_STRING": settings.prefect_auth.get_secret_value()}
                    if settings.prefect_auth
                    else {}
                ),
                ports=[pf.port],
                host=pf.host,
                after=["prefect-db"] if pf.database == "postgresql" else [],
            )
        )
    for region in config.regions:
        services.extend(_region_services(region, config, settings))
    stac = config.stac
    services.append(
        Service(
            name="stac-api",
            url=stac.url,
            argv=lambda: [
                sys.executable,
                "-m",
                "proxima.stac",
                "--host",
                stac.host,
                "--port",
                str(stac.port),
            ],
            healthy=lambda: http_ok(f"{stac.url}/_mgmt/ping"),
            env=client_env(config, settings),
            ports=[stac.port],
            host=stac.host,
            after=[] if config.opensearch.url else ["opensearch"],
        )
    )
    services.append(
        Service(
            name="flow-launcher",
            url=f"unix://{launcher_socket(settings)}",
            argv=lambda: [
                sys.executable,
                "-m",
                "proxima.stack.flow_launcher",
                "serve",
                str(launcher_socket(settings)),
                "--preload",
                *PRELOADED,
            ],
            healthy=lambda: unix_socket_answers(launcher_socket(settings)),
            env=client_env(config, settings),
        )
    )
    pool = config.prefect.work_pool
    services.append(
        Service(
            name="prefect-worker",
            url=f"{config.prefect.ui_url}/work-pools/work-pool/{pool}",
            argv=lambda: [
                str(BIN / "prefect"),
                "worker",
                "start",
                "--pool",
                pool,
                "--type",
                "process",
                "--name",
                "proxima-local-worker",
            ],
            healthy=lambda: (
                prefect_workers_online(config.prefect.api_url, pool, prefect_auth(settings)) > 0
            ),
            env=client_env(config, settings)
            | {
                "PREFECT_WORKER_QUERY_SECONDS": str(settings.worker_query_seconds),
                "PREFECT_WORKER_PREFETCH_SECONDS": "5",
                "PREFECT_WORKER_HEARTBEAT_SECONDS": "5",
                # the worker's flow runs share the stack's two cores (flows.admission)
                "PROXIMA_LARGE_RUN_NICE": "10",
            },
            after=["prefect-server"] if not config.prefect.url else [],
        )
    )
    return services


__all__ = [
    "PROJECT_ROOT",
    "Service",
    "build_services",
    "client_env",
    "dask_workers",
    "launch_command",
]
