"""cocotb regression of the SAT update engine on Verilator, in bulk, against the PyTorch reference.

The engine runs inside the bulk stream driver's wrapper (:mod:`trainforge.sim.bulk`) whose
``params`` port is brought out to the top (``tests/sim/test_update_engine_rtl.py`` builds it), so
one model serves every hyper-parameter set: ordinary, SR-STE off, negative, overflowing and
subnormal. ``TRAINFORGE_UPDATE_LINES`` lines in all (default 100,000) at full rate, then a few
thousand with random input gaps and output stalls; every element bit-exact (NaN: canonical).
"""

from __future__ import annotations

import os
import time

import cocotb
import numpy as np

from trainforge.hw.sat.config import SatConfig
from trainforge.sim.bulk import run_bulk
from trainforge.sim.testbenches.common import load_config, random_seed, record_metrics
from trainforge.sim.testbenches.update_lines import UpdateLines, UpdateParams, random_lines

LINES_ENV = "TRAINFORGE_UPDATE_LINES"
DEFAULT_LINES = 100_000
LATENCY = 5  # UpdateEngine.latency

PARAMS = [
    UpdateParams(lr=0.1, momentum=0.9, decay=2e-4, use_mask=True),
    UpdateParams(lr=0.05, momentum=0.9, decay=2e-4, use_mask=False),
    UpdateParams(lr=1 / 3, momentum=-0.5, decay=3.0, use_mask=True),
    UpdateParams(lr=3e38, momentum=0.99, decay=1e38, use_mask=True),
    UpdateParams(lr=1e-3, momentum=1e-40, decay=1.4e-45, use_mask=True),
]


async def _check(dut, name: str, params: UpdateParams, count: int, *, valid_pct=100, ready_pct=100) -> None:
    config = load_config(SatConfig)
    codec = UpdateLines(config)
    rng = np.random.default_rng(random_seed() & 0xFFFF_FFFF)
    lines = random_lines(config, count, rng)
    last_every = 64
    records = codec.records(lines, last_every=last_every)
    dut.params.value = params.value()
    start = time.perf_counter()
    out, cycles = await run_bulk(
        dut,
        records,
        out_bits=codec.response.width,
        valid_pct=valid_pct,
        ready_pct=ready_pct,
        seed=random_seed(),
    )
    sim_s = time.perf_counter() - start
    bad, messages = codec.mismatches(lines, params, out, last_every=last_every)
    record_metrics(name, cycles=cycles, sim_s=sim_s, lines=count, lines_per_s=count / sim_s)
    assert bad == 0, f"{bad} elements of {count} lines differ from the reference:\n" + "\n".join(messages)
    if valid_pct == ready_pct == 100:
        # one line per cycle: only the pipeline latency and the driver's fill on top
        limit = count + LATENCY + 3
        assert cycles <= limit, f"{count} lines took {cycles} cycles; full rate allows {limit}"


@cocotb.test()
async def random_lines_every_params(dut):
    """Random lines with odd values, each hyper-parameter set in turn, one line per cycle."""
    total = int(os.environ.get(LINES_ENV, DEFAULT_LINES))
    for params in PARAMS:
        await _check(dut, f"random {params}", params, max(1, total // len(PARAMS)))


@cocotb.test()
async def stalls_and_gaps(dut):
    """Random input gaps and output stalls must not lose, duplicate or reorder lines."""
    await _check(dut, "stalls_and_gaps", PARAMS[0], 4_000, valid_pct=70, ready_pct=60)
