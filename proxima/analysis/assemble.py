"""From what the regions returned to the answer: combine the partials per selection,
compute the statistic, name the output and describe what was read and what moved.

Pure library code: the analysis flow calls it once the regions have answered.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import xarray as xr
from pydantic import BaseModel, ConfigDict, Field

from proxima.analysis import cf, results, subset
from proxima.analysis.partials import combine
from proxima.analysis.plan import Plan
from proxima.analysis.request import AnalysisRequest
from proxima.errors import ProximaError


class RegionFailed(ProximaError):
    """A region's part of the analysis failed after its retries."""


class RegionOutcome(BaseModel):
    """One region's answer to its share of an analysis."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    role: str
    region: str
    worker: str
    worker_region: str
    bytes_read: int
    bytes_returned: int
    seconds: float
    started_at: float
    cpu_s: float = Field(default=0.0, description="CPU-seconds of the region's block tasks.")
    tasks: int = 0
    blocks: dict[str, int] = Field(
        default_factory=dict, description="Blocks reused from the store, computed, or corrupt."
    )
    cores: int = Field(default=1, description="Worker threads the region's tasks could use.")
    waited_s: float = Field(default=0.0, description="Seconds waiting for the region's slot.")
    kept: bool = Field(
        default=False,
        description="Not visited: its share was unchanged, its merged partial kept from a "
        "run before (proxima.reuse.regions).",
    )
    partial: xr.Dataset = Field(exclude=True)


class Assembled(BaseModel):
    """The combined answer, ready to be written, with the figures of the run."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    answer: xr.DataArray
    dataset: xr.Dataset
    regions: list[dict[str, Any]]
    bytes_read: int
    bytes_crossed_regions: int
    missing_regions: list[str]
    coverage: str
    blocks: dict[str, int] = Field(default_factory=dict)

    @property
    def long_name(self) -> str:
        """What the answer is, in words (its CF ``long_name``, else its name)."""
        return str(self.answer.attrs.get("long_name", self.answer.name))

    def summary(self, plan: Plan, result_path: str, result_uri: str, seconds: float) -> dict:
        """The run's summary: where the result is, the answer in short, and the figures
        measured next to the plan's estimates.
        """
        return {
            "result_path": result_path,
            "result_uri": result_uri,
            "answer": results.scalar_or_summary(self.answer),
            "answer_table": results.answer_table(self.answer),
            "variable": str(self.answer.name),
            "long_name": self.long_name,
            "regions": self.regions,
            "bytes_read": self.bytes_read,
            "bytes_read_est": plan.bytes_read,
            "bytes_crossed_regions": self.bytes_crossed_regions,
            "bytes_crossing_est": plan.bytes_crossing,
            "egress_usd_est": plan.egress_usd,
            "missing_regions": self.missing_regions,
            "coverage": self.coverage,
            "blocks": self.blocks,
            "seconds": round(seconds, 2),
        }


def output_name(request: AnalysisRequest, plan: Plan) -> str:
    """The requested output name, or one made of the variable, reduction and time, and
    a random suffix: two unnamed runs finishing within the same second (two requests
    that differ only in their grouping, say) must not claim the same file.
    """
    if request.output_name:
        return request.output_name
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return (
        f"{plan.selections[0].variable}-{request.reduction}-over-{request.over}-{stamp}-"
        f"{uuid.uuid4().hex[:6]}"
    )


