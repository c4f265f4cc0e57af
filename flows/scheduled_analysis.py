"""A named analysis kept up to date on a schedule: each run asks the request up to the
newest data in the catalog and writes the same result, reading only what is new or
changed (the regions' stored partials hold the rest).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.cross_region_analysis import cross_region_analysis
from proxima import opensearch
from proxima.analysis.request import AnalysisRequest
from proxima.platform import load as load_platform
from proxima.reuse.rolling import up_to_date


@flow(name="scheduled-analysis", log_prints=True)
async def scheduled_analysis(name: str, request: AnalysisRequest) -> dict[str, Any]:
    """Bring the result ``name`` up to date: ``request`` from its start to the last day
    the catalog holds (the request's own end is replaced), written over the last one.
    """
    platform = load_platform()
    catalog = opensearch.connect_catalog(platform.catalog)
    current = up_to_date(request, catalog, platform.catalog_alias)
    current = current.model_copy(update={"output_name": name, "overwrite": True})
    sel = current.selection
    get_run_logger().info("%s: %s from %s to %s", name, sel.variable, sel.start, sel.end)
    summary: dict[str, Any] = await cross_region_analysis(current)
    return summary
