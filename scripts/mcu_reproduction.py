"""Reproduce the published FP16/FP32 on-device-training numbers with the MCU cycle model.

Prints two Markdown tables: ours against every published number (PULP-TrainLib tutorial GVSoC
measurements, PULP-TrainLib SAMOS 2022, Nadalini et al. FGCS 2023) with the reason for each
difference, then what goes beyond the paper (FP32-accumulating vfdotpex kernels, kernels the library
does not dispatch, other cluster configurations). Run::

    .venv/bin/python scripts/mcu_reproduction.py

(about 15 s; the networks are traced once on PyTorch's meta device).
"""

from __future__ import annotations

import itertools
import time

from trainforge.dataflow.mcu import ClusterConfig, estimate, kernel_cycles, layer_steps, load_workload, tune_step
from trainforge.dataflow.mcu.autotune import LIBRARY_MANAGER
from trainforge.models.workloads import Layer


def pct(ours: float, theirs: float) -> str:
    return f"{(ours - theirs) / theirs * 100:+.1f} %"


def conv_layer(c_in: int, c_out: int, hw: int) -> Layer:
    return Layer(
        name=f"conv{c_in}x{c_out}@{hw}", kind="conv", rows=hw * hw, c_in=c_in, c_out=c_out, kernel=(3, 3),
        weight="w", in_spatial=(hw, hw), out_spatial=(hw, hw), stride=(1, 1), padding=(1, 1), dilation=(1, 1),
    )  # fmt: skip


DW16 = LIBRARY_MANAGER[("fp16", "depthwise", "fw")]
SWEEP = [conv_layer(ci, co, hw) for ci, co, hw in itertools.product((8, 16, 32, 64), (8, 16, 32, 64), (8, 16, 32))]


def step_cycles(layer: Layer, dtype: str, kernels="library", steps=("fw", "wg", "ig")) -> int:
    return sum(tune_step(s, dtype=dtype, kernels=kernels).cycles for s in layer_steps(layer, steps))


