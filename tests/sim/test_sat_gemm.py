"""sat-gemm on Verilator: hundreds of random dense and N:M tiles, back to back and with stalls."""

from __future__ import annotations

import pytest

from trainforge.sim.harness import simulate

pytestmark = pytest.mark.verilator


@pytest.mark.parametrize(
    "overrides",
    [{"rows": 4, "cols": 4, "m_max": 8}, {"rows": 3, "cols": 5, "m_max": 16, "in_fmt": "bf16"}],
    ids=["4x4-fp16", "3x5-bf16-m16"],
)
def test_pe_array_tiles_are_bit_exact(overrides):
    result = simulate("sat-gemm", overrides, seed=2)
    by_test = {m["test"]: m for m in result.metrics}
    assert by_test["random_tiles_dense_and_every_pattern"]["tiles"] == 300
    assert by_test["stalls_and_gaps"]["tiles"] == 60
