"""Reproduce the SAT headline: BDWP 2:8 vs dense training-iteration speed-up on the ``paper`` preset.

For ResNet-18, VGG-16 and DeiT-S: exact cycles (the scheduler's program timed with the cycle-exact
model of the RTL) of one iteration, dense, SR-STE (forward-only N:M) and BDWP, beside the ideal
speed-ups 3 / (2r + 1) and 3 / (r + 2) (r = n / m) and the per-stage cycles that explain the gap; then
the ablation of the dataflow options on ResNet-18. Markdown tables on stdout.

    .venv/bin/python scripts/sat_headline.py [--batch 4] [--models resnet18,vgg16,deit_s] [--no-ablation]
"""

from __future__ import annotations

import argparse
import time

from trainforge.dataflow.schedule import Options, schedule, workload_for
from trainforge.hw.sat.config import SatConfig
from trainforge.models.zoo import zoo_model


def stage_cycles(s) -> dict[str, int]:
    c = s.timing.counters
    return {k: c[k] for k in ("ff", "bp", "wu", "prune", "update")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--models", default="resnet18,vgg16,deit_s")
    p.add_argument("--no-ablation", action="store_true")
    p.add_argument("--preset", default="paper")
    args = p.parse_args()
    cfg = SatConfig.preset_named(args.preset)
    n, m = 2, 8
    r = n / m
    opts = Options(offline=True)
    print(f"## Headline ({args.preset}, batch {args.batch}, options {opts.label()})\n")
    print(
        "| model | dense cycles | SR-STE cycles | BDWP cycles | SR-STE speed-up (ideal) | BDWP speed-up (ideal) "
        "| BDWP FF / BP / WU / prune / update cycles | dense FF / BP / WU / update |"
    )
    print("|---|---:|---:|---:|---:|---:|---|---|")
    speedups = []
    for name in args.models.split(","):
        net, x = zoo_model(name)
        res = {}
        t0 = time.time()
        for method in ("dense", "srste", "bdwp"):
            res[method] = schedule(cfg, workload_for(net, x, method, n, m, batch=args.batch), opts)
        d, s, b = (res[k].cycles for k in ("dense", "srste", "bdwp"))
        sb, sd = stage_cycles(res["bdwp"]), stage_cycles(res["dense"])
        speedups.append(d / b)
        print(
            f"| {name} | {d:,} | {s:,} | {b:,} | {d / s:.3f} ({3 / (r + 2):.2f}) | {d / b:.3f} ({3 / (2 * r + 1):.2f}) "
            f"| {sb['ff']:,} / {sb['bp']:,} / {sb['wu']:,} / {sb['prune']:,} / {sb['update']:,} "
            f"| {sd['ff']:,} / {sd['bp']:,} / {sd['wu']:,} / {sd['update']:,} |",
            flush=True,
        )
        del res, t0
    print(
        f"\nAverage BDWP speed-up: {sum(speedups) / len(speedups):.3f}x (paper 1.75x, ideal {3 / (2 * r + 1):.2f}x)\n"
    )
    if args.no_ablation:
        return
    print(f"## Ablation (resnet18, {args.preset}, batch {args.batch})\n")
    print("| options | dense cycles | BDWP cycles | BDWP speed-up | RTL program? |")
    print("|---|---:|---:|---:|---|")
    net, x = zoo_model("resnet18")
    wls = {k: workload_for(net, x, k, n, m, batch=args.batch) for k in ("dense", "bdwp")}
    steps = [
        Options(search=False),
        Options(),
        Options(pregen=True),
        Options(pregen=True, interleave=True),
        Options(pregen=True, offline=True),
        Options(pregen=True, interleave=True, offline=True),
        Options(pregen=True, offline=True, overlap=True),
        Options(pregen=True, interleave=True, offline=True, overlap=True),
    ]
    for o in steps:
        d = schedule(cfg, wls["dense"], o).cycles
        b = schedule(cfg, wls["bdwp"], o).cycles
        kind = "modelled HW extension (streamer beside GEMMs)" if o.overlap else "yes: exact"
        print(f"| {o.label()} | {d:,} | {b:,} | {d / b:.3f} | {kind} |", flush=True)


if __name__ == "__main__":
    main()
