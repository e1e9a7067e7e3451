"""Dense GEMM cycles: our exact SAT model beside SCALE-Sim v2's per-fold conventions (docs/scheduler.md).

SCALE-Sim (v2, compute model) charges every fold of an R x C array its own fill and drain:
OS ``2R + C + T - 2`` cycles per fold with ``T = K`` (folds ``ceil(M/R) ceil(N/C)``), WS the same form
with the streamed dimension ``T = M`` (folds ``ceil(K/R) ceil(N/C)``), and it assumes operands are
always there (no memory stalls). Our model is exact to the RTL: back-to-back tiles overlap their fill
and drain (one per stream), and memory can bind. To compare like with like, the SAT configuration
here is made compute-bound (``mem_bits = 1024``, ``mem_latency = 8``) and tiles are K-complete.

    .venv/bin/python scripts/scalesim_crosscheck.py
"""

from __future__ import annotations

from trainforge.dataflow.mapping import GemmShape, Mapping, gemm_tiles, tile_costs
from trainforge.dataflow.sat_timing import program_timing
from trainforge.hw.sat.config import SatConfig


def main() -> None:
    cfg = SatConfig.preset_named("paper").replace(mem_bits=1024)
    r, c = cfg.rows, cfg.cols
    print(f"R = {r}, C = {c}, mem_bits = {cfg.mem_bits}, mem_latency = {cfg.mem_latency}\n")
    print(
        "| dataflow | M x N x K | folds (tiles) | SCALE-Sim per fold | SCALE-Sim total | ours: compute per tile "
        "| ours: exact steady per tile | ours: fill + drain | ours: exact total | SCALE-Sim per fold - our compute |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for mm, nn, kk in ((256, 256, 256), (1024, 128, 512), (512, 512, 64), (3136, 64, 576)):
        # OS: K-complete tiles (K <= b_lines), B stays while the row blocks pass
        if kk <= cfg.b_lines:
            g = GemmShape(mm, nn, kk, cfg.m_max, cfg.m_max)
            mp = Mapping("os", r, kk, "b", 2)
            tiles = gemm_tiles(cfg, g, mp)
            exact = program_timing(cfg, tiles).cycles
            folds = -(-mm // r) * -(-nn // c)
            per_fold = 2 * r + c + kk - 2
            cost = tile_costs(cfg, dataflow=0, rows=r, steps=kk, n=cfg.m_max, load_b=False)
            steady = float(cost["steady"])
            ovh = float(cost["overhead0"])
            print(
                f"| OS | {mm} x {nn} x {kk} | {folds} | {per_fold} | {folds * per_fold:,} | {int(cost['compute'])} "
                f"| {steady:g} | {ovh:g} | {exact:,} | {per_fold - int(cost['compute'])} |"
            )
        # WS: R-step tiles of all M rows (M <= a_lines), chained through the accumulator
        if mm <= min(cfg.a_lines, cfg.acc_lines):
            g = GemmShape(mm, nn, kk, cfg.m_max, cfg.m_max)
            mp = Mapping("ws", mm, r, "b", 1)
            tiles = gemm_tiles(cfg, g, mp)
            exact = program_timing(cfg, tiles).cycles
            folds = -(-kk // r) * -(-nn // c)
            per_fold = 2 * r + c + mm - 2
            cost = tile_costs(cfg, dataflow=1, rows=mm, steps=r, n=cfg.m_max, load_a=True, store=False, chained=True)
            steady = float(cost["steady"])
            print(
                f"| WS | {mm} x {nn} x {kk} | {folds} | {per_fold} | {folds * per_fold:,} | {int(cost['compute'])} "
                f"| {steady:g} | {float(cost['overhead0']):g} | {exact:,} | {per_fold - int(cost['compute'])} |"
            )


if __name__ == "__main__":
    main()
