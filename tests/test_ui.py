"""A person in the Prefect UI: open the analysis deployment, start a custom run through
the form, and see it complete. Headless Debian Chromium driven by Playwright."""

import asyncio
import json
import time
import urllib.parse
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

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
            variable = page.locator("textarea").first
            variable.fill("air_temperature")
            page.screenshot(path=str(ARTIFACTS / "ui-custom-run-form.png"), full_page=True)
            page.get_by_role("button", name="Submit").click()
            page.get_by_text("scheduled to start").first.wait_for(timeout=30000)
            deadline = time.monotonic() + 240
            run = None
            while time.monotonic() < deadline:
                run = _run_by_name(run_name)
                if run and run.state and run.state.is_final():
                    break
                time.sleep(2)
            assert run is not None, f"no flow run named {run_name} was created"
            page.goto(f"{ui}/runs/flow-run/{run.id}", wait_until="networkidle")
            page.get_by_text("Completed").first.wait_for(timeout=30000)
            page.screenshot(path=str(ARTIFACTS / "ui-run-completed.png"), full_page=True)
        finally:
            browser.close()
    assert run is not None and run.state.is_completed(), run and run.state
    assert run.parameters["request"]["selection"]["variable"] == "air_temperature"
    assert (settings.state_dir / "results" / "ui-form-run.nc").exists()
