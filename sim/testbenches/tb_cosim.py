"""cocotb module of ``trainforge cosim train-step``: training iterations with every program on the RTL.

One test runs the whole loop of :func:`trainforge.sim.cosim.train_steps` in this simulator process,
with a runner that sends each program through the program bench (:func:`trainforge.sim.sat_bench.run_program`).
Parameters come as JSON in ``TRAINFORGE_COSIM``; the result (losses, master weights after every step,
cycles and counters) is written to the ``.npz`` named by ``TRAINFORGE_COSIM_OUT``, where the CLI
compares it with the golden and the PyTorch runs. The test fails only when a program does not run
to its end (error flag, timeout, a write outside the image); bit-exactness is judged by the caller.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence

import cocotb
import numpy as np

from trainforge.errors import SimulationError
from trainforge.hw.sat import isa
from trainforge.hw.sat.config import SatConfig
from trainforge.sim.cosim import COSIM_ENV, COSIM_OUT_ENV, ProgramRun, train_steps
from trainforge.sim.sat_bench import run_program
from trainforge.sim.testbenches.common import load_config, record_metrics


class RtlRunner:
    """Runs each program on the Verilator model: encode, :func:`run_program`, check it ended normally."""

    def __init__(self, dut, config: SatConfig) -> None:
        self.dut, self.config = dut, config
        self.sim_s = 0.0

    async def run(self, descriptors: Sequence[isa.Descriptor], image: np.ndarray, *, label: str) -> ProgramRun:
        encoded = [isa.encode(self.config, d) for d in descriptors]
        # A cap only: every word moved ten times over, plus a pipeline fill per descriptor.
        budget = 50_000 + 40 * image.shape[0] + 5_000 * len(descriptors)
        run = await run_program(self.dut, config=self.config, image=image, program=encoded, budget=budget)
        self.sim_s += run.sim_s
        if run.reason != "idle" or run.status["error"]:
            raise SimulationError(
                f"{label}: ended by {run.reason} after {run.cycles} cycles, error code {run.status['error_code']}"
            )
        if run.outside:
            raise SimulationError(f"{label}: wrote outside the image at words {sorted(run.outside)[:8]}")
        return ProgramRun(image=run.image, cycles=run.cycles, counters=run.counters)


@cocotb.test()
async def train_steps_on_rtl(dut):
    """The training iterations of ``TRAINFORGE_COSIM`` with every GEMM, PRUNE and UPDATE on the RTL."""
    config = load_config(SatConfig)
    params = json.loads(os.environ[COSIM_ENV])
    runner = RtlRunner(dut, config)
    wall = time.perf_counter()
    result = await train_steps(config, runner=runner, **params)
    result.save(os.environ[COSIM_OUT_ENV])
    record_metrics(
        "train_steps_on_rtl",
        cycles=result.cycles,
        sim_s=runner.sim_s,
        programs=result.programs,
        descriptors=result.descriptors,
        wall_s=time.perf_counter() - wall,
    )
