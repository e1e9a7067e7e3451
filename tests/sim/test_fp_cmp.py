"""The NONCOMP unit on Verilator: MIN/MAX/FEQ/FLT/FLE/CLASS, corner set + 100k random per op, exhaustive CLASS."""

from __future__ import annotations

import pytest

from trainforge.sim.harness import simulate

pytestmark = pytest.mark.verilator

CONFIGS = [
    pytest.param({}, id="fp16-default"),
    pytest.param({"fmt": "bf16", "pipeline_stages": 2}, id="bf16-2"),
    pytest.param({"fmt": "fp32", "pipeline_stages": 0}, id="fp32-combinational"),
    pytest.param({"fmt": "fp8e5m2"}, id="fp8e5m2"),
]


@pytest.mark.parametrize("overrides", CONFIGS)
def test_noncomp_is_bit_exact_with_flags(overrides):
    result = simulate("fp-cmp", overrides, seed=3)
    by_test = {m["test"]: m for m in result.metrics}
    assert set(by_test) == {"corners_every_op", "random_every_op", "exhaustive_class", "stalls_and_gaps"}
    # 100,000 random vectors per operation in the default run
    assert by_test["random_every_op"]["vectors"] == 6 * 100_000
    assert by_test["random_every_op"]["vectors_per_s"] > 0
    fmt = overrides.get("fmt", "fp16")
    sweep = by_test["exhaustive_class"]
    if fmt in ("fp16", "bf16"):
        # the exhaustive run: CLASS on all 65,536 patterns
        assert (sweep["exhaustive"], sweep["vectors"]) == (True, 65_536)
    elif fmt == "fp8e5m2":
        assert (sweep["exhaustive"], sweep["vectors"]) == (True, 256)
        # every operand pair of the five binary operations, every operand of CLASS
        assert by_test["corners_every_op"]["every_pair"] is True
        assert by_test["corners_every_op"]["vectors"] == 5 * 65_536 + 256
    else:
        assert (sweep["exhaustive"], sweep["vectors"]) == (False, 4 * 65_536)
