"""cocotb module of ``trainforge validate``: measured cycles and counters of random SAT programs.

One test builds the cases of :func:`trainforge.dataflow.validate.make_cases` (count and seed from
``TRAINFORGE_VALIDATE``, JSON ``{"cases": N, "seed": S}``), runs each on the Verilator model in the
program bench (:func:`trainforge.sim.sat_bench.run_program`, with the case's ``mem_latency`` and
``mem_interval`` given through the configuration) and appends one metrics line per case: its label
fields, the encoded descriptors, the measured ``cycles``, the cmd acceptance cycles and every
performance counter. The comparison with :func:`trainforge.dataflow.sat_timing.program_timing` is
done by the caller (:func:`trainforge.dataflow.validate.validate`); this module fails only when a
program does not end normally. With ``TRAINFORGE_VALIDATE_TRACE`` set to a folder, each case's
memory request trace is written there (``case<i>.bin``, :func:`trainforge.sim.sat_bench.read_trace`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cocotb

from trainforge.dataflow.validate import TRACE_ENV, VALIDATE_ENV, make_cases
from trainforge.hw.sat import isa
from trainforge.hw.sat.config import SatConfig
from trainforge.sim.sat_bench import run_program
from trainforge.sim.testbenches.common import load_config, record_metrics


@cocotb.test()
async def measure_cases(dut):
    """Every validation case on the RTL: cycles, accept cycles and counters into the metrics file."""
    config = load_config(SatConfig)
    params = json.loads(os.environ.get(VALIDATE_ENV, '{"cases": 12, "seed": 1}'))
    trace_dir = os.environ.get(TRACE_ENV)
    for index, case in enumerate(make_cases(config, int(params["cases"]), int(params["seed"]))):
        encoded = [isa.encode(case.config, d) for d in case.descriptors]
        budget = 100_000 + 60 * case.image.shape[0] * max(1, case.config.mem_interval) + 5_000 * len(encoded)
        trace = Path(trace_dir) / f"case{index}.bin" if trace_dir else None
        wall = time.perf_counter()
        run = await run_program(dut, config=case.config, image=case.image, program=encoded, budget=budget, trace=trace)
        assert run.reason == "idle", f"case {index} ({case.label}): ended by {run.reason}"
        assert not run.status["error"], f"case {index} ({case.label}): error code {run.status['error_code']}"
        record_metrics(
            "validate_case",
            index=index,
            **case.fields(),
            program=[f"{value:x}" for value in encoded],
            cycles=run.cycles,
            accepted=run.accepted,
            counters=run.counters,
            sim_s=run.sim_s,
            wall_s=time.perf_counter() - wall,
        )
