# amaranth: UnusedElaboratable=no
"""The SAT prune engine in the Amaranth simulator, judged by nm_compress / nm_mask on torch tensors.

Every n:m with m | m_max in both modes (BP copy along the lines, FF copy through the transposer,
groups spanning panels), corner-case weights (ties, zeros, subnormals, inf, NaN), exact cycles
against ``prune_cycles``, back-pressure on each output, malformed ops that must still end.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from amaranth.hdl import Shape
from amaranth.sim import Simulator

from trainforge.hw.fp.formats import float_format
from trainforge.hw.sat.config import SatConfig
from trainforge.hw.sat.prune_engine import (
    PruneEngine,
    prune_bline_layout,
    prune_cycles,
    prune_mask_layout,
    prune_request_layout,
)
from trainforge.models.nm import nm_compress, nm_mask
from trainforge.sim.packing import PayloadCodec
from trainforge.sim.stimulus import corner_case_floats


@dataclass
class Op:
    """One PRUNE op as the engine sees it: pattern, mode and the w-lines in stream order."""

    n: int
    m: int
    transpose: bool
    words: np.ndarray  # (lines, C) uint16 bit patterns
    last_at: int | None = None  # mark `last` on this line instead of the final one (malformed ops)


@dataclass
class Outcome:
    bl_values: np.ndarray  # (b-lines, C)
    bl_indices: np.ndarray
    masks: np.ndarray  # (mask-lines, C) bool
    cycles: int  # first accepted w-line to last output transfer, inclusive
    accepted: list[int]  # cycle of every accepted w-line


def config_of(cols: int, m_max: int, fmt: str = "fp16") -> SatConfig:
    return SatConfig.preset_named("tiny").replace(rows=2, cols=cols, m_max=m_max, in_fmt=fmt)


def patterns(config: SatConfig) -> list[tuple[int, int]]:
    return [(n, m) for m in (2, 4, 8, 16) for n in range(1, m) if config.supports(n, m)]


def random_op(config: SatConfig, n: int, m: int, transpose: bool, gen: torch.Generator, lines: int) -> Op:
    """``lines`` w-lines (panels of C w-lines when transposed) of corner-case weights."""
    count = lines * config.cols if transpose else lines
    weights = corner_case_floats(count * config.cols, float_format(config.in_fmt), gen)
    bits = weights.view(torch.int16).numpy().view(np.uint16).reshape(count, config.cols)
    return Op(n, m, transpose, bits)


def as_tensor(bits: np.ndarray, fmt: str) -> torch.Tensor:
    return torch.from_numpy(bits.astype(np.uint16).view(np.int16)).view(float_format(fmt).torch_dtype)


def golden(op: Op, config: SatConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected b-line values and indices, and mask-lines, from the reference on the tensor itself."""
    c = config.cols
    w = as_tensor(op.words, config.in_fmt)
    if not op.transpose:  # W is (lines, C); groups along the lines
        values, indices = nm_compress(w, op.n, op.m, dim=0)
        keep = nm_mask(w, op.n, op.m, dim=0)
    else:  # the band: C rows x (panels * C) columns; groups along the columns
        panels = w.shape[0] // c
        band = w.reshape(panels, c, c).permute(1, 0, 2).reshape(c, panels * c)
        values, indices = nm_compress(band, op.n, op.m, dim=1)
        values, indices = values.T, indices.T  # b-line s is column s of the compressed band
        mask = nm_mask(band, op.n, op.m, dim=1)
        keep = mask.reshape(c, panels, c).permute(1, 0, 2).reshape(panels * c, c)  # back to the panel layout
    raw = values.contiguous().view(torch.int16).numpy().view(np.uint16)
    return raw, indices.numpy().astype(np.uint8), keep.numpy()


