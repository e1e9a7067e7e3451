"""Print the zoo's training-iteration MACs per stage as a Markdown table (the table in docs/workloads.md).

Run: `.venv/bin/python scripts/workload_table.py` (options: --batch, --method, --n, --m).

Each model is traced once on the meta device by `trainforge.models.workloads.workload`. The two
transformer blocks are slices of a larger network, so they are traced with `input_grad=True` (their
first layer has a BP GEMM); every other model's first layer has none.
"""

from __future__ import annotations

import argparse
import sys

from trainforge.models.workloads import METHODS, workload
from trainforge.models.zoo import ZOO, zoo_model

BLOCKS = {"bert_base_layer", "gpt2_small_block"}


def fmt(macs: int) -> str:
    if macs >= 1e9:
        return f"{macs / 1e9:.3f} G"
    return f"{macs / 1e6:.3f} M"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--method", choices=METHODS, default="bdwp")
    parser.add_argument("--n", type=int, default=2)
    parser.add_argument("--m", type=int, default=8)
    args = parser.parse_args(argv)
    nm = f" {args.n}:{args.m}" if args.method != "dense" else ""
    print(
        f"| model | FF MACs | BP MACs | WU MACs | total | useful, {args.method}{nm} | ideal speed-up |\n"
        "|---|---:|---:|---:|---:|---:|---:|"
    )
    for name in ZOO:
        model, x = zoo_model(name)
        w = workload(model, x, args.method, args.n, args.m, args.batch, input_grad=name in BLOCKS)
        s = w.macs_by_stage()
        label = f"{name}*" if name in BLOCKS else name
        print(
            f"| {label} | {fmt(s['ff'])} | {fmt(s['bp'])} | {fmt(s['wu'])} | {fmt(w.macs())} "
            f"| {fmt(w.useful_macs())} | {w.ideal_speedup:.3f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
