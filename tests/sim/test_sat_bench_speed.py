"""The speed bench's cocotb module (scripts/bench_sat.py) on the tiny preset: a small GEMM, checked bit-exact."""

from __future__ import annotations

import json

import pytest

from trainforge.sim.harness import simulate
from trainforge.sim.testbenches.tb_sat_bench_speed import WORKLOAD_ENV

pytestmark = pytest.mark.verilator


def test_bench_module_runs_and_checks_against_golden():
    spec = {"dataflow": "WS", "n": 2, "m": 8, "M": 9, "K": 40, "N": 6, "seed": 3}
    result = simulate(
        "sat",
        {"preset": "tiny"},
        test_module="trainforge.sim.testbenches.tb_sat_bench_speed",
        extra_env={WORKLOAD_ENV: json.dumps(spec)},
    )
    (metrics,) = result.metrics
    # The module records only after the image matched the golden executor word for word.
    assert metrics["exact"] is True
    # 2:8 keeps 10 of K = 40 per column; every kept product of the used rows and columns is useful.
    assert metrics["macs_useful"] == 9 * 6 * 10
    assert metrics["cycles"] > 0
    assert metrics["sim_s"] > 0
