"""``trainforge validate``: the SAT cycle model against the RTL on random programs.

``trainforge validate --hw tiny --cases 50`` builds the ``sat`` accelerator for the hardware
(a preset name or a YAML file of :class:`~trainforge.hw.sat.config.SatConfig` fields), runs the
cases of :func:`trainforge.dataflow.validate.make_cases` on Verilator and compares each measured
cycle count and counter with :func:`trainforge.dataflow.sat_timing.program_timing`. A user mistake
prints one ``trainforge: error:`` line and exits with code 2 (the main CLI's ``reports_errors``);
a model that disagrees with the RTL exits with code 1.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from trainforge.cli_common import load_hw, reports_errors
from trainforge.errors import UsageError

__all__ = ["validate_command"]

out = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)


@reports_errors
def validate_command(
    hw: Annotated[str, typer.Option("--hw", help="Preset (tiny, default, paper) or a YAML file of SatConfig fields.")],
    cases: Annotated[int, typer.Option("--cases", help="Random programs to run (>= 1).")] = 50,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the programs (>= 0).")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
) -> None:
    """Check the SAT cycle model (dataflow/sat_timing.py) against the RTL on random programs."""
    from trainforge.dataflow.validate import validate

    config = load_hw(hw)
    if cases < 1:
        raise UsageError(f"--cases must be at least 1, not {cases}")
    if seed < 0:
        raise UsageError(f"--seed must be >= 0, not {seed}")
    if not as_json:
        err.print(f"[dim]running {cases} programs on the sat RTL ({config.preset}, Verilator)...[/dim]")
    report = validate(config, cases=cases, seed=seed)
    if as_json:
        payload = report.to_dict()
        print(
            json.dumps(
                {
                    "cases": payload["cases"],
                    "max_cycle_error": payload["max_cycle_error"],
                    "mean_abs_pct_error": payload["mean_abs_pct_error"],
                    "counters_exact": payload["counters_exact"],
                    "rows": payload["rows"],
                },
                sort_keys=True,
            )
        )
    else:
        table = Table(title=f"sat cycle model vs RTL ({config.preset}, {config.rows}x{config.cols})")
        for column in ("#", "kind", "shape", "pattern", "dataflow", "L/I", "measured", "predicted", "error"):
            table.add_column(column, justify="right" if column in ("#", "measured", "predicted", "error") else "left")
        for row in report.rows:
            error = str(row.error) if row.error else "0"
            if row.counter_errors:
                error += " (counters: " + ", ".join(row.counter_errors) + ")"
            table.add_row(
                str(row.index),
                row.kind,
                row.shape,
                row.pattern,
                row.dataflow,
                f"{row.mem_latency}/{row.mem_interval}",
                str(row.measured),
                str(row.predicted),
                error,
            )
        out.print(table)
        verdict = "[green]EXACT[/green]" if report.max_cycle_error == 0 else "[red]INEXACT[/red]"
        out.print(
            f"{verdict} {report.cases} cases: max cycle error {report.max_cycle_error}, mean |error| "
            f"{report.mean_abs_pct_error:.3f} %, counters exact in {report.counters_exact}/{report.cases}; "
            f"model {1e3 * report.model_s:.1f} ms in all, simulator {report.sim_s:.1f} s"
        )
    if report.max_cycle_error or report.counters_exact != report.cases:
        raise typer.Exit(1)
