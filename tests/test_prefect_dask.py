"""Prefect–Dask wiring: each regional subflow runs on its own region's workers,
and every task run is recorded in the one real Prefect server."""

import asyncio
import time

from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
from prefect.context import get_run_context
from prefect.task_runners import ThreadPoolTaskRunner

from flows.runners import regional_runner
from proxima.platform import Region, from_stack


def tls_context(client):
    """The TLS context a Prefect API client's connections are made with."""
    return client._client._transport._pool._ssl_context


@task
def where_am_i(i: int) -> dict:
    import distributed
    from prefect.client.orchestration import get_client

    from flows.prefect_clients import shared_context
    from proxima.settings import ProximaSettings

    client = get_client(sync_client=True)  # the one Prefect's engine made for this run

    return {
        "i": i,
        "worker": distributed.get_worker().name,
        "worker_region": ProximaSettings().region,
        "shared_tls": client._client._transport._pool._ssl_context is shared_context(),
    }


@flow
def regional(tag: str) -> list[dict]:
    return [f.result() for f in [where_am_i.submit(i) for i in range(3)]]


@task
def run_in(region: Region) -> list[dict]:
    return regional.with_options(name=f"wiring-{region.name}", task_runner=regional_runner(region))(
        region.name
    )


@flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
def parent(regions: list[Region]) -> dict:
    futures = {r.name: run_in.submit(r) for r in regions}
    return {
        "run_id": str(get_run_context().flow_run.id),
        "results": {r: f.result() for r, f in futures.items()},
    }


def test_subflows_run_on_their_own_regions_and_are_recorded(stack):
    out = parent(from_stack().regions)
    for region, rows in out["results"].items():
        assert len(rows) == 3
        assert {r["worker_region"] for r in rows} == {region}
        assert {r["worker"] for r in rows} == {f"{region}-worker"}
        assert all(r["shared_tls"] for r in rows)

    async def recorded():
        async with get_client() as client:
            subflows = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[out["run_id"]])
                )
            )
            names = []
            for sub in subflows:
                runs = await client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id={"any_": [sub.id]})
                )
                names += [(sub.name, t.name, t.state_type.value) for t in runs]
            return subflows, names

    # Task run states reach the server as events, which its task-run recorder writes
    # a moment later: the last COMPLETED may not be stored yet when the flow returns.
    deadline = time.monotonic() + 60
    while True:
        subflows, task_runs = asyncio.run(recorded())
        where = [t for t in task_runs if t[1].startswith("where_am_i")]
        settled = len(where) == 6 and all(state == "COMPLETED" for _, _, state in where)
        if settled or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(subflows) == 2
    assert len(where) == 6, task_runs
    assert all(state == "COMPLETED" for _, _, state in where), where


def test_every_prefect_client_of_a_process_shares_one_tls_context():
    """Prefect builds a TLS context per API client (16 ms each from the certifi bundle);
    the flows package makes them share one, and a caller's own ``verify`` is kept."""
    import ssl

    from prefect.client.orchestration import PrefectClient, SyncPrefectClient

    from flows.prefect_clients import shared_context

    api = "http://127.0.0.1:9/api"
    shared = shared_context()
    assert tls_context(SyncPrefectClient(api)) is shared
    assert tls_context(PrefectClient(api)) is shared
    own = ssl.create_default_context()
    assert tls_context(SyncPrefectClient(api, httpx_settings={"verify": own})) is own
