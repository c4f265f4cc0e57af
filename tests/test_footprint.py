"""A run's footprint: the arithmetic against a hand-computed case from the factor table,
overrides, a region without factors, CPU-seconds attributed to the run that spent them,
and the footprint in a real run's summary, file and dry run."""

from __future__ import annotations

import json
import threading
from datetime import date
from pathlib import Path

import pytest
import xarray as xr

from flows.cross_region_analysis import analyze
from proxima.analysis.assemble import RegionOutcome
from proxima.analysis.coverage import Coverage
from proxima.analysis.kernels import AssetRef, KernelSpec
from proxima.analysis.plan import Plan, RegionPlan, SelectionPlan
from proxima.analysis.regional import Usage, compute_partial
from proxima.analysis.request import AnalysisRequest
from proxima.footprint import account
from proxima.footprint.factors import FootprintError, for_region
from proxima.platform import load as load_platform
from tests.test_cf_matrix import run as plan_and_compute

PRICES = {"default": 0.02}


def _plan(regions: dict[str, int], client: str = "us-east-1") -> Plan:
    """A plan reading one asset of ``size`` on-disk bytes in each region."""
    spec = KernelSpec(
        variable="tas", start_key=0, end_key=1, bbox=[0, 0, 1, 1], over="time", assets=[]
    )
    return Plan(
        client_region=client,
        selections=[
            SelectionPlan(
                role="selection",
                dataset="era5",
                variable="tas",
                units="K",
                grid=[1, 1],
                calendar=None,
                coverage=Coverage(
                    requested=(date(2020, 1, 1), date(2020, 1, 1)), missing=[], by_region={}
                ),
                regions=[
                    RegionPlan(
                        region=name,
                        spec=spec.model_copy(
                            update={"assets": [AssetRef(path="a.nc", format="netcdf", size=size)]}
                        ),
                        bytes_read=size,
                        bytes_out=1000,
                        crosses_region=name != client,
                        egress_usd=0.0,
                    )
                    for name, size in regions.items()
                ],
            )
        ],
    )


def _outcome(region: str, cpu_s: float, seconds: float, cores: int, returned: int):
    return RegionOutcome(
        role="selection",
        region=region,
        worker="w",
        worker_region=region,
        bytes_read=1,
        bytes_returned=returned,
        seconds=seconds,
        started_at=0.0,
        cpu_s=cpu_s,
        cores=cores,
        partial=xr.Dataset(),
    )


def test_the_arithmetic_matches_a_hand_computed_case():
    """us-west-2 sends 1 GB to us-east-1 after 12 CPU-s on 2 threads held for 10 s."""
    plan = _plan({"us-west-2": 3_000_000_000, "us-east-1": 500_000_000})
    fp = account.measured(
        plan,
        [_outcome("us-west-2", 12.0, 10.0, 2, 1_000_000_000), _outcome("us-east-1", 0, 0, 1, 7)],
        PRICES,
    )
    west = next(r for r in fp.regions if r.region == "us-west-2")
    # CCF with u = 12 / (2 x 10) = 0.6: 0.74 + 0.6 x (3.5 - 0.74) = 2.396 W per vCPU,
    # for 20 vCPU-seconds, x PUE 1.135; eGRID WECC 322.167 g/kWh; $0.048 per vCPU-hour
    assert west.utilisation == pytest.approx(0.6)
    kwh = 20 / 3600 * 2.396 / 1000 * 1.135
    assert west.compute.kwh == pytest.approx(kwh, rel=1e-12)
    assert west.compute.gco2e == pytest.approx(kwh * 322.167, rel=1e-12)
    assert west.compute.usd == pytest.approx(12 / 3600 * 0.048, rel=1e-12)
    # 1 GB across regions: $0.02, 0.001 kWh x PUE; the pull moves the asset's 3 GB
    assert west.transfer.bytes == 1_000_000_000
    assert west.transfer.usd == pytest.approx(0.02)
    assert west.transfer.kwh == pytest.approx(0.001135)
    assert west.transfer.gco2e == pytest.approx(0.001135 * 322.167)
    assert (west.pull.bytes, west.pull.usd) == (3_000_000_000, pytest.approx(0.06))
    assert west.pull.gco2e == pytest.approx(3 * 0.001135 * 322.167)
    east = next(r for r in fp.regions if r.region == "us-east-1")
    # the client's own region: nothing crosses either way, its bytes still counted
    assert (east.transfer.bytes, east.pull.bytes, east.pull.usd) == (0, 500_000_000, 0.0)
    totals = fp.totals()
    assert totals["avoided_transfer"]["bytes"] == 3_500_000_000 - 1_000_000_000
    assert totals["pull"]["gco2e"] == pytest.approx(west.pull.gco2e)
    assert fp.factors["us-west-2"]["grid_gco2e_per_kwh"]["source"].startswith("EPA eGRID2020")


