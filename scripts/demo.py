"""The main job, end to end as it stands: from a training workload down to RTL checked bit for bit.

Run with `make demo`. Steps: what one BDWP training iteration of ResNet-18 asks of the hardware;
the online N:M pruning unit as Verilog, simulated on Verilator against PyTorch, pruning a real conv
layer's forward and backward copies; the FP16 FMA checked on a million TestFloat-format vectors;
BDWP training of a small CNN in PyTorch; the SAT accelerator's RTL running whole programs against its
golden executor; training steps with every GEMM, PRUNE and UPDATE on the RTL; the scheduler's cycle
model held to the RTL; a whole ResNet-18 iteration scheduled on the paper preset; the MCU cluster.
Writes into demo-out/: Verilog and manifests, a PNG of the masks the RTL produced, the vector file
and the Gantt timeline of the scheduled iteration.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from rich.console import Console
from rich.table import Table

from trainforge.hw.nm_prune import NMPruneConfig
from trainforge.models import nm_compress, nm_mask
from trainforge.sim.harness import generate, simulate
from trainforge.sim.nm_prune import prune_on_rtl
from trainforge.sim.verilator import lint

OUT = Path("demo-out")
console = Console(highlight=False, width=None if sys.stdout.isatty() else 110)


STEPS = 12


def step(number: int, title: str) -> None:
    console.rule(f"[bold]Step {number}/{STEPS}[/bold]  {title}")


def workload_step() -> None:
    from trainforge.models import workload, zoo_model

    model, example = zoo_model("resnet18")
    table = Table("method", "FF GMAC", "BP GMAC", "WU GMAC", "useful GMAC", "ideal speed-up")
    for method, n, m in (("dense", 2, 8), ("srste", 2, 8), ("bdwp", 2, 8), ("bdwp", 1, 8)):
        w = workload(model, example, method=method, n=n, m=m)
        macs = w.macs_by_stage()
        label = method if method == "dense" else f"{method} {n}:{m}"
        table.add_row(
            label,
            *(f"{macs[s] / 1e9:.3f}" for s in ("ff", "bp", "wu")),
            f"{sum(w.useful_macs(s) for s in ('ff', 'bp', 'wu')) / 1e9:.3f}",
            f"{w.ideal_speedup:.2f}x",
        )
    console.print(table)
    console.print("One training iteration, batch 1, 224x224 (trainforge.models.workload): BDWP makes FF and BP sparse.")


def fma_step(all_ok: bool) -> bool:
    from trainforge.designs import get_design
    from trainforge.models.testfloat import generate_vectors
    from trainforge.sim.fp_vectors import check_vector_file

    design = get_design("fp-fma")
    config = design.make_config({"fmt": "fp16"})
    table = Table("rounding", "vectors", "mismatches", "vectors/s through the RTL")
    for rounding in ("rne", "rmm"):
        path = OUT / f"f16_mulAdd_{rounding}.tv"
        with console.status(f"generating 1,000,000 TestFloat-format f16_mulAdd cases ({rounding}) with the oracle ..."):
            generate_vectors("fmadd", "fp16", rounding, 1_000_000, 2026, path=path)
        with console.status(f"checking 1,000,000 vectors ({rounding}) on the Verilator model ..."):
            check = check_vector_file(design, config, path, rounding=rounding)
        all_ok &= check.mismatches == 0
        table.add_row(rounding, f"{check.vectors:,}", str(check.mismatches), f"{check.vectors_per_s:,.0f}")
    console.print(table)
    console.print(
        f"Same check with your own file: trainforge sim fp-fma --set fmt=fp16 --vectors {OUT}/f16_mulAdd_rne.tv "
        "--rounding rne"
    )
    return all_ok


def training_step() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from accuracy_experiment import MODELS, Variant, train_once

    cnn_name = next(name for name in MODELS if name.startswith("CNN"))

    table = Table("method", "CNN test accuracy (digits, 10 epochs, seed 0)", "ideal training speed-up")
    for variant in (Variant("dense", "dense"), Variant("bdwp 2:8", "bdwp", 2, 8), Variant("srste 2:8", "srste", 2, 8)):
        with console.status(f"training {variant.label} ..."):
            accuracy = train_once(cnn_name, variant, seed=0, epochs=10)
        table.add_row(variant.label, f"{accuracy:.2f}%", f"{variant.ideal_speedup():.2f}x")
    console.print(table)
    console.print(
        "Full table (3 seeds, 2:4, 1:4, PGF, Bi-Mask): scripts/accuracy_experiment.py, docs/sparse-training.md"
    )


def mcu_step() -> None:
    from trainforge.dataflow.mcu import estimate, load_workload

    workload_ = load_workload("resnet8")
    table = Table("format", "kernels", "MAC/clk", "cycles", "ms at 400 MHz")
    with console.status("costing every layer's FW, WG and IG matmul with the instruction-level model ..."):
        rows = [
            (dtype, kernels, estimate(workload_, dtype=dtype, kernels=kernels))
            for dtype in ("fp32", "fp16")
            for kernels in ("library", "all")
        ]
    for dtype, kernels, e in rows:
        label = "PULP-TrainLib's choice" if kernels == "library" else "autotuned, all kernels"
        table.add_row(dtype, label, f"{e.mac_per_cycle:.2f}", f"{e.cycles:,}", f"{e.ms:.1f}")
    console.print(table)
    console.print("ResNet8 training step on 8 cores (trainforge mcu estimate; docs/mcu.md has the reproduction table)")


def mcu_rtl_step(all_ok: bool) -> bool:
    from trainforge.sim.mcu_kernel import run_kernel

    # The tutorial's FC input-gradient kernels, K = M = 128, and their GVSoC cycle counts.
    cases = [("vm_naive", False, 1, 67_386), ("vm_SIMD_naive", False, 1, 43_611), ("vm_T_SIMD", True, 1, 35_268)]
    cases.append(("vm_T_SIMD", True, 8, 4_620))
    table = Table("kernel", "cores", "GVSoC", "model", "vs GVSoC", "cluster RTL", "C bit-exact")
    with console.status("building the MCU cluster RTL (1 and 8 cores) with Verilator and running the kernels ..."):
        runs = [(run_kernel(name, n=1, k=128, m=128, trans_b=tb, cores=c), gvsoc) for name, tb, c, gvsoc in cases]
    for run, gvsoc in runs:
        ok = run.cycles_match and run.bit_exact
        all_ok &= ok
        table.add_row(
            run.kernel,
            str(run.cores),
            f"{gvsoc:,}",
            f"{run.model_cycles:,}",
            f"{(run.model_cycles - gvsoc) / gvsoc * 100:+.1f} %",
            f"{run.rtl_cycles:,} " + ("[green]equal[/green]" if run.cycles_match else "[red]DIFFERENT[/red]"),
            "[green]yes[/green]" if run.bit_exact else f"[red]{run.mismatches} differ[/red]",
        )
    console.print(table)
    console.print("FC input gradient 1x128x128 FP16 (trainforge mcu kernel NAME ... --rtl; docs/mcu-core.md)")
    return all_ok


def sat_regression_step(all_ok: bool) -> bool:
    with console.status("building the tiny SAT accelerator (4x4) with Verilator and running random programs ..."):
        result = simulate("sat", {"preset": "tiny"}, seed=1, check=False)
    all_ok &= result.passed
    verdict = "[green]identical[/green]" if result.passed else "[red]MISMATCH[/red]"
    table = Table("programs", "count", "RTL cycles", "final memory image vs golden executor")
    labels = {
        "gemm_tiles_every_pattern_both_dataflows": "GEMM tiles: OS and WS, dense and 7 N:M patterns, ragged",
        "prune_both_copies": "PRUNE: FF copy (transposed) and BP copy, with masks",
        "update_sgd_momentum_srste": "UPDATE: SGD + momentum + SR-STE, FP32 master -> FP16",
        "mixed_program": "FF, BP, WU GEMMs + UPDATE + PRUNE in one program",
        "bad_descriptors_raise_the_error_flag": "bad descriptors (every error code)",
    }
    for metrics in result.metrics:
        cycles = f"{metrics['cycles']:,}" if "cycles" in metrics else "-"
        table.add_row(labels.get(metrics["test"], metrics["test"]), str(metrics["programs"]), cycles, verdict)
    console.print(table)
    console.print(f"trainforge sim sat --set preset=tiny: {'passed' if result.passed else 'FAILED'} ({result.log})")
    return all_ok


def cosim_step(all_ok: bool) -> bool:
    from trainforge.hw.sat.config import SatConfig
    from trainforge.sim import cosim

    config = SatConfig.preset_named("tiny")
    args = dict(model="mlp", method="bdwp", n=2, m=4, steps=2, seed=0, batch=16, lr=cosim.DEFAULT_LR)
    with console.status("2 BDWP 2:4 training steps of a 64-32-10 MLP on digits: golden, PyTorch, then the RTL ..."):
        golden = cosim.golden_steps(config, **args)
        reference = cosim.torch_steps(config, **args)
        rtl, _ = cosim.run_rtl(config, **args)
    report = cosim.report(rtl, golden, reference)
    all_ok &= bool(report["bit_exact"])
    table = Table("step", "loss on the RTL", "loss in PyTorch (float32)")
    for step_index, (ours, theirs) in enumerate(zip(report["loss_rtl"], report["loss_torch"], strict=True)):
        table.add_row(str(step_index), f"{ours:.6f}", f"{theirs:.6f}")
    console.print(table)
    by_op = ", ".join(f"{op} {cycles:,}" for op, cycles in report["cycles_by_op"].items())
    exact = "[green]bit-exact[/green]" if report["bit_exact"] else "[red]NOT bit-exact[/red]"
    console.print(
        f"weights and losses {exact} against the hardware-exact golden run; max |W_rtl - W_torch| = "
        f"{report['max_abs_weight_diff']:.2g}; {report['cycles']:,} cycles ({by_op})"
    )
    console.print("(trainforge cosim train-step --model mlp --method bdwp --nm 2:4 --steps 2 --preset tiny)")
    return all_ok


def validate_step(all_ok: bool) -> bool:
    from trainforge.dataflow.validate import validate
    from trainforge.hw.sat.config import SatConfig

    with console.status("running 12 random programs on the RTL and through the cycle model ..."):
        report = validate(SatConfig.preset_named("tiny"), cases=12, seed=1)
    all_ok &= report.max_cycle_error == 0
    table = Table("case", "shape", "n:m", "dataflow", "DRAM lat/int", "RTL cycles", "model cycles", "error")
    for row in report.rows:
        table.add_row(
            row.kind,
            row.shape,
            row.pattern,
            row.dataflow,
            f"{row.mem_latency}/{row.mem_interval}",
            f"{row.measured:,}",
            f"{row.predicted:,}",
            str(row.error),
        )
    console.print(table)
    console.print(
        f"{report.cases} cases, max cycle error {report.max_cycle_error}, mean |error| "
        f"{report.mean_abs_pct_error:.2f} % (trainforge validate --hw tiny --cases 12)"
    )
    return all_ok


def estimate_step() -> None:
    from trainforge.cli_estimate import estimate, load_model
    from trainforge.dataflow.gantt import gantt_png
    from trainforge.hw.sat.config import SatConfig

    config = SatConfig.preset_named("paper")
    table = Table("method (2:8)", "cycles", "ms at 200 MHz", "samples/s", "energy (mJ)", "speed-up vs dense")
    dense_cycles = None
    with console.status("scheduling ResNet-18 training iterations (batch 4) on the paper preset ..."):
        for method in ("dense", "srste", "bdwp"):
            sched, summary = estimate(config, load_model("resnet18", method, 2, 8, 4))
            dense_cycles = dense_cycles or summary["cycles"]
            table.add_row(
                method,
                f"{summary['cycles']:,}",
                f"{summary['seconds'] * 1e3:.1f}",
                f"{summary['samples_per_s']:.1f}",
                f"{summary['energy_j'] * 1e3:.1f}",
                f"{dense_cycles / summary['cycles']:.3f}x",
            )
        gantt = gantt_png(config, sched, OUT / "resnet18-bdwp-gantt.png", title="ResNet-18 BDWP 2:8, batch 4, paper")
    console.print(table)
    console.print(
        "Every schedule is a descriptor program the RTL runs, timed by the exact cycle model "
        f"(trainforge estimate --hw paper --model resnet18 --method bdwp --nm 2:8 --batch 4); timeline: {gantt}"
    )
    console.print("docs/scheduler.md explains the gap to the paper's 1.75x and to the ideal.")


def main() -> int:
    OUT.mkdir(exist_ok=True)
    config = NMPruneConfig(lanes=8, m_max=8, fmt="fp16")
    all_ok = True

    step(1, "What a BDWP training iteration asks of the hardware (ResNet-18)")
    workload_step()

    step(2, "Generate Verilog for the online N:M pruning unit")
    generated = generate("nm-prune", config)
    v_path, j_path = generated.write(OUT)
    with console.status("verilator --lint-only -Wall ..."):
        lint(v_path, generated.design.top)
    console.print(f"{v_path}: {len(generated.text.splitlines())} lines, sha256 {generated.sha256[:16]}..., lint clean")
    console.print(f"{j_path}: parameters {generated.config.to_dict()}, latency {generated.latency} cycle")

    step(3, "Cycle-accurate regression on Verilator against the PyTorch golden model")
    with console.status("building with Verilator (cached after the first run) and simulating ..."):
        result = simulate("nm-prune", config, seed=1)
    table = Table("cocotb test", "cycles", "weights", "weights/cycle")
    for m in result.metrics:
        table.add_row(m["test"], str(m["cycles"]), str(m.get("weights", "")), f"{m['weights'] / m['cycles']:.2f}")
    console.print(table)
    verdict = "[green]PASSED[/green]" if result.passed else "[red]FAILED[/red]"
    console.print(
        f"{verdict}: {result.tests - result.failures}/{result.tests} tests bit-exact against nm_compress/nm_mask; "
        f"{result.cycles} cycles at {result.cycles_per_s:,.0f} cycles/s (build {result.build_s:.1f} s)"
    )
    all_ok &= result.passed

    step(4, "Prune a real conv layer's FF and BP weight copies on the RTL (BDWP, 2:8)")
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(64, 32, 3)
    weight = conv.weight.detach().half()  # (C_out, C_in, kh, kw)
    table = Table("copy", "grouped along", "cycles", "weights/cycle", "bit-exact vs PyTorch", "stored bits/weight")
    masks = {}
    for copy, dim in (("FF (forward)", 1), ("BP (input grad)", 0)):
        start = time.perf_counter()
        rtl = prune_on_rtl(weight, 2, 8, dim=dim, config=config)
        values, indices = nm_compress(weight, 2, 8, dim=dim)
        exact = (
            torch.equal(rtl.values.view(torch.int16), values.view(torch.int16))
            and torch.equal(rtl.indices, indices)
            and torch.equal(rtl.mask, nm_mask(weight, 2, 8, dim=dim))
        )
        all_ok &= exact
        masks[copy] = rtl.mask
        bits = 2 * (16 + config.index_bits) / 8
        table.add_row(
            copy,
            "C_in" if dim == 1 else "C_out",
            str(rtl.cycles),
            f"{weight.numel() / rtl.cycles:.2f}",
            "[green]yes[/green]" if exact else "[red]NO[/red]",
            f"{bits:.2f} (dense 16)",
        )
        console.print(f"  {copy}: {weight.numel()} weights pruned on the RTL in {time.perf_counter() - start:.1f} s")
    console.print(table)
    both = masks["FF (forward)"] & masks["BP (input grad)"]
    console.print(
        f"FF and BP masks differ in {(masks['FF (forward)'] ^ masks['BP (input grad)']).float().mean():.1%} of "
        f"positions; {both.float().mean():.1%} of weights are kept by both: BDWP needs both copies."
    )

    console.print("Plotting the masks ...")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), constrained_layout=True)
    for ax, (copy, mask) in zip(axes, masks.items(), strict=True):
        ax.imshow(mask[:, :, 0, 0].numpy(), cmap="Greys", interpolation="nearest", aspect="auto")
        # group boundaries: every 8 weights along the grouped dimension holds exactly 2 kept
        along_c_in = copy.startswith("FF")
        for edge in range(8, mask.shape[1 if along_c_in else 0], 8):
            (ax.axvline if along_c_in else ax.axhline)(edge - 0.5, color="tab:red", linewidth=0.8)
        ax.set_title(f"{copy}: 2:8 groups along {'C_in' if along_c_in else 'C_out'} (red)")
        ax.set_xlabel("C_in")
        ax.set_ylabel("C_out")
    fig.suptitle("Conv 64->32, kernel tap (0, 0): kept weights in black")
    png = OUT / "nm-prune-masks.png"
    fig.savefig(png, dpi=110)
    console.print(f"wrote {png}")

    step(5, "FP16 FMA on the RTL against TestFloat-format vectors (result and flags, bit for bit)")
    all_ok = fma_step(all_ok)

    step(6, "BDWP sparse training in PyTorch (digits, small CNN)")
    training_step()

    step(7, "The SAT accelerator on Verilator: whole programs against the golden executor")
    all_ok = sat_regression_step(all_ok)

    step(8, "Training steps with every GEMM, PRUNE and UPDATE on the SAT RTL")
    all_ok = cosim_step(all_ok)

    step(9, "The scheduler's cycle model against the RTL, to the cycle")
    all_ok = validate_step(all_ok)

    step(10, "A whole ResNet-18 training iteration scheduled on the paper preset")
    estimate_step()

    step(11, "FP16 on-device training on an 8-core MCU cluster (cycle model)")
    mcu_step()

    step(12, "The MCU kernels on the cluster RTL: cycles equal to the model, C bit-exact")
    all_ok = mcu_rtl_step(all_ok)
    console.rule("[green]demo complete[/green]" if all_ok else "[red]demo found a mismatch[/red]")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
