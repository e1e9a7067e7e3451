# amaranth: UnusedElaboratable=no
"""The SAT PE array (OS | WS) in the Amaranth simulator: golden-exact results, the cycle contract, checks."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Shape

from trainforge.hw.sat.config import SatConfig
from trainforge.hw.sat.gemm_array import GemmArrayConfig
from trainforge.hw.sat.pe_array import (
    BeatKind,
    PEArray,
    beat_schedule,
    latency,
    os_last_gap,
    pe_request_layout,
    pe_response_layout,
    tile_schedule,
)
from trainforge.sim.testbenches.pe_array_beats import (
    OsTile,
    PeBeats,
    WsTile,
    random_bits,
    random_program,
    run_amaranth,
)

CONFIGS = {
    "2x3-m4-fp16": SatConfig(rows=2, cols=3, m_max=4),
    "3x2-m8-bf16": SatConfig(rows=3, cols=2, m_max=8, in_fmt="bf16"),
}


def beats_of(config: SatConfig, tiles) -> list[tuple[int, bool]]:
    """``(kind, last)`` of every beat, written out from the tile list (independently of the codec)."""
    codec = PeBeats(config)
    out = []
    for tile in tiles:
        if isinstance(tile, OsTile):
            steps = codec.steps(tile)
            out += [(BeatKind.OS_STEP, s == steps - 1) for s in range(steps)]
        else:
            out += [(BeatKind.WS_LOAD, b == config.rows - 1) for b in range(config.rows)]
            out += [(BeatKind.WS_ROW, r == len(tile.a) - 1) for r in range(len(tile.a))]
    return out


def run_and_check(config, tiles, *, gaps=None, ready_pct=100, seed=0, inactive_value=None):
    """Run the program; assert every row equals the golden GEMM and, when ready is held, every cycle."""
    codec = PeBeats(config)
    words, kinds = codec.beats(tiles, seed=seed, inactive_value=inactive_value)
    assert kinds == beats_of(config, tiles)
    want = codec.expected(tiles)
    trace = run_amaranth(config, words, len(want), gaps=gaps, ready_pct=ready_pct, seed=seed)
    got = codec.rows(trace.words)
    assert got.shape == want.shape
    bad = np.argwhere(got != want)
    assert not len(bad), f"row {bad[0][0]} col {bad[0][1]}: {got[tuple(bad[0])]:#x} != {want[tuple(bad[0])]:#x}"
    schedule = beat_schedule(config, kinds, gaps=gaps)
    if ready_pct == 100:
        assert trace.accept == schedule.accept
        assert trace.present == schedule.present
    return trace, schedule


@pytest.mark.parametrize("name", list(CONFIGS))
def test_random_mixed_program_is_bit_and_cycle_exact(name):
    config = CONFIGS[name]
    rng = np.random.default_rng(7)
    tiles = random_program(config, rng, 20, max_os_groups=2)
    assert {type(t) for t in tiles} == {OsTile, WsTile}
    _, schedule = run_and_check(config, tiles, seed=1)
    # the closed form agrees with the per-beat schedule
    codec = PeBeats(config)
    timing = tile_schedule(
        config, [("os", codec.steps(t)) if isinstance(t, OsTile) else ("ws", len(t.a)) for t in tiles]
    )
    assert timing[-1].last_present == schedule.present[-1]


@pytest.mark.parametrize(
    "config",
    [SatConfig(rows=1, cols=1, m_max=2), SatConfig(rows=4, cols=1, m_max=2), SatConfig(rows=1, cols=3, m_max=16)],
    ids=["1x1", "4x1", "1x3-m16"],
)
def test_degenerate_shapes(config):
    rng = np.random.default_rng(13)
    tiles = random_program(config, rng, 10, max_os_groups=1)
    count = len(beats_of(config, tiles))
    gaps = [int(g) for g in rng.integers(0, 3, count) * (rng.random(count) < 0.3)]
    run_and_check(config, tiles, gaps=gaps, seed=8)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_gaps_keep_the_cycle_contract(name):
    config = CONFIGS[name]
    rng = np.random.default_rng(11)
    tiles = random_program(config, rng, 10, max_os_groups=2)
    count = len(beats_of(config, tiles))
    gaps = [int(g) for g in rng.integers(0, 4, count) * (rng.random(count) < 0.35)]
    run_and_check(config, tiles, gaps=gaps, seed=2)


def test_back_pressure_loses_and_reorders_nothing():
    config = CONFIGS["3x2-m8-bf16"]
    rng = np.random.default_rng(5)
    tiles = random_program(config, rng, 12, max_os_groups=1)
    count = len(beats_of(config, tiles))
    gaps = [int(g) for g in rng.integers(0, 3, count) * (rng.random(count) < 0.2)]
    run_and_check(config, tiles, gaps=gaps, ready_pct=35, seed=3)


def test_ws_loads_and_dataflow_switches_never_wait():
    """WS tiles back to back and OS <-> WS switches: one beat accepted every cycle."""
    config = SatConfig(rows=3, cols=2, m_max=4)
    rng = np.random.default_rng(3)
    bits = lambda shape: random_bits(rng, shape, config.in_fmt)  # noqa: E731
    psum = lambda r: random_bits(rng, (r, config.cols), "fp32", 20).astype(np.uint32)  # noqa: E731
    tiles = [
        WsTile(bits((1, 3)), bits((3, 2)), psum(1)),  # one row: the next load overlaps it
        WsTile(bits((2, 4)), bits((4, 2)), psum(2), (2, 4)),  # 2 active rows, 1 inactive
        OsTile(bits((3, 8)), bits((8, 2)), (1, 4)),
        WsTile(bits((3, 1)), bits((1, 2)), psum(3)),  # 1 active row
        OsTile(bits((3, 2)), bits((2, 2))),
        OsTile(bits((3, 2)), bits((2, 2))),  # OS back to back, short: its last step waits for the drain
    ]
    trace, _ = run_and_check(config, tiles, seed=4)
    count = len(trace.accept)
    last_os_two = count - 3  # index of the first 2-step OS tile's last beat
    assert trace.accept[: last_os_two + 1] == list(range(last_os_two + 1))
    assert trace.accept[-2] == trace.accept[last_os_two] + 1
    assert trace.accept[-1] == trace.accept[last_os_two] + os_last_gap(config)


def test_short_os_tiles_wait_for_the_drain():
    config = SatConfig(rows=2, cols=3, m_max=2)
    rng = np.random.default_rng(9)
    tiles = [OsTile(random_bits(rng, (2, 1), "fp16"), random_bits(rng, (1, 3), "fp16")) for _ in range(4)]
    trace, _ = run_and_check(config, tiles, seed=5)
    gap = os_last_gap(config)
    assert trace.accept == [0, gap, 2 * gap, 3 * gap]
    lat = latency(config)
    assert trace.present == [t + lat + i for t in trace.accept for i in range(config.rows)]


def test_inactive_rows_pass_the_partial_sum_bit_for_bit():
    """-0 + (+1 * -0) = -0 in the one active row; adding an inactive row's +0 product would give +0."""
    config = SatConfig(rows=3, cols=2, m_max=2)
    one, neg_zero = 0x3C00, 0x8000
    a = np.full((2, 1), one, np.uint64)
    b = np.full((1, 2), neg_zero, np.uint64)
    psum = np.array([[0x8000_0000, 0x8000_0000], [0x0000_0001, 0x8000_0000]], np.uint32)
    trace, _ = run_and_check(config, [WsTile(a, b, psum)], seed=6, inactive_value=0)
    rows = PeBeats(config).rows(trace.words)
    assert rows[0].tolist() == [0x8000_0000, 0x8000_0000]
    assert rows[1][0] == 0x0000_0001  # a subnormal partial sum survives -0 added once


