# amaranth: UnusedElaboratable=no
"""The convert unit in the Amaranth simulator against the exact oracle and hand-checked cases; its configuration."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from trainforge.errors import ConfigError
from trainforge.hw.fp.convert import Convert, ConvertConfig
from trainforge.models import fp
from trainforge.sim.testbenches.fp_unit_vectors import ConvertVectors, UnitBatch, run_amaranth

FORMATS = ("fp16", "bf16", "fp32", "fp8e5m2")
PAIRS = [(s, d) for s, d in itertools.permutations(FORMATS, 2)]


def corner_sample(config: ConvertConfig, per_mode: int, seed: int) -> list[UnitBatch]:
    (corners,) = fp.corner_vectors("convert", config.dst_fmt, src_fmt=config.src_fmt, seed=seed)
    rng = np.random.default_rng(seed)
    a = corners[rng.choice(len(corners), size=min(per_mode, len(corners)), replace=False)]
    return [UnitBatch("convert", rounding, a) for rounding in fp.ROUNDING_MODES]


@pytest.mark.parametrize(
    "config",
    # every ordered pair of formats, the pipeline depths 0..3 spread over them
    [ConvertConfig(src_fmt=s, dst_fmt=d, pipeline_stages=i % 4) for i, (s, d) in enumerate(PAIRS)],
    ids=lambda c: f"{c.src_fmt}->{c.dst_fmt}-{c.pipeline_stages}",
)
def test_corner_sample_matches_oracle(config):
    batches = corner_sample(config, per_mode=80, seed=5)
    vectors = ConvertVectors(config)
    count, lines = vectors.mismatches(batches, run_amaranth(Convert(config=config), vectors, batches))
    assert count == 0, "\n".join(lines)


@pytest.mark.parametrize("stages", [1, 2, 3])
def test_stalls_keep_order_and_count(stages):
    config = ConvertConfig(src_fmt="fp32", dst_fmt="bf16", pipeline_stages=stages)
    (a,) = fp.random_operands("convert", 200, fmt="bf16", src_fmt="fp32", seed=stages)
    batches = [UnitBatch("convert", rounding, a) for rounding in ("rne", "rup")]
    vectors = ConvertVectors(config)
    out = run_amaranth(Convert(config=config), vectors, batches, stall_every=3)
    count, lines = vectors.mismatches(batches, out)
    assert len(out) == 400
    assert count == 0, "\n".join(lines)


# (src, dst, rounding, a, result, flags), worked out by hand from IEEE 754 / RISC-V F 2.2
HAND_CASES = [
    # 65520 is half-way between fp16's largest finite 65504 and 2^16
    ("fp32", "fp16", "rne", 0x477FF000, 0x7C00, fp.FLAG_OF | fp.FLAG_NX),
    ("fp32", "fp16", "rmm", 0x477FF000, 0x7C00, fp.FLAG_OF | fp.FLAG_NX),
    ("fp32", "fp16", "rup", 0x477FF000, 0x7C00, fp.FLAG_OF | fp.FLAG_NX),
    ("fp32", "fp16", "rtz", 0x477FF000, 0x7BFF, fp.FLAG_NX),  # 65504 with an unbounded exponent: no OF
    ("fp32", "fp16", "rdn", 0xC77FF000, 0xFC00, fp.FLAG_OF | fp.FLAG_NX),
    # 2^-14 - 2^-25: exact at 11 bits below 2^-14, so tiny after rounding, though it rounds to 2^-14
    ("fp32", "fp16", "rne", 0x387FE000, 0x0400, fp.FLAG_UF | fp.FLAG_NX),
    ("fp32", "fp16", "rtz", 0x387FE000, 0x03FF, fp.FLAG_UF | fp.FLAG_NX),
    # 2^-14 - 2^-27 rounds to 2^-14 at 11 bits too: not tiny, NX only (the CVFPU #94 boundary)
    ("fp32", "fp16", "rne", 0x387FF800, 0x0400, fp.FLAG_NX),
    # 2^-25, half the smallest subnormal: a tie
    ("fp32", "fp16", "rne", 0x33000000, 0x0000, fp.FLAG_UF | fp.FLAG_NX),
    ("fp32", "fp16", "rmm", 0x33000000, 0x0001, fp.FLAG_UF | fp.FLAG_NX),
    ("fp32", "fp16", "rdn", 0xB3000000, 0x8001, fp.FLAG_UF | fp.FLAG_NX),
    ("fp32", "fp16", "rne", 0xFF800001, 0x7E00, fp.FLAG_NV),  # signalling NaN: canonical NaN, NV
    ("fp32", "fp16", "rne", 0xFFC00001, 0x7E00, 0),  # quiet NaN: canonical NaN, no flag
    ("fp32", "fp16", "rne", 0x80000001, 0x8000, fp.FLAG_UF | fp.FLAG_NX),  # fp32 subnormal
    ("fp16", "fp32", "rne", 0x0001, 0x33800000, 0),  # 2^-24: a normal fp32
    ("fp16", "fp32", "rdn", 0x8000, 0x80000000, 0),
    ("fp16", "fp32", "rne", 0xFC00, 0xFF800000, 0),
    ("fp16", "fp32", "rne", 0x7C01, 0x7FC00000, fp.FLAG_NV),
    ("fp16", "bf16", "rne", 0x3C01, 0x3F80, fp.FLAG_NX),  # 1 + 2^-10 at 8 bits
    ("fp16", "bf16", "rup", 0x3C01, 0x3F81, fp.FLAG_NX),
    ("bf16", "fp16", "rne", 0x4780, 0x7C00, fp.FLAG_OF | fp.FLAG_NX),  # 2^16
    ("bf16", "fp16", "rtz", 0x4780, 0x7BFF, fp.FLAG_OF | fp.FLAG_NX),
    ("bf16", "fp16", "rne", 0x3380, 0x0001, 0),  # 2^-24, exact: no UF
    ("bf16", "fp32", "rne", 0x0001, 0x00010000, 0),  # subnormal to subnormal
    ("fp32", "bf16", "rne", 0x3F808000, 0x3F80, fp.FLAG_NX),  # tie to even
    ("fp32", "bf16", "rne", 0x3F818000, 0x3F82, fp.FLAG_NX),
    ("fp16", "fp8e5m2", "rne", 0x7BFF, 0x7C, fp.FLAG_OF | fp.FLAG_NX),  # 65504 > fp8's 57344 + ulp/2
    ("fp8e5m2", "fp16", "rne", 0x01, 0x0100, 0),  # 2^-16
]


@pytest.mark.parametrize(("src", "dst", "rounding", "a", "result", "flags"), HAND_CASES)
def test_hand_checked_cases(src, dst, rounding, a, result, flags):
    want = (hex(result), fp.flag_names(flags))
    oracle_result, oracle_flags = fp.convert(np.array([a]), src_fmt=src, dst_fmt=dst, rounding=rounding)
    assert (hex(int(oracle_result[0])), fp.flag_names(int(oracle_flags[0]))) == want
    config = ConvertConfig(src_fmt=src, dst_fmt=dst, pipeline_stages=0)
    vectors = ConvertVectors(config)
    out = run_amaranth(Convert(config=config), vectors, [UnitBatch("convert", rounding, np.array([a], np.uint64))])
    got_result, got_flags = vectors.results(out)
    assert (hex(int(got_result[0])), fp.flag_names(int(got_flags[0]))) == want


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"src_fmt": "fp64"}, "src_fmt='fp64'"),
        ({"dst_fmt": "e4m3"}, "dst_fmt='e4m3'"),
        (
            {"src_fmt": "fp16", "dst_fmt": "fp16"},
            "dst_fmt=fp16 must differ from src_fmt=fp16; valid: bf16, fp32, fp8e5m2",
        ),
        ({"pipeline_stages": 4}, "pipeline_stages must be in 0..3, not 4"),
        ({"pipeline_stages": -1}, "pipeline_stages must be in 0..3, not -1"),
        ({"rounding": "rne"}, "unknown parameter 'rounding' for ConvertConfig"),
    ],
)
def test_invalid_config_names_the_value(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        ConvertConfig.from_mapping(kwargs)


def test_direct_construction_is_validated_too():
    with pytest.raises(ConfigError, match="unknown float format 'fp64'"):
        ConvertConfig(src_fmt="fp64")


def test_component_checks_its_config_type():
    with pytest.raises(TypeError, match="config must be a ConvertConfig"):
        Convert(config={"src_fmt": "fp32"})


def test_latency_ports_and_widening():
    unit = Convert(config=ConvertConfig(src_fmt="fp16", dst_fmt="fp32", pipeline_stages=3))
    assert unit.latency == 3
    assert unit.request.payload.shape().size == 16 + 3
    assert unit.response.payload.shape().size == 32 + 5
    assert ConvertConfig(src_fmt="fp16", dst_fmt="fp32").exact
    assert ConvertConfig(src_fmt="fp8e5m2", dst_fmt="fp16").exact
    assert not ConvertConfig(src_fmt="fp16", dst_fmt="bf16").exact  # fewer mantissa bits
    assert not ConvertConfig(src_fmt="bf16", dst_fmt="fp16").exact  # fewer exponent bits
