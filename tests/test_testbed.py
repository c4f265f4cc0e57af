"""The testbed: regions in their own network namespaces behind shaped links. Bytes that
cross the links during a Proxima analysis stay near the result size, far below what
pulling the data to the client moves (kernel counters, not timings)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from proxima import datagen, opensearch, testbed
from proxima.analysis.cf import data_variable
from proxima.analysis.partials import combine, finalize
from proxima.analysis.plan import make_plan
from proxima.analysis.request import AnalysisRequest
from proxima.baselines import pull_partial
from proxima.config import load_stack_config
from proxima.platform import from_stack
from proxima.settings import ProximaSettings
from proxima.stack import manager

ROOT = Path(__file__).resolve().parents[1]
ALLOWANCE_PER_REGION = 2 * 2**20  # orchestration: Prefect task-run reports, Dask control traffic
REQUEST = {
    "selection": {
        "variable": "air_temperature",
        "dataset": "era5",
        "start": "2020-01-01",
        "end": "2020-04-30",
    },
    "reduction": "mean",
    "over": "both",
    "group_by": "month",
    "output_name": "testbed-run",
    "overwrite": True,
}


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    settings = ProximaSettings(
        state_dir=ROOT / ".state" / "testbed-test",
        stack_config=ROOT / "deployments" / "testbed" / "stack.yaml",
        port_offset=0,
    )
    config = load_stack_config(settings=settings)
    env = {
        **os.environ,
        "PROXIMA_STATE_DIR": str(settings.state_dir),
        "PROXIMA_STACK_CONFIG": str(settings.stack_config),
        "PROXIMA_PORT_OFFSET": "0",
    }
    env.pop("PREFECT_API_URL", None)
    try:
        testbed.up(config, rate_mbit=100)
        manager.up(settings, config)
        for region in from_stack(config, settings).regions:
            for dataset in region.datasets:
                datagen.generate(region, dataset)
        out = subprocess.run(
            [sys.executable, "-m", "proxima.cli", "catalog", "refresh", "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        yield settings, config, env
    finally:
        manager.down(settings)
        testbed.down(config)


def test_regions_are_separate_hosts_behind_their_links(bed):
    settings, config, _ = bed
    for link in testbed.links(config):
        addrs = subprocess.run(
            ["ip", "netns", "exec", link.netns, "ip", "-4", "addr"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert link.address in addrs and "10.77.0.1/" not in addrs
        qdisc = subprocess.run(
            ["tc", "qdisc", "show", "dev", link.host_if], capture_output=True, text=True, check=True
        ).stdout
        assert "tbf" in qdisc and "100Mbit" in qdisc
    rows = {r.name: r for r in manager.status(settings, config)}
    assert all(r.healthy for r in rows.values())
    for region in config.regions:  # the region's processes live inside its namespace
        pid = rows[f"{region.name}-dask-scheduler"].pid
        ns = os.readlink(f"/proc/{pid}/ns/net")
        assert ns != os.readlink("/proc/self/ns/net")


@pytest.mark.reliability
def test_links_carry_dask_only_over_mutual_tls(bed):
    from distributed import Client
    from distributed.security import Security

    from proxima.platform import from_stack

    settings, config, _ = bed
    for region in from_stack(config, settings).regions:
        address = region.scheduler_address or ""
        assert address.startswith("tls://"), address
        with Client(address, security=region.dask_security(), timeout=10) as client:
            assert client.scheduler_info()["workers"]
        for security in (None, Security.temporary()):  # no certificate; a stranger's
            with pytest.raises((OSError, TimeoutError)):
                Client(
                    address.replace("tls://", "tcp://") if security is None else address,
                    security=security,
                    timeout=5,
                )


def test_proxima_moves_result_sized_bytes_and_50x_less_than_pulling(bed, tmp_path):
    settings, config, env = bed
    request_file = tmp_path / "request.json"
    request_file.write_text(json.dumps(REQUEST))
    before = testbed.counters(config)
    out = subprocess.run(
        [sys.executable, "-m", "proxima.cli", "analyze", str(request_file), "--json", "--here"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    proxima_bytes = testbed.delta(before, testbed.counters(config))
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    result = xr.open_dataset(summary["result_path"], engine="h5netcdf")

    plan = make_plan(
        AnalysisRequest.model_validate(REQUEST),
        opensearch.connect(config.opensearch.endpoint),
        config.opensearch.alias,
        "client",
    )
    platform = from_stack(config, settings)
    before = testbed.counters(config)
    parts = [
        pull_partial(platform.region(r.region), r.spec) for s in plan.selections for r in s.regions
    ]
    pull_bytes = testbed.delta(before, testbed.counters(config))
    pulled = finalize(combine(parts), "mean")
    np.testing.assert_allclose(
        data_variable(result).values,
        pulled.transpose(*data_variable(result).dims).values,
        rtol=1e-9,
    )

    total_proxima = sum(v["to_region"] + v["from_region"] for v in proxima_bytes.values())
    total_pull = sum(v["to_region"] + v["from_region"] for v in pull_bytes.values())
    result_bytes = sum(r["bytes_returned"] for r in summary["regions"])
    for region, moved in proxima_bytes.items():
        returned = next(r["bytes_returned"] for r in summary["regions"] if r["region"] == region)
        assert moved["from_region"] < returned + ALLOWANCE_PER_REGION, (region, moved)
    assert total_proxima < result_bytes + ALLOWANCE_PER_REGION * len(proxima_bytes)
    assert total_pull >= 50 * total_proxima, (total_pull, total_proxima)
    assert summary["bytes_read"] > 50 * total_proxima


def test_down_leaves_nothing(bed):
    settings, config, _ = bed
    manager.down(settings)
    testbed.down(config)
    assert testbed.leftovers(config) == []
    assert not any(r.running for r in manager.status(settings, config))