def simulate(config: SatConfig, ops: list[Op], *, seed=0, valid_rate=1.0, bl_rate=1.0, mk_rate=1.0) -> list[Outcome]:
    """Run ``ops`` back to back (params switch right after an op's last transfer); one Outcome per op."""
    dut = PruneEngine(config=config)
    c = config.cols
    req = PayloadCodec(prune_request_layout(config))
    bl = PayloadCodec(prune_bline_layout(config))
    mk = PayloadCodec(prune_mask_layout(config))
    outcomes: list[Outcome] = []

    async def bench(ctx):
        rng = random.Random(seed)
        cycle = 0
        for op in ops:
            lines = len(op.words)
            last = np.zeros(lines, np.uint64)
            last[lines - 1 if op.last_at is None else op.last_at] = 1
            count = lines if op.last_at is None else op.last_at + 1
            fields = {("line", j): op.words[:, j] for j in range(c)}
            words = req.pack({**fields, ("last",): last}, lines)
            ctx.set(dut.params.n, op.n)
            ctx.set(dut.params.m, op.m)
            ctx.set(dut.params.transpose, op.transpose)
            i, valid, accepted, bwords, mwords = 0, False, [], [], []
            bl_end = mk_end = None
            limit = cycle + 20 * count + 200
            while bl_end is None or mk_end is None:
                if not valid:  # a presented line stays valid until taken
                    valid = i < count and rng.random() < valid_rate
                b_ready = rng.random() < bl_rate
                m_ready = rng.random() < mk_rate
                if i < count:
                    ctx.set(dut.request.payload.as_value(), words[i])
                ctx.set(dut.request.valid, valid)
                ctx.set(dut.blines.ready, b_ready)
                ctx.set(dut.masks.ready, m_ready)
                *_, rq_ready, b_valid, b_word, m_valid, m_word = await ctx.tick().sample(
                    dut.request.ready,
                    dut.blines.valid,
                    dut.blines.payload.as_value(),
                    dut.masks.valid,
                    dut.masks.payload.as_value(),
                )
                if valid and rq_ready:
                    accepted.append(cycle)
                    i, valid = i + 1, False
                if b_valid and b_ready:
                    assert bl_end is None, "a b-line after the op's last one"
                    bwords.append(b_word)
                    if b_word >> (bl.width - 1):
                        bl_end = cycle
                if m_valid and m_ready:
                    assert mk_end is None, "a mask-line after the op's last one"
                    mwords.append(m_word)
                    if m_word >> (mk.width - 1):
                        mk_end = cycle
                cycle += 1
                assert cycle < limit, f"op {len(outcomes)} stopped making progress"
            assert i == count, "the op ended before all its w-lines were taken"
            ctx.set(dut.request.valid, 0)
            values = np.stack(bl.unpack(bwords, [("w", j, "value") for j in range(c)]), axis=1).astype(np.uint16)
            indices = np.stack(bl.unpack(bwords, [("w", j, "index") for j in range(c)]), axis=1).astype(np.uint8)
            (keep,) = mk.unpack(mwords, [("keep",)])
            masks = ((keep[:, None] >> np.arange(c, dtype=np.uint64)) & np.uint64(1)).astype(bool)
            end = max(bl_end, mk_end)
            outcomes.append(Outcome(values, indices, masks, end - accepted[0] + 1, accepted))
        for _ in range(4):  # nothing more comes out once the last op is done
            ctx.set(dut.blines.ready, 1)
            ctx.set(dut.masks.ready, 1)
            *_, b_valid, m_valid = await ctx.tick().sample(dut.blines.valid, dut.masks.valid)
            assert not b_valid, "a b-line after the last op"
            assert not m_valid, "a mask-line after the last op"

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return outcomes


def assert_matches(config: SatConfig, op: Op, got: Outcome, what: str) -> None:
    values, indices, keep = golden(op, config)
    assert got.bl_values.shape == values.shape, f"{what}: {len(got.bl_values)} b-lines, expected {len(values)}"
    assert np.array_equal(got.bl_values, values), f"{what}: kept values differ from nm_compress"
    assert np.array_equal(got.bl_indices, indices), f"{what}: indices differ from nm_compress"
    assert got.masks.shape == keep.shape, f"{what}: {len(got.masks)} mask-lines, expected {len(keep)}"
    assert np.array_equal(got.masks, keep), f"{what}: keep masks differ from nm_mask"


