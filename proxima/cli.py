"""The `proxima` command line."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from proxima.errors import ProximaError
from proxima.stack import manager

app = typer.Typer(help="Proxima: analyses next to the data, across regions.", no_args_is_help=True)
stack_app = typer.Typer(help="The local stack: Prefect, OpenSearch, Dask and S3 per region.")
app.add_typer(stack_app, name="stack")
data_app = typer.Typer(help="Synthetic datasets and the data-repository import.")
app.add_typer(data_app, name="data")
console = Console()
err = Console(stderr=True)


def _fail(exc: ProximaError) -> None:
    err.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(1)


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
def stack_up() -> None:
    """Start every service and wait until all are healthy (idempotent)."""
    try:
        with console.status("starting the stack") as spinner:
            rows = manager.up(progress=lambda msg: spinner.update(msg))
    except ProximaError as exc:
        _fail(exc)
        return
    console.print(_table(rows))


@stack_app.command("down")
def stack_down() -> None:
    """Stop everything the stack started."""
    try:
        stopped = manager.down(progress=console.print)
    except ProximaError as exc:
        _fail(exc)
        return
    console.print(f"stopped {len(stopped)} process(es)")


@stack_app.command("status")
def stack_status(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Show each service's URL, PID and health; exit 1 unless all are healthy."""
    try:
        rows = manager.status()
    except ProximaError as exc:
        _fail(exc)
        return
    if as_json:
        print(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
    else:
        console.print(_table(rows))
    if not all(r.healthy for r in rows):
        raise typer.Exit(1)


@data_app.command("generate")
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
    from proxima.config import load_stack_config

    try:
        config = load_stack_config()
        jobs = []
        for r in [config.region(n) for n in region] if region else config.regions:
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
    except (ProximaError, ValueError) as exc:
        _fail(exc if isinstance(exc, ProximaError) else ProximaError(str(exc)))
        return
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
def data_import(
    region: list[str] = typer.Option(None, "--region", help="Region(s); default all."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Bring each region's S3 buckets into its file system (new, changed, deleted)."""
    from proxima import repository
    from proxima.config import load_stack_config
    from proxima.settings import get_settings

    try:
        config = load_stack_config()
        regions = [config.region(n) for n in region] if region else config.regions
        reports = [repository.import_region(r, get_settings().region_root(r.name)) for r in regions]
    except ProximaError as exc:
        _fail(exc)
        return
    if as_json:
        print(json.dumps([r.to_dict() for r in reports], indent=2))
        return
    for rep in reports:
        console.print(
            f"{rep.region}: copied {rep.copied} ({rep.bytes_copied / 2**20:.1f} MiB), "
            f"skipped {rep.skipped}, deleted {rep.deleted} in {rep.seconds:.1f}s"
        )


if __name__ == "__main__":
    app()
