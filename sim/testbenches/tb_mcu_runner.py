"""cocotb side of :func:`trainforge.sim.mcu_bench.run_programs`: run every job file on the MCU cluster.

The jobs come from :data:`~trainforge.sim.mcu_bench.JOBS_ENV` (JSON: ``dir`` and ``count``); job
``i`` is ``job{i}.in`` and leaves ``job{i}.out``. All checking happens on the host side.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cocotb

from trainforge.sim.mcu_bench import JOBS_ENV, run_job
from trainforge.sim.testbenches.common import record_metrics


@cocotb.test()
async def run_jobs(dut):
    """Every job in order, each free-running until the cluster's ``done``."""
    spec = json.loads(os.environ[JOBS_ENV])
    folder = Path(spec["dir"])
    start = time.perf_counter()
    for i in range(int(spec["count"])):
        await run_job(dut, folder / f"job{i}.in", folder / f"job{i}.out")
    record_metrics("run_jobs", jobs=int(spec["count"]), sim_s=time.perf_counter() - start)
