"""The SAT accelerator on Verilator: whole programs bit-exact against the golden executor (tiny preset)."""

from __future__ import annotations

import pytest

from trainforge.sim.harness import simulate

pytestmark = pytest.mark.verilator


# The tiny preset, and an odd one: 3 x 5 PEs, BF16, lines of several 64-bit words, slow DRAM.
ODD = {"preset": "tiny", "rows": 3, "cols": 5, "in_fmt": "bf16", "mem_bits": 64, "mem_latency": 13, "mem_interval": 2}


@pytest.mark.parametrize("overrides", [{"preset": "tiny"}, ODD], ids=["tiny", "3x5-bf16-slow-dram"])
def test_regression_passes(overrides):
    result = simulate("sat", overrides, seed=3)
    by_test = {m["test"]: m for m in result.metrics}
    # Two random GEMMs per dataflow and pattern (dense + 7 sparse patterns on m_max = 8).
    assert by_test["gemm_tiles_every_pattern_both_dataflows"]["programs"] == 2 * 2 * 8
    assert by_test["prune_both_copies"]["programs"] == 2 * 7
    assert by_test["update_sgd_momentum_srste"]["programs"] == 5
    assert by_test["bad_descriptors_raise_the_error_flag"]["programs"] >= 13
