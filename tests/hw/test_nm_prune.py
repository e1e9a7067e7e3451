# amaranth: UnusedElaboratable=no
"""nm-prune in the Amaranth simulator: construction, every wrong argument, and behaviour against the golden."""

from __future__ import annotations

import re

import pytest
import torch
from amaranth.sim import Simulator

from trainforge.errors import ConfigError
from trainforge.hw.fp.formats import float_format
from trainforge.hw.nm_prune import NMPrune, NMPruneConfig
from trainforge.sim.stimulus import corner_case_floats
from trainforge.sim.testbenches.nm_prune_transactions import NMPruneTransactions


def simulate(config, patterns, groups_per_pattern, *, seed=0, stall_every=0, idle_every=0):
    """Stream groups for each (n, m) pattern back to back; return (mismatches, cycles, beats)."""
    dut = NMPrune(config=config)
    txn = NMPruneTransactions(config)
    gen = torch.Generator().manual_seed(seed)
    plan = []  # (n, m, beats, expected)
    for n, m in patterns:
        groups = corner_case_floats(groups_per_pattern * m, config.float_format, gen).reshape(-1, m)
        plan.append((n, m, groups, txn.beats(groups), txn.expected(groups, n, m)))
    results = {}

    async def testbench(ctx):
        cycle = 0
        outputs = []
        total_rounds = sum(txn.rounds(len(g)) for _, _, g, _, _ in plan)
        feed = [(n, m, word) for n, m, _, beats, _ in plan for word in beats]
        i = 0
        while len(outputs) < total_rounds:
            cycle += 1
            valid = i < len(feed) and not (idle_every and cycle % idle_every == 0)
            ready = not (stall_every and cycle % stall_every == 0)
            if i < len(feed):
                n, m, word = feed[i]
                ctx.set(dut.pattern.n, n)
                ctx.set(dut.pattern.m, m)
                ctx.set(dut.dense.payload.as_value(), word)
            ctx.set(dut.dense.valid, valid)
            ctx.set(dut.sparse.ready, ready)
            _, _, in_ready, out_valid, out_word = await ctx.tick().sample(
                dut.dense.ready, dut.sparse.valid, dut.sparse.payload.as_value()
            )
            if valid and in_ready:
                i += 1
            if out_valid and ready:
                outputs.append(out_word)
            assert cycle < 10 * len(feed) + 100, "nm-prune stopped making progress"
        results["cycles"] = cycle
        results["outputs"] = outputs

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    mismatches = []
    offset = 0
    for n, m, groups, _, expected in plan:
        rounds = txn.rounds(len(groups))
        got = txn.decode(results["outputs"][offset : offset + rounds], len(groups))
        offset += rounds
        mismatches += [f"{n}:{m} {line}" for line in got.mismatches(expected)]
    return mismatches, results["cycles"], sum(len(p[3]) for p in plan)


ALL_PATTERNS_UP_TO_8 = [(n, m) for m in (2, 4, 8) for n in range(1, m)]


@pytest.mark.parametrize("fmt", ["fp16", "bf16", "fp32"])
def test_every_pattern_matches_golden(fmt):
    config = NMPruneConfig(lanes=2, m_max=8, fmt=fmt)
    mismatches, _, _ = simulate(config, ALL_PATTERNS_UP_TO_8, groups_per_pattern=6)
    assert mismatches == []


def test_full_rate_one_group_per_lane_every_m_cycles():
    config = NMPruneConfig(lanes=3, m_max=8)
    mismatches, cycles, beats = simulate(config, [(2, 8)], groups_per_pattern=30)
    assert mismatches == []
    # `beats` weights per lane stream in one per cycle; the last group leaves one cycle later.
    assert cycles == beats + 1


def test_backpressure_and_gaps_do_not_change_results():
    config = NMPruneConfig(lanes=2, m_max=4)
    patterns = [(1, 2), (2, 4), (3, 4), (1, 4), (1, 3)]
    mismatches, _, _ = simulate(config, patterns, groups_per_pattern=10, stall_every=3, idle_every=5, seed=7)
    assert mismatches == []


def test_fewer_slots_than_m_minus_one():
    config = NMPruneConfig(lanes=1, m_max=8, n_max=2)
    mismatches, _, _ = simulate(config, [(1, 8), (2, 8), (2, 4), (1, 2)], groups_per_pattern=8)
    assert mismatches == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lanes": 0}, "lanes must be in 1..256, not 0"),
        ({"m_max": 6}, "m_max must be a power of two in 2..32, not 6"),
        ({"m_max": 4, "n_max": 4}, "n_max must be in 1..3"),
        ({"fmt": "fp8"}, "unknown float format 'fp8'"),
    ],
)
def test_invalid_config_is_rejected_with_the_value(kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        NMPruneConfig(**kwargs)


def test_config_from_strings_and_unknown_keys():
    assert NMPruneConfig.from_mapping({"lanes": "8", "fmt": "bf16"}) == NMPruneConfig(lanes=8, fmt="bf16")
    with pytest.raises(ConfigError, match=r"unknown parameter 'lane'.*valid: lanes, m_max, n_max, fmt"):
        NMPruneConfig.from_mapping({"lane": "8"})
    with pytest.raises(ConfigError, match="lanes='many'"):
        NMPruneConfig.from_mapping({"lanes": "many"})


def test_component_requires_config_object():
    with pytest.raises(TypeError, match="config must be an NMPruneConfig"):
        NMPrune(config={"lanes": 4})


def test_signature_widths_follow_config():
    config = NMPruneConfig(lanes=4, m_max=8, n_max=2, fmt="fp32")
    dut = NMPrune(config=config)
    assert len(dut.dense.payload.as_value()) == 4 * 32
    # per lane: 2 values of 32 bits, 2 indices of 3 bits, 8 mask bits
    assert len(dut.sparse.payload.as_value()) == 4 * (2 * 32 + 2 * 3 + 8)
    assert float_format(config.fmt).width == 32
