"""Mapping search: the vectorised tile cost equals sat_timing.tile_cost, classes equal the emitted stream,
the search's choice is the exhaustive optimum, every candidate fits the buffers."""

from __future__ import annotations

import random
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest

from trainforge.dataflow.mapping import (
    GemmShape,
    _classes,
    candidates,
    gemm_tiles,
    search,
    steady_closed_form,
    tile_costs,
)
from trainforge.dataflow.sat_timing import program_timing, tile_cost
from trainforge.hw.sat import isa
from trainforge.hw.sat.config import SatConfig


def _random_tile(rng: random.Random, cfg: SatConfig) -> tuple[isa.Gemm, bool]:
    ws = rng.random() < 0.5
    n, m = rng.choice([(8, 8), (2, 8), (1, 8), (4, 8), (2, 4), (1, 2), (4, 4)])
    if ws:
        steps, rows = rng.randint(1, cfg.rows), rng.randint(1, min(cfg.a_lines, cfg.acc_lines))
    else:
        rows, steps = rng.randint(1, cfg.rows), rng.randint(1, min(cfg.b_lines, cfg.a_lines * n))
    chained = rng.random() < 0.4 or 2 * rows > cfg.acc_lines
    desc = isa.Gemm(
        dataflow=isa.Dataflow(int(ws)),
        n=n,
        m=m,
        rows=rows,
        cols=rng.randint(1, cfg.cols),
        steps=steps,
        load_a=rng.random() < 0.7,
        load_b=rng.random() < 0.7,
        store=rng.random() < 0.7,
    )
    return desc, chained


def test_tile_costs_equal_tile_cost_on_random_tiles():
    rng = random.Random(7)
    for _ in range(40):
        cfg = SatConfig.preset_named(rng.choice(["tiny", "default", "paper"])).replace(
            mem_latency=rng.choice([0, 1, 3, 8, 20, 50]), mem_interval=rng.choice([1, 1, 2, 3])
        )
        desc, chained = _random_tile(rng, cfg)
        ref = tile_cost(cfg, desc, chained=chained)
        got = tile_costs(
            cfg,
            dataflow=int(desc.dataflow),
            rows=desc.rows,
            steps=desc.steps,
            n=desc.n,
            load_a=desc.load_a,
            load_b=desc.load_b,
            store=desc.store,
            chained=chained,
        )
        assert Fraction(float(got["steady"])) == ref.steady, desc
        assert int(got["period"]) == ref.period
        assert int(got["single"]) == ref.single
        assert int(got["linear_from"]) == ref.linear_from
        assert int(got["compute"]) == ref.compute
        assert int(got["memory"]) == ref.memory
        overheads = (float(got["overhead0"]), float(got["overhead1"]))
        for k in range(2):
            assert overheads[k] == ref.overheads[k % ref.period]


def test_tile_costs_batch_equals_scalar_calls():
    cfg = SatConfig.preset_named("default").replace(mem_latency=5, mem_interval=2)
    rows, steps = np.array([3, 16, 40, 7]), np.array([16, 5, 12, 3])
    ws = np.array([0, 1, 1, 0])
    batch = tile_costs(cfg, dataflow=ws, rows=rows, steps=steps, n=2, chained=ws == 1)
    for k in range(4):
        one = tile_costs(cfg, dataflow=ws[k], rows=rows[k], steps=steps[k], n=2, chained=bool(ws[k]))
        assert float(one["steady"]) == batch["steady"][k]
        assert int(one["single"]) == batch["single"][k]


def test_closed_form_steady_is_an_upper_bound():
    cfg = SatConfig.preset_named("default")
    rng = np.random.default_rng(3)
    n = 500
    ws = rng.integers(0, 2, n)
    f = dict(
        dataflow=ws,
        rows=np.where(ws, rng.integers(1, 128, n), rng.integers(1, cfg.rows + 1, n)),
        steps=np.where(ws, rng.integers(1, cfg.rows + 1, n), rng.integers(1, 256, n)),
        n=rng.choice([1, 2, 8], n),
        load_a=rng.random(n) < 0.7,
        load_b=rng.random(n) < 0.7,
        store=rng.random(n) < 0.7,
        chained=rng.random(n) < 0.4,
    )
    exact = tile_costs(cfg, **f)
    bound = steady_closed_form(cfg, **f)
    assert np.all(bound >= exact["steady"])
    assert np.all(exact["steady"] >= np.maximum(exact["compute"], exact["memory"]))
    assert np.mean(bound == exact["steady"]) > 0.8


