"""Measure sweep throughput (points per minute) on this machine; prints one JSON line per case.

    .venv/bin/python scripts/bench_sweep.py [--workers 2] [--evaluator mcu|sat] [--case NAME]

``--evaluator mcu`` cases: ``warm`` (ResNet-18 BDWP on the MCU model, 2 cluster configurations x 5000
clocks: the model runs twice, the rest is the sweep machinery) and ``cold`` (ResNet-18, 8 distinct
cluster configurations: every point is a full run of the MCU cycle model).

``--evaluator sat`` cases (ResNet-18 BDWP 2:8, ``preset: paper``): ``grid`` (rows x cols x mem_bits x
mem_latency x mem_interval x clock_mhz, 5,120 points: 64 mapping tables, 512 timings, the clock
free) and ``cold`` (rows x cols x mem_bits x acc_lines, 250 points: every point a new mapping
search and streamer timing).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from trainforge.dataflow.sweep import parse_spec, run_sweep

CASES: dict[str, dict[str, dict]] = {}
CASES["mcu"] = {
    "warm": {
        "cores": [8],
        "fpu_sharing": [1, 2],
        "clock_hz": {"range": [100_000_000, 1_099_800_000], "step": 200_000},
    },
    "cold": {"cores": [2, 4, 8, 16], "fpu_sharing": [1, 2]},
}
CASES["sat"] = {
    "grid": {
        "rows": [8, 16, 32, 64],
        "cols": [8, 16, 32, 64],
        "mem_bits": [128, 256, 512, 1024],
        "mem_latency": [4, 8, 16, 32],
        "mem_interval": [1, 2],
        "clock_mhz": {"range": [100, 1000], "step": 100},
    },
    "cold": {
        "rows": [4, 8, 16, 32, 64],
        "cols": [4, 8, 16, 32, 64],
        "mem_bits": [64, 128, 256, 512, 1024],
        "acc_lines": [1024, 2048],
    },
}
FIXED = {"mcu": {}, "sat": {"preset": "paper", "nm": "2:8"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--evaluator", choices=sorted(CASES), default="mcu")
    parser.add_argument("--case", default="all", help="a case of the evaluator (see above) or all")
    args = parser.parse_args()
    cases = CASES[args.evaluator]
    if args.case not in (*cases, "all"):
        parser.error(f"--case must be one of {', '.join(cases)} or all for --evaluator {args.evaluator}")
    for name, parameters in cases.items():
        if args.case not in ("all", name):
            continue
        spec = parse_spec(
            {
                "name": f"bench-{args.evaluator}-{name}",
                "evaluator": args.evaluator,
                "workloads": ["resnet18"],
                "methods": ["bdwp"],
                "parameters": parameters,
                "fixed": FIXED[args.evaluator],
            }
        )
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            summary = run_sweep(spec, Path(tmp) / "bench.db", workers=args.workers)
            wall = time.perf_counter() - start
        print(
            json.dumps(
                {
                    "evaluator": args.evaluator,
                    "case": name,
                    "workers": args.workers,
                    "points": summary.points_computed_this_run,
                    "failed": summary.points_failed,
                    "seconds": round(wall, 2),
                    "points_per_minute": round(summary.points_computed_this_run / wall * 60),
                }
            )
        )


if __name__ == "__main__":
    main()
