"""cocotb regression of the FMA unit (fp-fma, fp-add, fp-mul) on Verilator, judged by the exact oracle.

Every operation the configuration performs, in every RISC-V rounding mode, on the oracle's corner
set and on random vectors (``TRAINFORGE_FP_RANDOM`` per operation and mode, default 100,000),
result and flags bit-exact. Vectors stream through the bulk DPI driver: no Python per vector.
"""

from __future__ import annotations

import os
import time

import cocotb
import numpy as np

from trainforge.hw.fp.fma import FMAConfig
from trainforge.models import fp
from trainforge.sim.bulk import run_bulk
from trainforge.sim.testbenches.common import load_config, random_seed, record_metrics
from trainforge.sim.testbenches.fp_fma_vectors import FMAVectors, VectorBatch, ops_for

RANDOM_ENV = "TRAINFORGE_FP_RANDOM"
DEFAULT_RANDOM = 100_000


def _family(op: str) -> str:
    return "add" if op in ("add", "sub") else "mul" if op == "mul" else "fma"


def _batches(config: FMAConfig, operands_for) -> list[VectorBatch]:
    """One batch per (operation, rounding mode); ``operands_for(family)`` gives the operand arrays."""
    batches = []
    cache: dict[str, tuple[np.ndarray, ...]] = {}
    for op in ops_for(config):
        family = _family(op)
        if family not in cache:
            cache[family] = operands_for(family)
        operands = cache[family]
        zeros = np.zeros(len(operands[0]), dtype=np.uint64)
        if family == "fma":
            a, b, c = operands
        elif family == "add":
            (a, c), b = operands, zeros
        else:
            (a, b), c = operands, zeros
        batches += [VectorBatch(op, rounding, a, b, c) for rounding in fp.ROUNDING_MODES]
    return batches


async def _check(dut, name: str, batches: list[VectorBatch], *, valid_pct: int = 100, ready_pct: int = 100) -> None:
    config = load_config(FMAConfig)
    vectors = FMAVectors(config)
    records = vectors.records(batches)
    start = time.perf_counter()
    out, cycles = await run_bulk(
        dut, records, out_bits=vectors.response.width, valid_pct=valid_pct, ready_pct=ready_pct, seed=random_seed()
    )
    sim_s = time.perf_counter() - start
    count, lines = vectors.mismatches(batches, out)
    record_metrics(name, cycles=cycles, sim_s=sim_s, vectors=len(records), vectors_per_s=len(records) / sim_s)
    assert count == 0, f"{count} of {len(records)} vectors differ from the oracle:\n" + "\n".join(lines)
    if valid_pct == ready_pct == 100:
        # one operation per cycle: the stream only adds the pipeline latency and the driver's fill
        limit = len(records) + config.pipeline_stages + 3
        assert cycles <= limit, f"{len(records)} vectors took {cycles} cycles; full rate allows {limit}"


def _src(config: FMAConfig) -> str | None:
    return config.src_fmt if config.src != config.dst else None


@cocotb.test()
async def corners_every_op_and_rounding_mode(dut):
    """The oracle's corner set: zeros, subnormals, inf, NaNs, ties, min-normal and overflow edges, cancellation."""
    config = load_config(FMAConfig)
    batches = _batches(config, lambda family: fp.corner_vectors(family, config.fmt, src_fmt=_src(config), seed=1))
    await _check(dut, "corners_every_op_and_rounding_mode", batches)


@cocotb.test()
async def random_every_op_and_rounding_mode(dut):
    """Random vectors, biased towards every exponent and the targeted families."""
    config = load_config(FMAConfig)
    count = int(os.environ.get(RANDOM_ENV, DEFAULT_RANDOM))
    seed = random_seed() & 0xFFFF_FFFF
    batches = _batches(
        config, lambda family: fp.random_operands(family, count, fmt=config.fmt, seed=seed, src_fmt=_src(config))
    )
    await _check(dut, "random_every_op_and_rounding_mode", batches)


@cocotb.test()
async def stalls_and_gaps(dut):
    """Random input gaps and output stalls must not lose, duplicate or reorder results."""
    config = load_config(FMAConfig)
    seed = random_seed() & 0xFFFF_FFFF
    batches = _batches(
        config, lambda family: fp.random_operands(family, 2_000, fmt=config.fmt, seed=seed, src_fmt=_src(config))
    )
    await _check(dut, "stalls_and_gaps", batches, valid_pct=70, ready_pct=60)
