"""`proxima stack up | down | status`: bring the local stack to healthy and back to nothing."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from proxima import dask_tls
from proxima.config import StackConfig, load_stack_config
from proxima.errors import StackError
from proxima.pids import alive
from proxima.settings import PROJECT_ROOT, ProximaSettings, get_settings
from proxima.stack import opensearch_node, processes, s3_server
from proxima.stack.automations import ensure_zombie_automation
from proxima.stack.services import Service, build_services, launch_command, prefect_auth

Progress = Callable[[str], None]


@dataclass
class ServiceStatus:
    """What `status` reports for one service."""

    name: str
    url: str
    pid: int | None
    running: bool
    healthy: bool
    log: str
    region: str | None = None
    rss_bytes: int = 0
    seconds_to_healthy: float | None = None


def _read_state(settings: ProximaSettings) -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads(settings.state_file.read_text())
        return state
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _write_state(settings: ProximaSettings, state: dict[str, Any]) -> None:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    tmp = settings.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(settings.state_file)


@contextmanager
def _stack_lock(settings: ProximaSettings, progress: Progress) -> Iterator[None]:
    """One `up` or `down` at a time per state directory: two at once started every
    service twice, and `down` knew only one of each.
    """
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    with (settings.state_dir / "stack.lock").open("w") as lock:
        deadline = time.monotonic() + settings.health_timeout_s
        waiting = False
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waiting:
                    progress("another `proxima stack up/down` is running here; waiting for it")
                    waiting = True
                if time.monotonic() > deadline:
                    raise StackError(
                        f"another `proxima stack up/down` has held {settings.state_dir} for "
                        f"{settings.health_timeout_s:.0f} s; let it finish, then try again"
                    ) from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _auth_fingerprint(settings: ProximaSettings) -> str:
    """A hash of the Prefect API credentials the stack's services were started with."""
    secret = settings.prefect_auth.get_secret_value() if settings.prefect_auth else ""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def code_hash() -> str:
    """A hash of the project's Python code: workers that imported older code restart."""
    digest = hashlib.sha256()
    for package in ("proxima", "flows", "blocks"):
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


# Long-lived processes that import project code (Dask pickles tasks by reference;
# the scheduler unpickles graphs too, so it keeps the code it first imported).
CODE_BOUND = ("-dask-scheduler", "-dask-workers", "prefect-worker", "flow-launcher")


def _job_template(settings: ProximaSettings) -> dict[str, Any]:
    """The process worker's default job template, its command the flow launcher's."""
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    template["variables"]["properties"]["command"]["default"] = launch_command(settings)
    return template


def _ensure_work_pool(config: StackConfig, settings: ProximaSettings) -> None:
    """Create the process work pool if needed; its job command starts runs warm."""
    api, pool = config.prefect.api_url, config.prefect.work_pool
    auth = prefect_auth(settings)
    wanted = _job_template(settings)
    resp = httpx.get(f"{api}/work_pools/{pool}", timeout=10, auth=auth)
    if resp.status_code == 404:
        created = httpx.post(
            f"{api}/work_pools/",
            json={"name": pool, "type": "process", "base_job_template": wanted},
            timeout=10,
            auth=auth,
        )
        if created.status_code not in (201, 409):
            raise StackError(f"could not create work pool {pool}: {created.text}")
        return
    if not resp.is_success:
        raise StackError(f"Prefect API {api} answered {resp.status_code}: {resp.text}")
    if resp.json().get("base_job_template") != wanted:
        patched = httpx.patch(
            f"{api}/work_pools/{pool}",
            json={"base_job_template": wanted},
            timeout=10,
            auth=auth,
        )
        if not patched.is_success:
            raise StackError(f"could not set work pool {pool}'s job template: {patched.text}")


