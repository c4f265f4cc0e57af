"""Security: Dask over mutual TLS, secrets kept out of logs and artifacts, Prefect
basic auth. The test stack's us-west-2 cluster is TLS-only."""

from __future__ import annotations

import json
import socket
import ssl
import time

import pytest
from distributed import Client
from distributed.security import Security

from proxima.pids import alive
from proxima.platform import from_stack
from proxima.stack.services import run_prefect

pytestmark = pytest.mark.reliability

TLS_REGION = "us-west-2"


def _host_port(address: str) -> tuple[str, int]:
    host, port = address.split("://", 1)[1].rsplit(":", 1)
    return host, int(port)


def test_tls_region_accepts_a_client_with_the_platform_certificate(stack):
    region = from_stack().region(TLS_REGION)
    assert region.scheduler_address and region.scheduler_address.startswith("tls://")
    with Client(
        region.scheduler_address, security=region.dask_security(), timeout=10, set_as_default=False
    ) as client:
        workers = client.scheduler_info(n_workers=-1)["workers"]
    assert workers and all(address.startswith("tls://") for address in workers)


def test_tls_region_refuses_a_handshake_without_a_client_certificate(stack, settings):
    region = from_stack().region(TLS_REGION)
    host, port = _host_port(region.scheduler_address or "")
    context = ssl.create_default_context(cafile=str(settings.tls_dir / "ca.pem"))
    context.check_hostname = False  # the server is trusted; what matters is our missing cert
    with (
        pytest.raises(ssl.SSLError, match="CERTIFICATE_REQUIRED"),
        socket.create_connection((host, port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.recv(1)  # TLS 1.3: the server's refusal arrives as an alert on first read


def test_tls_region_refuses_clients_from_another_ca_or_in_plain_tcp(stack):
    region = from_stack().region(TLS_REGION)
    address = region.scheduler_address or ""
    stranger = Security.temporary()  # a valid certificate, but not signed by our CA
    with pytest.raises((OSError, TimeoutError)):
        Client(address, security=stranger, timeout=5, set_as_default=False)
    plain = address.replace("tls://", "tcp://")
    with pytest.raises((OSError, TimeoutError)):
        Client(plain, timeout=5, set_as_default=False)


def test_prefect_server_basic_auth_refuses_anonymous_clients(tmp_path, observe):
    import httpx
    from prefect import flow
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings
    from pydantic import SecretStr

    from proxima.config import load_stack_config
    from proxima.settings import PROJECT_ROOT, ProximaSettings
    from proxima.stack import processes
    from proxima.stack.services import build_services

    auth = "analyst:c4n4ry-pr3fect-pw"
    settings = ProximaSettings(
        state_dir=tmp_path / "state",
        stack_config=PROJECT_ROOT / "tests" / "stack.yaml",
        port_offset=1700,
        prefect_auth=SecretStr(auth),
    )
    config = load_stack_config(settings=settings)
    # The server alone, on SQLite: what is tested is its auth, not its database.
    prefect = config.prefect.model_copy(update={"database": "sqlite"})
    config = config.model_copy(update={"prefect": prefect})
    server = next(s for s in build_services(config, settings) if s.name == "prefect-server")
    (settings.state_dir / "prefect").mkdir(parents=True)
    log = settings.state_dir / "prefect-server.log"
    pid = processes.spawn(server.argv(), env=server.env, log_path=log, cwd=PROJECT_ROOT)
    try:
        deadline = time.monotonic() + 120
        while not server.healthy():  # /health is open to probes, like Kubernetes'
            assert alive(pid), processes.tail(log)
            assert time.monotonic() < deadline, processes.tail(log)
            time.sleep(0.5)
        api = config.prefect.api_url
        anonymous = httpx.post(f"{api}/flows/filter", json={}, timeout=10)
        wrong = httpx.post(f"{api}/flows/filter", json={}, auth=("analyst", "guess"), timeout=10)
        right = httpx.post(f"{api}/flows/filter", json={}, auth=tuple(auth.split(":")), timeout=10)
        assert (anonymous.status_code, wrong.status_code, right.status_code) == (401, 401, 200)

        @flow
        def behind_auth() -> int:
            return 42

        with temporary_settings({PREFECT_API_URL: api, PREFECT_API_AUTH_STRING: auth}):
            assert behind_auth() == 42
        listed = httpx.post(f"{api}/flows/filter", json={}, auth=tuple(auth.split(":")))
        assert "behind-auth" in {f["name"] for f in listed.json()}
        observe(anonymous=anonymous.status_code, wrong=wrong.status_code, right=right.status_code)
    finally:
        processes.stop(pid)


def _everything_recorded_since(since) -> list[str]:
    """Logs, artifacts, flow-run parameters and state messages on the Prefect server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, LogFilter

    texts: list[str] = []
    with get_client(sync_client=True) as client:
        offset = 0
        while page := client.read_logs(
            log_filter=LogFilter(timestamp={"after_": since}), limit=200, offset=offset
        ):
            texts += [log.message for log in page]
            offset += len(page)
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(start_time={"after_": since}), limit=200
        )
        texts += [r.model_dump_json() for r in runs]  # parameters, state messages
        for run in runs:
            texts += [
                t.model_dump_json()
                for t in client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [run.id]}))
            ]
        offset = 0
        while artifacts := client.read_artifacts(limit=200, offset=offset):
            texts += [a.model_dump_json() for a in artifacts]
            offset += len(artifacts)
    return texts


def test_secrets_never_reach_logs_artifacts_or_run_records(deployed, stack, settings, observe):
    import base64
    import json
    import uuid
    from datetime import UTC, datetime

    import httpx
    from pydantic import SecretStr

    from blocks.opensearch_catalog import OpenSearchCatalog
    from proxima.platform.blocks import CATALOG_BLOCK, save_blocks

    password = f"c4n4ry-{uuid.uuid4().hex}"
    tls_key_body = max(
        (settings.tls_dir / "client-key.pem").read_text().splitlines(), key=len
    )  # the us-west-2 block holds this key as PEM text
    secrets = {
        "catalog password": password,
        "catalog basic-auth header": base64.b64encode(f"proxima:{password}".encode()).decode(),
        "Dask TLS client key": tls_key_body,
    }
    since = datetime.now(UTC)
    block = OpenSearchCatalog.load(CATALOG_BLOCK)
    block.auth, block.username, block.password = "basic", "proxima", SecretStr(password)
    block.save(CATALOG_BLOCK, overwrite=True)
    request = {
        "selection": {
            "variable": "air_temperature",
            "dataset": "era5",
            "start": "2020-02-01",
            "end": "2020-03-31",
        },
        "reduction": "mean",
        "over": "both",
        "output_name": "secrets-scan",
        "overwrite": True,
    }
    try:
        refresh = run_prefect(
            ["deployment", "run", "catalog-refresh/catalog-full-rebuild", "--watch"],
            stack,
            settings,
            timeout=300,
        )
        analysis = run_prefect(
            [
                "deployment",
                "run",
                "cross-region-analysis/cross-region-analysis",
                "--params",
                json.dumps({"request": request}),
                "--watch",
            ],
            stack,
            settings,
            timeout=300,
        )
        # the secrets were really in play: the server holds them and hands them out on request
        api = stack.prefect.api_url
        docs = httpx.post(
            f"{api}/block_documents/filter", json={"include_secrets": True}, timeout=10
        ).text
        assert password in docs and tls_key_body in docs.replace("\\n", "\n")
    finally:
        save_blocks()
    for out in (refresh, analysis):
        assert out.returncode == 0 and "Completed" in out.stdout, out.stdout[-2000:]
    haystacks = [refresh.stdout + refresh.stderr, analysis.stdout + analysis.stderr]
    haystacks += _everything_recorded_since(since)
    haystacks += [p.read_text(errors="replace") for p in settings.logs_dir.glob("*.log")]
    result = settings.state_dir / "results" / "secrets-scan.nc"
    haystacks.append(result.read_bytes().decode("latin-1"))
    leaks = {what: sum(secret in text for text in haystacks) for what, secret in secrets.items()}
    assert leaks == dict.fromkeys(secrets, 0), leaks
    observe(texts_scanned=len(haystacks), bytes_scanned=sum(map(len, haystacks)), leaks=leaks)


def test_catalog_search_authenticates_as_the_catalog_block_says(deployed, stack, settings):
    """The CLI finds the catalog, and its credentials, through the OpenSearchCatalog
    block, as the flows do: here an endpoint that refuses requests without basic auth.
    """
    import subprocess
    import sys

    from pydantic import SecretStr

    from blocks.opensearch_catalog import OpenSearchCatalog
    from proxima.platform.blocks import CATALOG_BLOCK
    from proxima.stack.services import client_env
    from tests.faultproxy import FaultProxy

    command = ["catalog", "search", "--dataset", "era5", "--json"]

    def search() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "proxima.cli", *command],
            env=client_env(stack, settings),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    original = OpenSearchCatalog.load(CATALOG_BLOCK)
    with FaultProxy(stack.opensearch.endpoint, require_auth=("analyst", "s3arch-pw")) as proxy:
        guarded = original.model_copy(
            update={
                "hosts": [proxy.url],
                "auth": "basic",
                "username": "analyst",
                "password": SecretStr("s3arch-pw"),
            }
        )
        try:
            guarded.save(CATALOG_BLOCK, overwrite=True)
            ok = search()
            assert ok.returncode == 0, ok.stderr[-2000:]
            assert json.loads(ok.stdout)["assets"], "the search found nothing"
            assert proxy.headers and proxy.refused == 0  # every request carried the password

            guarded.password = SecretStr("wrong")
            guarded.save(CATALOG_BLOCK, overwrite=True)
            refused = search()
            assert refused.returncode == 1
            assert "401" in refused.stderr or "unauthorized" in refused.stderr.lower()
            assert "Traceback" not in refused.stderr
            assert proxy.refused > 0
        finally:
            original.save(CATALOG_BLOCK, overwrite=True)


def test_every_listener_of_the_stack_binds_its_configured_host(stack, settings):
    """No service of the stack (nor a child such as a Dask worker process) listens on
    every interface: each binds the host its configuration names.
    """
    import psutil

    from proxima.stack import manager

    hosts = {"127.0.0.1", "::1"}
    wild = []
    for row in manager.status(settings, stack):
        if not row.pid:
            continue
        parent = psutil.Process(row.pid)
        for proc in [parent, *parent.children(recursive=True)]:
            for conn in proc.net_connections(kind="inet"):
                ip = conn.laddr.ip.removeprefix("::ffff:")  # IPv4-mapped (the JVM's)
                if conn.status == psutil.CONN_LISTEN and ip not in hosts:
                    wild.append((row.name, proc.pid, f"{conn.laddr.ip}:{conn.laddr.port}"))
    assert not wild, wild
