"""cocotb regression of the convert unit (fp-conv) on Verilator, judged by the exact oracle.

In every RISC-V rounding mode: the oracle's corner set for the configured pair of formats,
random vectors (``TRAINFORGE_FP_RANDOM`` per mode, default 100,000), every source pattern (all
65,536 of an FP16 or BF16 source; every top-16-bit pattern of an FP32 source) and a run with
input gaps and output stalls. Result and flags bit-exact. Vectors stream through the bulk DPI
driver: no Python per vector.
"""

from __future__ import annotations

import os
import time

import cocotb

from trainforge.hw.fp.convert import ConvertConfig
from trainforge.models import fp
from trainforge.sim.bulk import run_bulk
from trainforge.sim.testbenches.common import load_config, random_seed, record_metrics
from trainforge.sim.testbenches.fp_unit_vectors import ConvertVectors, UnitBatch, sweep_patterns

RANDOM_ENV = "TRAINFORGE_FP_RANDOM"
DEFAULT_RANDOM = 100_000


def _every_mode(a) -> list[UnitBatch]:
    return [UnitBatch("convert", rounding, a) for rounding in fp.ROUNDING_MODES]


async def _check(
    dut, name: str, batches: list[UnitBatch], *, valid_pct: int = 100, ready_pct: int = 100, **figures
) -> None:
    config = load_config(ConvertConfig)
    vectors = ConvertVectors(config)
    records = vectors.records(batches)
    start = time.perf_counter()
    out, cycles = await run_bulk(
        dut, records, out_bits=vectors.response.width, valid_pct=valid_pct, ready_pct=ready_pct, seed=random_seed()
    )
    sim_s = time.perf_counter() - start
    count, lines = vectors.mismatches(batches, out)
    record_metrics(
        name, cycles=cycles, sim_s=sim_s, vectors=len(records), vectors_per_s=len(records) / sim_s, **figures
    )
    assert count == 0, f"{count} of {len(records)} vectors differ from the oracle:\n" + "\n".join(lines)
    if valid_pct == ready_pct == 100:
        # one conversion per cycle: the stream only adds the pipeline latency and the driver's fill
        limit = len(records) + config.pipeline_stages + 3
        assert cycles <= limit, f"{len(records)} vectors took {cycles} cycles; full rate allows {limit}"


@cocotb.test()
async def corners_every_rounding_mode(dut):
    """The oracle's corner set: zeros, subnormals, inf, NaNs, and sources next to every rounding boundary."""
    config = load_config(ConvertConfig)
    (a,) = fp.corner_vectors("convert", config.dst_fmt, src_fmt=config.src_fmt, seed=1)
    await _check(dut, "corners_every_rounding_mode", _every_mode(a))


@cocotb.test()
async def random_every_rounding_mode(dut):
    """Random sources, biased towards every exponent region, in each rounding mode."""
    config = load_config(ConvertConfig)
    count = int(os.environ.get(RANDOM_ENV, DEFAULT_RANDOM))
    seed = random_seed() & 0xFFFF_FFFF
    (a,) = fp.random_operands("convert", count, fmt=config.dst_fmt, src_fmt=config.src_fmt, seed=seed)
    await _check(dut, "random_every_rounding_mode", _every_mode(a))


@cocotb.test()
async def exhaustive_source(dut):
    """Every source pattern (FP16, BF16, FP8) or every top-16-bit pattern (FP32), in each rounding mode."""
    config = load_config(ConvertConfig)
    a, exhaustive = sweep_patterns(config.src.width, random_seed())
    await _check(dut, "exhaustive_source", _every_mode(a), patterns=len(a), exhaustive=exhaustive)


@cocotb.test()
async def stalls_and_gaps(dut):
    """Random input gaps and output stalls must not lose, duplicate or reorder results."""
    config = load_config(ConvertConfig)
    seed = random_seed() & 0xFFFF_FFFF
    (a,) = fp.random_operands("convert", 2_000, fmt=config.dst_fmt, src_fmt=config.src_fmt, seed=seed)
    await _check(dut, "stalls_and_gaps", _every_mode(a), valid_pct=70, ready_pct=60)