def panels_for(config: SatConfig, m: int) -> int:
    """Fewest panels (at least 2) whose columns are whole groups: groups straddle panel edges."""
    return max(2, math.lcm(config.cols, m) // config.cols)


@pytest.mark.parametrize(("cols", "m_max", "fmt"), [(2, 8, "fp16"), (3, 4, "bf16"), (4, 8, "fp16")])
def test_every_pattern_both_modes_at_full_rate_with_exact_cycles(cols, m_max, fmt):
    config = config_of(cols, m_max, fmt)
    gen = torch.Generator().manual_seed(cols * 100 + m_max)
    ops = []
    for n, m in patterns(config):
        ops.append(random_op(config, n, m, False, gen, lines=2 * m))
        ops.append(random_op(config, n, m, True, gen, lines=panels_for(config, m)))
    for op, got in zip(ops, simulate(config, ops), strict=True):
        what = f"{op.n}:{op.m} transpose={int(op.transpose)}"
        assert_matches(config, op, got, what)
        lines = len(op.words) // cols if op.transpose else len(op.words)
        assert got.cycles == prune_cycles(config, op.n, op.m, lines, op.transpose), what
        # one w-line per cycle: the request never stalls inside an op
        assert got.accepted == list(range(got.accepted[0], got.accepted[0] + len(op.words))), what


def test_long_ff_op_keeps_full_rate_and_groups_span_panels():
    config = config_of(3, 8)  # C = 3, m = 8: groups straddle panel edges at changing offsets
    gen = torch.Generator().manual_seed(11)
    ops = [random_op(config, n, 8, True, gen, lines=16) for n in (1, 3)] + [random_op(config, 1, 2, True, gen, 6)]
    for op, got in zip(ops, simulate(config, ops), strict=True):
        assert_matches(config, op, got, f"{op.n}:{op.m}")
        assert got.cycles == prune_cycles(config, op.n, op.m, len(op.words) // 3, True)
        assert got.accepted[-1] - got.accepted[0] == len(op.words) - 1


def test_all_ties_zeros_and_non_finite_magnitudes():
    """All-zero groups (+0 and -0 tie: the lowest indices stay), equal magnitudes of both signs, inf and NaN."""
    config = config_of(4, 8)
    specials = np.array([0x0000, 0x8000, 0x3C00, 0xBC00, 0x7C00, 0xFC00, 0x7E00, 0x7C01, 0x0001], np.uint16)
    rng = np.random.default_rng(4)
    zeros = np.where(rng.random((16, 4)) < 0.5, 0x0000, 0x8000).astype(np.uint16)
    ops = [
        Op(2, 4, False, zeros),
        Op(3, 8, True, zeros),
        Op(1, 2, False, specials[rng.integers(0, 9, (16, 4))]),
        Op(2, 8, True, specials[rng.integers(0, 9, (8, 4))]),
        Op(4, 8, True, specials[rng.integers(2, 4, (8, 4))]),  # only +1 and -1: every group a tie
    ]
    for op, got in zip(ops, simulate(config, ops), strict=True):
        assert_matches(config, op, got, f"{op.n}:{op.m} transpose={int(op.transpose)}")


@pytest.mark.parametrize(
    ("cols", "m_max", "pattern_list"),
    [(1, 4, [(1, 4), (1, 2)]), (5, 16, [(3, 16), (5, 8), (1, 2)])],
    ids=["one-lane", "five-lanes-m16"],
)
def test_other_widths_at_full_rate(cols, m_max, pattern_list):
    config = config_of(cols, m_max)
    gen = torch.Generator().manual_seed(cols)
    ops = [
        random_op(config, n, m, transpose, gen, lines=panels_for(config, m) if transpose else 2 * m)
        for n, m in pattern_list
        for transpose in (True, False)
    ]
    for op, got in zip(ops, simulate(config, ops), strict=True):
        assert_matches(config, op, got, f"{op.n}:{op.m} transpose={int(op.transpose)}")
        lines = len(op.words) // cols if op.transpose else len(op.words)
        assert got.cycles == prune_cycles(config, op.n, op.m, lines, op.transpose)


@pytest.mark.parametrize(
    ("valid_rate", "bl_rate", "mk_rate"),
    [(1.0, 0.3, 1.0), (1.0, 1.0, 0.3), (0.6, 0.5, 0.6)],
    ids=["blines-stalled", "masks-stalled", "gaps-and-both-stalled"],
)
def test_backpressure_on_each_output_loses_nothing(valid_rate, bl_rate, mk_rate):
    config = config_of(3, 8)
    gen = torch.Generator().manual_seed(3)
    ops = []
    for n, m in ((2, 4), (1, 8), (4, 8), (1, 2)):
        ops.append(random_op(config, n, m, True, gen, lines=panels_for(config, m)))
        ops.append(random_op(config, n, m, False, gen, lines=2 * m))
    got = simulate(config, ops, seed=5, valid_rate=valid_rate, bl_rate=bl_rate, mk_rate=mk_rate)
    for op, outcome in zip(ops, got, strict=True):
        assert_matches(config, op, outcome, f"{op.n}:{op.m} transpose={int(op.transpose)}")


def test_malformed_ops_still_end_and_the_next_op_is_exact():
    config = config_of(2, 4)
    gen = torch.Generator().manual_seed(9)
    good = random_op(config, 2, 4, True, gen, lines=2)
    ops = [
        random_op(config, 0, 4, False, gen, lines=4),  # n = 0
        random_op(config, 4, 4, True, gen, lines=2),  # n = m
        random_op(config, 1, 8, False, gen, lines=8),  # m > m_max
        random_op(config, 3, 31, True, gen, lines=2),
        random_op(config, 1, 4, False, gen, lines=6),  # lines not a multiple of m
        random_op(config, 1, 4, True, gen, lines=3),  # a reduction of 6 columns, m = 4
        random_op(config, 1, 2, True, gen, lines=2),
        good,
    ]
    ops[6].last_at = 2  # `last` in the middle of a panel
    got = simulate(config, ops)
    assert_matches(config, good, got[-1], "the op after the malformed ones")
    assert got[-1].cycles == prune_cycles(config, 2, 4, 2, True)


def test_signature_follows_the_config():
    config = config_of(3, 8, "bf16")
    dut = PruneEngine(config=config)
    assert dut.config is config
    assert Shape.cast(dut.request.payload.shape()).width == 3 * 16 + 1
    assert Shape.cast(dut.blines.payload.shape()).width == 3 * (16 + 3) + 1
    assert Shape.cast(dut.masks.payload.shape()).width == 3 + 1
    assert dut.accumulator_bits == 3 + 8 - 1
    # the b-line payload's w field is exactly the b-line memory format
    assert Shape.cast(dut.blines.payload.shape()["w"].shape).width == config.b_line_bits


def test_config_must_be_a_sat_config():
    with pytest.raises(TypeError, match="config must be a SatConfig"):
        PruneEngine(config={"cols": 4})
    with pytest.raises(TypeError, match="config must be a SatConfig"):
        prune_cycles(None, 2, 4, 8, False)


@pytest.mark.parametrize(
    ("n", "m", "lines", "transpose", "message"),
    [
        (4, 4, 8, False, "not a PRUNE pattern"),
        (2, 16, 16, False, "not a PRUNE pattern"),
        (1, 3, 6, False, "not a PRUNE pattern"),
        (2, 4, 0, False, "lines must be a positive integer"),
        (2, 8, 12, False, "not a multiple of m=8"),
        (2, 8, 1, True, "not a multiple of m=8"),
    ],
)
def test_prune_cycles_rejects_what_isa_check_rejects(n, m, lines, transpose, message):
    with pytest.raises(ValueError, match=message):
        prune_cycles(config_of(4, 8), n, m, lines, transpose)


def test_prune_cycles_overhead_does_not_grow_with_the_op():
    config = SatConfig.preset_named("tiny")  # C = 4, m_max = 8
    for n, m in patterns(config):
        assert prune_cycles(config, n, m, 64, False) - 64 == m
        short, long = (prune_cycles(config, n, m, p, True) - 4 * p for p in (8, 64))
        assert short == long