def _stream_classes(tiles: list[isa.Gemm]) -> Counter:
    out: Counter = Counter()
    prev = None
    for t in tiles:
        out[(int(t.dataflow), t.rows, t.cols, t.steps, t.n, t.load_a, t.load_b, t.store, t.accumulate)] += 1
        prev = t
    del prev
    return out


def test_classes_match_the_emitted_stream():
    rng = random.Random(2)
    cfg = SatConfig.preset_named("tiny")
    for _ in range(25):
        n, m = rng.choice([(8, 8), (2, 8), (4, 4), (1, 2)])
        g = GemmShape(rng.randint(1, 40), rng.randint(1, 20), rng.randint(1, 300), n, m)
        for mp in candidates(cfg, g):
            tiles = gemm_tiles(cfg, g, mp)
            got: Counter = Counter()
            for key, count in _classes(cfg, g, mp).items():
                got[key[:9]] += count
            assert got == _stream_classes(tiles), (g, mp)


def test_candidates_fit_the_buffers_and_compute_the_whole_gemm():
    rng = random.Random(5)
    for preset in ("tiny", "default"):
        cfg = SatConfig.preset_named(preset)
        for _ in range(6):
            n, m = rng.choice([(8, 8), (2, 8), (1, 4)])
            g = GemmShape(rng.randint(1, 90), rng.randint(1, 40), rng.randint(1, 300), n, m)
            for mp in candidates(cfg, g, acc_lines=cfg.acc_lines // 2):
                tiles = gemm_tiles(cfg, g, mp, acc_lines=cfg.acc_lines // 2)
                assert all(isa.check(cfg, t) == isa.ErrorCode.NONE for t in tiles)
                assert all(t.acc_addr + t.rows <= cfg.acc_lines // 2 for t in tiles)
                assert sum(t.rows * t.cols * t.steps for t in tiles) == g.m_rows * g.n_cols * g.steps


def _scalar_estimate(cfg: SatConfig, g: GemmShape, mp) -> float:
    """The search's estimate recomputed from sat_timing.tile_cost, one class at a time."""
    total, fill = Fraction(0), Fraction(0)
    for key, count in _classes(cfg, g, mp).items():
        ws, rows, cols, steps, n, la, lb, st, _acc, chained = key
        desc = isa.Gemm(
            dataflow=isa.Dataflow(ws), n=n, m=g.m, rows=rows, cols=cols, steps=steps, load_a=la, load_b=lb, store=st
        )
        cost = tile_cost(cfg, desc, chained=bool(chained) or 2 * rows > cfg.acc_lines)
        total += count * cost.steady
        fill = max(fill, max(cost.overheads))
    return float(total + fill)


@pytest.mark.parametrize("shape", [(20, 8, 40, 8, 8), (9, 12, 64, 2, 8), (33, 4, 17, 1, 2)])
def test_search_returns_the_exhaustive_optimum(shape):
    cfg = SatConfig.preset_named("tiny")
    g = GemmShape(*shape)
    cands = candidates(cfg, g)
    result = search(cfg, [g], copies=24)
    scalar = [_scalar_estimate(cfg, g, mp) for mp in cands]
    assert np.allclose(result.cycles[0], scalar)
    assert scalar[result.best_index[0]] == min(scalar)
    # and the estimate is close to the exact program of the chosen stream
    exact = program_timing(cfg, gemm_tiles(cfg, g, result.best[0])).cycles
    assert abs(result.cycles[0][result.best_index[0]] - exact) / exact < 0.35


def test_search_objectives():
    cfg = SatConfig.preset_named("tiny")
    g = [GemmShape(40, 16, 96, 2, 8), GemmShape(16, 16, 16, 8, 8)]
    lat = search(cfg, g, objective="latency")
    en = search(cfg, g, objective="energy")
    edp = search(cfg, g, objective="edp")
    for k in range(2):
        assert lat.cycles[k][lat.best_index[k]] == lat.cycles[k].min()
        assert en.energy_j[k][en.best_index[k]] == en.energy_j[k].min()
        prod = edp.cycles[k] * edp.energy_j[k]
        assert prod[edp.best_index[k]] == prod.min()
