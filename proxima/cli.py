"""The `proxima` command line."""

from __future__ import annotations

import dataclasses
import json

import typer
from rich.console import Console
from rich.table import Table

from proxima.errors import ProximaError
from proxima.stack import manager

app = typer.Typer(help="Proxima: analyses next to the data, across regions.", no_args_is_help=True)
stack_app = typer.Typer(help="The local stack: Prefect, OpenSearch, Dask and S3 per region.")
app.add_typer(stack_app, name="stack")
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
        health = "[green]healthy[/]" if row.healthy else (
            "[yellow]starting[/]" if row.running else "[red]down[/]"
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


if __name__ == "__main__":
    app()
