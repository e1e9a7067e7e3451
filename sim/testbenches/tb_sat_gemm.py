"""cocotb regression of the SAT PE array (sat-gemm) on Verilator, in bulk.

Random tiles, dense and every supported N:M pattern, back to back, with ragged K (any multiple of
m), corner values among the operands; then the same with random input gaps and output stalls.
Judged against an independent NumPy computation of the PE's FP32 accumulation order.
"""

from __future__ import annotations

import time

import cocotb
import numpy as np
import torch

from trainforge.hw.sat.gemm_array import GemmArrayConfig
from trainforge.models import fp
from trainforge.sim.bulk import run_bulk
from trainforge.sim.testbenches.common import load_config, random_seed, record_metrics
from trainforge.sim.testbenches.gemm_tiles import GemmTile, GemmTiles, sequential_fp32

PATTERNS = [None, (1, 2), (2, 4), (1, 4), (3, 4), (2, 8), (1, 8), (4, 8), (2, 16)]


def _operands(rng: np.random.Generator, shape: tuple[int, int], fmt: str) -> np.ndarray:
    """Mostly ordinary values; a few corner values (zeros, subnormals, extremes, inf, NaN)."""
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[fmt]
    normal = torch.from_numpy(rng.standard_normal(shape).astype(np.float32)).to(dtype)
    bits = normal.view(torch.int16).numpy().astype(np.uint16)
    corners = fp.corner_values(fmt).astype(np.uint16)
    pick = rng.random(shape) < 0.03
    bits[pick] = rng.choice(corners, size=int(pick.sum()))
    return bits


def _tiles(config: GemmArrayConfig, rng: np.random.Generator, count: int) -> list[GemmTile]:
    patterns = [p for p in PATTERNS if p is None or p[1] <= config.m_max]
    tiles = []
    for t in range(count):
        nm = patterns[t % len(patterns)]
        m = 1 if nm is None else nm[1]
        k = m * int(rng.integers(1, 9))
        tiles.append(
            GemmTile(
                _operands(rng, (config.rows, k), config.in_fmt), _operands(rng, (k, config.cols), config.in_fmt), nm
            )
        )
    return tiles


async def _check(dut, name: str, count: int, *, valid_pct: int = 100, ready_pct: int = 100) -> None:
    config = load_config(GemmArrayConfig)
    codec = GemmTiles(config)
    rng = np.random.default_rng(random_seed() & 0xFFFF_FFFF)
    tiles = _tiles(config, rng, count)
    records = codec.records(tiles)
    start = time.perf_counter()
    out, cycles = await run_bulk(
        dut,
        records,
        out_bits=codec.response.width,
        expected=count * config.rows,
        valid_pct=valid_pct,
        ready_pct=ready_pct,
        seed=random_seed(),
    )
    sim_s = time.perf_counter() - start
    got = codec.results(out, count)
    bad = []
    for t, tile in enumerate(tiles):
        want = sequential_fp32(tile, config.in_fmt)
        if not np.array_equal(got[t], want):
            i, j = np.argwhere(got[t] != want)[0]
            bad.append(
                f"tile {t} ({tile.nm or 'dense'}, K={tile.a.shape[1]}): C[{i},{j}] {got[t][i, j]:#x} != {want[i, j]:#x}"
            )
    macs = sum(config.rows * config.cols * codec.steps(tile) for tile in tiles)
    record_metrics(
        name,
        cycles=cycles,
        sim_s=sim_s,
        tiles=count,
        steps=len(records),
        pe_cycles_per_s=cycles * config.rows * config.cols / sim_s,
        macs=macs,
    )
    assert not bad, f"{len(bad)} of {count} tiles differ:\n" + "\n".join(bad[:5])


@cocotb.test()
async def random_tiles_dense_and_every_pattern(dut):
    await _check(dut, "random_tiles_dense_and_every_pattern", 300)


@cocotb.test()
async def stalls_and_gaps(dut):
    await _check(dut, "stalls_and_gaps", 60, valid_pct=60, ready_pct=50)
