"""The SAT cycle model against small programs worked out by hand from the RTL and the bench contract.

Every expected number below is derived in the comments from the accelerator's FSMs
(hw/sat/accelerator.py, hw/sat/streamer.py), the PE array's cycle contract (hw/sat/pe_array.py:
latency R + C + 1, OS last-step gap R + C - 1) and the bench's DRAM rule (one request per
mem_interval cycles, data at accept + max(mem_latency, 1), cycles = first idle cycle + 2), not from
the model. The tiny preset: R = C = 4, m_max = 8, mem_bits = 128, so a_words = 4, b_words = 1,
acc_words = w_words = mask_words = 1; mem_latency 8, mem_interval 1.
"""

from __future__ import annotations

from fractions import Fraction

import pytest

from trainforge.dataflow.sat_timing import gemm_tile_cycles, program_timing, tile_cost
from trainforge.dataflow.validate import compare, make_cases
from trainforge.errors import UsageError
from trainforge.hw.sat import isa
from trainforge.hw.sat.config import SatConfig

TINY = SatConfig.preset_named("tiny")
OS_TILE = isa.Gemm(n=8, m=8, rows=4, cols=4, steps=2)


def test_one_os_tile_by_hand():
    # cmd accepted at 0; DMA IDLE at 1 sees it, LOAD_A at 2, A (1 a-line = 4 words) accepted 3..6,
    # LOAD_B at 7, B (2 b-lines) 8..9, IDLE at 10 -> STORE_WAIT at 11 (nothing else to load).
    # Responses: A at 11..14, B at 16, 17 -> loaded counted from 18; feeder IDLE takes it at 18,
    # stage 0 steps at 19, 20, beats accepted 20, 21 (last). Rows at 21 + 9 + i = 30..33, written
    # 31..34, computed counted from 35. STORE_WAIT proceeds at 35, STORE at 36, 4 words 37..40,
    # store pointer at 41 = first idle cycle, so cycles = 43.
    t = program_timing(TINY, [OS_TILE])
    assert t.cycles == 43
    (d,) = t.descriptors
    assert (d.accepted, d.load_start, d.load_end) == (0, 3, 17)
    assert (d.compute_start, d.compute_end) == (19, 34)
    assert (d.store_start, d.store_end, d.done) == (37, 40, 40)
    c = t.counters
    assert c["busy"] == 41 - 1  # dispatched visible at 1 .. store pointer at 41
    assert c["gemm_other"] == 35 - 19  # feeding from 19, computed at 35
    assert c["stall_operands"] == 18 - 1  # dispatched at 1, feeder starts at 18
    assert (c["stall_accumulator"], c["stall_memory"], c["ff"], c["prune"]) == (0, 0, 0, 0)
    assert c["macs_issued"] == 16 * 2
    assert c["macs_useful"] == 4 * 4 * 2


def test_one_os_tile_with_a_request_every_second_cycle():
    # I = 2: A accepted 3, 5, 7, 9 (3 stall cycles), LOAD_B at 10, B 11, 13 (1 stall), data at
    # 11..17 and 19, 21 -> loaded from 22; steps 24, 25; rows 34..37; computed from 39; STORE at 40,
    # words offered from 41: 41, 43, 45, 47 (3 stalls); store pointer at 48 -> cycles 50.
    t = program_timing(TINY.replace(mem_interval=2), [OS_TILE])
    assert t.cycles == 50
    assert t.counters["stall_memory"] == 3 + 1 + 3
    assert t.descriptors[0].store_end == 47


def test_two_os_tiles_overlap_load_and_compute():
    # Tile 1 (acc lines 4..7, other halves) is accepted at 1; after L0 the DMA is IDLE at 10 and loads
    # it: LOAD_A 11, A 12..15, LOAD_B 16, B 17..18; data until 26 -> loaded from 27. Feeder: tile 0's
    # last stage-0 step at 20, IDLE from 21, takes tile 1 at 27; steps 28, 29 -> beats 29, 30 (the OS
    # gap after 21 is 28, no wait); rows 39..42; computed from 44. DMA: S0 as alone (37..40), IDLE at
    # 41, STORE_WAIT 42, proceeds at 44, words 46..49, store pointer at 50 -> cycles 52.
    second = isa.Gemm(n=8, m=8, rows=4, cols=4, steps=2, acc_addr=4)
    t = program_timing(TINY, [OS_TILE, second])
    assert t.cycles == 52
    d1 = t.descriptors[1]
    assert (d1.accepted, d1.load_start, d1.load_end, d1.compute_start) == (1, 12, 26, 28)
    assert (d1.store_start, d1.store_end) == (46, 49)
    assert t.counters["gemm_other"] == (35 - 19) + (44 - 35)
    assert t.counters["stall_operands"] == 17 + (27 - 21)
    assert t.counters["busy"] == 50 - 1


def test_chained_ws_tiles_wait_for_the_store():
    # WS, 2 A rows, 4 steps: A = 2 a-lines (8 words), B = 4 words. L0: A 3..10, B 12..15 -> loaded 24;
    # L1: A 18..25, B 27..30 -> loaded 39. Tile 0: feeder at 24, 4 load beats 26..29, rows 30, 31,
    # last row presented 31 + 9 = 40 -> computed 42; S0 words 44, 45 -> store pointer 46. Tile 1
    # overlaps tile 0's acc-lines: the feeder (IDLE from 31) waits for loaded (39: operands stall
    # 31..38) then for computed and stored (46: accumulator stall 39..45); rows 52, 53 -> computed 64;
    # S1 words 66, 67 -> store pointer 68 -> cycles 70.
    ws = dict(n=8, m=8, rows=2, cols=4, steps=4, dataflow=isa.Dataflow.WS)
    t = program_timing(TINY, [isa.Gemm(**ws), isa.Gemm(**ws, accumulate=True)])
    assert t.cycles == 70
    assert t.counters["stall_operands"] == (24 - 1) + (39 - 31)
    assert t.counters["stall_accumulator"] == 46 - 39
    assert t.counters["macs_issued"] == 16 * (2 + 2)
    assert t.descriptors[1].compute_start == 47


