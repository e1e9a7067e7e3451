"""``trainforge cosim``: training iterations co-simulated on the SAT accelerator's RTL.

``trainforge cosim train-step --model mlp --method bdwp --nm 2:4 --steps 2`` runs the iterations
three times (:mod:`trainforge.sim.cosim`): on the Verilator model of ``sat`` (every GEMM, PRUNE and
UPDATE in the RTL), on the bit-exact golden executor with the same host glue, and in plain PyTorch
float32; it reports whether the RTL and golden runs agree bit for bit and how far the RTL's weights
are from PyTorch's. A user mistake prints one ``trainforge: error:`` line and exits with code 2
(the main CLI's ``reports_errors``); a failed simulation, or an RTL run that is not bit-exact,
exits with code 1 (after printing the report).
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from trainforge.cli_common import parse_nm, reports_errors
from trainforge.errors import UsageError

__all__ = ["cosim_app"]

cosim_app = typer.Typer(
    name="cosim",
    help="Co-simulate DNN training on the SAT accelerator RTL against its golden model and PyTorch.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
out = Console(highlight=False)


@cosim_app.command("train-step")
@reports_errors
def train_step_command(
    model: Annotated[str, typer.Option("--model", help="mlp (64-32-10) or cnn (conv 3x3 1->8, fc 128->10).")] = "mlp",
    method: Annotated[str, typer.Option("--method", help="dense, srste or bdwp.")] = "bdwp",
    nm: Annotated[str, typer.Option("--nm", help="N:M pattern, n < m, m dividing the preset's m_max.")] = "2:4",
    steps: Annotated[int, typer.Option("--steps", help="Training iterations (>= 1).")] = 1,
    preset: Annotated[str, typer.Option("--preset", help="Accelerator preset: tiny, default or paper.")] = "tiny",
    seed: Annotated[int, typer.Option("--seed", help="Chooses the batches and the initial weights.")] = 0,
    batch: Annotated[int, typer.Option("--batch", help="Samples per iteration.")] = 16,
    lr: Annotated[float | None, typer.Option("--lr", help="SGD learning rate (momentum 0.9).")] = None,
    waves: Annotated[bool, typer.Option("--waves", help="Record an FST waveform of the RTL run.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
) -> None:
    """Run training iterations with every GEMM, PRUNE and UPDATE on the RTL; compare with golden and PyTorch."""
    from trainforge.hw.sat.config import SatConfig
    from trainforge.sim import cosim

    n, m = parse_nm(nm)
    config = SatConfig.preset_named(preset)
    args = dict(
        model=model,
        method=method,
        n=n,
        m=m,
        steps=steps,
        seed=seed,
        batch=batch,
        lr=cosim.DEFAULT_LR if lr is None else lr,
    )
    cosim.check_arguments(config, **{k: v for k, v in args.items() if k != "seed"})
    if seed < 0:
        raise UsageError(f"--seed must be >= 0, not {seed}")
    start = time.perf_counter()
    golden = cosim.golden_steps(config, **args)
    reference = cosim.torch_steps(config, **args)
    rtl, sim = cosim.run_rtl(config, waves=waves, **args)
    result = {
        **cosim.report(rtl, golden, reference),
        "model": model,
        "method": method,
        "nm": f"{n}:{m}",
        "preset": preset,
        "seed": seed,
        "batch": batch,
        "lr": args["lr"],
        "build_cached": sim.build_cached,
        "wall_s": time.perf_counter() - start,
        "log": sim.log,
        "waves": sim.waves,
    }
    if as_json:
        print(json.dumps(result))
    else:
        _print_tables(result)
    if not result["bit_exact"]:
        raise typer.Exit(1)


def _print_tables(r: dict[str, Any]) -> None:
    title = (
        f"{r['model']} / {r['method']} {r['nm']} on the {r['preset']} SAT RTL: {r['steps']} steps, batch {r['batch']}"
    )
    summary = Table(title=title)
    summary.add_column("quantity")
    summary.add_column("value", justify="right")
    rows = [
        ("RTL == golden (weights and losses, bit for bit)", "yes" if r["bit_exact"] else "NO"),
        ("max |W_rtl - W_torch| (final, all layers)", f"{r['max_abs_weight_diff']:.3g}"),
        ("max |W_rtl - W_initial|", f"{r['max_abs_weight_change']:.3g}"),
        ("RTL cycles (all programs)", f"{r['cycles']:,}"),
        ("programs / descriptors", f"{r['programs']} / {r['descriptors']:,}"),
        ("wall time", f"{r['wall_s']:.1f} s"),
    ]
    if r["waves"]:
        rows.append(("waveform", r["waves"]))
    for row in rows:
        summary.add_row(*row)
    out.print(summary)
    losses = Table(title="loss per step (mean cross-entropy of the batch, before the update)")
    for column in ("step", "RTL", "golden", "PyTorch fp32"):
        losses.add_column(column, justify="right")
    for t, (a, b, c) in enumerate(zip(r["loss_rtl"], r["loss_golden"], r["loss_torch"], strict=True)):
        losses.add_row(str(t), f"{a:.6f}", f"{b:.6f}", f"{c:.6f}")
    out.print(losses)
    by_op = Table(title="RTL cycles by operation (accelerator counters, summed)")
    for column in ("ff", "bp", "wu", "prune", "update"):
        by_op.add_column(column, justify="right")
    by_op.add_row(*(f"{r['cycles_by_op'][k]:,}" for k in ("ff", "bp", "wu", "prune", "update")))
    out.print(by_op)
