"""Evaluation rate of the vectorised mapping search (dataflow/mapping.py) on one core.

One evaluation = one (GEMM layer x candidate mapping) point costed: its tile classes, their exact
steady state and fill / drain (the vectorised recurrence of the cycle model), its energy. The GEMMs
are the FF, BP and WU products of ResNet-18, VGG-16 and DeiT-S (dense and BDWP 2:8) on the
``paper`` preset; the search is repeated until the batch holds about ``--points`` evaluations.

    .venv/bin/python scripts/bench_mapping.py [--points 200000] [--preset paper]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from trainforge.dataflow.mapping import GemmShape, candidates, estimate_mapping
from trainforge.hw.sat.config import SatConfig
from trainforge.models.workloads import workload
from trainforge.models.zoo import zoo_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--preset", default="paper")
    args = parser.parse_args()
    cfg = SatConfig.preset_named(args.preset)
    gemms = []
    for name in ("resnet18", "vgg16", "deit_s"):
        net, x = zoo_model(name)
        for method in ("dense", "bdwp"):
            for op in workload(net, x, method=method, n=2, m=8).gemms:
                n, m = op.nm or (cfg.m_max, cfg.m_max)
                gemms.append(GemmShape(op.m, op.n, op.k, n, m, op.count))
    t0 = time.perf_counter()
    cands = [candidates(cfg, g) for g in gemms]
    t_cand = time.perf_counter() - t0
    per_pass = sum(len(c) for c in cands)
    reps = max(1, args.points // per_pass)
    big_g, big_c = gemms * reps, cands * reps
    estimate_mapping(cfg, gemms, cands)  # warm-up (energy matrix cache)
    t0 = time.perf_counter()
    estimate_mapping(cfg, big_g, big_c)
    t_eval = time.perf_counter() - t0
    points = per_pass * reps
    print(f"GEMMs: {len(gemms)} (x{reps}), candidates per pass: {per_pass}, points: {points}")
    print(f"candidate enumeration: {per_pass / t_cand:,.0f} points/s")
    print(f"costing (tile classes, exact steady state, energy): {points / t_eval:,.0f} points/s ({t_eval:.2f} s)")
    print(f"both: {points / (t_eval + t_cand * reps):,.0f} points/s")


if __name__ == "__main__":
    main()