def test_beat_schedule_closed_form_agrees():
    config = SatConfig(rows=4, cols=3, m_max=8)
    rng = np.random.default_rng(0)
    for _ in range(200):
        tiles = [
            ("os" if rng.random() < 0.5 else "ws", int(rng.integers(1, 12))) for _ in range(int(rng.integers(1, 9)))
        ]
        beats = []
        for kind, count in tiles:
            if kind == "os":
                beats += [(BeatKind.OS_STEP, s == count - 1) for s in range(count)]
            else:
                beats += [(BeatKind.WS_LOAD, b == config.rows - 1) for b in range(config.rows)]
                beats += [(BeatKind.WS_ROW, r == count - 1) for r in range(count)]
        schedule = beat_schedule(config, beats)
        timing = tile_schedule(config, tiles)
        ends = np.cumsum([count if kind == "os" else config.rows + count for kind, count in tiles])
        assert [t.last_accept for t in timing] == [schedule.accept[e - 1] for e in ends]
        assert [t.first_accept for t in timing] == [0] + [schedule.accept[e] for e in ends[:-1]]
        rows_out = np.cumsum([config.rows if kind == "os" else count for kind, count in tiles])
        assert [t.last_present for t in timing] == [schedule.present[e - 1] for e in rows_out]
        assert [t.first_present for t in timing] == [schedule.present[0]] + [schedule.present[e] for e in rows_out[:-1]]


def test_layouts_match_the_feeder_contract():
    config = SatConfig(rows=3, cols=2, m_max=8, in_fmt="bf16")
    layout = pe_request_layout(config)
    assert [name for name, _ in layout] == ["kind", "a", "w", "psum", "active", "last"]
    assert Shape.cast(layout["kind"].shape).width == 2
    assert Shape.cast(layout["a"].shape).width == 3 * 8 * 16
    assert [name for name, _ in layout["w"].shape.elem_shape] == ["value", "index"]
    assert Shape.cast(layout["w"].shape).width == 2 * (16 + 3)
    assert Shape.cast(layout["psum"].shape).width == 64
    assert Shape.cast(pe_response_layout(config)).width == 64
    assert [k.value for k in BeatKind] == [0, 1, 2]


def test_config_must_be_a_sat_config():
    with pytest.raises(TypeError, match="config must be a SatConfig"):
        PEArray(config=GemmArrayConfig())


def test_processing_elements_are_one_leaf_kind_for_hierarchical_synthesis():
    from trainforge.hw.fp.leaves import blackbox_leaves
    from trainforge.sim.harness import to_verilog

    config = SatConfig(rows=3, cols=5, m_max=8)
    before = to_verilog(PEArray(config=config), name="pe_array")
    with blackbox_leaves() as collector:
        boxed = to_verilog(PEArray(config=config), name="pe_array")
    assert to_verilog(PEArray(config=config), name="pe_array") == before  # the hook changes nothing outside
    # every PE is the same leaf (the row-dependent `take` is computed outside), the MACs are inside it
    assert [(kind.kind, kind.count) for kind in collector.kinds.values()] == [("sat_pe", 15)]
    (name,) = collector.counts()
    assert boxed.count(f"\n  {name} ") == 15
