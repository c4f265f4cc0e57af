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

from proxima import demo
from proxima.stack.services import run_prefect
from tests.cli import proxima

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
    climatology = asyncio.run(_deployment("scheduled-analysis/era5-t2m-monthly-climatology"))
    assert [s.schedule.cron for s in climatology.schedules] == ["30 6 * * *"]
    assert climatology.parameters["name"] == "era5-t2m-monthly-climatology"
    assert climatology.parameters["request"]["group_by"] == "month"
    assert climatology.enforce_parameter_schema
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
        "reuse",
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
    said: list[str] = []
    reported = demo.report(settings.state_dir / "results" / "cli-run.nc", said.append)
    assert [label for label, _ in reported["answer"]] == ["Jan", "Feb", "Mar", "Apr"]
    assert all(value.endswith(" K") for _, value in reported["answer"])
    assert {r["region"] for r in reported["per_region"]} == {"us-east-1", "us-west-2"}
    assert any(line.startswith("  bytes that crossed regions: ") for line in said)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"request": {**REQUEST, "reduction": "median"}}, "request.reduction"),
        (
            {"request": {**REQUEST, "selection": {**REQUEST["selection"], "bbox": [1, 2]}}},
            "request.selection.bbox",
        ),
        ({"request": {**REQUEST, "surprise": 1}}, "surprise"),
        (
            {"request": {**REQUEST, "selection": {**REQUEST["selection"], "bbox": [0, 0, 540, 1]}}},
            "request.selection.bbox[2]",
        ),
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


@pytest.mark.reliability
def test_an_unknown_top_level_parameter_is_refused_by_the_api(deployed):
    """The Prefect CLI checks names itself; the API (the UI's custom run, scripts) did
    not, and such a run crashed before the flow began. `proxima deploy` seals it."""
    from prefect.exceptions import PrefectHTTPStatusError

    analysis = asyncio.run(_deployment("cross-region-analysis/cross-region-analysis"))
    assert analysis.parameter_openapi_schema["additionalProperties"] is False
    with (
        get_client(sync_client=True) as client,
        pytest.raises(PrefectHTTPStatusError, match="'surprise' was unexpected"),
    ):
        client.create_flow_run_from_deployment(
            analysis.id, parameters={"request": REQUEST, "surprise": 1}
        )


@pytest.mark.reliability
def test_a_run_the_schema_cannot_refuse_fails_with_the_reason(deployed, settings, tmp_path):
    """North 91 passes the JSON schema (bbox bounds are per value). The CLI refuses it
    before submitting; through the API the flow validates it with the same model before
    any work, and the run's state message says why (what the UI shows)."""
    from prefect.flow_runs import wait_for_flow_run

    bad = {**REQUEST, "selection": {**REQUEST["selection"], "bbox": [160, -30, -150, 91]}}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    out = proxima(deployed, settings, "analyze", str(path))
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1 and "bbox north 91.0 is outside -90..90" in out.stderr

    analysis = asyncio.run(_deployment("cross-region-analysis/cross-region-analysis"))
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(analysis.id, parameters={"request": bad})
    run = asyncio.run(wait_for_flow_run(run.id, timeout=300))
    assert run.state.is_failed()
    assert "bbox north 91.0 is outside -90..90" in run.state.message


@pytest.mark.reliability
def test_analyze_follows_the_run_and_prints_why_it_failed(deployed, settings, tmp_path):
    """`prefect deployment run --watch` prints only the final state; `proxima analyze`
    submits to the deployment, follows the run and prints its reason on one line."""
    unknown = {**REQUEST, "selection": {**REQUEST["selection"], "variable": "no_such_var"}}
    path = tmp_path / "unknown.json"
    path.write_text(json.dumps(unknown))
    out = proxima(deployed, settings, "analyze", str(path))
    assert out.returncode == 1
    *progress, last = out.stderr.strip().splitlines()
    assert "run: Running" in progress and "run: Failed" in progress, out.stderr
    assert "the run ended FAILED" in last and "no_such_var" in last, out.stderr


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


def test_a_missing_deployment_is_named_with_what_to_do(deployed):
    from flows.submit import submit_analysis
    from proxima.analysis.request import AnalysisRequest
    from proxima.errors import ProximaError

    with pytest.raises(
        ProximaError, match=r"no deployment cross-region-analysis/absent.*proxima deploy"
    ):
        submit_analysis(
            AnalysisRequest.model_validate(REQUEST), deployment="cross-region-analysis/absent"
        )


def test_the_cli_follows_a_run_without_importing_prefect(deployed, settings, tmp_path):
    """`proxima analyze` speaks Prefect's REST API: the summary it prints is the run's
    persisted result as Prefect's own client reads it, and Prefect is never imported."""
    import subprocess
    import sys

    from prefect.client.schemas.sorting import FlowRunSort

    from proxima.stack.services import client_env

    path = tmp_path / "request.json"
    path.write_text(json.dumps({**REQUEST, "output_name": "cli-thin", "reuse": False}))
    probe = (
        "import atexit, runpy, sys\n"
        'atexit.register(lambda: sys.stderr.write(f\'prefect imported: {"prefect" in '
        "sys.modules}\\n'))\n"
        "sys.argv = ['proxima', *sys.argv[1:]]\n"
        "runpy.run_module('proxima.cli', run_name='__main__')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, "analyze", str(path), "--json"],
        env=client_env(deployed, settings),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "prefect imported: False" in out.stderr, out.stderr
    printed = json.loads(out.stdout)
    assert printed["bytes_read"] > 0 and printed["result_path"].endswith("cli-thin.nc")
    analysis = asyncio.run(_deployment("cross-region-analysis/cross-region-analysis"))
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(deployment_id={"any_": [analysis.id]}),
            sort=FlowRunSort.START_TIME_DESC,
            limit=20,
        )
    run = next(r for r in runs if r.parameters["request"].get("output_name") == "cli-thin")
    assert run.state.result() == printed
    with get_client(sync_client=True) as client:
        regions = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id={"any_": [run.id]})
        )
    assert len(regions) == 2 and all(r.state.is_completed() for r in regions)
    assert [r.state.data for r in regions] == [None, None]  # partials are not persisted


def test_the_cli_names_a_missing_deployment_with_what_to_do(deployed):
    from proxima import prefect_api
    from proxima.errors import ProximaError

    with (
        prefect_api.PrefectAPI(deployed.prefect.api_url) as api,
        pytest.raises(ProximaError, match=r"no deployment cross-region-analysis/absent.*deploy"),
    ):
        api.create_run("cross-region-analysis/absent", {"request": REQUEST})
