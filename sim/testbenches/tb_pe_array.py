"""cocotb regression of the SAT PE array (:class:`~trainforge.hw.sat.pe_array.PEArray`) on Verilator.

Two kinds of test, for two builds (``tests/sim/test_pe_array_rtl.py`` builds both):

* ``mixed_beats_cycle_exact`` (top ``pe_array``, the array's own ports): random OS and WS tiles,
  dense and every N:M pattern, mixed in one stream, driven cycle by cycle. Phase 1 has random input
  gaps and an always-ready output: every acceptance and presentation cycle must equal
  :func:`~trainforge.hw.sat.pe_array.beat_schedule`. Phase 2 adds random output back-pressure.
  Every row is judged bit for bit against the golden GEMM.
* ``bulk_rate`` and ``bulk_stalls`` (top ``tf_bulk_top``, :mod:`trainforge.sim.bulk`): thousands of
  beats at Verilator speed, bit-exact; the first measures the simulation rate.
"""

from __future__ import annotations

import os
import time

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, ReadOnly

from trainforge.hw.sat.config import SatConfig
from trainforge.hw.sat.pe_array import beat_schedule
from trainforge.sim.bulk import ints_to_records, records_to_ints, run_bulk
from trainforge.sim.testbenches.common import load_config, random_seed, record_metrics, start_clock_and_reset
from trainforge.sim.testbenches.pe_array_beats import PeBeats, random_program

#: Tiles per phase of the cycle-by-cycle test, and of the bulk tests.
TILES = int(os.environ.get("TRAINFORGE_PE_TILES", "60"))
BULK_TILES = int(os.environ.get("TRAINFORGE_PE_BULK_TILES", "1500"))


async def _drive(dut, words: list[int], rows: int, gaps: list[int], ready_pct: int, rng) -> tuple:
    """Offer beat k ``gaps[k]`` cycles after beat k-1 was taken; return payloads, accept and present cycles."""
    out, accept, present = [], [], []
    k, wait, cycle, presented = 0, gaps[0] if words else 0, 0, False
    budget = 50 * (len(words) + rows) + 1000
    while len(out) < rows:
        assert cycle < budget, f"no progress: {len(out)} of {rows} rows after {cycle} cycles"
        await FallingEdge(dut.clk)
        offer = k < len(words) and wait == 0
        ready = ready_pct >= 100 or rng.random() * 100 < ready_pct
        dut.request__valid.value = int(offer)
        if offer:
            dut.request__payload.value = words[k]
        dut.response__ready.value = int(ready)
        await ReadOnly()
        valid = bool(dut.response__valid.value)
        if valid and not presented:
            present.append(cycle)
        presented = valid and not ready
        if valid and ready:
            out.append(int(dut.response__payload.value))
        if offer and dut.request__ready.value:
            accept.append(cycle)
            k += 1
            wait = gaps[k] if k < len(words) else 0
        elif not offer and wait:
            wait -= 1
        cycle += 1
    return out, accept, present, cycle


def _check_rows(codec: PeBeats, tiles, got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.shape == want.shape, f"{what}: {got.shape[0]} rows out, {want.shape[0]} expected"
    bad = np.argwhere(got != want)
    assert not len(bad), f"{what}: {len(bad)} results differ, first row {bad[0][0]} column {bad[0][1]}: " + (
        f"{got[bad[0][0], bad[0][1]]:#010x} != {want[bad[0][0], bad[0][1]]:#010x}"
    )


@cocotb.test()
async def mixed_beats_cycle_exact(dut):
    config = load_config(SatConfig)
    codec = PeBeats(config)
    rng = np.random.default_rng(random_seed() & 0xFFFF_FFFF)
    dut.request__valid.value = 0
    dut.response__ready.value = 0
    await start_clock_and_reset(dut)
    total_beats, total_cycles, sim_s = 0, 0, 0.0
    for phase, ready_pct in (("gaps", 100), ("back_pressure", 50)):
        tiles = random_program(config, rng, TILES, max_os_groups=3)
        words, kinds = codec.beats(tiles, seed=int(rng.integers(1 << 31)))
        want = codec.expected(tiles)
        gaps = [int(g) for g in rng.integers(0, 4, len(words)) * (rng.random(len(words)) < 0.25)]
        start = time.perf_counter()
        out, accept, present, cycles = await _drive(dut, words, len(want), gaps, ready_pct, rng)
        sim_s += time.perf_counter() - start
        _check_rows(codec, tiles, codec.rows(out), want, phase)
        if ready_pct == 100:
            schedule = beat_schedule(config, kinds, gaps=gaps)
            for name, seen, expected in (("accept", accept, schedule.accept), ("present", present, schedule.present)):
                diff = next((i for i, (s, e) in enumerate(zip(seen, expected, strict=True)) if s != e), None)
                assert diff is None, (
                    f"{phase}: {name} cycle of #{diff} is {seen[diff]}, the schedule says {expected[diff]}"
                )
        total_beats += len(words)
        total_cycles += cycles
        # Let the array drain and idle before the next phase (the schedule starts from idle).
        for _ in range(config.rows + config.cols + 4):
            await FallingEdge(dut.clk)
            dut.request__valid.value = 0
            dut.response__ready.value = 1
    record_metrics("mixed_beats_cycle_exact", cycles=total_cycles, sim_s=sim_s, beats=total_beats)


async def _bulk(dut, name: str, valid_pct: int, ready_pct: int, tiles_count: int) -> None:
    config = load_config(SatConfig)
    codec = PeBeats(config)
    rng = np.random.default_rng(random_seed() & 0xFFFF_FFFF)
    tiles = random_program(config, rng, tiles_count, max_os_groups=4, max_ws_rows=8)
    words, _ = codec.beats(tiles, seed=int(rng.integers(1 << 31)))
    want = codec.expected(tiles)
    records = ints_to_records(words, codec.request.width)
    start = time.perf_counter()
    out, cycles = await run_bulk(
        dut,
        records,
        out_bits=codec.response.width,
        expected=len(want),
        valid_pct=valid_pct,
        ready_pct=ready_pct,
        seed=random_seed(),
    )
    sim_s = time.perf_counter() - start
    _check_rows(codec, tiles, codec.rows(records_to_ints(out)), want, name)
    record_metrics(
        name,
        cycles=cycles,
        sim_s=sim_s,
        beats=len(words),
        rows=len(want),
        cycles_per_s=cycles / sim_s,
        pe_cycles_per_s=cycles * config.pe_count / sim_s,
    )


@cocotb.test()
async def bulk_rate(dut):
    await _bulk(dut, "bulk_rate", 100, 100, BULK_TILES)


@cocotb.test()
async def bulk_stalls(dut):
    await _bulk(dut, "bulk_stalls", 60, 50, max(1, BULK_TILES // 5))
