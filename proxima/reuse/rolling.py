"""Analyses kept up to date: a request whose end follows the newest data the catalog
holds, so that each scheduled run adds what arrived and reuses the rest.
"""

from __future__ import annotations

from datetime import date

from opensearchpy import OpenSearch

from proxima.analysis.coverage import asset_days
from proxima.analysis.plan import resolve_assets
from proxima.analysis.request import AnalysisRequest

FAR = date(9999, 12, 31)


def up_to_date(request: AnalysisRequest, client: OpenSearch, alias: str) -> AnalysisRequest:
    """``request`` with its selection's end moved to the last day its data cover now.

    Raises:
        PlanningError: No asset matches the selection from its start on.
    """
    probe = request.selection.model_copy(update={"end": FAR})
    ends = [d[1] for a in resolve_assets("selection", probe, client, alias) if (d := asset_days(a))]
    end = max(ends, default=request.selection.end)
    selection = request.selection.model_copy(update={"end": max(end, request.selection.start)})
    return AnalysisRequest.model_validate(
        request.model_dump() | {"selection": selection.model_dump()}
    )
