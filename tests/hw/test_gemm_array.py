# amaranth: UnusedElaboratable=no
"""The SAT PE array in the Amaranth simulator: results, the documented cycle count, configuration checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainforge.errors import ConfigError
from trainforge.hw.sat.gemm_array import GemmArrayConfig, tile_cycles
from trainforge.sim.testbenches.gemm_tiles import GemmTile, GemmTiles, run_amaranth, sequential_fp32


def tile(config: GemmArrayConfig, k: int, nm=None, seed: int = 0) -> GemmTile:
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(config.rows, k, generator=gen).half().view(torch.int16).numpy().astype(np.uint16)
    b = torch.randn(k, config.cols, generator=gen).half().view(torch.int16).numpy().astype(np.uint16)
    return GemmTile(a, b, nm)


@pytest.mark.parametrize("nm", [None, (2, 4), (1, 4), (3, 4), (1, 2)])
def test_lone_tile_matches_reference_and_cycle_formula(nm):
    config = GemmArrayConfig(rows=3, cols=2, m_max=4)
    t = tile(config, 8, nm)
    got, cycles = run_amaranth(config, [t])
    assert np.array_equal(got[0], sequential_fp32(t, "fp16"))
    steps = GemmTiles(config).steps(t)
    # the documented count: steps + rows + cols - 1 (fill) + rows (drain), counted inclusively
    assert cycles == tile_cycles(config, steps) == steps + 3 + 2 - 1 + 3


def test_back_to_back_tiles_with_gaps():
    config = GemmArrayConfig(rows=2, cols=3, m_max=8)
    tiles = [tile(config, 16, nm, seed=s) for s, nm in enumerate([None, (2, 8), (1, 8), (4, 8), None, (1, 2)])]
    got, _ = run_amaranth(config, tiles, gaps=1)
    for t, expected in zip(got, tiles, strict=True):
        assert np.array_equal(t, sequential_fp32(expected, "fp16"))


def test_sparse_takes_m_over_n_fewer_steps():
    config = GemmArrayConfig(rows=2, cols=2, m_max=8)
    codec = GemmTiles(config)
    assert codec.steps(tile(config, 64)) == 64
    assert codec.steps(tile(config, 64, (2, 8))) == 16
    assert codec.steps(tile(config, 64, (1, 8))) == 8


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rows": 0}, "rows must be in 1..32, not 0"),
        ({"cols": 33}, "cols must be in 1..32, not 33"),
        ({"m_max": 3}, "m_max must be a power of two in 1..16, not 3"),
        ({"in_fmt": "fp32"}, "in_fmt='fp32'"),
    ],
)
def test_invalid_config_names_the_value(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        GemmArrayConfig.from_mapping(kwargs)
