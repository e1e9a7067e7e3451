"""cocotb side of scripts/bench_sat.py: one long GEMM program on the SAT accelerator, timed.

The workload comes from the environment (:data:`WORKLOAD_ENV`, JSON: ``dataflow`` "OS" or "WS",
``n``, ``m``, the GEMM's ``M``, ``K``, ``N`` and a ``seed``). The test tiles the GEMM with
:func:`trainforge.hw.sat.lines.gemm_program`, runs the whole program in the program bench (only the
simulation proper is timed, :attr:`SatRun.sim_s`) and then, untimed, requires the final memory image
to equal :func:`trainforge.models.sat_golden.execute` word for word. The figures go to the metrics file.
"""

from __future__ import annotations

import json
import os
import time

import cocotb
import numpy as np
import torch

from trainforge.hw.sat import isa
from trainforge.hw.sat.config import SatConfig
from trainforge.hw.sat.lines import MemoryImage, gemm_program
from trainforge.models.sat_golden import execute
from trainforge.sim.sat_bench import run_program
from trainforge.sim.testbenches.common import load_config, record_metrics

__all__ = ["WORKLOAD_ENV", "build_workload"]

WORKLOAD_ENV = "TRAINFORGE_SAT_BENCH_WORKLOAD"

_TORCH = {"fp16": torch.float16, "bf16": torch.bfloat16}


def build_workload(config: SatConfig, spec: dict) -> tuple[np.ndarray, list[isa.Gemm]]:
    """The memory image and the tile program of the GEMM ``spec`` describes (random normal operands)."""
    rng = np.random.default_rng(int(spec.get("seed", 1)))
    big_m, big_k, big_n = int(spec["M"]), int(spec["K"]), int(spec["N"])
    dtype = _TORCH[config.in_fmt]
    a = torch.from_numpy(rng.standard_normal((big_m, big_k)).astype(np.float32)).to(dtype)
    b = torch.from_numpy(rng.standard_normal((big_k, big_n)).astype(np.float32)).to(dtype)
    image = MemoryImage(config)
    program = gemm_program(
        config,
        a.view(torch.int16).numpy().astype(np.uint16),
        b.view(torch.int16).numpy().astype(np.uint16),
        int(spec["n"]),
        int(spec["m"]),
        dataflow=isa.Dataflow[spec["dataflow"]],
        image=image,
    )
    return image.words, list(program.descriptors)


@cocotb.test()
async def gemm_program_speed(dut):
    """One long GEMM program: cycles and simulation wall time, then a bit-exact golden check."""
    config = load_config(SatConfig)
    spec = json.loads(os.environ[WORKLOAD_ENV])
    image, descriptors = build_workload(config, spec)
    encoded = [isa.encode(config, d) for d in descriptors]
    # The budget only guards against a hang: every word moved 20 times plus a fill per tile.
    budget = 100_000 + 20 * image.shape[0] + 10_000 * len(descriptors)
    # CPU time of this process (the model and its DPI driver; cocotb idles while awaiting `done`):
    # on a shared machine it is the steadier figure, the wall time the one the issue asks for.
    cpu = time.process_time()
    run = await run_program(dut, config=config, image=image, program=encoded, budget=budget)
    sim_cpu_s = time.process_time() - cpu
    assert run.reason == "idle", f"run ended by {run.reason} after {run.cycles} cycles"
    start = time.perf_counter()
    golden = execute(config, descriptors, image)
    golden_s = time.perf_counter() - start
    assert golden.error_code == isa.ErrorCode.NONE
    diff = np.nonzero(np.any(run.image != golden.image, axis=1))[0]
    assert not len(diff), f"{len(diff)} memory words differ from the golden executor, first at {diff[:8].tolist()}"
    record_metrics(
        "gemm_program_speed",
        cycles=run.cycles,
        sim_s=run.sim_s,
        sim_cpu_s=sim_cpu_s,
        tiles=len(descriptors),
        words=int(image.shape[0]),
        macs_issued=run.counters["macs_issued"],
        macs_useful=run.counters["macs_useful"],
        golden_s=golden_s,
        exact=True,
    )
