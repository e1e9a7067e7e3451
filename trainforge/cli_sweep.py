"""``trainforge sweep`` and ``trainforge report``: design-space sweeps and their reports.

``trainforge sweep SPEC.yaml --out RESULTS.db`` validates the spec (a mistake exits 2 naming the
field, before anything runs), evaluates the points that RESULTS.db does not hold yet on a local
process pool or Dask, and with ``--json`` prints one final line ``{"points_total", "points_done",
"points_failed", "points_computed_this_run", ...}``. ``trainforge report RESULTS.db -o DIR`` writes
the Pareto fronts, sensitivity plots, CSV, Parquet and ``index.html``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from trainforge.cli_common import reports_errors
from trainforge.errors import UsageError

__all__ = ["register"]

err = Console(stderr=True, highlight=False, soft_wrap=True)


def sweep_command(
    spec: Annotated[Path, typer.Argument(help="The sweep spec (YAML), see docs/sweeps.md.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="SQLite results database (created or resumed).")] = Path(
        "sweep.db"
    ),
    workers: Annotated[
        int | None, typer.Option("--workers", "-w", help="Worker processes (default: the CPUs available).")
    ] = None,
    cluster: Annotated[
        str | None,
        typer.Option("--cluster", help="Run on Dask: local-dask (a LocalCluster) or tcp://HOST:PORT (a scheduler)."),
    ] = None,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Evaluate points stored as failed again.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="End with one JSON line of counts.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Evaluate a design-space sweep into a resumable SQLite database (kill it and rerun to continue)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from trainforge.dataflow.sweep.runner import run_sweep
    from trainforge.dataflow.sweep.spec import load_spec

    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1, not {workers}")
    if cluster is not None and cluster != "local-dask" and not cluster.startswith("tcp://"):
        raise UsageError(f"--cluster must be local-dask or tcp://HOST:PORT, not {cluster!r}")
    parsed = load_spec(spec)
    # no auto-refresh thread: the pool forks its workers while the bar is up
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        auto_refresh=False,
        disable=quiet,
        transient=False,
    )
    state: dict[str, Any] = {}

    def on_start(total: int | None, found: int, executor: str) -> None:
        state["task"] = bar.add_task(f"{parsed.name}", total=total, completed=found, rate="")
        if not quiet:
            err.print(f"[dim]{parsed.name}: {found} of {total} points already stored; computing on {executor}[/dim]")
        bar.refresh()

    def progress(points: int) -> None:
        task = state["task"]
        bar.advance(task, points)
        speed = bar.tasks[task].speed
        bar.update(task, rate=f"{speed * 60:,.0f} pts/min" if speed else "")
        bar.refresh()

    with bar:
        summary = run_sweep(
            parsed,
            out,
            workers=workers,
            cluster=cluster,
            retry_failed=retry_failed,
            progress=progress,
            on_start=on_start,
        )
    if not quiet:
        err.print(
            f"{summary.sweep}: {summary.points_done}/{summary.points_total} points stored "
            f"({summary.points_failed} failed), {summary.points_computed_this_run} computed this run in "
            f"{summary.seconds:.1f} s ({summary.points_per_minute:,.0f} points/min) -> {out}"
        )
    if as_json:
        print(json.dumps(summary.to_dict(), sort_keys=True))


def report_command(
    db: Annotated[Path, typer.Argument(help="A results database written by `trainforge sweep`.")],
    out_dir: Annotated[Path, typer.Option("-o", "--out", help="Output folder.")] = Path("sweep-report"),
    sweep: Annotated[str | None, typer.Option("--sweep", help="Only the points of this sweep name.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object listing the files.")] = False,
) -> None:
    """Pareto-front and sensitivity PNGs, CSV, Parquet and one self-contained interactive HTML page."""
    from trainforge.dataflow.sweep.report import write_report

    if not db.is_file():
        raise UsageError(f"results database {str(db)!r} does not exist")
    result = write_report(db, out_dir, sweep=sweep)
    if as_json:
        print(json.dumps(result, sort_keys=True))
        return
    err.print(f"{result['points']} points ({result['failed']} failed) -> {out_dir}")
    for name in result["files"]:
        print(Path(out_dir) / name)


def register(app: typer.Typer) -> None:
    """Add ``sweep`` and ``report`` to the main CLI."""
    app.command("sweep")(reports_errors(sweep_command))
    app.command("report")(reports_errors(report_command))
