# amaranth: UnusedElaboratable=no
"""MacUnit in the Amaranth simulator: hand-computed corner cases and oracle samples (``models/fp.py``)."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from trainforge.errors import ConfigError
from trainforge.hw.fp.mac import MacUnit
from trainforge.models import fp
from trainforge.sim.testbenches.tb_mac import corner_triples, mismatches

NAN = 0x7FC0_0000

#: (a, b, c, expected) in FP16, FP16, FP32, FP32; each expected value worked out by hand.
FP16_CASES = [
    # signed zeros: -0 only for -0 + -0; exact cancellation is +0
    (0x0000, 0x3C00, 0x0000_0000, 0x0000_0000),
    (0x8000, 0x3C00, 0x8000_0000, 0x8000_0000),
    (0x8000, 0x3C00, 0x0000_0000, 0x0000_0000),
    (0x0000, 0xBC00, 0x0000_0000, 0x0000_0000),
    (0x3C00, 0x3C00, 0xBF80_0000, 0x0000_0000),  # 1*1 - 1
    (0xBC00, 0x3C00, 0x3F80_0000, 0x0000_0000),  # -1*1 + 1
    (0x3C00, 0x3C00, 0x8000_0000, 0x3F80_0000),  # 1*1 + -0
    # FP16 subnormal factors: the product is exact and normal in FP32
    (0x0001, 0x0001, 0x0000_0000, 0x2780_0000),  # 2**-24 * 2**-24 = 2**-48
    (0x8001, 0x0001, 0x0000_0000, 0xA780_0000),
    (0x03FF, 0x3C00, 0x0000_0000, 0x387F_C000),  # largest subnormal: 1023 * 2**-24
    (0x0001, 0x7BFF, 0x0000_0000, 0x3B7F_E000),  # 2**-24 * 65504 = 2**-9 * (2 - 2**-10)
    # FP32 subnormal addend: kept exactly by a zero product, a sticky bit under a nonzero one
    (0x0000, 0x3C00, 0x807F_FFFF, 0x807F_FFFF),
    (0x8000, 0x8000, 0x0000_0001, 0x0000_0001),
    (0x0001, 0x0001, 0x0000_0001, 0x2780_0000),  # 2**-48 + 2**-149 rounds to 2**-48
    (0x0001, 0x0001, 0x8000_0001, 0x2780_0000),  # 2**-48 - 2**-149: far less than half an ulp (2**-73) below
    # infinities and the invalid cases
    (0x7C00, 0x3C00, 0x3F80_0000, 0x7F80_0000),
    (0x7C00, 0xBC00, 0x3F80_0000, 0xFF80_0000),
    (0x3C00, 0x3C00, 0xFF80_0000, 0xFF80_0000),
    (0x7C00, 0x3C00, 0x7F80_0000, 0x7F80_0000),  # inf + inf
    (0x7C00, 0x3C00, 0xFF80_0000, NAN),  # inf - inf
    (0x7C00, 0x0000, 0x3F80_0000, NAN),  # inf * 0
    (0x8000, 0xFC00, 0x0000_0000, NAN),  # 0 * -inf
    (0x7C00, 0x0000, 0x7FC0_0000, NAN),
    # NaNs in, quiet and signalling, each gives the canonical NaN
    (0x7E00, 0x3C00, 0x0000_0000, NAN),
    (0x3C00, 0xFC01, 0x0000_0000, NAN),
    (0x3C00, 0x3C00, 0x7F80_0001, NAN),
    (0x3C00, 0x3C00, 0xFFC0_1234, NAN),
    (0x7E00, 0x0000, 0x7F80_0000, NAN),
    # cancellation to a tiny value: (1 + 2**-10)**2 - (1 + 2**-9) = 2**-20
    (0x3C01, 0x3C01, 0xBF80_4000, 0x3580_0000),
    # 2**-48 - (2**-48 - 2**-72) = 2**-72: the longest left normalisation
    (0x0001, 0x0001, 0xA77F_FFFF, 0x1B80_0000),
    # ties to even: 1 + 2**-24 -> 1; (1 + 2**-23) + 2**-24 -> 1 + 2**-22; 1 - 2**-25 -> 1
    (0x0001, 0x3C00, 0x3F80_0000, 0x3F80_0000),
    (0x0001, 0x3C00, 0x3F80_0001, 0x3F80_0002),
    (0x8001, 0x3800, 0x3F80_0000, 0x3F80_0000),
    # bits of c shifted out of the window break a tie: 2**-48 + (2**-72 + 2**-95) rounds up,
    # 2**-48 - (2**-73 + 2**-96) down (the product of two subnormals is not normalised in the adder)
    (0x0001, 0x0001, 0x1B80_0001, 0x2780_0001),
    (0x0001, 0x0001, 0x9B00_0001, 0x277F_FFFF),
    (0x0001, 0x0001, 0x1B80_0000, 0x2780_0000),  # the exact tie, to even
    # just above a tie rounds up: 1 + (1 + 2**-10) * 2**-24
    (0x3C01, 0x0001, 0x3F80_0000, 0x3F80_0001),
    # largest values: 65504**2 = 0xFFC00400 is exact; the largest FP32 stays finite (no FP16 product reaches inf)
    (0x7BFF, 0x7BFF, 0x0000_0000, 0x4F7F_C004),
    (0x7BFF, 0x7BFF, 0x7F7F_FFFF, 0x7F7F_FFFF),
    (0xFBFF, 0x7BFF, 0x4F7F_C004, 0x0000_0000),
    # a carry out of the mantissa into the exponent: (2 - 2**-23) + 2**-23 = 2
    (0x0001, 0x4000, 0x3FFF_FFFF, 0x4000_0000),
]


def simulate(src_fmt: str, a, b, c) -> np.ndarray:
    """Results of MacUnit for the operand arrays, in the Amaranth simulator (combinational settling)."""
    dut = MacUnit(src_fmt=src_fmt)
    out: list[int] = []

    async def testbench(ctx):
        for x, y, z in zip(np.asarray(a).tolist(), np.asarray(b).tolist(), np.asarray(c).tolist(), strict=True):
            ctx.set(dut.a, x)
            ctx.set(dut.b, y)
            ctx.set(dut.c, z)
            out.append(ctx.get(dut.result))

    sim = Simulator(dut)
    sim.add_testbench(testbench)
    sim.run()
    return np.array(out, dtype=np.uint64)


def assert_matches_oracle(src_fmt: str, a, b, c) -> None:
    count, lines = mismatches(src_fmt, a, b, c, simulate(src_fmt, a, b, c))
    assert count == 0, f"{count} of {len(a)} differ from the oracle:\n" + "\n".join(lines)


def test_hand_computed_fp16_cases():
    a, b, c, expected = (np.array(col, dtype=np.uint64) for col in zip(*FP16_CASES, strict=True))
    # the table is independent of the oracle: check both against it
    oracle, _ = fp.fma(a, b, c, fmt="fp32", rounding="rne", src_fmt="fp16")
    assert [hex(x) for x in oracle] == [hex(x) for x in expected]
    got = simulate("fp16", a, b, c)
    assert [hex(x) for x in got] == [hex(x) for x in expected]


@pytest.mark.parametrize(("src_fmt", "count"), [("fp16", 1500), ("bf16", 150)])
def test_corner_sample_matches_oracle(src_fmt, count):
    a, b, c = corner_triples(src_fmt, seed=7)
    pick = np.random.default_rng(7).choice(len(a), size=count, replace=False)
    assert_matches_oracle(src_fmt, a[pick], b[pick], c[pick])


@pytest.mark.parametrize(("src_fmt", "count"), [("fp16", 1500), ("bf16", 150)])
def test_random_sample_matches_oracle(src_fmt, count):
    assert_matches_oracle(src_fmt, *fp.random_operands("fma", count, fmt="fp32", seed=11, src_fmt=src_fmt))


def test_ports_follow_the_source_format():
    for src_fmt in ("fp16", "bf16"):
        unit = MacUnit(src_fmt=src_fmt)
        assert unit.src_fmt == src_fmt
        assert (len(unit.a), len(unit.b), len(unit.c), len(unit.result)) == (16, 16, 32, 32)


@pytest.mark.parametrize("bad", ["fp32", "fp8e5m2", "FP16", None])
def test_rejects_other_source_formats(bad):
    with pytest.raises(ConfigError, match="src_fmt"):
        MacUnit(src_fmt=bad)
