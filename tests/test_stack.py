"""The real local stack: every service healthy, status reporting, clear refusals."""

import json
import os
import subprocess
import sys

import psutil
import pytest
from pydantic import SecretStr

from proxima import s3
from proxima.errors import StackError
from proxima.settings import ProximaSettings
from proxima.stack import manager, processes, s3_server

EXPECTED = {
    "opensearch",
    "prefect-db",
    "prefect-server",
    "prefect-worker",
    "flow-launcher",
    "stac-api",
    "us-east-1-s3",
    "us-east-1-dask-scheduler",
    "us-east-1-dask-workers",
    "us-west-2-s3",
    "us-west-2-dask-scheduler",
    "us-west-2-dask-workers",
}


def test_every_service_is_healthy(stack, settings):
    rows = manager.status(settings, stack)
    assert {r.name for r in rows} == EXPECTED
    unhealthy = [(r.name, r.log) for r in rows if not r.healthy]
    assert not unhealthy, f"unhealthy services (see logs): {unhealthy}"
    assert all(r.pid and r.rss_bytes > 0 for r in rows)


def test_status_json_from_the_cli(stack):
    out = subprocess.run(
        [sys.executable, "-m", "proxima.cli", "stack", "status", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert {r["name"] for r in rows} == EXPECTED
    assert all(r["healthy"] and r["pid"] and r["url"] for r in rows)
    urls = {r["name"]: r["url"] for r in rows}
    assert urls["prefect-server"] == stack.prefect.ui_url
    assert urls["us-west-2-dask-scheduler"] == stack.region("us-west-2").scheduler_address
    assert urls["stac-api"] == stack.stac.url


def test_up_again_keeps_the_running_processes(stack, settings):
    before = {r.name: r.pid for r in manager.status(settings, stack)}
    after = {r.name: r.pid for r in manager.up(settings, stack)}
    assert before == after


def test_up_with_a_different_configuration_is_refused(stack, settings):
    changed = stack.model_copy(update={"client_region": "us-west-2"})
    with pytest.raises(StackError, match="different configuration"):
        manager.up(settings, changed)


def test_port_in_use_is_reported_before_anything_starts(stack, settings, tmp_path):
    other = ProximaSettings(
        state_dir=tmp_path, stack_config=settings.stack_config, port_offset=settings.port_offset
    )
    with pytest.raises(StackError, match="already in use"):
        manager.up(other, stack)
    assert manager.status(other, stack) and not any(r.running for r in manager.status(other, stack))


def test_missing_java_is_a_clear_error(stack, tmp_path):
    other = ProximaSettings(state_dir=tmp_path, java="/nonexistent/java", port_offset=3000)
    with pytest.raises(StackError, match="Java not found"):
        manager.up(other, stack)


def test_auth_added_to_a_running_stack_is_refused(stack, settings):
    """The anonymous API would keep answering: a changed auth must not look healthy."""
    before = {r.name: r.pid for r in manager.status(settings, stack)}
    with_auth = settings.model_copy(update={"prefect_auth": SecretStr("admin:s3cret")})
    with pytest.raises(StackError, match="different PROXIMA_PREFECT_AUTH"):
        manager.up(with_auth, stack)
    assert {r.name: r.pid for r in manager.status(settings, stack)} == before


def _s3proxies(settings, region: str) -> list[psutil.Process]:
    """This stack's S3Proxy processes for ``region``: those started on the properties file
    in this stack's state directory (another stack, the demo's say, has its own)."""
    properties = str(s3_server.data_dir(region, settings).parent / f"{region}.properties")
    return [p for p in psutil.process_iter(["cmdline"]) if properties in (p.info["cmdline"] or [])]


@pytest.mark.reliability
def test_s3_data_survive_a_restart_and_two_ups_start_one_server(stack, settings):
    """Objects are files (S3Proxy's filesystem store), not memory; `up` holds a lock, so
    two at once restart the stopped endpoint once, not twice."""
    region = stack.region("us-east-1")
    client = s3.client(region)
    s3.ensure_bucket(client, "proxima-persist-test", region.name)
    client.put_object(Bucket="proxima-persist-test", Key="a/b.nc", Body=b"kept")

    (row,) = [r for r in manager.status(settings, stack) if r.name == f"{region.name}-s3"]
    assert [p.pid for p in _s3proxies(settings, region.name)] == [row.pid]
    processes.stop(row.pid)
    env = os.environ | {
        "PROXIMA_STATE_DIR": str(settings.state_dir),
        "PROXIMA_STACK_CONFIG": str(settings.stack_config),
        "PROXIMA_PORT_OFFSET": str(settings.port_offset),
    }
    ups = [
        subprocess.Popen(
            [sys.executable, "-m", "proxima.cli", "stack", "up"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in ups]
    assert [p.returncode for p in ups] == [0, 0], outs
    (after,) = [r for r in manager.status(settings, stack) if r.name == f"{region.name}-s3"]
    assert after.pid != row.pid
    assert [p.pid for p in _s3proxies(settings, region.name)] == [after.pid]
    assert all(r.healthy for r in manager.status(settings, stack))
    body = client.get_object(Bucket="proxima-persist-test", Key="a/b.nc")["Body"].read()
    assert body == b"kept"


def test_memory_of_a_tree_whose_child_exits_meanwhile_is_still_reported(monkeypatch):
    """A child listed in the tree but gone when its memory is read counts as zero."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    gone = psutil.Process(child.pid)
    child.wait()
    monkeypatch.setattr(gone, "is_running", lambda: True)  # it was, when listed
    me = psutil.Process(os.getpid())
    monkeypatch.setattr(processes, "_tree", lambda pid: [me, gone])
    assert processes.rss_bytes(os.getpid()) > 0


def test_the_work_pool_starts_flow_runs_through_the_flow_launcher(stack, settings):
    import httpx

    from proxima.stack.services import launch_command

    pool = httpx.get(f"{stack.prefect.api_url}/work_pools/{stack.prefect.work_pool}").json()
    command = pool["base_job_template"]["variables"]["properties"]["command"]
    assert command["default"] == launch_command(settings)
    assert pool["base_job_template"]["job_configuration"]["command"] == "{{ command }}"


def test_regional_workers_keep_large_arrays_in_the_heap(stack, settings):
    """Dask's nanny default (MALLOC_TRIM_THRESHOLD_=65536) turns off glibc's dynamic mmap
    threshold, so every slab was mmapped and faulted in anew: the stack overrides it."""
    from distributed import Client

    from proxima.platform import from_stack

    for region in from_stack(stack, settings).regions:
        with Client(
            region.scheduler_address, security=region.dask_security(), timeout=30
        ) as client:
            seen = client.run(
                lambda: (
                    os.environ.get("MALLOC_TRIM_THRESHOLD_"),
                    os.environ.get("MALLOC_MMAP_THRESHOLD_"),
                )
            )
        assert seen and set(seen.values()) == {(str(128 * 2**20), str(128 * 2**20))}


def test_regional_clusters_poll_their_own_health_at_a_lean_pace(stack, settings):
    """Idle, a scheduler and two workers took 1.3 CPU-s per 15 s at Dask's 20 ms tick check
    and 500 ms system monitor (0.5 at 1 s and 2 s), taken from the blocks on a 2-core host;
    the memory monitor, which restarts a worker before the kernel kills it, keeps 100 ms."""
    import dask
    from distributed import Client

    from proxima.platform import from_stack

    def pace() -> tuple[str, str, str]:
        get = dask.config.get
        return (
            str(get("distributed.admin.tick.interval")),
            str(get("distributed.admin.system-monitor.interval")),
            str(get("distributed.worker.memory.monitor-interval")),
        )

    for region in from_stack(stack, settings).regions:
        with Client(
            region.scheduler_address, security=region.dask_security(), timeout=30
        ) as client:
            workers = client.run(pace)
            scheduler = client.run_on_scheduler(pace)
        assert workers and set(workers.values()) == {("1s", "2s", "100ms")}
        assert scheduler[:2] == ("1s", "2s")