def _release_orphaned_runs(config: StackConfig, settings: ProximaSettings) -> list[str]:
    """Crash the pool's runs left Pending by a worker that stopped while submitting them.

    Called only when the stack's (only) worker is about to start, so nothing else can be
    submitting them. Such a run holds its deployment's concurrency slot for good, and
    with CANCEL_NEW every later run of that deployment (the hourly catalog refresh)
    would be cancelled.
    """
    api, auth = config.prefect.api_url, prefect_auth(settings)
    resp = httpx.post(
        f"{api}/flow_runs/filter",
        json={
            "flow_runs": {"state": {"type": {"any_": ["PENDING"]}}},
            "work_pools": {"name": {"any_": [config.prefect.work_pool]}},
        },
        timeout=10,
        auth=auth,
    )
    resp.raise_for_status()
    released = []
    for run in resp.json():
        httpx.post(
            f"{api}/flow_runs/{run['id']}/set_state",
            json={
                "state": {
                    "type": "CRASHED",
                    "name": "Crashed",
                    "message": "its worker stopped before the run started; submit it again",
                },
                "force": True,
            },
            timeout=10,
            auth=auth,
        ).raise_for_status()
        released.append(run["name"])
    return released


def _wait_healthy(service: Service, pid: int | None, settings: ProximaSettings) -> None:
    deadline = time.monotonic() + settings.health_timeout_s
    log = settings.logs_dir / f"{service.name}.log"
    while time.monotonic() < deadline:
        if service.healthy():
            return
        if pid is not None and not alive(pid):
            raise StackError(
                f"{service.name} exited before becoming healthy. Last lines of {log}:\n"
                f"{processes.tail(log)}"
            )
        time.sleep(0.5)
    raise StackError(
        f"{service.name} not healthy within {settings.health_timeout_s:.0f}s ({service.url}). "
        f"Last lines of {log}:\n{processes.tail(log)}"
    )


def _wait_all(
    services: list[Service], records: dict[str, dict[str, Any]], settings: ProximaSettings
) -> None:
    """Poll every service until all are healthy; record each one's time to healthy."""
    pending = {s.name: s for s in services}
    deadline = time.monotonic() + settings.health_timeout_s
    while pending:
        for name, service in list(pending.items()):
            rec = records[name]
            if service.healthy():
                if "started" in rec and "healthy_s" not in rec:
                    rec["healthy_s"] = round(time.time() - rec["started"], 2)
                del pending[name]
            elif not alive(rec.get("pid")):
                _wait_healthy(service, rec.get("pid"), settings)  # raises with the log tail
        if pending and time.monotonic() > deadline:
            name = next(iter(pending))
            _wait_healthy(pending[name], records[name].get("pid"), settings)
        time.sleep(0.2)


def up(
    settings: ProximaSettings | None = None,
    config: StackConfig | None = None,
    progress: Progress = lambda _: None,
) -> list[ServiceStatus]:
    """Start every service that is not already running, and wait until all are healthy.

    Idempotent: services of this stack that already run are kept. A running stack
    with a different configuration is an error (run `down` first).

    Raises:
        StackError: Java/Maven missing, a port taken by another program, or a service
            not healthy in time (its last log lines are in the message).
    """
    settings = settings or get_settings()
    config = config or load_stack_config(settings=settings)
    with _stack_lock(settings, progress):
        return _up(settings, config, progress)


