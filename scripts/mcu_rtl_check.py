"""Every MCU matmul kernel that lowers, on the cluster RTL against the cycle model: a table for the docs.

For each non-depthwise kernel, each layout of B it takes, a few small (also ragged) shapes and 1 and
8 cores, the kernel runs on the Verilator cluster (:func:`trainforge.sim.mcu_kernel.run_kernels`, one
simulator process per core count) and is checked against ``kernel_cycles`` (cycles) and the
accumulation-order reference (bits). Cases that ``kernel_image`` refuses (``LoweringError``:
misaligned vector accesses, registers) are counted as skipped.

    .venv/bin/python scripts/mcu_rtl_check.py [--preset pulp-shared] [--set fpu_latency=2] [--quiet]
"""

from __future__ import annotations

import argparse
import sys
import time

from trainforge.dataflow.mcu.cluster import ClusterConfig
from trainforge.dataflow.mcu.kernels import KERNELS, kernel_names
from trainforge.dataflow.mcu.program import LoweringError, kernel_image
from trainforge.sim.mcu_kernel import KernelCase, run_kernels

SHAPES = ((1, 8, 8), (3, 7, 5), (5, 16, 9), (8, 12, 16))
CORES = (1, 8)


def sweep_cases(
    cluster: ClusterConfig, *, shapes=SHAPES, cores=CORES, kernels=None
) -> tuple[list[KernelCase], list[tuple]]:
    """The cases of the sweep that lower, and those refused (with the reason)."""
    cases, skipped = [], []
    for name in kernels or kernel_names():
        spec = KERNELS[name]
        if spec.parallel == "G" or spec.mode == "dw_bitcast":
            continue  # depthwise: groups > 1, no RTL reference
        dtype = "fp32" if spec.fmt == "fp32" else "fp16"
        for trans_b in spec.layouts:
            for n, k, m in shapes:
                for c in cores:
                    case = KernelCase(name=name, n=n, k=k, m=m, trans_b=trans_b, dtype=dtype, cores=c)
                    try:
                        kernel_image(
                            name, n=n, k=k, m=m, trans_b=trans_b, dtype=dtype, cores=c, cluster=cluster.with_cores(c)
                        )
                    except LoweringError as e:
                        skipped.append((case, str(e)))
                        continue
                    cases.append(case)
    return cases, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="pulp-private")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="cluster override")
    parser.add_argument("--kernel", action="append", help="only these kernels")
    parser.add_argument(
        "--shapes",
        help="n,k,m triples separated by ';' (default: %(default)s)",
        default=";".join(",".join(map(str, s)) for s in SHAPES),
    )
    parser.add_argument("--cores", default=",".join(map(str, CORES)), help="core counts (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="print only disagreements and the summary")
    args = parser.parse_args(argv)
    overrides = dict(kv.split("=", 1) for kv in args.set)
    cluster = ClusterConfig.preset(args.preset, **overrides) if overrides else ClusterConfig.preset(args.preset)
    t0 = time.perf_counter()
    shapes = [tuple(int(v) for v in t.split(",")) for t in args.shapes.split(";")]
    cores = [int(c) for c in args.cores.split(",")]
    cases, skipped = sweep_cases(cluster, shapes=shapes, cores=cores, kernels=args.kernel)
    runs = run_kernels(cases, cluster=cluster)
    bad = 0
    print(f"{'kernel':<26} {'B':<4} {'n,k,m':<9} {'cores':>5} {'model':>7} {'rtl':>7} exact")
    for case, r in zip(cases, runs, strict=True):
        ok = r.cycles_match and r.bit_exact
        bad += not ok
        if ok and args.quiet:
            continue
        ran = case.name if r.kernel == case.name else f"{case.name}>{r.kernel}"
        print(
            f"{ran:<26} {'T' if case.trans_b else 'N':<4} {f'{case.n},{case.k},{case.m}':<9} {case.cores:>5} "
            f"{r.model_cycles:>7} {r.rtl_cycles:>7} {'yes' if r.bit_exact else f'no ({r.mismatches})'}"
            + ("" if ok else "  <-- MISMATCH")
        )
    print(
        f"{args.preset} {' '.join(args.set)}: {len(cases)} cases, {len(cases) - bad} agree (cycles and bits), "
        f"{bad} disagree; {len(skipped)} refused by kernel_image; {time.perf_counter() - t0:.0f} s"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
