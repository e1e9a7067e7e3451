"""cocotb regression of the non-computational unit (fp-cmp) on Verilator, judged by the exact oracle.

Every operation (MIN, MAX, FEQ, FLT, FLE, CLASS; none rounds): the oracle's corner set (for a
format of at most 8 bits, every operand pair instead), random vectors (``TRAINFORGE_FP_RANDOM``
per operation, default 100,000), CLASS on every pattern of a 16-bit format (every top-16-bit
pattern of FP32) and a run with input gaps and output stalls. Result and flags bit-exact.
Vectors stream through the bulk DPI driver: no Python per vector.
"""

from __future__ import annotations

import os
import time

import cocotb
import numpy as np

from trainforge.hw.fp.noncomp import NonCompConfig
from trainforge.models import fp
from trainforge.sim.bulk import run_bulk
from trainforge.sim.testbenches.common import load_config, random_seed, record_metrics
from trainforge.sim.testbenches.fp_unit_vectors import (
    NONCOMP_OPS,
    NonCompVectors,
    UnitBatch,
    noncomp_family,
    sweep_patterns,
)

RANDOM_ENV = "TRAINFORGE_FP_RANDOM"
DEFAULT_RANDOM = 100_000
EXHAUSTIVE_PAIRS_BITS = 8  #: formats this narrow get every operand pair as their corner set


def _batches(operands_for) -> list[UnitBatch]:
    """One batch per operation; ``operands_for(family)`` gives the operand arrays of an oracle family."""
    cache: dict[str, tuple[np.ndarray, ...]] = {}
    batches = []
    for op in NONCOMP_OPS:
        family = noncomp_family(op)
        if family not in cache:
            cache[family] = operands_for(family)
        operands = cache[family]
        batches.append(UnitBatch(op, "-", operands[0], operands[1] if len(operands) > 1 else None))
    return batches


async def _check(
    dut, name: str, batches: list[UnitBatch], *, valid_pct: int = 100, ready_pct: int = 100, **figures
) -> None:
    config = load_config(NonCompConfig)
    vectors = NonCompVectors(config)
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
        # one operation per cycle: the stream only adds the pipeline latency and the driver's fill
        limit = len(records) + config.pipeline_stages + 3
        assert cycles <= limit, f"{len(records)} vectors took {cycles} cycles; full rate allows {limit}"


def _corners(config: NonCompConfig, family: str) -> tuple[np.ndarray, ...]:
    width = config.format.width
    if width <= EXHAUSTIVE_PAIRS_BITS:
        patterns = np.arange(1 << width, dtype=np.uint64)
        if family == "classify":
            return (patterns,)
        a, b = np.meshgrid(patterns, patterns)
        return a.reshape(-1), b.reshape(-1)
    return fp.corner_vectors(family, config.fmt, seed=1)


@cocotb.test()
async def corners_every_op(dut):
    """Zeros of both signs, subnormals, inf, quiet and signalling NaNs crossed; equal and adjacent values."""
    config = load_config(NonCompConfig)
    batches = _batches(lambda family: _corners(config, family))
    await _check(dut, "corners_every_op", batches, every_pair=config.format.width <= EXHAUSTIVE_PAIRS_BITS)


@cocotb.test()
async def random_every_op(dut):
    """Random operands, biased towards every exponent region, zeros, infinities and NaNs."""
    config = load_config(NonCompConfig)
    count = int(os.environ.get(RANDOM_ENV, DEFAULT_RANDOM))
    seed = random_seed() & 0xFFFF_FFFF
    batches = _batches(lambda family: fp.random_operands(family, count, fmt=config.fmt, seed=seed))
    await _check(dut, "random_every_op", batches)


@cocotb.test()
async def exhaustive_class(dut):
    """CLASS on every pattern of the format (every top-16-bit pattern of FP32)."""
    config = load_config(NonCompConfig)
    a, exhaustive = sweep_patterns(config.format.width, random_seed())
    await _check(dut, "exhaustive_class", [UnitBatch("class", "-", a)], patterns=len(a), exhaustive=exhaustive)


@cocotb.test()
async def stalls_and_gaps(dut):
    """Random input gaps and output stalls must not lose, duplicate or reorder results."""
    config = load_config(NonCompConfig)
    seed = random_seed() & 0xFFFF_FFFF
    batches = _batches(lambda family: fp.random_operands(family, 2_000, fmt=config.fmt, seed=seed))
    await _check(dut, "stalls_and_gaps", batches, valid_pct=70, ready_pct=60)
