"""``trainforge mcu``: cycle models of DNN training on a PULP-style MCU cluster.

``trainforge mcu kernel NAME --n N --k K --m M`` costs one matmul kernel; ``trainforge mcu kernel
--list`` lists them; ``trainforge mcu estimate --model resnet8`` costs a network's training step.
A user mistake prints one ``trainforge: error:`` line and exits with code 2 (the main CLI's
``reports_errors``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from trainforge.cli_common import reports_errors
from trainforge.config import parse_overrides
from trainforge.errors import UsageError

__all__ = ["mcu_app"]

mcu_app = typer.Typer(
    name="mcu",
    help="Cycle models of DNN training on a PULP-style RISC-V MCU cluster (FP16 SIMD, PULP-TrainLib kernels).",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
out = Console(highlight=False)


PresetOption = Annotated[
    str, typer.Option("--preset", help="Cluster preset: pulp-private, pulp-shared, tutorial, samos.")
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", metavar="KEY=VALUE", help="Override a cluster parameter (repeatable)."),
]
CoresOption = Annotated[int | None, typer.Option("--cores", help="Worker cores (default: the preset's, 8).")]
DtypeOption = Annotated[str, typer.Option("--dtype", help="fp16, bf16 or fp32.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]


def _cluster(preset: str, overrides: list[str] | None, cores: int | None):
    from trainforge.dataflow.mcu.cluster import ClusterConfig

    cluster = ClusterConfig.preset(preset, **parse_overrides(overrides or []))
    if cores is not None:
        if cores < 1 or cores > 32:
            raise UsageError(f"--cores must be in 1..32, not {cores}")
        cluster = cluster.with_cores(cores)
    return cluster


@mcu_app.command("kernel")
@reports_errors
def kernel_command(
    name: Annotated[str | None, typer.Argument(help="Kernel name (see --list).")] = None,
    n: Annotated[int | None, typer.Option("--n", help="Rows of A and C.")] = None,
    k: Annotated[int | None, typer.Option("--k", help="Columns of A, rows of B (the reduction).")] = None,
    m: Annotated[int | None, typer.Option("--m", help="Columns of B and C.")] = None,
    groups: Annotated[int, typer.Option("--groups", help="Independent products (depthwise channels).")] = 1,
    transposed_b: Annotated[bool, typer.Option("--transposed-b", help="B is stored transposed (M x K).")] = False,
    cores: CoresOption = None,
    dtype: DtypeOption = "fp16",
    preset: PresetOption = "pulp-private",
    overrides: SetOption = None,
    as_json: JsonOption = False,
    list_kernels: Annotated[bool, typer.Option("--list", help="List the kernels and exit.")] = False,
    listing: Annotated[
        bool, typer.Option("--listing", help="Also print core 0's whole program (loops and instructions).")
    ] = False,
    rtl: Annotated[
        bool,
        typer.Option(
            "--rtl",
            help="Also run the kernel on the cluster RTL (Verilator) with random operands: its cycles must equal "
            "the model's and C must be bit-exact (exit 1 if not).",
        ),
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random operands of --rtl.")] = 0,
    asm: Annotated[
        str | None, typer.Option("--asm", metavar="FILE", help="Write the kernel's assembly program to FILE.")
    ] = None,
) -> None:
    """Cycles and MAC/cycle of one matmul kernel C[N x M] = A[N x K] . B[K x M] on the cluster."""
    from trainforge.dataflow.mcu.kernels import KERNELS, kernel_cycles

    if list_kernels:
        if as_json:
            print(json.dumps([_spec_dict(s) for s in KERNELS.values()]))
            return
        table = Table(title="MCU matmul kernels")
        for column in ("kernel", "format", "mode", "block", "k/iter", "parallel", "layouts", "origin", "what"):
            table.add_column(column)
        for s in KERNELS.values():
            layouts = "/".join("T" if t else "N" for t in s.layouts)
            table.add_row(
                s.name, s.fmt, s.mode, f"{s.rows}x{s.cols}", str(s.kunroll), s.parallel, layouts, s.origin, s.summary
            )
        out.print(table)
        return
    if name is None:
        raise UsageError("mcu kernel needs a kernel NAME (see `trainforge mcu kernel --list`)")
    missing = [flag for flag, value in (("--n", n), ("--k", k), ("--m", m)) if value is None]
    if missing:
        raise UsageError(f"mcu kernel needs {', '.join(missing)}")
    cluster = _cluster(preset, overrides, cores)
    result = kernel_cycles(name, n=n, k=k, m=m, groups=groups, dtype=dtype, trans_b=transposed_b, cluster=cluster)
    if asm is not None:
        _write_asm(asm, name, n=n, k=k, m=m, groups=groups, trans_b=transposed_b, dtype=dtype, cluster=cluster)
    checked = None
    if rtl:
        if groups != 1:
            raise UsageError(f"--rtl runs kernels with --groups 1 only, not {groups}")
        from trainforge.sim.mcu_kernel import run_kernel

        checked = run_kernel(name, n=n, k=k, m=m, trans_b=transposed_b, dtype=dtype, cluster=cluster, seed=seed)
    if as_json:
        payload = {**result.to_dict(), "cluster": cluster.to_dict()}
        if checked is not None:
            payload["rtl"] = checked.to_dict()
        print(json.dumps(payload, sort_keys=True))
        _rtl_verdict(checked, quiet=True)
        return
    shape = f"{result.n} x {result.k} x {result.m}" + (f" (x{result.groups})" if result.groups > 1 else "")
    table = Table(
        title=f"{result.name} on {cluster.cores} cores ({dtype}, B {'transposed' if transposed_b else 'K x M'})"
    )
    table.add_column("quantity")
    table.add_column("value", justify="right")
    rows = [
        ("kernel that ran", result.kernel),
        ("N x K x M", shape),
        ("MACs", f"{result.macs:,}"),
        ("cycles", f"{result.cycles:,}"),
        ("mac_per_cycle", f"{result.mac_per_cycle:.3f}"),
        ("peak MAC/cycle", str(cluster.peak_mac_per_cycle(dtype))),
        ("slowest core, no contention", f"{max(result.core_cycles):,}"),
        ("bank-conflict stalls (worst core)", f"{max(result.contention):,}"),
        ("fork + barrier", f"{result.sync_cycles:,}"),
        ("instructions (slowest core)", f"{result.instructions:,}"),
        ("stalls (slowest core)", ", ".join(f"{c} {v:,}" for c, v in result.stalls.items() if v) or "none"),
        ("inner loop", f"{result.inner_cycles} cycles, {result.inner_macs} MACs, {result.registers} registers"),
    ]
    if checked is not None:
        rows += [
            ("RTL cycles (Verilator)", f"{checked.rtl_cycles:,} ({'equal' if checked.cycles_match else 'DIFFERENT'})"),
            ("RTL C bit-exact", f"{checked.bit_exact} ({checked.mismatches} of {n * m} outputs differ)"),
            ("RTL C vs PyTorch float32", f"max |diff| {checked.max_abs_diff_vs_torch:.3g}"),
        ]
    for row in rows:
        table.add_row(*row)
    out.print(table)
    if result.inner_loop:
        out.print("inner loop:", markup=False)
        for line in result.inner_loop:
            out.print(f"    {line}", markup=False)
    if listing:
        from trainforge.dataflow.mcu.core import render
        from trainforge.dataflow.mcu.kernels import kernel_program

        program = kernel_program(
            name, n=n, k=k, m=m, groups=groups, trans_b=transposed_b, dtype=dtype, cores=cluster.cores
        )
        out.print("program of core 0:", markup=False)
        for line in render(program, "    "):
            out.print(line, markup=False)
    _rtl_verdict(checked, quiet=False)


def _write_asm(path: str, name: str, **shape: Any) -> None:
    """Write the kernel's lowered assembly (one program for every core of the cluster)."""
    from pathlib import Path

    from trainforge.dataflow.mcu.program import kernel_image

    cluster = shape.pop("cluster")
    image = kernel_image(name, cores=cluster.cores, cluster=cluster, **shape)
    try:
        Path(path).write_text(image.asm)
    except OSError as exc:
        raise UsageError(f"--asm: cannot write {path}: {exc.strerror}") from None


