"""cocotb regression of ``nm-prune`` on Verilator, judged by :mod:`trainforge.models.nm`.

Tests: every n:m pattern with m <= 8 on corner-case weights at full rate (checking the
throughput of one group per lane every m cycles), random back-pressure and gaps with the
pattern switching between groups, and a whole FP weight matrix pruned along C_in as the SAT
forward pass needs it.
"""

from __future__ import annotations

import random
import time

import cocotb
import numpy as np
import torch
from cocotb.triggers import ReadOnly, RisingEdge

from trainforge.hw.nm_prune import NMPruneConfig
from trainforge.models.nm import nm_compress
from trainforge.sim.stimulus import corner_case_floats
from trainforge.sim.testbenches.common import load_config, random_seed, record_metrics, start_clock_and_reset
from trainforge.sim.testbenches.nm_prune_transactions import CompressedGroups, NMPruneTransactions


async def stream(dut, txn, feed, *, rng=None, valid_rate=1.0, ready_rate=1.0):
    """Drive ``feed`` (a list of (n, m, word)) into ``dense`` and collect ``sparse`` words.

    Returns the output words, the cycles from the first beat offered to the last result, and
    the wall time those cycles took.
    """
    start = time.perf_counter()
    clk = dut.clk
    d_valid, d_ready, d_payload = dut.dense__valid, dut.dense__ready, dut.dense__payload
    s_valid, s_ready, s_payload = dut.sparse__valid, dut.sparse__ready, dut.sparse__payload
    pattern = dut.pattern
    pattern_words = {(n, m): txn.pattern_word(n, m) for n, m, _ in feed}
    outputs, i, cycles = [], 0, 0
    rounds = _rounds(feed)
    limit = 20 * len(feed) + 100
    # Handles are written only when their value changes: each write costs a VPI call.
    driven_index, driven_pattern, driven_valid, driven_ready = -1, None, None, None
    while len(outputs) < rounds:
        valid = i < len(feed) and (valid_rate >= 1 or rng.random() < valid_rate)
        ready = ready_rate >= 1 or rng.random() < ready_rate
        if i < len(feed) and i != driven_index:
            n, m, word = feed[i]
            d_payload.value, driven_index = word, i
            if (n, m) != driven_pattern:
                pattern.value, driven_pattern = pattern_words[n, m], (n, m)
        if valid != driven_valid:
            d_valid.value, driven_valid = int(valid), valid
        if ready != driven_ready:
            s_ready.value, driven_ready = int(ready), ready
        await ReadOnly()
        if valid and d_ready.value:
            i += 1
        if ready and s_valid.value:
            outputs.append(s_payload.value.to_unsigned())
        await RisingEdge(clk)
        cycles += 1
        assert cycles < limit, f"nm-prune stalled: {len(outputs)} of {rounds} results after {cycles} cycles"
    d_valid.value = 0
    return outputs, cycles, time.perf_counter() - start


def _rounds(feed):
    """Number of output words a feed produces: one per m beats of each pattern run."""
    rounds, run = 0, 0
    for _, m, _ in feed:
        run += 1
        if run == m:
            rounds, run = rounds + 1, 0
    return rounds


def check(name: str, got: CompressedGroups, expected: CompressedGroups) -> None:
    bad = got.mismatches(expected)
    assert not bad, f"{name}: {len(bad)}+ groups differ from the golden model:\n" + "\n".join(bad)


def patterns_up_to_8(config: NMPruneConfig):
    return [(n, m) for m in (2, 4, 8) for n in range(1, m) if config.supports(n, m)]


@cocotb.test()
async def every_pattern_at_full_rate(dut):
    """All n:m with m <= 8 on corner-case weights, back to back, without a bubble."""
    config = load_config(NMPruneConfig)
    txn = NMPruneTransactions(config)
    gen = torch.Generator().manual_seed(random_seed())
    await start_clock_and_reset(dut)
    plan, feed = [], []
    for n, m in patterns_up_to_8(config):
        groups = corner_case_floats(16 * config.lanes * m, config.float_format, gen).reshape(-1, m)
        plan.append((n, m, groups))
        feed += [(n, m, word) for word in txn.beats(groups)]
    outputs, cycles, sim_s = await stream(dut, txn, feed)
    offset = 0
    for n, m, groups in plan:
        rounds = txn.rounds(len(groups))
        check(f"{n}:{m}", txn.decode(outputs[offset : offset + rounds], len(groups)), txn.expected(groups, n, m))
        offset += rounds
    # One weight per lane per cycle; the last group's result leaves one cycle after its last weight.
    assert cycles == len(feed) + 1, f"expected {len(feed) + 1} cycles at full rate, took {cycles}"
    weights = len(feed) * config.lanes
    record_metrics(
        "every_pattern_at_full_rate", cycles=cycles, sim_s=sim_s, weights=weights, weights_per_cycle=weights / cycles
    )


@cocotb.test()
async def backpressure_and_pattern_switching(dut):
    """Random gaps on the input and stalls on the output, the pattern changing between groups."""
    config = load_config(NMPruneConfig)
    txn = NMPruneTransactions(config)
    seed = random_seed()
    gen = torch.Generator().manual_seed(seed ^ 1)
    rng = random.Random(seed)
    await start_clock_and_reset(dut)
    patterns = patterns_up_to_8(config) + [(n, m) for n, m in ((1, 3), (2, 5), (3, 6)) if config.supports(n, m)]
    plan, feed = [], []
    for _ in range(24):
        n, m = rng.choice(patterns)
        groups = corner_case_floats(config.lanes * m, config.float_format, gen).reshape(-1, m)
        plan.append((n, m, groups))
        feed += [(n, m, word) for word in txn.beats(groups)]
    outputs, cycles, sim_s = await stream(dut, txn, feed, rng=rng, valid_rate=0.7, ready_rate=0.6)
    for k, (n, m, groups) in enumerate(plan):
        check(f"round {k} ({n}:{m})", txn.decode(outputs[k : k + 1], len(groups)), txn.expected(groups, n, m))
    record_metrics("backpressure_and_pattern_switching", cycles=cycles, sim_s=sim_s, weights=len(feed) * config.lanes)


@cocotb.test()
async def weight_matrix_along_c_in(dut):
    """A (C_out, C_in) weight matrix pruned 2:4 along C_in and compared with nm_compress on the matrix."""
    config = load_config(NMPruneConfig)
    txn = NMPruneTransactions(config)
    n, m = (2, 4) if config.supports(2, 4) else (1, 2)
    gen = torch.Generator().manual_seed(random_seed())
    c_out, c_in = 8 * config.lanes, 64
    weight = torch.randn(c_out, c_in, generator=gen).to(config.float_format.torch_dtype)
    await start_clock_and_reset(dut)
    groups = weight.reshape(-1, m)  # row-major: groups of m consecutive C_in elements
    outputs, cycles, sim_s = await stream(dut, txn, [(n, m, word) for word in txn.beats(groups)])
    got = txn.decode(outputs, len(groups))
    values, indices = nm_compress(weight, n, m, dim=1)
    expected_values = txn.raw_bits(values).reshape(-1, n)
    assert np.array_equal(got.values[:, :n], expected_values), "kept values differ from nm_compress(W, dim=C_in)"
    assert np.array_equal(got.indices[:, :n], indices.numpy().reshape(-1, n).astype(np.uint64))
    record_metrics("weight_matrix_along_c_in", cycles=cycles, sim_s=sim_s, weights=weight.numel())
