# amaranth: UnusedElaboratable=no
"""The NONCOMP unit (min/max, compares, class) in the Amaranth simulator against the oracle and by hand."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from trainforge.errors import ConfigError
from trainforge.hw.fp.noncomp import NonComp, NonCompConfig, NonCompOp
from trainforge.models import fp
from trainforge.sim.testbenches.fp_unit_vectors import (
    NONCOMP_OPS,
    NonCompVectors,
    UnitBatch,
    noncomp_family,
    run_amaranth,
)


def corner_sample(config: NonCompConfig, per_op: int, seed: int) -> list[UnitBatch]:
    batches = []
    for op in NONCOMP_OPS:
        operands = fp.corner_vectors(noncomp_family(op), config.fmt, seed=seed)
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(operands[0]), size=min(per_op, len(operands[0])), replace=False)
        a, b = operands[0][pick], (operands[1][pick] if len(operands) > 1 else None)
        batches.append(UnitBatch(op, "-", a, b))
    return batches


@pytest.mark.parametrize(
    "config",
    [
        NonCompConfig(fmt="fp16", pipeline_stages=1),
        NonCompConfig(fmt="bf16", pipeline_stages=0),
        NonCompConfig(fmt="fp32", pipeline_stages=2),
        NonCompConfig(fmt="fp8e5m2", pipeline_stages=1),
    ],
    ids=lambda c: f"{c.fmt}-{c.pipeline_stages}",
)
def test_corner_sample_matches_oracle(config):
    batches = corner_sample(config, per_op=600, seed=5)
    vectors = NonCompVectors(config)
    count, lines = vectors.mismatches(batches, run_amaranth(NonComp(config=config), vectors, batches))
    assert count == 0, "\n".join(lines)


@pytest.mark.parametrize("stages", [1, 2])
def test_stalls_keep_order_and_count(stages):
    config = NonCompConfig(fmt="bf16", pipeline_stages=stages)
    a, b = fp.random_operands("min_max", 150, fmt="bf16", seed=stages)
    batches = [UnitBatch(op, "-", a, b) for op in ("min", "max", "le")]
    vectors = NonCompVectors(config)
    out = run_amaranth(NonComp(config=config), vectors, batches, stall_every=3)
    count, lines = vectors.mismatches(batches, out)
    assert len(out) == 450
    assert count == 0, "\n".join(lines)


NV = fp.FLAG_NV
# (op, a, b, result, flags) in fp16, worked out by hand from RISC-V F 2.2
HAND_CASES = [
    ("min", 0x8000, 0x0000, 0x8000, 0),  # -0 < +0
    ("max", 0x8000, 0x0000, 0x0000, 0),
    ("min", 0x0000, 0x8000, 0x8000, 0),
    ("min", 0x7E00, 0x3C00, 0x3C00, 0),  # one quiet NaN: the other operand
    ("max", 0xBC00, 0xFE01, 0xBC00, 0),
    ("min", 0x7C01, 0x3C00, 0x3C00, NV),  # a signalling NaN raises NV even when the result is a number
    ("max", 0x7E01, 0x7C01, 0x7E00, NV),  # two NaNs: the canonical NaN
    ("max", 0xFE00, 0x7E00, 0x7E00, 0),
    ("min", 0xFC00, 0x7BFF, 0xFC00, 0),
    ("max", 0x8001, 0x8002, 0x8001, 0),  # negative subnormals
    ("eq", 0x8000, 0x0000, 1, 0),  # -0 == +0
    ("eq", 0x7E00, 0x7E00, 0, 0),  # quiet: no NV for quiet NaNs
    ("eq", 0x7C01, 0x3C00, 0, NV),
    ("lt", 0x7E00, 0x3C00, 0, NV),  # signalling: NV for any NaN
    ("le", 0x3C00, 0x7E00, 0, NV),
    ("le", 0x3C00, 0x3C00, 1, 0),
    ("lt", 0x3C00, 0x3C00, 0, 0),
    ("lt", 0xBC00, 0x8000, 1, 0),
    ("lt", 0x8000, 0x0000, 0, 0),
    ("le", 0x0000, 0x8000, 1, 0),
    ("lt", 0xFC00, 0xFBFF, 1, 0),
    ("class", 0xFC00, 0, 1 << 0, 0),
    ("class", 0xBC00, 0, 1 << 1, 0),
    ("class", 0x8001, 0, 1 << 2, 0),
    ("class", 0x8000, 0, 1 << 3, 0),
    ("class", 0x0000, 0, 1 << 4, 0),
    ("class", 0x03FF, 0, 1 << 5, 0),
    ("class", 0x0400, 0, 1 << 6, 0),
    ("class", 0x7C00, 0, 1 << 7, 0),
    ("class", 0xFC01, 0, 1 << 8, 0),  # signalling NaN, either sign
    ("class", 0x7E00, 0, 1 << 9, 0),
]


def test_hand_checked_cases():
    config = NonCompConfig(fmt="fp16", pipeline_stages=0)
    vectors = NonCompVectors(config)
    batches = [UnitBatch(op, "-", np.array([a], np.uint64), np.array([b], np.uint64)) for op, a, b, _, _ in HAND_CASES]
    got_result, got_flags = vectors.results(run_amaranth(NonComp(config=config), vectors, batches))
    for i, (op, a, b, result, flags) in enumerate(HAND_CASES):
        want = (hex(result), fp.flag_names(flags))
        oracle_result, oracle_flags = vectors.expected(batches[i])
        assert (hex(int(oracle_result[0])), fp.flag_names(int(oracle_flags[0]))) == want, (op, hex(a), hex(b))
        assert (hex(int(got_result[i])), fp.flag_names(int(got_flags[i]))) == want, (op, hex(a), hex(b))


def test_unused_op_codes_give_zero_and_no_flags():
    config = NonCompConfig(fmt="fp16", pipeline_stages=0)
    dut = NonComp(config=config)
    unused = [code for code in range(8) if code not in {op.value for op in NonCompOp}]
    seen = []

    async def testbench(ctx):
        for code in unused:
            ctx.set(dut.request.payload.a, 0x7C01)  # a signalling NaN would raise NV in any real op
            ctx.set(dut.request.payload.b, 0x3C00)
            ctx.set(dut.request.payload.op.as_value(), code)
            await ctx.delay(1e-9)
            seen.append((ctx.get(dut.response.payload.result), ctx.get(dut.response.payload.flags.as_value())))

    sim = Simulator(dut)
    sim.add_testbench(testbench)
    sim.run()
    assert unused == [6, 7]
    assert seen == [(0, 0), (0, 0)]


@pytest.mark.parametrize(("fmt", "width"), [("fp8e5m2", 10), ("fp16", 16), ("bf16", 16), ("fp32", 32)])
def test_result_fits_a_float_and_a_class_mask(fmt, width):
    config = NonCompConfig(fmt=fmt)
    assert config.result_width == width
    assert NonComp(config=config).response.payload.result.shape().width == width


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fmt": "fp64"}, "fmt='fp64'"),
        ({"pipeline_stages": 3}, "pipeline_stages must be in 0..2, not 3"),
        ({"pipeline_stages": -1}, "pipeline_stages must be in 0..2, not -1"),
        ({"op": "min"}, "unknown parameter 'op' for NonCompConfig"),
    ],
)
def test_invalid_config_names_the_value(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        NonCompConfig.from_mapping(kwargs)


def test_component_checks_its_config_type():
    with pytest.raises(TypeError, match="config must be a NonCompConfig"):
        NonComp(config=None)


def test_latency_is_the_stage_count():
    assert NonComp(config=NonCompConfig(pipeline_stages=2)).latency == 2
