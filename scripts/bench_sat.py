"""Benchmark: simulation speed of the SAT accelerator on Verilator, one long GEMM program per case.

For each preset and case (OS / WS, dense / 2:8) it tiles one GEMM with ``gemm_program``, runs it in
the program bench (C++ command feeder and DRAM model, no Python per cycle) through the cocotb module
``tb_sat_bench_speed`` and prints simulated cycles, the wall time of the simulation proper
(``SatRun.sim_s``: reset release to the end of the run), cycles/s and PE-cycles/s (cycles x rows x
cols / s), plus the CPU time of the simulator process over the same span (``sim_cpu_s``; on a shared
machine the steadier figure). Every result is then checked bit-exact against
``models/sat_golden.execute`` (untimed).
The first run of a preset builds the model (cached by content hash; build time is printed).

Usage::

    .venv/bin/python scripts/bench_sat.py [--presets tiny default] [--cases os-dense ws-2:8 ...]
        [--dims M K N] [--set rows=16 ...] [--repeat 1] [--vflag=-X ...] [--make-opt=OPT_FAST=-O3 ...]

``--vflag`` / ``--make-opt`` append Verilator / make options to the build (for comparing build
options; they change the build cache key, so each combination is built once).
"""

from __future__ import annotations

import argparse
import json
import time

from trainforge.sim import sat_bench, verilator
from trainforge.sim.harness import simulate
from trainforge.sim.testbenches.tb_sat_bench_speed import WORKLOAD_ENV

TEST_MODULE = "trainforge.sim.testbenches.tb_sat_bench_speed"

#: GEMM (M, K, N) per preset: tens of thousands of cycles per case.
DIMS = {"tiny": (32, 256, 32), "default": (64, 1024, 64), "paper": (64, 1024, 64)}

#: case name -> (dataflow, n, m); m is the presets' m_max (8).
CASES = {
    "os-dense": ("OS", 8, 8),
    "os-2:8": ("OS", 2, 8),
    "ws-dense": ("WS", 8, 8),
    "ws-2:8": ("WS", 2, 8),
}


def run_case(preset: str, case: str, dims: tuple[int, int, int], seed: int, overrides: dict | None = None) -> dict:
    """Run one case on ``preset`` (plus ``overrides``); returns the metrics, build figures and derived rates."""
    dataflow, n, m = CASES[case]
    big_m, big_k, big_n = dims
    spec = {"dataflow": dataflow, "n": n, "m": m, "M": big_m, "K": big_k, "N": big_n, "seed": seed}
    start = time.perf_counter()
    config = {"preset": preset, **(overrides or {})}
    result = simulate("sat", config, test_module=TEST_MODULE, extra_env={WORKLOAD_ENV: json.dumps(spec)})
    total_s = time.perf_counter() - start
    metrics = result.metrics[0]
    pes = result.parameters["rows"] * result.parameters["cols"]
    return {
        "preset": result.parameters["preset"],
        "array": f"{result.parameters['rows']}x{result.parameters['cols']}",
        "case": case,
        "dims": f"{big_m}x{big_k}x{big_n}",
        **metrics,
        "cycles_per_s": metrics["cycles"] / metrics["sim_s"],
        "pe_cycles_per_s": metrics["cycles"] * pes / metrics["sim_s"],
        "pe_cycles_per_cpu_s": metrics["cycles"] * pes / metrics["sim_cpu_s"],
        "build_cached": result.build_cached,
        "build_s": result.build_s,
        "total_s": total_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "default"], choices=list(DIMS))
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--dims", type=int, nargs=3, metavar=("M", "K", "N"), help="GEMM size (default: per preset)")
    parser.add_argument("--set", action="append", default=[], metavar="K=V", help="override a preset field")
    parser.add_argument("--repeat", type=int, default=1, help="runs per case (all are printed)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--vflag", action="append", default=[], help="extra Verilator option (repeatable)")
    parser.add_argument("--make-opt", action="append", default=[], help="extra make variable, e.g. OPT_FAST=-O3")
    parser.add_argument("--json", action="store_true", help="one JSON object per run instead of the table")
    args = parser.parse_args()
    # Experiment knobs: both tuples are read when the model is built and are part of its cache key.
    sat_bench.BUILD_ARGS = (*sat_bench.BUILD_ARGS, *args.vflag)
    verilator._MAKE_OPT = (*verilator._MAKE_OPT, *args.make_opt)
    if not args.json:
        print(
            "| preset | case | GEMM MxKxN | tiles | cycles | sim s | cycles/s | PE-cycles/s | CPU s "
            "| PE-cycles/CPU-s | exact | build s |"
        )
        print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for preset in args.presets:
        dims = tuple(args.dims) if args.dims else DIMS[preset]
        for case in args.cases:
            for _ in range(args.repeat):
                r = run_case(preset, case, dims, args.seed, dict(kv.split("=", 1) for kv in args.set))
                if args.json:
                    print(json.dumps(r), flush=True)
                    continue
                build = "cached" if r["build_cached"] else f"{r['build_s']:.0f}"
                print(
                    f"| {r['preset']} {r['array']} | {case} | {r['dims']} | {r['tiles']} | {r['cycles']:,} | "
                    f"{r['sim_s']:.2f} | "
                    f"{r['cycles_per_s']:,.0f} | {r['pe_cycles_per_s'] / 1e6:.2f} M | "
                    f"{r['sim_cpu_s']:.2f} | {r['pe_cycles_per_cpu_s'] / 1e6:.2f} M | {r['exact']} | {build} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
