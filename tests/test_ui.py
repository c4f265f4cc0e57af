"""A person in the Prefect UI: open the analysis deployment, start a custom run through
the form, and see it complete. Headless Debian Chromium driven by Playwright."""

import asyncio
import json
import time
import urllib.parse
from pathlib import Path

import pytest
import xarray as xr
from playwright.sync_api import sync_playwright
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

from proxima.analysis.cf import data_variable

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


async def _deployment_id(name):
    async with get_client() as client:
        return (await client.read_deployment_by_name(name)).id


def _run_by_name(name):
    # Playwright's sync API owns this thread's event loop: use Prefect's sync client.
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name]))
        )
        return runs[0] if runs else None


def _wait_final(name: str, deadline_s: float):
    """The flow run called ``name`` once it is in a final state (or the last seen)."""
    deadline = time.monotonic() + deadline_s
    run = None
    while time.monotonic() < deadline:
        run = _run_by_name(name)
        if run and run.state and run.state.is_final():
            return run
        time.sleep(1)
    return run


def test_custom_run_from_the_ui_form_completes(deployed, settings):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: install Debian's chromium (infra/local/bootstrap.sh)")
    ARTIFACTS.mkdir(exist_ok=True)
    dep_id = asyncio.run(_deployment_id("cross-region-analysis/cross-region-analysis"))
    ui = deployed.prefect.ui_url
    # The form is prefilled the way the UI itself encodes parameters in its URL; the
    # variable is then typed into the form field by hand.
    params = {
        "request": {
            "selection": {
                "variable": "placeholder",
                "dataset": "era5",
                "start": "2020-01-01",
                "end": "2020-02-28",
                "bbox": [160, -30, -150, 30],
            },
            "reduction": "max",
            "over": "both",
            "output_name": "ui-form-run",
        }
    }
    result = settings.state_dir / "results" / "ui-form-run.nc"
    result.unlink(missing_ok=True)  # what is checked below is this run's file
    query = urllib.parse.quote(urllib.parse.quote(json.dumps(params)))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{ui}/deployments/deployment/{dep_id}", wait_until="networkidle")
            page.get_by_role("button", name="Run", exact=True).click()
            page.get_by_text("Custom run", exact=True).click()
            page.wait_for_url("**/run**")
            page.goto(f"{page.url.split('?')[0]}?parameters={query}", wait_until="networkidle")
            run_name = page.locator("input").first.input_value()
            # The form's field order is not stable: find the variable's field by the
            # value the URL put there, not by position.
            areas = page.locator("textarea")
            variable = next(
                areas.nth(i)
                for i in range(areas.count())
                if areas.nth(i).input_value() == "placeholder"
            )
            variable.fill("air_temperature")
            page.screenshot(path=str(ARTIFACTS / "ui-custom-run-form.png"), full_page=True)
            page.get_by_role("button", name="Submit").click()
            # What the user started is checked through the API, not through a toast
            # that may come and go before it is looked for: the run the form created is
            # found by its name, then followed to a final state. 300 s covers a worker
            # poll, the flow-run process start (~10 s) and a two-region analysis on a
            # loaded 2-core machine.
            run = _wait_final(run_name, deadline_s=300)
            assert run is not None, f"no flow run named {run_name} was created"
            assert run.state is not None and run.state.is_completed(), run.state
            page.goto(f"{ui}/runs/flow-run/{run.id}", wait_until="networkidle")
            # The state badge of a final run is permanent page content, not a toast.
            page.get_by_text("Completed").first.wait_for(timeout=60000)
            page.screenshot(path=str(ARTIFACTS / "ui-run-completed.png"), full_page=True)
        finally:
            browser.close()
    assert run.parameters["request"]["selection"]["variable"] == "air_temperature"
    with xr.open_dataset(result, engine="h5netcdf") as ds:
        assert set(ds.data_vars) == {"air_temperature_at_2_metres", "time_bnds"}
        value = float(data_variable(ds).values)
    assert 200.0 < value < 340.0, value  # a maximum of 2 m temperature, in K
