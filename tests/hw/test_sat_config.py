"""SatConfig: presets, overrides, validation messages, derived line widths; descriptor encoding."""

from __future__ import annotations

import pytest

from trainforge.errors import ConfigError
from trainforge.hw.sat import isa
from trainforge.hw.sat.config import PRESETS, SatConfig


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_keep_their_name_and_values(name):
    config = SatConfig.preset_named(name)
    assert config.preset == name
    for field, value in PRESETS[name].items():
        assert getattr(config, field) == value


def test_paper_preset_is_fp16_with_32_pruning_lanes_and_2_8():
    config = SatConfig.preset_named("paper")
    assert (config.in_fmt, config.cols) == ("fp16", 32)
    assert config.supports(2, 8)
    assert config.supports(8, 8)


def test_override_beside_a_preset_makes_it_custom():
    assert SatConfig.from_mapping({"preset": "tiny", "rows": "8"}).rows == 8
    assert SatConfig.from_mapping({"preset": "tiny", "rows": "8"}).preset == "custom"
    assert SatConfig.from_mapping({"preset": "tiny", "rows": "4"}).preset == "tiny"
    assert SatConfig.preset_named("tiny").replace(cols=2).preset == "custom"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"preset": "huge"}, "unknown preset 'huge'; valid: tiny, default, paper, custom"),
        ({"rows": 0}, "rows must be in 1..64, not 0"),
        ({"m_max": 6}, "m_max must be a power of two in 2..16, not 6"),
        ({"a_lines": 100}, "a_lines must be a power of two in 2..65536, not 100"),
        ({"acc_lines": 2, "rows": 4}, "acc_lines must hold at least one tile (rows=4), not 2"),
        ({"mem_bits": 96}, "mem_bits must be a power of two in 32..1024, not 96"),
        ({"mem_interval": 0}, "mem_interval must be in 1..64 cycles, not 0"),
        ({"in_fmt": "fp32"}, "in_fmt='fp32'"),
    ],
)
def test_invalid_values_are_named(values, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        SatConfig.from_mapping(values)


def test_line_widths_follow_the_documented_formats():
    config = SatConfig.preset_named("tiny")  # 4 x 4, m_max 8, fp16, 128-bit words
    assert config.a_line_bits == 4 * 8 * 16
    assert config.a_words == 4
    assert config.b_line_bits == 4 * (16 + 3)
    assert config.b_words == 1
    assert config.acc_line_bits == 128
    assert config.acc_words == 1
    assert (config.w_words, config.mask_words) == (1, 1)


@pytest.mark.parametrize(
    ("n", "m", "ok"), [(1, 2, True), (2, 4, True), (2, 8, True), (8, 8, True), (3, 6, False), (5, 4, False)]
)
def test_supported_patterns(n, m, ok):
    assert SatConfig().supports(n, m) is ok


@pytest.mark.parametrize(
    "desc",
    [
        isa.Gemm(
            n=2,
            m=8,
            rows=4,
            cols=3,
            steps=7,
            a_addr=1 << 31,
            b_addr=9,
            c_addr=77,
            acc_addr=5,
            dataflow=isa.Dataflow.WS,
            tag=isa.Tag.BP,
            load_b=False,
            accumulate=True,
        ),
        isa.Prune(
            n=1,
            m=4,
            lines=12,
            src_addr=3,
            dst_addr=4,
            mask_addr=5,
            transpose=True,
            write_mask=True,
            panel_stride=40,
            tag=isa.Tag.FF,
        ),
        isa.Update(
            lines=3,
            w_addr=1,
            v_addr=2,
            g_addr=3,
            mask_addr=4,
            w16_addr=5,
            use_mask=True,
            lr=0.5,
            momentum=0.875,
            decay=2.0**-12,
        ),
    ],
)
def test_descriptors_round_trip_through_their_bits(desc):
    config = SatConfig()
    value = isa.encode(config, desc)
    assert 0 < value < 1 << isa.descriptor_layout(config).size
    assert isa.decode(config, value) == desc


def test_encoded_fields_sit_where_the_layout_says():
    config = SatConfig()
    layout = isa.descriptor_layout(config)
    gemm = layout["args"].shape["gemm"].shape
    value = isa.encode(config, isa.Gemm(n=3, m=4, rows=2, cols=1, steps=5, c_addr=0xDEADBEEF))
    base = layout["args"].offset
    assert value & 0b111 == isa.Op.GEMM
    assert (value >> (base + gemm["c_addr"].offset)) & 0xFFFFFFFF == 0xDEADBEEF
    assert (value >> (base + gemm["n"].offset)) & 0x1F == 3


@pytest.mark.parametrize(
    ("desc", "code"),
    [
        (isa.Gemm(n=3, m=6, rows=1, cols=1, steps=1), isa.ErrorCode.BAD_PATTERN),
        (isa.Gemm(n=2, m=4, rows=0, cols=1, steps=1), isa.ErrorCode.ZERO_DIM),
        (isa.Gemm(n=2, m=4, rows=5, cols=1, steps=1), isa.ErrorCode.TILE_TOO_BIG),
        (isa.Gemm(n=2, m=4, rows=4, cols=1, steps=5, dataflow=isa.Dataflow.WS), isa.ErrorCode.TILE_TOO_BIG),
        (isa.Gemm(n=8, m=8, rows=4, cols=4, steps=33), isa.ErrorCode.BUFFER_OVERFLOW),
        (isa.Gemm(n=8, m=8, rows=4, cols=4, steps=8, acc_addr=30), isa.ErrorCode.BUFFER_OVERFLOW),
        (isa.Gemm(n=8, m=8, rows=4, cols=4, steps=8, acc_addr=28), isa.ErrorCode.NONE),
        (isa.Prune(n=4, m=4, lines=8), isa.ErrorCode.BAD_PATTERN),
        (isa.Prune(n=2, m=8, lines=12), isa.ErrorCode.BAD_PATTERN),
        (isa.Prune(n=2, m=8, lines=2, transpose=True), isa.ErrorCode.NONE),
        (isa.Update(lines=0), isa.ErrorCode.ZERO_DIM),
    ],
)
def test_check_names_the_controller_error(desc, code):
    assert isa.check(SatConfig(), desc) == code


def test_clock_gating_is_a_config_field_read_by_the_accelerator():
    from trainforge.hw.sat.accelerator import SatAccelerator
    from trainforge.sim.harness import to_verilog

    small = dict(preset="tiny", rows=2, cols=2, a_lines=4, b_lines=4, acc_lines=4, mem_bits=64)
    gated = to_verilog(SatAccelerator(config=SatConfig.from_mapping(small)), name="sat")
    plain = to_verilog(SatAccelerator(config=SatConfig.from_mapping({**small, "clock_gating": "false"})), name="sat")
    # the gated design clocks the line streamer from a negative-edge enable latch; the plain one has one clock
    assert "negedge" in gated
    assert "negedge" not in plain
    with pytest.raises(ConfigError, match="clock_gating"):
        SatConfig.from_mapping({"clock_gating": "sometimes"})
