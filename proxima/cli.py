"""The `proxima` command line."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from proxima.errors import ProximaError, describe_invalid

if TYPE_CHECKING:  # imported where used: `proxima analyze` starts without Prefect's
    from proxima.stack import manager  # server side or xarray (1.3 CPU-s a call)

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(help="Proxima: analyses next to the data, across regions.", no_args_is_help=True)
stack_app = typer.Typer(help="The local stack: Prefect, OpenSearch, Dask and S3 per region.")
app.add_typer(stack_app, name="stack")
data_app = typer.Typer(help="Synthetic datasets and the data-repository import.")
app.add_typer(data_app, name="data")
catalog_app = typer.Typer(help="The catalog in OpenSearch: refresh, search, export.")
app.add_typer(catalog_app, name="catalog")
testbed_app = typer.Typer(help="Regions in network namespaces behind shaped links (root).")
app.add_typer(testbed_app, name="testbed")
cache_app = typer.Typer(help="The stores of reused partials (per region) and results.")
app.add_typer(cache_app, name="cache")


def _testbed_settings() -> Any:
    """Testbed settings: its own configuration and state directory unless overridden."""
    from proxima.settings import PROJECT_ROOT, ProximaSettings

    base = ProximaSettings()
    default_cfg = PROJECT_ROOT / "deployments" / "local" / "stack.yaml"
    updates: dict[str, Any] = {}
    if base.stack_config == default_cfg:
        updates["stack_config"] = PROJECT_ROOT / "deployments" / "testbed" / "stack.yaml"
    if base.state_dir == PROJECT_ROOT / ".state":
        updates["state_dir"] = PROJECT_ROOT / ".state" / "testbed"
    return base.model_copy(update=updates)


def _prefect_client_settings() -> Any:
    """Point this process's Prefect client at the stack's server."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    from proxima.config import load_stack_config
    from proxima.settings import get_settings

    updates: dict[Any, Any] = {PREFECT_API_URL: load_stack_config().prefect.api_url}
    auth = get_settings().prefect_auth
    if auth is not None:
        updates[PREFECT_API_AUTH_STRING] = auth.get_secret_value()
    return temporary_settings(updates)