def test_prune_bp_by_hand():
    # PRUNE 2:4 of 8 w-lines (one chunk): CHUNK at 1, reads 2..9, line k arrives at 10 + k and enters
    # the engine at 11 + k; the last group's 4th mask-line leaves at 18 + 4 = 22; WAIT sees the FIFO
    # levels at 23, WRITE from 24: 4 b-lines + 8 mask-lines = 12 words 24..35; IDLE at 36 -> cycles 38.
    t = program_timing(TINY, [isa.Prune(n=2, m=4, lines=8, write_mask=True)])
    assert t.cycles == 38
    d = t.descriptors[0]
    assert (d.load_start, d.load_end, d.compute_end, d.store_start, d.store_end) == (2, 9, 22, 24, 35)
    assert t.counters["prune"] == t.counters["busy"] == 36 - 1
    # Without masks the mask phase still takes one cycle per line, with no request.
    assert program_timing(TINY, [isa.Prune(n=2, m=4, lines=8)]).cycles == 38 - 8 + 8


def test_update_by_hand():
    # UPDATE of 3 lines, no mask, latency 0 (acts as 1): 9 read words 2..10, last data at 11, engine
    # takes it at 12, result at 17, WRITE from 19: 3 x (w', v', w16) = 9 words 19..27; IDLE at 28.
    t = program_timing(TINY.replace(mem_latency=0), [isa.Update(lines=3)])
    assert t.cycles == 30
    assert t.counters["update"] == 27


def test_gemm_after_prune_waits_for_the_streamer():
    # The GEMM is presented at 1 and accepted when the streamer is IDLE again (36): everything of
    # the lone tile shifts by 36 cycles.
    t = program_timing(TINY, [isa.Prune(n=2, m=4, lines=8, write_mask=True), OS_TILE])
    assert t.descriptors[1].accepted == 36
    assert t.cycles == 36 + 43


def test_tile_cost_closed_forms_and_convention():
    cost = tile_cost(TINY, OS_TILE)
    # compute: max(steps + 1, R + C - 1); memory: per tile 10 words, gaps 3 (IDLE, LOAD_A) before A,
    # 2 (LOAD_B) before B, 4 (IDLE, STORE_WAIT, STORE) before the store: 3+1+1+1 + 2+1 + 4+1+1+1.
    assert (cost.compute, cost.memory) == (7, 16)
    assert cost.single == 43
    assert cost.steady >= max(cost.compute, cost.memory)
    for n in range(cost.linear_from, cost.linear_from + 2 * cost.period + 1):
        copies = [isa.Gemm(n=8, m=8, rows=4, cols=4, steps=2, acc_addr=4 * (k % 2)) for k in range(n)]
        assert program_timing(TINY, copies).cycles == cost.cycles(n)
    assert gemm_tile_cycles(TINY, OS_TILE) == cost.steady
    assert isinstance(cost.overhead, Fraction)
    # A long WS tile that reuses its operands is compute bound: R + rows + 1 per tile.
    ws = isa.Gemm(n=8, m=8, rows=16, cols=4, steps=4, dataflow=isa.Dataflow.WS, load_a=False, load_b=False)
    assert tile_cost(TINY, ws).compute == 4 + 16 + 1


def test_invalid_programs_are_usage_errors():
    with pytest.raises(UsageError, match="TILE_TOO_BIG"):
        program_timing(TINY, [isa.Gemm(n=8, m=8, rows=5, cols=4, steps=2)])
    with pytest.raises(UsageError, match="at least one"):
        program_timing(TINY, [])
    with pytest.raises(UsageError, match="chained=True"):
        tile_cost(TINY, isa.Gemm(n=8, m=8, rows=20, cols=4, steps=2, dataflow=isa.Dataflow.WS))


def test_compare_reports_errors_per_case():
    # Measurements made up from the hand-worked lone tile: one exact, one off by 2 with a bad counter.
    counters = program_timing(TINY, [OS_TILE]).counters
    row = {
        "test": "validate_case",
        "index": 0,
        "kind": "gemm",
        "shape": "4x2x4",
        "pattern": "8:8",
        "dataflow": "OS",
        "mem_latency": 8,
        "mem_interval": 1,
        "program": [f"{isa.encode(TINY, OS_TILE):x}"],
        "cycles": 43,
        "accepted": [0],
        "counters": {**counters, "busy": 40},
    }
    off = {**row, "index": 1, "cycles": 45, "counters": {**counters, "busy": 41}}
    report = compare(TINY, [row, off, {"test": "other"}])
    assert report.cases == 2
    assert report.max_cycle_error == 2
    assert report.counters_exact == 1
    assert report.rows[1].counter_errors == {"busy": [41, 40]}
    assert report.mean_abs_pct_error == pytest.approx(100 * 2 / 45 / 2)


def test_cases_are_valid_and_deterministic():
    cases = make_cases(TINY, 9, seed=4)
    assert [c.kind for c in cases][:6] == ["gemm", "gemm", "gemm", "gemm", "prune", "update"]
    assert cases[0].config == TINY
    for case in cases:
        assert all(isa.check(case.config, d) == isa.ErrorCode.NONE for d in case.descriptors)
        program_timing(case.config, case.descriptors)
    again = make_cases(TINY, 9, seed=4)
    assert [c.descriptors for c in cases] == [c.descriptors for c in again]
