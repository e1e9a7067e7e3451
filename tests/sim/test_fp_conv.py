"""The convert unit on Verilator: every rounding mode, corner set + 100k random + every source pattern, exact."""

from __future__ import annotations

import pytest

from trainforge.sim.harness import simulate

pytestmark = pytest.mark.verilator

CONFIGS = [
    pytest.param({}, id="fp32->fp16-default"),
    pytest.param({"src_fmt": "fp32", "dst_fmt": "bf16", "pipeline_stages": 2}, id="fp32->bf16-2"),
    pytest.param({"src_fmt": "fp16", "dst_fmt": "fp32", "pipeline_stages": 3}, id="fp16->fp32-3"),
    pytest.param({"src_fmt": "fp16", "dst_fmt": "bf16", "pipeline_stages": 0}, id="fp16->bf16-combinational"),
    pytest.param({"src_fmt": "bf16", "dst_fmt": "fp8e5m2"}, id="bf16->fp8e5m2"),
]


@pytest.mark.parametrize("overrides", CONFIGS)
def test_convert_is_bit_exact_with_flags(overrides):
    result = simulate("fp-conv", overrides, seed=3)
    by_test = {m["test"]: m for m in result.metrics}
    assert set(by_test) == {
        "corners_every_rounding_mode",
        "random_every_rounding_mode",
        "exhaustive_source",
        "stalls_and_gaps",
    }
    # 100,000 random vectors per rounding mode in the default run
    assert by_test["random_every_rounding_mode"]["vectors"] == 5 * 100_000
    assert by_test["random_every_rounding_mode"]["vectors_per_s"] > 0
    sweep = by_test["exhaustive_source"]
    if overrides.get("src_fmt") in ("fp16", "bf16"):
        # the exhaustive runs: all 65,536 FP16 (here also BF16) inputs in every rounding mode
        assert sweep["exhaustive"] is True
        assert (sweep["patterns"], sweep["vectors"]) == (65_536, 5 * 65_536)
    else:
        assert sweep["exhaustive"] is False
        assert sweep["patterns"] == 4 * 65_536