def assemble(
    request: AnalysisRequest,
    plan: Plan,
    outcomes: list[RegionOutcome],
    failures: list[str],
    client_region: str,
) -> Assembled:
    """Combine the regions' partials exactly into the requested answer.

    Raises:
        RegionFailed: a region failed and the request does not allow a partial answer,
            or no region of a selection answered.
    """
    if failures and (not request.allow_partial or not outcomes):
        raise RegionFailed("; ".join(sorted(failures)))
    planned = {r.region for s in plan.selections for r in s.regions}
    missing = sorted(planned - {o.region for o in outcomes}) if failures else []
    answers: dict[str, xr.DataArray] = {}
    for sel in plan.selections:
        parts = [o.partial for o in outcomes if o.role == sel.role]
        if not parts:
            raise RegionFailed(f"no region of the {sel.role} answered: {failures}")
        if request.reduction == "none":
            answers[sel.role] = results.convert(subset.concatenate(parts), request, sel.units)
        else:
            answers[sel.role] = results.statistic(combine(parts), request, sel.units)
    answer = answers["selection"]
    if "baseline" in answers:
        units = answer.attrs.get("units", "")
        answer = results.coarser_grid_difference(answer, answers["baseline"])
        answer.attrs["units"] = units
    main = plan.selections[0]
    covered = main.coverage.answered_by({o.region for o in outcomes if o.role == main.role})
    described = covered.describe() + (f" (no answer from {', '.join(missing)})" if missing else "")
    ordered = sorted(outcomes, key=lambda o: (o.role, o.region))
    regions = [o.model_dump() for o in ordered]
    bytes_read = sum(o.bytes_read for o in outcomes)
    crossed = sum(o.bytes_returned for o in outcomes if o.region != client_region)
    blocks: dict[str, int] = {}
    for o in outcomes:
        for status, n in o.blocks.items():
            blocks[status] = blocks.get(status, 0) + n
    ds = cf.to_dataset(answer, request, plan)
    ds.attrs.update(
        {
            "title": f"{request.reduction} of {main.variable} over {request.over}",
            "request": request.model_dump_json(),
            "regions": ",".join(o.region for o in ordered),
            "workers": ",".join(f"{o.region}={o.worker}" for o in ordered),
            "worker_regions": ",".join(f"{o.region}={o.worker_region}" for o in ordered),
            "bytes_read": bytes_read,
            "bytes_crossed_regions": crossed,
            "missing_regions": ",".join(missing),
            "coverage": described,
            "coverage_by_region": json.dumps(
                {r: [f"{a}..{b}" for a, b in days] for r, days in main.coverage.by_region.items()}
            ),
            "assets_not_read": "; ".join(main.dropped),
            "history": f"{datetime.now(UTC).isoformat()} proxima cross-region-analysis",
            "per_region": json.dumps(regions),
        }
    )
    return Assembled(
        answer=cf.data_variable(ds),
        dataset=ds,
        regions=regions,
        bytes_read=bytes_read,
        bytes_crossed_regions=crossed,
        missing_regions=missing,
        coverage=described,
        blocks=blocks,
    )


def summary_markdown(summary: dict[str, Any], dashboards: dict[str, str | None], png: bytes) -> str:
    """The run's summary artifact: the answer as a table, where it is, and each region's
    subflow, worker (linked to its dashboard), bytes read and returned.
    """
    rows = "\n".join(
        f"| {r['role']} | {r['region']} | analyze-{r['region']} | "
        f"[{r['worker']}]({dashboards.get(r['region']) or ''}) | {r['bytes_read']:,} | "
        f"{r['bytes_returned']:,} | {r['waited_s']} | {r['seconds']} |"
        for r in summary["regions"]
    )
    missing = summary["missing_regions"]
    note = f"\n\n**Partial result**: missing {missing}" if missing else ""
    blocks = summary.get("blocks") or {}
    if blocks:
        note += "\n\nBlocks: " + ", ".join(f"{n} {how}" for how, n in sorted(blocks.items()))
    return (
        "## Cross-region analysis\n\n"
        f"`{summary['variable']}`: {summary['long_name']} (coverage: {summary['coverage']})\n\n"
        f"{results.table_markdown(summary['answer_table'])}\n\n"
        f"Result: `{summary['result_path']}`{note}\n\n"
        "| selection | region | subflow | worker (dashboard) | bytes read | bytes returned "
        "| waited s | seconds |\n|---|---|---|---|---|---|---|---|\n"
        f"{rows}\n\n"
        f"Bytes that crossed regions: **{summary['bytes_crossed_regions']:,}** "
        f"(estimated {summary['bytes_crossing_est']:,}); read {summary['bytes_read']:,} "
        f"(estimated {summary['bytes_read_est']:,}).\n\n" + results.png_markdown(png, "result")
    )
