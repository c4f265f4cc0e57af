"""Shared fixtures: one real local stack per test session, in an isolated state directory.

The stack runs on ports shifted by PROXIMA_PORT_OFFSET (default 1000 here) so it
never collides with a developer's stack. If a healthy test stack is already
running with the same state directory it is reused and left running.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STATE = Path(os.environ.get("PROXIMA_TEST_STATE_DIR", ROOT / ".state" / "test-stack"))
os.environ["PROXIMA_STATE_DIR"] = str(STATE)
os.environ["PROXIMA_STACK_CONFIG"] = str(ROOT / "tests" / "stack.yaml")
os.environ.setdefault("PROXIMA_PORT_OFFSET", "1000")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_HOME"] = str(STATE / "prefect")
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
(STATE / "prefect").mkdir(parents=True, exist_ok=True)

from proxima.config import StackConfig, load_stack_config  # noqa: E402
from proxima.settings import ProximaSettings, get_settings  # noqa: E402

get_settings.cache_clear()
SEED = 42


@pytest.fixture(scope="session")
def settings() -> ProximaSettings:
    return get_settings()


@pytest.fixture(scope="session")
def config(settings: ProximaSettings) -> StackConfig:
    return load_stack_config(settings=settings)


@pytest.fixture(scope="session")
def stack(settings: ProximaSettings, config: StackConfig) -> Iterator[StackConfig]:
    """The real stack, healthy; the Prefect client of this process points at it."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        temporary_settings,
    )

    from proxima.stack import manager

    started_here = False
    rows = manager.status(settings, config)
    if not all(r.healthy for r in rows):
        try:
            manager.up(settings, config)
        except Exception as exc:  # the message says which service and why
            pytest.fail(f"the local stack could not start: {exc}", pytrace=False)
        started_here = True
    os.environ["PREFECT_API_URL"] = config.prefect.api_url
    with temporary_settings(
        {PREFECT_API_URL: config.prefect.api_url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
    ):
        yield config
    if started_here and os.environ.get("PROXIMA_KEEP_TEST_STACK") != "1":
        manager.down(settings)


@pytest.fixture(scope="session")
def data(stack: StackConfig, settings: ProximaSettings) -> StackConfig:
    """Every dataset of the test configuration generated (seed 42) and imported."""
    from pathlib import Path

    from proxima import datagen, repository
    from proxima.platform import from_stack

    platform = from_stack(stack, settings)
    for region in platform.regions:
        for dataset in region.datasets:
            datagen.ensure_generated(region, dataset, seed=SEED)
    for region in platform.regions:
        repository.import_region(region, Path(region.root))
    return stack


@pytest.fixture(scope="session")
def catalog(data: StackConfig) -> dict:
    """The catalog refreshed once over the generated data."""
    from flows.catalog_refresh import catalog_refresh

    return catalog_refresh()


@pytest.fixture(scope="session")
def os_client(stack: StackConfig):
    from proxima import opensearch

    return opensearch.connect(stack.opensearch.endpoint)


@pytest.fixture(scope="session")
def deployed(catalog, stack, settings):
    """Blocks saved and `proxima deploy` (prefect deploy --all, schemas sealed) run
    against the test server."""
    import subprocess
    import sys

    from proxima.platform.blocks import save_blocks
    from proxima.stack.services import client_env

    save_blocks()
    out = subprocess.run(
        [sys.executable, "-m", "proxima.cli", "deploy"],
        env=client_env(stack, settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "deployed cross-region-analysis/cross-region-analysis" in out.stdout
    # The suite triggers its own refreshes and analyses: a scheduled run landing mid-test
    # would race what some tests assert. The schedules stay defined (tested), only paused.
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for name in (
            "catalog-refresh/catalog-refresh",
            "scheduled-analysis/era5-t2m-monthly-climatology",
        ):
            scheduled = client.read_deployment_by_name(name)
            for schedule in scheduled.schedules:
                client.update_deployment_schedule(scheduled.id, schedule.id, active=False)
    return stack


FIGURES = ROOT / "test-artifacts" / "reliability-figures.json"


@pytest.fixture
def observe(request):
    """Record an observed figure of a fault-injection test in
    test-artifacts/reliability-figures.json (what docs/reliability.md reports)."""
    import json

    def record(**figures):
        FIGURES.parent.mkdir(exist_ok=True)
        try:
            data = json.loads(FIGURES.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            data = {}
        data[request.node.nodeid] = figures
        FIGURES.write_text(json.dumps(data, indent=2, default=str))

    return record


@pytest.fixture(autouse=True)
def no_reuse_between_tests(config: StackConfig, settings: ProximaSettings) -> None:
    """Each test computes what it asks for: the regions' partial stores and the stored
    results that earlier tests left are cleared first (test_reuse makes its own)."""
    import shutil

    from proxima.platform import from_stack
    from proxima.reuse.results import INDEX_DIR
    from proxima.reuse.store import PartialStore

    platform = from_stack(config, settings)
    for region in platform.regions:
        PartialStore.of_region(region.root).clear()
    shutil.rmtree(Path(platform.results_dir) / INDEX_DIR, ignore_errors=True)
