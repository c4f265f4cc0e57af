"""Proxima for notebooks: search the catalog, plan, analyse, and get xarray back.

Example:
    ```python
    import proxima

    px = proxima.connect()
    px.search(variable="air_temperature", start="2020-01-01", end="2020-03-31")
    px.plan({"selection": {...}, "reduction": "mean", "over": "time"})
    ds = px.analyze({"selection": {...}, "reduction": "mean", "over": "time"})
    ```
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import html
import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pandas as pd
import xarray as xr
from pydantic import ValidationError

from proxima import opensearch
from proxima.analysis.plan import Plan, make_plan
from proxima.analysis.request import AnalysisRequest
from proxima.catalog import export
from proxima.catalog.search import CatalogQuery, search
from proxima.errors import ProximaError, describe_invalid
from proxima.footprint import report as footprint_report
from proxima.footprint import run as footprint_run
from proxima.platform import Platform

T = TypeVar("T")
Say = Callable[[str], None]


def _request(request: AnalysisRequest | dict[str, Any]) -> AnalysisRequest:
    """A request from a model or a plain dict, with the CLI's one-line errors."""
    if isinstance(request, AnalysisRequest):
        return request
    try:
        return AnalysisRequest.model_validate(request)
    except ValidationError as exc:
        raise ProximaError(f"invalid request: {describe_invalid(exc)}") from None