def main() -> None:
    start = time.perf_counter()
    rows: list[tuple[str, str, str, str, str]] = []

    # -- tutorial: FC input gradient, K = M = 128, FP16 (GVSoC) ---------------------------------
    fc = [
        (
            "vm_naive",
            False,
            1,
            67_386,
            "2 loads + FMA + load-use stall = 4 cycles/MAC as measured; GCC's "
            "per-output code (lane extraction, index arithmetic) is ~8 cycles longer than our canonical epilogue",
        ),
        (
            "vm_SIMD_naive",
            False,
            1,
            43_611,
            "5-instruction body without stall (halfword loads scheduled before the pack); same epilogue difference",
        ),
        (
            "vm_T_SIMD",
            True,
            1,
            35_268,
            "2 loads + vfmac with a load-use stall (4 cycles / 2 MACs): the tutorial's 24,832 estimate omits the stall",
        ),
        (
            "vm_T_SIMD",
            True,
            8,
            4_620,
            "16 outputs per core; the 8 cores simulated together on the banked TCDM (exact: every access "
            "arbitrated, preamble and epilogues included), 48 bank-conflict stalls on the worst core; "
            "fork/barrier 72 are our estimate; the per-core epilogue gap remains",
        ),
    ]
    for name, tb, cores, theirs, why in fc:
        r = kernel_cycles(name, n=1, k=128, m=128, cores=cores, trans_b=tb)
        rows.append((f"FC IG 128x128 FP16, `{name}`, {cores} core(s) [cycles]", f"{theirs:,}", f"{r.cycles:,}",
                     pct(r.cycles, theirs), why))  # fmt: skip

    # -- tutorial: FP32 pointwise forward 8x8x16 -> 16, one core --------------------------------
    pw = [
        (
            "mm",
            77_491,
            "N=16, K=16, M=64: 4 cycles/MAC inner loop; with K=16 the per-output overhead is 27 % of "
            "the time and GCC's is larger than ours",
        ),
        ("mm_unroll_2x1", 49_884, "5 instructions / 2 MACs, no stall; same per-block gap"),
        (
            "mm_unroll_2x4",
            35_465,
            "14 instructions / 8 MACs; GCC spends ~32 more cycles per 2x4 block (index "
            "arithmetic for 8 stores, accumulator moves) over only 16 iterations",
        ),
    ]
    for name, theirs, why in pw:
        r = kernel_cycles(name, n=16, k=16, m=64, cores=1, dtype="fp32")
        rows.append((f"PW FW 8x8x16->16 FP32, `{name}`, 1 core [cycles]", f"{theirs:,}", f"{r.cycles:,}",
                     pct(r.cycles, theirs), why))  # fmt: skip

    # -- PULP-TrainLib SAMOS 2022: up to 4.39 FP32 MAC/clk on 8 cores ---------------------------
    fp32_kernels = LIBRARY_MANAGER[("fp32", "conv", "fw")]
    best = None
    for layer in SWEEP:
        for step in layer_steps(layer, ("fw", "wg")):
            for name, tb in itertools.product(fp32_kernels, (False, True)):
                r = kernel_cycles(name, n=step.n, k=step.k, m=step.m, dtype="fp32", trans_b=tb)
                if best is None or r.mac_per_cycle > best.mac_per_cycle:
                    best = r
    conflicts = max(best.contention) / best.cycles * 100
    rows.append(("FP32 matmul peak, 8 cores [MAC/clk]", "4.39", f"{best.mac_per_cycle:.2f}",
                 pct(best.mac_per_cycle, 4.39),
                 f"best library kernel over a Conv2D FW/WG sweep (`{best.kernel}` on {best.n}x{best.k}x{best.m}); "
                 f"its inner loop alone gives 4.57; fork/barrier, epilogues and bank conflicts ({conflicts:.1f} %) "
                 "cost the rest; the SAMOS shapes are not published"))  # fmt: skip

    # -- FGCS 2023: FP16 SIMD up to 1.72x faster than FP32 on a Conv2D training step -------------
    ratios = []
    for layer in SWEEP:
        ratios.append((step_cycles(layer, "fp32") / step_cycles(layer, "fp16"), layer.name))
    top = max(ratios)
    fw_wg = max(
        step_cycles(layer, "fp32", steps=("fw", "wg")) / step_cycles(layer, "fp16", steps=("fw", "wg"))
        for layer in SWEEP
    )
    rows.append(("Conv2D training step, FP16 SIMD vs FP32, up to [x]", "1.72", f"{top[0]:.2f}", pct(top[0], 1.72),
                 f"max over 48 3x3 layers ({top[1]}); the library runs a Conv2D input gradient only with the naive "
                 f"kernel, which is as fast in FP16 as in FP32; forward + weight gradient alone reach {fw_wg:.2f}x; "
                 "the paper's layer sizes are not published"))  # fmt: skip

    # -- FGCS 2023: ResNet8 and DS-CNN end to end ---------------------------------------------
    nets = {}
    for model, theirs, paper_ms in (("resnet8", 3.11, 17.1), ("dscnn", 0.81, 6.4)):
        w = load_workload(model)
        e = estimate(w, dtype="fp16", kernels="library")
        nets[model] = w
        implied_mhz = e.macs / theirs / (paper_ms * 1e-3) / 1e6
        steps = [s for layer in e.layers for s in layer.steps]
        ig_share = sum(s.cycles for s in steps if s.step == "ig" and s.kernel == "mm_fp16") / e.cycles * 100
        kinds: dict[str, list[float]] = {}
        for layer in e.layers:
            kinds.setdefault(layer.kind, []).append(layer.mac_per_cycle)
        span = {k: f"{min(v):.1f}" + (f"-{max(v):.1f}" if max(v) - min(v) >= 0.05 else "") for k, v in kinds.items()}
        if model == "resnet8":
            simd_ig = estimate(w, dtype="fp16", kernels=[*LIBRARY_MANAGER[("fp16", "pointwise", "ig")], *DW16])
            why = (
                f"full MLPerf-Tiny ResNet8 ({e.macs / 1e6:.1f} M MACs: FW+WG+IG), batch 1, all layers trained, "
                "paper-era kernels: the library dispatches only the naive kernel for a Conv2D input gradient, and "
                f"these steps take {ig_share:.0f} % of the time (the four stride-2 ones run on the zero-dilated dY, "
                f"4x their useful MACs); conv layers span {span['conv']} MAC/clk. With the library's SIMD kernels "
                f"allowed there too: {simd_ig.mac_per_cycle:.2f} MAC/clk. The paper's network and step are not "
                f"public: at {paper_ms} ms, {theirs} MAC/clk would mean {implied_mhz:.0f} MHz for the full model"
            )
        else:
            dw = sum(layer.cycles for layer in e.layers if layer.kind == "depthwise")
            slower = (e.macs / theirs - (e.cycles - dw)) / dw
            why = (
                f"full MLPerf-Tiny DS-CNN ({e.macs / 1e6:.2f} M MACs): pointwise layers run at {span['pointwise']} "
                f"MAC/clk, depthwise at {span['depthwise']} ({dw / e.cycles * 100:.0f} % of the time); {theirs} "
                f"overall would need the depthwise steps {slower:.0f}x slower than our model of the library's; at "
                f"{paper_ms} ms, {theirs} MAC/clk would mean {implied_mhz:.0f} MHz for the full model, so the "
                "paper's DS-CNN or its step differs"
            )
        rows.append((f"{model} training step FP16, 8 cores [MAC/clk]", f"{theirs}", f"{e.mac_per_cycle:.2f}",
                     pct(e.mac_per_cycle, theirs), why))  # fmt: skip

    print("## Ours vs published\n")
    print("| quantity | published | ours | difference | why |")
    print("|---|---:|---:|---:|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")

    # -- beyond the paper ---------------------------------------------------------------------
    beyond: list[tuple[str, str, str]] = []
    for name in ("mm_fp16_SIMD_4x8", "mm_fp16_dotpex_4x8", "mm_M_fp16_dotpex_6x8"):
        r = kernel_cycles(name, n=64, k=576, m=256, trans_b=True)
        note = {
            "mm_fp16_SIMD_4x8": "paper-era best: FP16 accumulation, two partial sums per output reduced at the end",
            "mm_fp16_dotpex_4x8": "same loads, vfdotpex.s.h: FP32 accumulation at no cost, no lane reduction",
            "mm_M_fp16_dotpex_6x8": "3 x 4 outputs in 19 registers: 24 MACs per 19 instructions "
            "(parallel over M: 64 rows = 21 blocks of 3 + 1)",
        }[name]
        beyond.append((f"`{name}` (B^T), 64x576x256, 8 cores", f"{r.mac_per_cycle:.2f} MAC/clk", note))
    for name in ("mm_fp16_SIMD_4x8", "mm_fp16_dotpex_4x8"):
        r = kernel_cycles(name, n=64, k=576, m=256, trans_b=False)
        beyond.append((f"`{name}` (B not transposed), 64x576x256", f"{r.mac_per_cycle:.2f} MAC/clk",
                       "4 lane shuffles per iteration either way"))  # fmt: skip
    for model in ("resnet8", "dscnn"):
        w = nets[model]
        lib = estimate(w, dtype="fp16", kernels="library")
        best = estimate(w, dtype="fp16", kernels="all")
        chosen = sorted({s.kernel for layer in best.layers for s in layer.steps if "dotpex" in s.kernel})
        beyond.append((f"{model}, every kernel model (autotuned)", f"{best.mac_per_cycle:.2f} MAC/clk "
                       f"({best.cycles / lib.cycles:.2f}x the cycles)",
                       "SIMD input gradients and our vfdotpex kernels (" + ", ".join(chosen) + ")"))  # fmt: skip
        fp32 = estimate(w, dtype="fp32", kernels="library")
        beyond.append((f"{model}, FP16 library vs FP32 library", f"{fp32.cycles / lib.cycles:.2f}x faster",
                       "the whole step, transforms and vector work included"))  # fmt: skip
    w = nets["resnet8"]
    base = estimate(w, dtype="fp16", kernels="all")
    for label, cluster, note in (
        ("4 FPUs shared by 8 cores", ClusterConfig.preset("pulp-shared"), "FP instructions at most every 2 cycles"),
        ("FPU latency 2", ClusterConfig(fpu_latency=2), "CV32E40P with FPU_ADDMUL_LAT=1; kernels hide it"),
        ("32 L1 banks", ClusterConfig(l1_banks=32), "fewer conflicts"),
        ("256 KiB L1", ClusterConfig(l1_bytes=256 * 1024), "fewer tiles"),
        ("16 cores", ClusterConfig().with_cores(16), "same per-core kernels"),
    ):
        e = estimate(w, dtype="fp16", kernels="all", cluster=cluster)
        beyond.append((f"resnet8, all kernels, {label}", f"{e.mac_per_cycle:.2f} MAC/clk "
                       f"({e.cycles / base.cycles:.2f}x the cycles)", note))  # fmt: skip

    print("\n## Beyond the paper\n")
    print("| what | result | note |")
    print("|---|---|---|")
    for row in beyond:
        print("| " + " | ".join(row) + " |")
    print(f"\n({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
