"""fp-simd on Verilator: every SIMD and scalar op x rounding mode, corners + 100k random, lanes and flags exact."""

from __future__ import annotations

import pytest

from trainforge.sim.harness import simulate

pytestmark = pytest.mark.verilator


@pytest.mark.parametrize(
    "overrides",
    [{"lane_fmt": "fp16", "pipeline_stages": 1}, {"lane_fmt": "bf16", "pipeline_stages": 3}],
    ids=["fp16-1", "bf16-3"],
)
def test_simd_datapath_is_bit_exact_with_flags(overrides):
    result = simulate("fp-simd", overrides, seed=5)
    by_test = {m["test"]: m for m in result.metrics}
    # six operations x five rounding modes x 100,000 random vectors
    assert by_test["random_every_op_and_rounding_mode"]["vectors"] == 6 * 5 * 100_000
    assert by_test["corners_every_op_and_rounding_mode"]["vectors"] > 0
