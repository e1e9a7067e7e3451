"""Benchmark: vectors per second through the FP16 FMA RTL on Verilator, TestFloat level-1 sized.

Makes a TestFloat-format file of 6,133,248 f16_mulAdd cases (the size of ``testfloat_gen -level 1
f16_mulAdd`` for one rounding mode) with the exact oracle, runs every line through the Verilator
model with the bulk DPI driver, and prints vectors, mismatches, vectors/s and the seconds of
simulation. Usage: ``.venv/bin/python scripts/bench_fp_fma.py [--count N] [--rounding rne]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from trainforge.designs import get_design
from trainforge.models.testfloat import generate_vectors
from trainforge.sim.fp_vectors import check_vector_file

LEVEL1_F16_MULADD = 6_133_248


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=LEVEL1_F16_MULADD)
    parser.add_argument("--rounding", default="rne")
    parser.add_argument("--fmt", default="fp16")
    args = parser.parse_args()
    design = get_design("fp-fma")
    config = design.make_config({"fmt": args.fmt})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{args.fmt}_mulAdd_{args.rounding}.tv"
        start = time.perf_counter()
        generate_vectors("fmadd", args.fmt, args.rounding, args.count, 2026, path=path)
        generated_s = time.perf_counter() - start
        # First run builds the model (cached by content hash); the second is the measurement.
        check_vector_file(design, config, path, rounding=args.rounding)
        start = time.perf_counter()
        check = check_vector_file(design, config, path, rounding=args.rounding)
        total_s = time.perf_counter() - start
    sim_s = check.vectors / check.vectors_per_s
    print(f"fp-fma {args.fmt} {args.rounding}: {check.vectors:,} vectors, {check.mismatches} mismatches")
    print(f"  vectors/s through the RTL (bulk run, file I/O included): {check.vectors_per_s:,.0f}")
    print(f"  seconds of simulation: {sim_s:.2f}; whole check incl. parsing and simulator start: {total_s:.2f}")
    print(f"  oracle: {args.count:,} cases generated and written in {generated_s:.2f} s")


if __name__ == "__main__":
    main()
