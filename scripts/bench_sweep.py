"""Measure sweep throughput (points per minute) on this machine; prints one JSON line per case.

    .venv/bin/python scripts/bench_sweep.py [--workers 2]

Cases: ``warm`` (ResNet-18 BDWP on the MCU model, 2 cluster configurations x 5000 clocks: the model
runs twice, the rest is the sweep machinery) and ``cold`` (ResNet-18, 8 distinct cluster
configurations: every point is a full run of the MCU cycle model).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from trainforge.dataflow.sweep import parse_spec, run_sweep

CASES = {
    "warm": {
        "cores": [8],
        "fpu_sharing": [1, 2],
        "clock_hz": {"range": [100_000_000, 1_099_800_000], "step": 200_000},
    },
    "cold": {"cores": [2, 4, 8, 16], "fpu_sharing": [1, 2]},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--case", choices=[*CASES, "all"], default="all")
    args = parser.parse_args()
    for name, parameters in CASES.items():
        if args.case not in ("all", name):
            continue
        spec = parse_spec(
            {
                "name": f"bench-{name}",
                "evaluator": "mcu",
                "workloads": ["resnet18"],
                "methods": ["bdwp"],
                "parameters": parameters,
            }
        )
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            summary = run_sweep(spec, Path(tmp) / "bench.db", workers=args.workers)
            wall = time.perf_counter() - start
        print(
            json.dumps(
                {
                    "case": name,
                    "workers": args.workers,
                    "points": summary.points_computed_this_run,
                    "seconds": round(wall, 2),
                    "points_per_minute": round(summary.points_computed_this_run / wall * 60),
                }
            )
        )


if __name__ == "__main__":
    main()
