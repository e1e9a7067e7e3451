# amaranth: UnusedElaboratable=no
"""fp-simd construction: configuration checks and the signature every testbench relies on."""

from __future__ import annotations

import pytest

from trainforge.errors import ConfigError
from trainforge.hw.mcu.fp_simd import FPSimd, FPSimdConfig, SimdOp


def test_ports_are_32_bit_registers_and_flags():
    dut = FPSimd(config=FPSimdConfig())
    # rs1, rs2, rs3 (32 bits each), a 3-bit op and a 3-bit rounding mode
    assert len(dut.request.payload.as_value()) == 3 * 32 + 3 + 3
    assert len(dut.response.payload.as_value()) == 32 + 5
    assert dut.latency == 1
    assert len(SimdOp) == 6


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"pipeline_stages": 5}, "pipeline_stages must be in 0..3, not 5"), ({"lane_fmt": "fp32"}, "lane_fmt='fp32'")],
)
def test_invalid_config_names_the_value(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        FPSimdConfig.from_mapping(kwargs)