def _rtl_verdict(checked, *, quiet: bool) -> None:
    """Exit 1 when the RTL disagrees with the model or the reference (a failed check, not a usage error)."""
    if checked is None or (checked.cycles_match and checked.bit_exact):
        return
    if not quiet:
        out.print("RTL check FAILED: the RTL disagrees with the model or the reference", markup=False)
    raise typer.Exit(1)


def _spec_dict(spec) -> dict[str, Any]:
    import dataclasses

    d = dataclasses.asdict(spec)
    d["layouts"] = ["transposed" if t else "natural" for t in spec.layouts]
    return d


@mcu_app.command("estimate")
@reports_errors
def estimate_command(
    model: Annotated[
        str, typer.Option("--model", help="resnet8, dscnn, a zoo name, or an .onnx/.json/.csv workload file.")
    ],
    dtype: DtypeOption = "fp16",
    cores: CoresOption = None,
    trained_layers: Annotated[
        str, typer.Option("--trained-layers", help="all, or last:K (the last K GEMM layers are trained).")
    ] = "all",
    kernels: Annotated[
        str, typer.Option("--kernels", help="all (every kernel model) or library (paper-era PULP-TrainLib).")
    ] = "all",
    vector_ops: Annotated[
        bool, typer.Option("--vector-ops/--no-vector-ops", help="Also cost activations, norms, pooling, update.")
    ] = True,
    preset: PresetOption = "pulp-private",
    overrides: SetOption = None,
    as_json: JsonOption = False,
) -> None:
    """Per-layer and total MAC/clk, cycles and time of one training step (batch 1), autotuned."""
    from trainforge.dataflow.mcu.estimate import estimate, load_workload

    cluster = _cluster(preset, overrides, cores)
    if kernels not in ("all", "library"):
        raise UsageError(f"--kernels must be all or library, not {kernels!r}")
    if dtype not in ("fp16", "bf16", "fp32"):
        raise UsageError(f"--dtype must be fp16, bf16 or fp32, not {dtype!r}")
    workload = load_workload(model)
    result = estimate(
        workload, dtype=dtype, cluster=cluster, trained=trained_layers, kernels=kernels, vector_ops=vector_ops
    )
    if as_json:
        print(json.dumps(result.to_dict(), sort_keys=True))
        return
    table = Table(
        title=f"{result.model}: one training step, {dtype}, {cluster.cores} cores, trained {trained_layers}, "
        f"kernels {kernels}"
    )
    for column in ("layer", "kind", "forward", "weight grad", "input grad", "MACs", "cycles", "MAC/clk"):
        table.add_column(column, justify="right" if column in ("MACs", "cycles", "MAC/clk") else "left")
    for layer in result.layers:
        by_step = {s.step: s for s in layer.steps}
        cells = []
        for step in ("fw", "wg", "ig"):
            s = by_step.get(step)
            cells.append(
                "-"
                if s is None
                else f"{s.kernel}{' (T)' if s.trans_b else ''}" + (f" x{s.tiles}" if s.tiles > 1 else "")
            )
        table.add_row(
            layer.name, layer.kind, *cells, f"{layer.macs:,}", f"{layer.cycles:,}", f"{layer.mac_per_cycle:.2f}"
        )
    if result.vector_cycles:
        table.add_row("(vector ops)", "", "", "", "", "-", f"{result.vector_cycles:,}", "-")
    out.print(table)
    out.print(
        f"total: {result.macs:,} MACs in {result.cycles:,} cycles = {result.mac_per_cycle:.3f} MAC/clk, "
        f"{result.ms:.2f} ms at {cluster.clock_hz / 1e6:g} MHz",
        markup=False,
    )