def test_the_chart_draws_each_measure_of_the_run_against_the_pull_to_scale():
    """The footprint chart is well-formed SVG whose bar pairs stand in the ratio of the
    run's and the pull's figures, panel by panel (each on its own scale)."""
    import base64
    import re
    import xml.etree.ElementTree as ET

    from proxima.footprint import report

    plan = _plan({"us-west-2": 3_000_000_000, "us-east-1": 500_000_000})
    fp = account.measured(
        plan,
        [_outcome("us-west-2", 12.0, 10.0, 2, 1_000_000_000), _outcome("us-east-1", 0, 0, 1, 7)],
        PRICES,
    )
    svg = ET.fromstring(report.chart_svg(fp))
    bars = [e for e in svg.iter("{http://www.w3.org/2000/svg}rect") if e.find("*") is not None]
    heights = [float(b.get("height")) for b in bars]
    assert len(heights) == 2 * len(report.PANELS)
    for i, (key, _) in enumerate(report.PANELS):
        run, pull = float(getattr(fp.run, key)), float(getattr(fp.pull, key))
        assert max(heights[2 * i : 2 * i + 2]) == pytest.approx(max(heights))  # own scale
        assert heights[2 * i] / heights[2 * i + 1] == pytest.approx(run / pull, rel=1e-2)
    inline = re.search(r"data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)", report.chart_markdown(fp))
    assert base64.b64decode(inline.group(1)).decode() == report.chart_svg(fp)


def test_overrides_apply_and_name_themselves():
    plan = _plan({"us-west-2": 10})
    outcomes = [_outcome("us-west-2", 3600.0, 3600.0, 1, 0)]
    overrides = {"defaults": {"pue": 1.0}, "us-west-2": {"grid_gco2e_per_kwh": 100.0}}
    fp = account.measured(plan, outcomes, PRICES, overrides)
    (west,) = fp.regions
    assert west.compute.kwh == pytest.approx(3.5 / 1000)  # one busy vCPU-hour at max watts
    assert west.compute.gco2e == pytest.approx(0.35)
    assert fp.factors["us-west-2"]["pue"]["source"] == "deployment override (defaults)"
    with pytest.raises(FootprintError, match="unknown footprint factor"):
        for_region("us-west-2", {"us-west-2": {"carbon": 1.0}})


def test_a_region_without_factors_is_refused_by_name_not_zeroed():
    with pytest.raises(FootprintError, match=r"'ap-nowhere-1'.*factors\.yaml"):
        account.measured(_plan({"ap-nowhere-1": 10}), [], PRICES)
    fp = account.measured(
        _plan({"ap-nowhere-1": 10}),
        [],
        PRICES,
        {"ap-nowhere-1": {"grid_gco2e_per_kwh": 500.0, "vcpu_hour_usd": 0.05}},
    )
    assert fp.factors["ap-nowhere-1"]["grid_gco2e_per_kwh"]["value"] == 500.0


def test_cpu_seconds_belong_to_the_run_that_spent_them(catalog):
    """A small and a large request on the same regional cluster at once: each is metered
    by its own tasks' thread time, so the small one's CPU-seconds stay near what it takes
    alone and far below the large one's."""
    from tests.faults import region_client

    platform = load_platform()
    small = {
        "selection": {
            "variable": "air_temperature",
            "dataset": "era5",
            "start": "2020-01-01",
            "end": "2020-01-03",
        }
    }
    large = {"selection": {**small["selection"], "end": "2020-02-29"}, "reduction": "std"}
    specs = {}
    for name, req in (("small", small), ("large", large)):
        _, plan = plan_and_compute(req)
        (specs[name],) = [r.spec for r in plan.selections[0].regions if r.region == "us-east-1"]
    root = platform.region("us-east-1").root
    client = region_client("us-east-1")
    try:
        alone = Usage()
        compute_partial(root, specs["small"], client, usage=alone)
        usage = {"small": Usage(), "large": Usage()}
        threads = [
            threading.Thread(
                target=compute_partial, args=(root, specs[n], client), kwargs={"usage": usage[n]}
            )
            for n in ("large", "small")
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        client.close()
    assert usage["small"].tasks == alone.tasks and usage["large"].tasks > alone.tasks
    assert usage["small"].cpu_s < 0.8 * usage["large"].cpu_s
    assert usage["small"].cpu_s < 3 * alone.cpu_s  # not the large one's seconds


def test_a_run_states_its_footprint_and_the_dry_run_estimates_it(catalog):
    request = {
        "selection": {
            "variable": "air_temperature",
            "dataset": "era5",
            "start": "2020-01-01",
            "end": "2020-04-30",
        },
        "over": "time",
        "output_name": "footprint-run",
        "overwrite": True,
    }
    summary = analyze(AnalysisRequest.model_validate(request))
    fp = summary["footprint"]
    assert not fp["estimate"] and {r["region"] for r in fp["regions"]} == {"us-east-1", "us-west-2"}
    west = next(r for r in fp["regions"] if r["region"] == "us-west-2")
    returned = next(r["bytes_returned"] for r in summary["regions"] if r["region"] == "us-west-2")
    assert west["transfer"]["bytes"] == returned == summary["bytes_crossed_regions"]
    assert all(r["cpu_s"] > 0 and r["compute"]["gco2e"] > 0 for r in fp["regions"])
    assert fp["totals"]["pull"]["bytes"] > 100 * fp["totals"]["run"]["bytes"]
    ds = xr.open_dataset(Path(summary["result_path"]), engine="h5netcdf")
    assert json.loads(ds.attrs["footprint"]) == json.loads(json.dumps(fp))
    estimate = analyze(AnalysisRequest.model_validate({**request, "dry_run": True}))["footprint"]
    assert estimate["estimate"]
    by_region = {r["region"]: r for r in estimate["regions"]}
    for r in fp["regions"]:  # the bytes of a pull are known exactly before any run
        assert by_region[r["region"]]["pull"] == r["pull"]
        assert by_region[r["region"]]["cpu_s"] > 0
