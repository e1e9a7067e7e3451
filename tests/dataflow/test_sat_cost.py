"""The SAT PE-array cycle model equals the RTL (Amaranth simulation of the same netlist) cycle for cycle."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainforge.dataflow.sat import gemm_steps, tile_stream_cycles
from trainforge.errors import UsageError
from trainforge.hw.sat.gemm_array import GemmArrayConfig
from trainforge.sim.testbenches.gemm_tiles import GemmTile, run_amaranth


def _run_rtl(config, tiles):
    _, cycles = run_amaranth(config, tiles)  # full rate, output always ready
    return cycles


def _tile(config, k, nm, seed):
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(config.rows, k, generator=gen).half().view(torch.int16).numpy().astype(np.uint16)
    b = torch.randn(k, config.cols, generator=gen).half().view(torch.int16).numpy().astype(np.uint16)
    return GemmTile(a, b, nm)


@pytest.mark.parametrize("seed", range(6))
def test_random_tile_streams_have_zero_cycle_error(seed):
    rng = np.random.default_rng(seed)
    config = GemmArrayConfig(rows=int(rng.integers(1, 5)), cols=int(rng.integers(1, 5)), m_max=8)
    patterns = [None, (1, 2), (2, 4), (1, 4), (2, 8), (1, 8), (4, 8)]
    tiles = []
    for t in range(int(rng.integers(1, 6))):
        nm = patterns[int(rng.integers(0, len(patterns)))]
        m = 1 if nm is None else nm[1]
        tiles.append(_tile(config, m * int(rng.integers(1, 7)), nm, seed * 10 + t))
    steps = [gemm_steps(t.a.shape[1], t.nm) for t in tiles]
    assert tile_stream_cycles(config, steps) == _run_rtl(config, tiles)


def test_lone_tile_and_saturated_stream_by_hand():
    config = GemmArrayConfig(rows=4, cols=4)
    # lone tile: steps + 2 rows + cols - 1
    assert tile_stream_cycles(config, [64]) == 64 + 8 + 4 - 1
    # long tiles stream back to back: only the last one's fill and drain show
    assert tile_stream_cycles(config, [64, 64, 64]) == 3 * 64 + 8 + 4 - 1
    # short tiles are limited by the drain: one tile per 2 rows + cols cycles
    assert tile_stream_cycles(config, [2, 2, 2]) == 1 + 2 * 12 + 12


def test_bad_arguments_are_usage_errors():
    with pytest.raises(UsageError, match="K=10 is not a multiple of m=4"):
        gemm_steps(10, (2, 4))
    with pytest.raises(UsageError, match="at least one tile"):
        tile_stream_cycles(GemmArrayConfig(), [])
