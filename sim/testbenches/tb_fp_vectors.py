"""Run a TestFloat-format vector file through an FMA-family unit and compare with the file's answers.

The harness (:func:`trainforge.sim.fp_vectors.check_vector_file`) parses the file once and passes
its columns as an ``.npz`` in ``TRAINFORGE_VECTORS``, with the operation and rounding mode. The
expected results and flags are the file's, not the oracle's: any TestFloat file can judge the RTL.
"""

from __future__ import annotations

import json
import os
import time

import cocotb
import numpy as np

from trainforge.hw.fp.fma import FMAConfig
from trainforge.sim.bulk import run_bulk
from trainforge.sim.testbenches.common import load_config, record_metrics
from trainforge.sim.testbenches.fp_fma_vectors import FMAVectors, VectorBatch

VECTORS_ENV = "TRAINFORGE_VECTORS"
MISMATCH_LINES = 10


@cocotb.test()
async def testfloat_file(dut):
    config = load_config(FMAConfig)
    spec = json.loads(os.environ[VECTORS_ENV])
    columns = np.load(spec["npz"])
    op, rounding = spec["op"], spec["rounding"]
    zeros = np.zeros(len(columns["a"]), dtype=np.uint64)
    if op in ("add", "sub"):  # TestFloat's `a b` are the unit's a and c ports
        batch = VectorBatch(op, rounding, columns["a"], zeros, columns["b"])
    elif op == "mul":
        batch = VectorBatch(op, rounding, columns["a"], columns["b"], zeros)
    else:
        batch = VectorBatch(op, rounding, columns["a"], columns["b"], columns["c"])
    vectors = FMAVectors(config)
    records = vectors.records([batch])
    start = time.perf_counter()
    out, cycles = await run_bulk(dut, records, out_bits=vectors.response.width)
    sim_s = time.perf_counter() - start
    got_result, got_flags = vectors.results(out)
    bad = np.flatnonzero((got_result != columns["result"]) | (got_flags != columns["flags"]))
    operand_names = [k for k in ("a", "b", "c") if k in columns]
    width_in = (config.src.width + 3) // 4
    width_out = (config.dst.width + 3) // 4
    lines = []
    for i in bad[:MISMATCH_LINES]:
        operands = " ".join(f"{int(columns[k][i]):0{width_in}X}" for k in operand_names)
        lines.append(
            f"line {i + 1}: {operands} expected {int(columns['result'][i]):0{width_out}X} "
            f"{int(columns['flags'][i]):02X} got {int(got_result[i]):0{width_out}X} {int(got_flags[i]):02X}"
        )
    record_metrics(
        "testfloat_file",
        cycles=cycles,
        sim_s=sim_s,
        vectors=len(records),
        mismatches=len(bad),
        vectors_per_s=len(records) / sim_s,
        first_mismatches=lines,
    )
    assert len(bad) == 0, f"{len(bad)} of {len(records)} vectors differ from the file:\n" + "\n".join(lines)