def _off_the_loop(function: Callable[..., T], *args: Any) -> T:
    """Call ``function`` from sync code, also inside Jupyter: its kernel runs an event
    loop, where ``asyncio.run`` is refused and Prefect's sync-compatible calls return
    coroutines instead of running. There it runs in a thread of its own.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return function(*args)
    context = contextvars.copy_context()  # the caller's Prefect settings
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(context.run, function, *args).result()


@contextmanager
def _prefect_api(api_url: str | None) -> Iterator[None]:
    """Point Prefect at ``api_url`` (the local stack's) unless one is configured."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value() or not api_url:
        yield
        return
    with temporary_settings({PREFECT_API_URL: api_url}):
        yield


class Assets(pd.DataFrame):
    """Catalog search results: one row per asset (region, dataset, path, variables,
    time range, size, facets).
    """

    _metadata = ["_raw", "_roots"]

    @property
    def _constructor(self) -> type[Assets]:
        return Assets

    def to_intake_esm(self) -> Any:
        """These rows (after any filtering) as an ``intake_esm.esm_datastore``, with paths
        on the regions' mounts.
        """
        import intake_esm

        kept = set(zip(self["region"], self["path"], strict=True))
        assets = [a for a in self._raw if (a["region"], a["path"]) in kept]
        rows = pd.DataFrame(export.esm_rows(assets, self._roots), columns=export.ESM_COLUMNS)
        return intake_esm.esm_datastore({"esmcat": export.esm_spec(), "df": rows})


class PlanView:
    """A dry-run plan: what each region reads, what crosses regions, what it costs."""

    def __init__(self, plan: Plan, footprint: dict[str, Any] | None = None) -> None:
        self.plan = plan
        self.table = pd.DataFrame(plan.table())
        self.footprint = footprint or {}
        """The estimated footprint (``Footprint.summary()``), or why it is not stated."""

    @property
    def bytes_read(self) -> int:
        """Estimated bytes read next to the data, all regions."""
        return self.plan.bytes_read

    @property
    def bytes_crossing(self) -> int:
        """Estimated bytes moved between regions."""
        return self.plan.bytes_crossing

    @property
    def egress_usd(self) -> float:
        """Estimated egress cost."""
        return self.plan.egress_usd

    def _totals(self) -> str:
        return (
            f"read ≈ {self.bytes_read:,} B; crossing regions ≈ {self.bytes_crossing:,} B; "
            f"egress ≈ ${self.egress_usd:.6f}; combined in {self.plan.client_region}; "
            f"coverage: {self.plan.selections[0].coverage.describe()}"
            + ("\n" + "\n".join(footprint_report.lines(self.footprint)) if self.footprint else "")
        )

    def __repr__(self) -> str:
        return f"{self.table.to_string(index=False)}\n{self._totals()}"

    def _repr_html_(self) -> str:
        return f"{self.table.to_html(index=False)}<p>{html.escape(self._totals())}</p>"


class Proxima:
    """A connection to a Proxima platform: its catalog, regions and deployments."""

    def __init__(self, platform: Platform, api_url: str | None = None) -> None:
        self.platform = platform
        self._api_url = api_url
        self._catalog = opensearch.connect_catalog(platform.catalog)

    def __repr__(self) -> str:
        return (
            f"Proxima(regions={self.platform.region_names}, catalog="
            f"{self.platform.opensearch_endpoint}/{self.platform.catalog_alias})"
        )

    def search(
        self,
        variable: str | None = None,
        *,
        bbox: list[float] | None = None,
        start: str | None = None,
        end: str | None = None,
        dataset: str | None = None,
        region: str | None = None,
        facets: dict[str, str] | None = None,
        text: str | None = None,
    ) -> Assets:
        """Assets whose variable, box, period and facets match, one row each."""
        try:
            query = CatalogQuery.model_validate(
                {
                    "variable": variable,
                    "bbox": bbox,
                    "start": start,
                    "end": end,
                    "dataset": dataset,
                    "region": region,
                    "facets": facets or {},
                    "text": text,
                }
            )
        except ValidationError as exc:
            raise ProximaError(f"invalid search: {describe_invalid(exc)}") from None
        raw = search(self._catalog, self.platform.catalog_alias, query).assets
        rows = [
            {
                "region": a["region"],
                "dataset": a["dataset"],
                "path": a["path"],
                "variables": ",".join(a.get("variable_names", [])),
                "start": pd.Timestamp((a.get("time") or {}).get("start")),
                "end": pd.Timestamp((a.get("time") or {}).get("end")),
                "size_bytes": a.get("size", 0),
                **(a.get("facets") or {}),
            }
            for a in raw
        ]
        assets = Assets(rows)
        assets._raw = raw
        assets._roots = {r.name: r.root for r in self.platform.regions}
        return assets

    def plan(self, request: AnalysisRequest | dict[str, Any]) -> PlanView:
        """The dry run of ``request``: assets, bytes read and crossing, egress per region.
        Reads the catalog only; no cluster is touched.
        """
        parsed = _request(request)
        plan = make_plan(
            parsed,
            self._catalog,
            self.platform.catalog_alias,
            self.platform.client_region,
            self.platform.egress_prices,
        )
        footprint = footprint_run.estimate(plan, parsed.reduction, self.platform)
        return PlanView(plan, footprint)

    @staticmethod
    def footprint(result: xr.Dataset) -> dict[str, Any]:
        """What the run behind ``result`` cost and saved (compute, transfer, energy,
        carbon per region, against a pull), as its summary stated it.
        """
        if "footprint" not in result.attrs:
            raise ProximaError("this dataset is not a Proxima result with a footprint")
        out: dict[str, Any] = json.loads(result.attrs["footprint"])
        return out

    def analyze(
        self,
        request: AnalysisRequest | dict[str, Any],
        *,
        submit: bool = False,
        progress: Say | None = print,
    ) -> xr.Dataset:
        """Run ``request`` and return the result as an ``xarray.Dataset`` (loaded), with
        the run's figures in ``.attrs``.

        Args:
            request: An ``AnalysisRequest`` or the same as a dict.
            submit: Run through the ``cross-region-analysis`` deployment (the work pool)
                instead of in this process, and wait for it.
            progress: Where progress lines go (None: silent).
        """
        parsed = _request(request)
        if parsed.dry_run:
            raise ProximaError("use plan() for a dry run")
        if submit and not parsed.output_name:
            parsed = parsed.model_copy(update={"output_name": f"nb-{uuid.uuid4().hex[:12]}"})
        say = progress or (lambda _: None)
        with _prefect_api(self._api_url):
            if submit:
                path = _off_the_loop(self._submitted, parsed, say)
            else:
                from flows.cross_region_analysis import analyze

                say(f"analysing here, one subflow per region of {self.platform.region_names}")
                summary = _off_the_loop(analyze, parsed, progress)
                path = summary["result_path"]
                say(
                    f"done in {summary['seconds']} s: read {summary['bytes_read']:,} B, "
                    f"{summary['bytes_crossed_regions']:,} B crossed regions"
                )
        return _open_result(path)

    def _submitted(self, request: AnalysisRequest, say: Say) -> str:
        from flows.progress import watch_run
        from flows.submit import submit_analysis, summary_of

        run = submit_analysis(request, wait_seconds=0)
        say(f"submitted flow run {run.name} ({run.id})")
        final = watch_run(run.id, say)
        if not final.state or not final.state.is_completed():
            message = final.state.message if final.state else "no state"
            raise ProximaError(f"the run {run.name} ended {final.state_name}: {message}")
        path: str = summary_of(final)["result_path"]  # where the run wrote it, not a guess
        return path


def _open_result(path: str) -> xr.Dataset:
    if path.endswith(".zarr"):
        return xr.open_zarr(path).load()
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        return ds.load()


def connect() -> Proxima:
    """Connect as the flows do: the saved Prefect blocks when there are any, else the
    local stack's file (its Prefect server then serves the API).
    """
    from proxima.config import load_stack_config
    from proxima.platform import load

    try:
        api_url: str | None = load_stack_config().prefect.api_url
    except ProximaError:
        api_url = None
    with _prefect_api(api_url):
        platform = load()
    return Proxima(platform, api_url)
