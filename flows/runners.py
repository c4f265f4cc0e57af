"""Running work on a region's own cluster: the task runner a regional subflow is bound
to, the subflow call itself, and the client a task uses to fan out on that cluster.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from prefect import Flow, get_run_logger
from prefect_dask import DaskTaskRunner

from proxima import ecs
from proxima.aws_outputs import DaskClusterSpec
from proxima.errors import ConfigurationError
from proxima.platform import Region

ECS_CLUSTER = "dask_cloudprovider.aws.ECSCluster"
P = ParamSpec("P")
R = TypeVar("R")


def regional_runner(region: Region, connect_timeout: str = "15s") -> DaskTaskRunner:
    """Bind to the region's running scheduler, or start an ECSCluster on the resources
    its stack created (nothing else is created at run time).
    """
    if region.scheduler_address:
        return DaskTaskRunner(
            address=region.scheduler_address,
            client_kwargs={"timeout": connect_timeout, "security": region.dask_security()},
        )
    if region.cluster_spec:
        spec = DaskClusterSpec.model_validate(region.cluster_spec)
        return DaskTaskRunner(cluster_class=ECS_CLUSTER, cluster_kwargs=spec.ecs_cluster_kwargs())
    raise ConfigurationError(
        f"region {region.name} has neither a scheduler_address nor a cluster_spec"
    )


def cluster_client_kwargs() -> dict[str, Any]:
    """Keyword arguments for a client made inside a task on a regional worker.

    The scheduler address alone fails on a TLS-only scheduler ("TLS expects a
    `ssl_context` argument"); the worker's own certificate (started as ``--tls-cert``,
    it is the worker role's) serves as the client's.
    """
    import distributed
    from distributed.security import Security

    own = distributed.get_worker().security.get_tls_config_for_role("worker")
    if not own["ca_file"]:
        return {}
    security = Security(
        require_encryption=True,
        tls_ca_file=own["ca_file"],
        tls_client_cert=own["cert"],
        tls_client_key=own["key"],
    )
    return {"security": security}


_bound: dict[tuple[Any, str, str], Any] = {}


def on_region(flow: Flow[P, R], region: Region, name: str) -> Flow[P, R]:
    """``flow`` named ``name`` and bound to ``region``'s cluster, to call as a subflow.

    Made once per process for each flow, name and region: a new Flow builds its
    parameters' JSON schema (14 ms for a Region and a KernelSpec, measured), and each run
    duplicates the task runner anyway. Its runs keep Prefect's generated names: a custom
    run name costs the engine one more request before the region starts.
    """
    key = (flow, name, region.model_dump_json())
    bound = _bound.get(key)
    if bound is None:
        runner = regional_runner(region)
        bound = _bound[key] = flow.with_options(name=name, task_runner=runner)  # type: ignore[arg-type]
    return bound


def wake(region: Region) -> None:
    """Ask for ``region``'s workers if its worker service was scaled in (AWS, minimal
    profile; nothing elsewhere): the run's tasks then wait on the scheduler for them.
    """
    if ecs.wake_workers(region):
        get_run_logger().info(
            f"{region.name}: its worker service was idle; asked for {region.workers} "
            "workers (a cold start takes minutes: hosts boot and mount FSx)"
        )


def run_regional_subflow(flow: Flow[..., Any], region: Region, name: str, **parameters: Any) -> Any:
    """Call ``flow`` as a subflow :func:`on_region` (an asynchronous flow runs to
    completion on this thread's own event loop), its region's workers woken first.
    """
    wake(region)
    out = on_region(flow, region, name)(region=region, **parameters)
    if inspect.iscoroutine(out):
        return asyncio.run(out)
    return out


async def on_cluster(step: Any, *args: Any) -> Any:
    """Submit a task from an asynchronous regional subflow to the subflow's cluster and
    wait for its result, both off the event loop.

    The task runner connects to its scheduler on the first submit, synchronously: on the
    loop, one region's connection would hold up every other region's subflow.
    """
    future = await asyncio.to_thread(step.submit, *args)
    return await asyncio.to_thread(future.result)


_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def _cluster_client() -> Any:
    """This worker process's client of its own cluster, made once and then shared by
    its tasks (a client is thread-safe; connecting costs 0.1-0.3 s per task).

    Never the process-wide default client: ``get_dask_client`` made one per task and
    set it as the default, so a task finishing closed the client another task on the
    same worker was resolving (``'NoneType' object has no attribute 'address'``).
    """
    import distributed

    address = distributed.get_worker().scheduler.address
    with _clients_lock:
        client = _clients.get(address)
        if client is None or client.status not in ("running", "connecting"):
            client = distributed.Client(
                address, set_as_default=False, timeout="30s", **cluster_client_kwargs()
            )
            _clients[address] = client
        return client


@contextmanager
def region_cluster() -> Iterator[Any]:
    """A client of this task's own regional cluster, with the worker thread seceded so
    the work it submits can run beside it (and never deadlock a small region).
    """
    import distributed

    client = _cluster_client()
    distributed.secede()
    try:
        yield client
    finally:
        distributed.rejoin()