class _UserErrorsWithoutTraceback(logging.Filter):
    """Prefect logs a failed run's exception with its traceback; for a ProximaError the
    message is the whole story (``--debug`` keeps the traceback).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], ProximaError):
            record.exc_info, record.exc_text = None, None
        return True


def _no_tracebacks_for_user_errors() -> None:
    # the engine logs a run's exception on these loggers (a logger's filters survive
    # Prefect re-configuring the handlers)
    for name in ("prefect.flow_runs", "prefect.task_runs", "prefect.engine"):
        logging.getLogger(name).addFilter(_UserErrorsWithoutTraceback())


def _platform() -> Any:
    """The platform as the flows see it: from the saved blocks (their catalog
    credentials included) when there are any, else from the stack file.
    """
    from proxima.platform import load

    with _prefect_client_settings():
        return load()


console = Console()
err = Console(stderr=True)


def _fail(exc: ProximaError) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)  # one line, unwrapped
    raise typer.Exit(1)


def _user_errors(command: Callable[P, R]) -> Callable[P, R]:
    """One error path for every command: a ProximaError (or a pydantic validation
    error) is one red line and exit status 1, never a traceback.
    """

    @functools.wraps(command)
    def reported(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except ProximaError as exc:
            _fail(exc)
        except ValidationError as exc:
            _fail(ProximaError(describe_invalid(exc)))
        except RuntimeError as exc:
            if not str(exc).startswith("Failed to reach API"):  # Prefect's client
                raise
            _fail(ProximaError(f"{exc}: is the stack up? (`proxima stack up`)"))

    return reported


def _table(rows: list[manager.ServiceStatus]) -> Table:
    table = Table(title="Proxima local stack")
    for col in ("service", "url", "pid", "health", "memory"):
        table.add_column(col)
    for row in rows:
        health = (
            "[green]healthy[/]"
            if row.healthy
            else ("[yellow]starting[/]" if row.running else "[red]down[/]")
        )
        table.add_row(
            row.name, row.url, str(row.pid or "-"), health, f"{row.rss_bytes / 2**20:.0f} MiB"
        )
    return table


@stack_app.command("up")
@_user_errors
def stack_up() -> None:
    """Start every service and wait until all are healthy (idempotent)."""
    with console.status("starting the stack") as spinner:
        from proxima.stack import manager

        rows = manager.up(progress=lambda msg: spinner.update(msg))
    console.print(_table(rows))


@stack_app.command("down")
@_user_errors
def stack_down() -> None:
    """Stop everything the stack started."""
    from proxima.stack import manager

    stopped = manager.down(progress=console.print)
    console.print(f"stopped {len(stopped)} process(es)")


@stack_app.command("status")
@_user_errors
def stack_status(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Show each service's URL, PID and health; exit 1 unless all are healthy."""
    from proxima.stack import manager

    rows = manager.status()
    if as_json:
        print(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
    else:
        console.print(_table(rows))
    if not all(r.healthy for r in rows):
        raise typer.Exit(1)


@data_app.command("generate")
@_user_errors
def data_generate(
    region: list[str] = typer.Option(None, "--region", help="Region(s); default all."),
    dataset: list[str] = typer.Option(None, "--dataset", help="Dataset(s); default all."),
    seed: int = typer.Option(42, help="Seed of the values."),
    resolution: float = typer.Option(None, help="Override the grid spacing (degrees)."),
    start: str = typer.Option(None, help="Override the first month (YYYY-MM)."),
    end: str = typer.Option(None, help="Override the last month (YYYY-MM)."),
    max_gb: float = typer.Option(20.0, help="Refuse datasets larger than this (raw GiB)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Write synthetic ERA5-like / CMIP6-like data into the regions' S3 buckets."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from proxima import datagen
    from proxima.platform import from_stack

    try:
        platform = from_stack()
        jobs = []
        for r in [platform.region(n) for n in region] if region else platform.regions:
            names = dataset or [d.name for d in r.datasets]
            for name in names:
                ds = r.dataset(name)
                overrides = {
                    k: v
                    for k, v in {"resolution": resolution, "start": start, "end": end}.items()
                    if v is not None
                }
                if overrides:
                    ds = type(ds).model_validate(ds.model_dump() | overrides)
                datagen.plan(ds)  # validate every job before writing anything
                jobs.append((r, ds))
        reports = []
        with Progress(
            *Progress.get_default_columns()[:1],
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=as_json,
        ) as bar:
            for r, ds in jobs:
                task = bar.add_task(f"{r.name}/{ds.name}", total=datagen.estimate_bytes(ds))

                def advance(done: int, total: int, task_id: Any = task) -> None:
                    bar.update(task_id, completed=done)

                reports.append(
                    datagen.generate(
                        r, ds, seed=seed, max_bytes=int(max_gb * 2**30), on_progress=advance
                    )
                )
    except ValueError as exc:
        raise ProximaError(str(exc)) from exc
    except KeyboardInterrupt:
        err.print("interrupted: objects already uploaded are complete; nothing partial was left")
        raise typer.Exit(130) from None
    if as_json:
        print(json.dumps([dataclasses.asdict(r) for r in reports], indent=2))
    for rep in reports:
        if not as_json:
            console.print(
                f"{rep.region}/{rep.dataset}: {rep.objects} objects, "
                f"{rep.bytes_written / 2**20:.1f} MiB written "
                f"({rep.bytes_raw / 2**20 / max(rep.seconds, 1e-9):.1f} MB/s raw) "
                f"in {rep.seconds:.1f}s"
            )


@data_app.command("import")
@_user_errors
def data_import(
    region: list[str] = typer.Option(None, "--region", help="Region(s); default all."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Bring each region's S3 buckets into its file system (new, changed, deleted)."""
    from proxima import repository
    from proxima.platform import from_stack

    platform = from_stack()
    regions = [platform.region(n) for n in region] if region else platform.regions
    from rich.progress import Progress, SpinnerColumn, TextColumn

    reports = []
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), console=err, disable=as_json
    ) as bar:
        for r in regions:
            task = bar.add_task(f"{r.name}: listing")

            def show(rep: repository.ImportReport, task: Any = task, name: str = r.name) -> None:
                bar.update(
                    task,
                    description=f"{name}: {rep.copied} copied "
                    f"({rep.bytes_copied / 2**20:.1f} MiB), {rep.skipped} unchanged",
                )

            reports.append(repository.import_region(r, Path(r.root), show))
    if as_json:
        print(json.dumps([r.to_dict() for r in reports], indent=2))
        return
    for rep in reports:
        console.print(
            f"{rep.region}: copied {rep.copied} ({rep.bytes_copied / 2**20:.1f} MiB), "
            f"skipped {rep.skipped}, deleted {rep.deleted} in {rep.seconds:.1f}s"
        )


@catalog_app.command("refresh")
@_user_errors
def catalog_refresh_cmd(
    region: list[str] = typer.Option(None, "--region", help="Region(s); default all."),
    full: bool = typer.Option(False, "--full", help="Rebuild into a new index, swap alias."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Run the catalog-refresh flow (each region on its own Dask cluster)."""
    from flows.catalog_refresh import catalog_refresh
    from flows.progress import run_watched

    with _prefect_client_settings():
        if as_json:
            out = catalog_refresh(regions=region or None, full_rebuild=full)
        else:
            out = run_watched(catalog_refresh, err.print, regions=region or None, full_rebuild=full)
    if as_json:
        print(json.dumps(out, indent=2))
        return
    table = Table(title=f"catalog refresh into {out['index']}")
    cols = ("region", "new", "changed", "deleted", "unchanged", "quarantined", "seconds")
    for col in cols:
        table.add_column(col)
    for row in out["regions"]:
        table.add_row(*(str(row[c]) for c in cols))
    console.print(table)


@catalog_app.command("search")
@_user_errors
def catalog_search(
    variable: str = typer.Option(None, help="Variable name or CF standard_name."),
    dataset: str = typer.Option(None),
    start: str = typer.Option(None, help="YYYY-MM-DD"),
    end: str = typer.Option(None, help="YYYY-MM-DD"),
    bbox: tuple[float, float, float, float] = typer.Option(
        None, help="WEST SOUTH EAST NORTH (west > east crosses the antimeridian)"
    ),
    facet: list[str] = typer.Option(None, help="KEY=VALUE, e.g. experiment_id=ssp585"),
    text: str = typer.Option(None, help="Free text in global attributes."),
    quarantined: bool = typer.Option(False, help="Include quarantined assets."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Search the catalog; results grouped by region, with facet counts."""
    from proxima import opensearch
    from proxima.catalog.search import CatalogQuery, facet_counts, search

    bad = [f for f in facet or [] if "=" not in f]
    if bad:
        raise ProximaError(f"--facet takes KEY=VALUE, got {bad}")
    query = CatalogQuery(
        variable=variable,
        dataset=dataset,
        start=start,
        end=end,
        bbox=list(bbox) if bbox else None,
        facets=dict(f.split("=", 1) for f in facet or []),
        text=text,
        include_quarantined=quarantined,
    )
    platform = _platform()
    client = opensearch.connect_catalog(platform.catalog)
    result = search(client, platform.catalog_alias, query)
    counts = facet_counts(client, platform.catalog_alias, query)
    if as_json:
        print(
            json.dumps(
                {"by_region": result.by_region, "facets": counts, "assets": result.assets},
                indent=2,
                default=str,
            )
        )
        return
    table = Table(title=f"{result.total} asset(s)")
    for col in ("region", "dataset", "path", "variables", "time", "MiB"):
        table.add_column(col)
    for a in result.assets[:200]:
        t = a.get("time") or {}
        table.add_row(
            a["region"],
            a["dataset"],
            a["path"],
            ",".join(a["variable_names"]),
            f"{t.get('start_native', '')[:10]}..{t.get('end_native', '')[:10]}",
            f"{a['size'] / 2**20:.1f}",
        )
    console.print(table)
    for region, agg in sorted(result.by_region.items()):
        console.print(f"{region}: {agg['count']} assets, {agg['bytes'] / 2**20:.1f} MiB")


@catalog_app.command("export")
@_user_errors
def catalog_export(
    out: str = typer.Argument(..., help="Output directory."),
    region: str = typer.Option(None),
    dataset: str = typer.Option(None),
) -> None:
    """Export an intake-esm collection (JSON + CSV) and STAC items for the selection."""
    from pathlib import Path

    from proxima import opensearch
    from proxima.catalog import export
    from proxima.catalog.search import CatalogQuery, search

    platform = _platform()
    client = opensearch.connect_catalog(platform.catalog)
    query = CatalogQuery(region=region, dataset=dataset)
    assets = search(client, platform.catalog_alias, query).assets
    roots = {r.name: r.root for r in platform.regions}
    try:
        written = export.write_all(assets, roots, Path(out))
    except OSError as exc:
        raise ProximaError(f"cannot write the export to {out}: {exc}") from exc
    for path in written:
        console.print(str(path))


@app.command("analyze")
@_user_errors
def analyze(
    request_file: str = typer.Argument(..., help="An AnalysisRequest as JSON."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Plan only."),
    as_json: bool = typer.Option(False, "--json"),
    here: bool = typer.Option(
        False,
        "--here",
        help="Run the flow in this process instead of through the work pool (no worker "
        "needed; this process pays the flow's imports).",
    ),
    no_wait: bool = typer.Option(
        False, "--no-wait", help="Submit and return at once with the run's id and URL."
    ),
    idempotency_key: str | None = typer.Option(
        None,
        "--idempotency-key",
        help="Submitting the same key again follows the first run instead of a new one.",
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of user errors too."),
) -> None:
    """Answer REQUEST.json and print its summary: a run of the cross-region-analysis
    deployment (the work pool's warm flow runs, the admission every way in shares),
    followed to its end; with --here, the flow in this process.
    """
    from pathlib import Path

    from proxima.analysis.request import AnalysisRequest

    if not debug:
        _no_tracebacks_for_user_errors()

    try:
        raw = json.loads(Path(request_file).read_text())
        if not isinstance(raw, dict):
            raise ValueError(f"a request is a JSON object, not {type(raw).__name__}")
        if dry_run:
            raw["dry_run"] = True
        request = AnalysisRequest.model_validate(raw)
    except ValidationError as exc:
        raise ProximaError(f"cannot use {request_file}: {describe_invalid(exc)}") from exc
    except (OSError, ValueError) as exc:  # unreadable file or bad JSON
        raise ProximaError(f"cannot use {request_file}: {exc}") from exc
    if here and (no_wait or idempotency_key):
        raise ProximaError("--no-wait and --idempotency-key submit a run: not with --here")
    say = None if as_json else err.print
    out: dict[str, Any] | None
    if here:
        from flows.cross_region_analysis import analyze as run_analysis

        with _prefect_client_settings():
            out = run_analysis(request, say=say)
    else:
        out = _submitted(request, idempotency_key, no_wait, say)
    if out is None:
        return
    if as_json:
        print(json.dumps(out, indent=2, default=str))
        return
    from proxima.footprint import report as footprint_report

    if out.get("dry_run"):
        for row in out["plan"]:
            console.print(row)
        console.print(f"egress ≈ ${out['egress_usd_est']:.6f}")
        for line in footprint_report.lines(out["footprint"]):
            console.print(line)
        return
    console.print(f"{out['variable']}: {out['long_name']} (coverage: {out['coverage']})")
    answer = Table(show_header=False)
    for row in out["answer_table"]:
        answer.add_row(*row)
    console.print(answer)
    for r in out["regions"]:
        console.print(
            f"{r['role']} {r['region']}: read {r['bytes_read']:,} B, "
            f"returned {r['bytes_returned']:,} B on {r['worker']}; waited {r['waited_s']} s "
            f"for a slot, computed {r['seconds']} s"
        )
    console.print(f"crossed regions: {out['bytes_crossed_regions']:,} B")
    if served := out.get("served_from"):
        console.print(f"served from run {served['run']}: {served['because']}, nothing read")
    for line in footprint_report.lines(out["footprint"]):
        console.print(line)
    console.print(f"result: {out['result_path']}")


def _submitted(
    request: Any, key: str | None, no_wait: bool, say: Callable[[str], None] | None
) -> dict[str, Any] | None:
    """Submit ``request`` to the deployment; with ``no_wait`` print the run and return
    None, else follow it (saying its regions' states and progress, with ``say``) and
    return its summary. Through Prefect's REST API: this process never imports Prefect.
    """
    from proxima import prefect_api
    from proxima.config import load_stack_config
    from proxima.settings import get_settings

    stack = load_stack_config()
    auth = get_settings().prefect_auth
    with prefect_api.PrefectAPI(
        stack.prefect.api_url, auth.get_secret_value() if auth else None
    ) as api:
        run = api.create_run(
            prefect_api.ANALYSIS_DEPLOYMENT, {"request": request.model_dump(mode="json")}, key
        )
        url = f"{stack.prefect.ui_url}/runs/flow-run/{run['id']}"
        if no_wait:
            if say is None:
                print(json.dumps({"flow_run_id": run["id"], "name": run["name"], "url": url}))
            else:
                console.print(f"flow run {run['name']} ({run['id']}) submitted\n{url}")
            return None
        if say:
            say(f"flow run {run['name']}: {url}")
        run = api.follow(run["id"], say) if say else api.wait(run["id"])
    state = run.get("state") or {}
    if state.get("type") != "COMPLETED":
        reason = state.get("message") or "see the run's logs"
        raise ProximaError(
            f"the run ended {state.get('type', 'UNKNOWN')}: {' '.join(reason.split())}"
        )
    summary: dict[str, Any] = prefect_api.result(run)
    return summary


@app.command("runs")
@_user_errors
def runs(as_json: bool = typer.Option(False, "--json")) -> None:
    """The analyses in flight on each region (holding a slot, or waiting with their
    position) and those still waiting for a work-pool worker.
    """
    import asyncio

    from prefect.client.orchestration import get_client

    from flows.admission import pending, queues

    async def read() -> tuple[dict[str, Any], list[Any]]:
        async with get_client() as client:
            return await queues(client), await pending(client)

    with _prefect_client_settings():
        by_region, queued = asyncio.run(read())
    if as_json:
        out = {
            "regions": {r: [e.model_dump(mode="json") for e in es] for r, es in by_region.items()},
            "pending": [{"flow_run_id": str(r.id), "name": r.name} for r in queued],
        }
        print(json.dumps(out, indent=2))
        return
    table = Table(title="Analyses in flight")
    for col in ("region", "run", "state", "position", "since"):
        table.add_column(col)
    for region, entries in sorted(by_region.items()):
        for e in entries:
            state = "computing" if e.step == "admitted" else "waiting for a slot"
            table.add_row(
                region, e.flow_run_name, state, str(e.position or "-"), f"{e.since:%H:%M:%S}"
            )
    for r in queued:
        table.add_row("-", r.name, "waiting for a worker", "-", "-")
    console.print(table)


def _reuse_stores(region: str | None) -> tuple[Any, list[tuple[str, Any]]]:
    """The platform and the partial store of each region (or of ``region``) mounted here."""
    from proxima.platform import load
    from proxima.reuse.store import PartialStore

    with _prefect_client_settings():
        platform = load()
    names = [region] if region else platform.region_names
    stores = []
    for name in names:
        r = platform.region(name)
        if not Path(r.root).is_dir():
            raise ProximaError(f"region {name}'s file system {r.root} is not mounted here")
        stores.append((name, PartialStore.of_region(r.root, r.partial_store_bytes)))
    return platform, stores


@cache_app.command("ls")
@_user_errors
def cache_ls(
    region: str | None = typer.Option(None, help="Only this region."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Each region's stored partials (count, bytes, cap) and the stored results."""
    from proxima.reuse import regions as regions_kept
    from proxima.reuse.results import INDEX_DIR

    platform, stores = _reuse_stores(region)
    rows = []
    for name, store in stores:
        entries = store.entries()
        rows.append(
            {
                "region": name,
                "partials": len(entries),
                "bytes": sum(e.bytes for e in entries),
                "max_bytes": store.max_bytes,
                "oldest_use": min((e.used_ns for e in entries), default=None),
                "merged_kept": len(regions_kept.store(platform.results_dir, name).entries()),
            }
        )
    results = len(list((Path(platform.results_dir) / INDEX_DIR).glob("*.json")))
    if as_json:
        print(json.dumps({"regions": rows, "results": results}, indent=2))
        return
    table = Table(title="Reuse stores")
    for col in ("region", "partials", "bytes", "cap", "merged, in the client region"):
        table.add_column(col)
    for row in rows:
        table.add_row(
            row["region"],
            str(row["partials"]),
            f"{row['bytes']:,}",
            f"{row['max_bytes']:,}",
            str(row["merged_kept"]),
        )
    console.print(table)
    console.print(f"stored results (served again on unchanged assets): {results}")


@cache_app.command("clear")
@_user_errors
def cache_clear(region: str | None = typer.Option(None, help="Only this region.")) -> None:
    """Delete the stored partials (of every region, or of one) and, for all regions,
    the stored results' index: the next requests compute everything again.
    """
    import shutil

    from proxima.reuse import regions as regions_kept
    from proxima.reuse.results import INDEX_DIR

    platform, stores = _reuse_stores(region)
    for name, store in stores:
        merged = regions_kept.store(platform.results_dir, name).clear()
        console.print(
            f"{name}: {store.clear()} partials deleted, and {merged} merged partials of it "
            "in the client region"
        )
    if region is None:
        shutil.rmtree(Path(platform.results_dir) / INDEX_DIR, ignore_errors=True)
        console.print("stored results forgotten (the result files stay)")


@testbed_app.command("up")
@_user_errors
def testbed_up(
    rate: float = typer.Option(100.0, help="Link rate in Mbit/s (tbf, each direction)."),
) -> None:
    """Build the namespaces and shaped links, then start the stack inside them."""
    from proxima import testbed
    from proxima.config import load_stack_config

    settings = _testbed_settings()
    config = load_stack_config(settings=settings)
    made = testbed.up(config, rate_mbit=rate)
    from proxima.stack import manager

    rows = manager.up(settings, config, progress=lambda m: err.print(f"  {m}"))
    for link in made:
        console.print(
            f"{link.region}: netns {link.netns}, {link.address} via {link.host_if}, {rate} Mbit/s"
        )
    console.print(_table(rows))


@testbed_app.command("down")
@_user_errors
def testbed_down() -> None:
    """Stop the testbed stack and remove every namespace, link and process."""
    from proxima import testbed
    from proxima.config import load_stack_config

    settings = _testbed_settings()
    config = load_stack_config(settings=settings)
    from proxima.stack import manager

    manager.down(settings)
    testbed.down(config)
    left = testbed.leftovers(config)
    if left:
        _fail(ProximaError(f"left behind: {left}"))
    console.print("testbed removed")


@testbed_app.command("counters")
@_user_errors
def testbed_counters() -> None:
    """Bytes carried so far by each region's link (kernel interface statistics)."""
    from proxima import testbed
    from proxima.config import load_stack_config

    config = load_stack_config(settings=_testbed_settings())
    print(json.dumps(testbed.counters(config), indent=2))


@app.command("aws-tls")
@_user_errors
def aws_tls(
    directory: str = typer.Argument(..., help="Where the CA and certificates are kept."),
    regions: str = typer.Option(..., help="Data regions, comma-separated."),
    project: str = typer.Option("proxima"),
) -> None:
    """Create the Dask CA, the clusters' and the client's certificates for AWS, and the
    secrets to store in each data region (`<project>/dask-tls`).
    """
    from pathlib import Path

    from proxima import dask_tls

    names = [r.strip() for r in regions.split(",") if r.strip()]
    hosts = [f"scheduler.{r}.{project}.internal" for r in names]
    files = dask_tls.ensure_certificates(Path(directory), {"cluster": hosts})
    secret = Path(directory) / "cluster-secret.json"
    secret.touch(mode=0o600)
    secret.write_text(dask_tls.secret_text(files, "cluster"))
    console.print(f"certificates in {directory}; store the cluster secret in each region:")
    for name in names:
        console.print(
            f"  aws secretsmanager create-secret --region {name} --name {project}/dask-tls "
            f"--secret-string file://{secret}"
        )
    console.print(f"then: proxima aws-up --tls-dir {directory} --admin-role-arn …")


@app.command("aws-blocks")
@_user_errors
def aws_blocks(
    outputs: list[str] = typer.Argument(
        ..., help="`cdk deploy --outputs-file` JSON files (one per deploy command)."
    ),
    tls_dir: str = typer.Option(
        None, help="The directory of `proxima aws-tls`: its client certificate."
    ),
) -> None:
    """Save the DataRegion (with infra/aws/config.yaml's datasets), OpenSearchCatalog and
    ResultsStore blocks from stack outputs, and create or update the ECS work pool.
    """
    from proxima import aws_runbook
    from proxima.aws_outputs import blocks_from_outputs, ecs_work_pool_template, read_outputs
    from proxima.dask_tls import TlsFiles

    infra = aws_runbook.Infra.load()
    tls = TlsFiles(directory=Path(tls_dir)).client() if tls_dir else None
    stacks = read_outputs([Path(o) for o in outputs])
    fields = blocks_from_outputs(stacks, infra.project, tls, infra.datasets())
    aws_runbook.save_blocks(fields, console.print)
    pool = ecs_work_pool_template(stacks, infra.project)
    aws_runbook.ensure_work_pool(infra.pool, pool["template"])
    console.print(f"work pool {infra.pool} created or updated with the stacks' job template")


@app.command("aws-up")
@_user_errors
def aws_up(
    tls_dir: str = typer.Option(..., help="The directory of `proxima aws-tls`."),
    admin_role_arn: str = typer.Option(
        None, help="The catalog's administrators (parameter CatalogAdminRoleArn)."
    ),
    deploy: bool = typer.Option(
        True, "--deploy/--no-deploy", help="Run `cdk deploy` (or use the stacks there)."
    ),
    request_file: str = typer.Option(
        None, "--request", help="An AnalysisRequest (JSON) to run once the refresh is started."
    ),
) -> None:
    """From empty accounts to a first analysis (docs/aws.md): deploy the stacks, read
    their outputs, save the blocks, create the ECS work pool, deploy the flows to the
    Prefect this shell points at (PREFECT_API_URL), start a refresh and an analysis.
    """
    import boto3

    from proxima import aws_runbook
    from proxima.analysis.request import AnalysisRequest
    from proxima.dask_tls import TlsFiles

    request = None
    if request_file:
        try:
            request = AnalysisRequest.model_validate_json(Path(request_file).read_text())
        except ValidationError as exc:
            raise ProximaError(f"cannot use {request_file}: {describe_invalid(exc)}") from exc
        except OSError as exc:
            raise ProximaError(f"cannot use {request_file}: {exc}") from exc
    aws_runbook.up(
        aws_runbook.Infra.load(),
        TlsFiles(directory=Path(tls_dir)).client(),
        lambda region: boto3.client("cloudformation", region_name=region),
        console.print,
        deploy=deploy,
        admin_role_arn=admin_role_arn,
        request=request,
    )


@app.command("deploy")
@_user_errors
def deploy() -> None:
    """Register every deployment of prefect.yaml, then seal their parameter forms
    (a run with an unknown parameter is refused by the API instead of crashing).
    """
    from flows.deploy import seal_parameter_schemas
    from proxima.config import load_stack_config
    from proxima.settings import get_settings
    from proxima.stack.services import run_prefect

    out = run_prefect(["--no-prompt", "deploy", "--all"], load_stack_config(), get_settings())
    if out.returncode != 0:
        tail = "\n".join((out.stdout + out.stderr).strip().splitlines()[-15:])
        raise ProximaError(f"`prefect deploy --all` failed:\n{tail}")
    with _prefect_client_settings():
        for name in seal_parameter_schemas():
            console.print(f"deployed {name}")


@app.command("demo")
@_user_errors
def demo() -> None:
    """Run the whole platform end to end on the local stack (leaves it running)."""
    from proxima import demo as demo_module

    demo_module.run(say=console.print)


if __name__ == "__main__":
    app()
