"""The FMA family on Verilator: every op x rounding mode, corner set + 100k random per pair, result and flags exact."""

from __future__ import annotations

import pytest

from trainforge.sim.harness import simulate

pytestmark = pytest.mark.verilator

CONFIGS = [
    pytest.param("fp-fma", {"fmt": "fp16", "pipeline_stages": 2}, id="fma-fp16-2"),
    pytest.param("fp-fma", {"fmt": "bf16", "pipeline_stages": 3}, id="fma-bf16-3"),
    pytest.param("fp-fma", {"fmt": "fp32", "pipeline_stages": 1}, id="fma-fp32-1"),
    pytest.param("fp-fma", {"fmt": "fp32", "src_fmt": "fp16"}, id="fma-fp16xfp16+fp32"),
    pytest.param("fp-fma", {"fmt": "fp32", "src_fmt": "bf16"}, id="fma-bf16xbf16+fp32"),
    pytest.param("fp-fma", {"fmt": "fp16", "pipeline_stages": 0}, id="fma-fp16-combinational"),
    pytest.param("fp-fma", {"fmt": "fp8e5m2"}, id="fma-fp8e5m2"),
    pytest.param("fp-fma", {"fmt": "fp16", "src_fmt": "fp8e5m2"}, id="fma-fp8xfp8+fp16"),
    pytest.param("fp-add", {"fmt": "fp32"}, id="add-fp32"),
    pytest.param("fp-mul", {"fmt": "bf16"}, id="mul-bf16"),
]


@pytest.mark.parametrize(("design", "overrides"), CONFIGS)
def test_fma_family_is_bit_exact_with_flags(design, overrides):
    result = simulate(design, overrides, seed=3)
    by_test = {m["test"]: m for m in result.metrics}
    assert set(by_test) == {
        "corners_every_op_and_rounding_mode",
        "random_every_op_and_rounding_mode",
        "stalls_and_gaps",
    }
    ops = {"fp-add": 2, "fp-mul": 1}.get(design, 4 if "src_fmt" in overrides else 7)
    # 100,000 random vectors per operation and rounding mode in the default run
    assert by_test["random_every_op_and_rounding_mode"]["vectors"] == ops * 5 * 100_000
    assert by_test["random_every_op_and_rounding_mode"]["vectors_per_s"] > 0
