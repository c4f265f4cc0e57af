"""A run's footprint for the callers: the dry run's estimate and the finished run's
measurement, each as the summary's plain data (or why it cannot be stated), the latter
with its Markdown section and the calibration the next dry run uses updated.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from proxima.analysis.assemble import RegionOutcome
from proxima.analysis.plan import Plan
from proxima.footprint import account, calibration, report
from proxima.footprint.factors import FootprintError
from proxima.platform.model import Platform


def estimate(plan: Plan, reduction: str, platform: Platform) -> dict[str, Any]:
    """The dry run's footprint, or ``{"error": why}`` (a region without factors)."""
    try:
        return account.estimated(
            plan,
            reduction,
            platform.egress_prices,
            platform.footprint_factors,
            calibration.load(platform.results_dir),
        ).summary()
    except FootprintError as exc:
        return {"error": str(exc)}


def measure(
    plan: Plan, outcomes: Iterable[RegionOutcome], reduction: str, platform: Platform
) -> tuple[dict[str, Any], str]:
    """The finished run's footprint and its summary section (a table and a chart); the
    answer stands when it cannot be stated, and the section says why.
    """
    try:
        footprint = account.measured(
            plan, outcomes, platform.egress_prices, platform.footprint_factors
        )
    except FootprintError as exc:
        return {"error": str(exc)}, f"### Footprint\n\nNot stated: {exc}\n"
    planned: dict[str, int] = {}  # the plan's bytes: the dry run scales the same figure
    for r in (r for s in plan.selections for r in s.regions):
        planned[r.region] = planned.get(r.region, 0) + r.bytes_read
    calibration.save(
        platform.results_dir,
        account.calibrate(calibration.load(platform.results_dir), reduction, footprint, planned),
    )
    section = report.markdown(footprint) + report.chart_markdown(footprint)
    return footprint.summary(), section
