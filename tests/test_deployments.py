"""prefect.yaml deployments on the real server: schedules, limits, the parameter form,
runs from the CLI, schema rejections, and a scheduled run that completes."""

import asyncio
import json
import time
from datetime import timedelta

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import DeploymentScheduleCreate
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter
from prefect.client.schemas.schedules import IntervalSchedule

from proxima.stack.services import run_prefect

REQUEST = {
    "selection": {
        "variable": "air_temperature",
        "dataset": "era5",
        "start": "2020-01-01",
        "end": "2020-04-30",
        "bbox": [160, -30, -150, 30],
    },
    "reduction": "mean",
    "over": "both",
    "group_by": "month",
    "output_name": "cli-run",
    "overwrite": True,
}


async def _deployment(name):
    async with get_client() as client:
        return await client.read_deployment_by_name(name)


def test_deployments_schedules_and_form(deployed):
    refresh = asyncio.run(_deployment("catalog-refresh/catalog-refresh"))
    assert [s.schedule.cron for s in refresh.schedules] == ["0 * * * *"]
    assert refresh.global_concurrency_limit.limit == 1
    assert refresh.concurrency_options.collision_strategy == "CANCEL_NEW"
    rebuild = asyncio.run(_deployment("catalog-refresh/catalog-full-rebuild"))
    assert rebuild.parameters == {"full_rebuild": True} and not rebuild.schedules
    analysis = asyncio.run(_deployment("cross-region-analysis/cross-region-analysis"))
    assert analysis.enforce_parameter_schema
    schema = json.dumps(analysis.parameter_openapi_schema)
    for field in (
        "selection",
        "baseline",
        "reduction",
        "group_by",
        "dry_run",
        "bbox",
        "max_transfer_bytes",
        "allow_partial",
    ):
        assert f'"{field}"' in schema


def test_cli_run_completes_and_writes_the_result(deployed, settings):
    out = run_prefect(
        [
            "deployment",
            "run",
            "cross-region-analysis/cross-region-analysis",
            "--params",
            json.dumps({"request": REQUEST}),
            "--watch",
        ],
        deployed,
        settings,
        timeout=300,
    )
    assert out.returncode == 0 and "Completed" in out.stdout, out.stdout[-3000:]
    assert (settings.state_dir / "results" / "cli-run.nc").exists()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"request": {**REQUEST, "reduction": "median"}}, "request.reduction"),
        (
            {"request": {**REQUEST, "selection": {**REQUEST["selection"], "bbox": [1, 2]}}},
            "request.selection.bbox",
        ),
        ({"request": {**REQUEST, "surprise": 1}}, "surprise"),
    ],
)
def test_bad_cli_parameters_are_rejected_by_the_schema(deployed, settings, params, message):
    out = run_prefect(
        [
            "deployment",
            "run",
            "cross-region-analysis/cross-region-analysis",
            "--params",
            json.dumps(params),
        ],
        deployed,
        settings,
        timeout=300,
    )
    text = " ".join((out.stdout + out.stderr).split())
    assert out.returncode != 0
    assert "Validation failed" in text and message in text, text


def test_a_short_schedule_produces_a_completed_run(deployed):
    async def scenario():
        async with get_client() as client:
            dep = await client.read_deployment_by_name("catalog-refresh/catalog-refresh")
            [created] = await client.create_deployment_schedules(
                dep.id,
                [
                    DeploymentScheduleCreate(
                        schedule=IntervalSchedule(interval=timedelta(seconds=10)), active=True
                    )
                ],
            )
            try:
                deadline = time.monotonic() + 180
                while time.monotonic() < deadline:
                    runs = await client.read_flow_runs(
                        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id]))
                    )
                    done = [
                        r for r in runs if r.auto_scheduled and r.state and r.state.is_completed()
                    ]
                    if done:
                        return done[0]
                    await asyncio.sleep(2)
                return None
            finally:
                await client.delete_deployment_schedule(dep.id, created.id)
                for run in await client.read_flow_runs(
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])),
                    flow_run_filter=FlowRunFilter(state={"type": {"any_": ["SCHEDULED"]}}),
                ):
                    await client.delete_flow_run(run.id)

    run = asyncio.run(scenario())
    assert run is not None, "no scheduled catalog-refresh run completed within 180 s"