def _up(settings: ProximaSettings, config: StackConfig, progress: Progress) -> list[ServiceStatus]:
    state = _read_state(settings)
    running = {
        name: rec["pid"] for name, rec in state.get("services", {}).items() if alive(rec.get("pid"))
    }
    if running and state.get("fingerprint") != config.fingerprint():
        raise StackError(
            "a stack with a different configuration is already running from "
            f"{settings.state_dir}; run `proxima stack down` first, then `up` again."
        )
    if running and state.get("auth", _auth_fingerprint(settings)) != _auth_fingerprint(settings):
        # Every service that talks to the Prefect API holds the old credentials, and the
        # server would keep answering without them: restart all, or nothing.
        raise StackError(
            "the running stack was started with a different PROXIMA_PREFECT_AUTH; run "
            "`proxima stack down`, then `up` again with the new setting"
        )
    if running and state.get("code") != code_hash():
        for name in [n for n in running if n.endswith(CODE_BOUND)]:
            progress(f"restarting {name}: the project code changed")
            processes.stop(running.pop(name))
    services = build_services(config, settings)
    tls_members = {f"{r.name}-cluster": [r.host, "localhost"] for r in config.regions if r.tls}
    if tls_members:
        dask_tls.ensure_certificates(settings.tls_dir, tls_members)
    # Preflight before anything starts: nothing half-up on a predictable failure.
    java_services = {"opensearch", *(s.name for s in services if s.name.endswith("-s3"))}
    if any(s.name in java_services and s.name not in running for s in services):
        opensearch_node.java_major(settings.java)
        s3_server.require_jar()
    if any(s.name == "opensearch" for s in services) and "opensearch" not in running:
        progress("resolving OpenSearch artifacts (cached after the first run)")
        opensearch_node.classpath(settings)
    for service in services:
        if service.name in running:
            continue
        taken = [p for p in service.ports if processes.port_in_use(p, service.host)]
        if taken:
            raise StackError(
                f"port(s) {taken} needed by {service.name} are already in use by another "
                "program. Stop it, or shift the stack's ports with PROXIMA_PORT_OFFSET."
            )
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    records: dict[str, dict[str, Any]] = {
        name: rec for name, rec in state.get("services", {}).items() if name in running
    }
    state = {
        "fingerprint": config.fingerprint(),
        "auth": _auth_fingerprint(settings),
        "code": code_hash(),
        "services": records,
    }
    by_name = {s.name: s for s in services}
    try:
        for service in services:
            for dependency in service.after:
                if dependency in by_name:
                    _wait_healthy(
                        by_name[dependency], records.get(dependency, {}).get("pid"), settings
                    )
            if service.name == "prefect-worker":
                _ensure_work_pool(config, settings)
                ensure_zombie_automation(config.prefect.api_url, prefect_auth(settings))
                if service.name not in running:
                    for name in _release_orphaned_runs(config, settings):
                        progress(f"marked flow run {name} Crashed: its worker had stopped")
            if service.name in running:
                continue
            progress(f"starting {service.name}")
            pid = processes.spawn(
                service.argv(),
                env=service.env or dict(os.environ),
                log_path=settings.logs_dir / f"{service.name}.log",
                cwd=PROJECT_ROOT,
            )
            records[service.name] = {
                "pid": pid,
                "url": service.url,
                "region": service.region,
                "started": time.time(),
            }
            _write_state(settings, state)
        progress("waiting for every service to answer its health check")
        _wait_all(services, records, settings)
    finally:
        _write_state(settings, state)
    return status(settings, config)


def status(
    settings: ProximaSettings | None = None, config: StackConfig | None = None
) -> list[ServiceStatus]:
    """Each service's URL, PID, whether it runs and whether it answers its health check."""
    settings = settings or get_settings()
    config = config or load_stack_config(settings=settings)
    records = _read_state(settings).get("services", {})
    result = []
    for service in build_services(config, settings):
        pid = records.get(service.name, {}).get("pid")
        running = alive(pid)
        result.append(
            ServiceStatus(
                name=service.name,
                url=service.url,
                pid=pid if running else None,
                running=running,
                healthy=running and service.healthy(),
                log=str(settings.logs_dir / f"{service.name}.log"),
                region=service.region,
                rss_bytes=processes.rss_bytes(pid) if running and pid else 0,
                seconds_to_healthy=records.get(service.name, {}).get("healthy_s"),
            )
        )
    return result


def down(settings: ProximaSettings | None = None, progress: Progress = lambda _: None) -> list[int]:
    """Stop every process the stack started (workers first) and forget them.

    Returns:
        The PIDs that were stopped.
    """
    settings = settings or get_settings()
    with _stack_lock(settings, progress):
        return _down(settings, progress)


def _down(settings: ProximaSettings, progress: Progress) -> list[int]:
    records = _read_state(settings).get("services", {})
    stopped = []
    for name, rec in reversed(list(records.items())):
        pid = rec.get("pid")
        if alive(pid):
            progress(f"stopping {name} (pid {pid})")
            processes.stop(pid)
            stopped.append(pid)
    left = [pid for pid in stopped if alive(pid)]
    if left:
        raise StackError(f"processes still alive after stop: {left}")
    settings.state_file.unlink(missing_ok=True)
    return stopped
