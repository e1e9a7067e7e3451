"""cocotb side of tests/sim/test_sat_bench.py: whole programs on the memcopy mock through the SAT bench.

The mock (defined in the pytest module) copies ``words`` words from ``src`` to ``dst``: it accepts a
descriptor in its idle state (cycle ``a``), presents reads from ``a + 1`` back to back, takes the
responses (with ``hold``, not before the cycle after its last read was accepted), presents the writes
back to back from the cycle after the last response, and is idle again (ready for the next descriptor)
the cycle after its last write was accepted. :func:`schedule` applies the DRAM model's documented
contract to that behaviour, cycle by cycle, independently of the C++ model.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import cocotb
import numpy as np

from trainforge.hw.sat.config import SatConfig
from trainforge.sim.sat_bench import OUT_ENV, read_trace, run_program
from trainforge.sim.testbenches.common import load_config, random_seed

DEPTH = 16


@dataclasses.dataclass(frozen=True)
class Copy:
    src: int
    dst: int
    words: int
    hold: bool = False

    def encode(self) -> int:
        return self.src | self.dst << 32 | self.words << 64 | int(self.hold) << 80


@dataclasses.dataclass
class Schedule:
    """What the run must report, derived from the DRAM contract and the mock's behaviour."""

    accepted: list[int]
    cycles: int
    trace: list[tuple[int, int, int]]
    busy: int = 0
    stalls: int = 0
    error: bool = False


def schedule(program: list[Copy], latency: int, interval: int) -> Schedule:
    """Cycle of every handshake: requests at most one per ``interval``, responses ``latency`` later."""
    latency = max(1, latency)
    out = Schedule(accepted=[], cycles=0, trace=[])
    free = 0  # first cycle the mock is idle and takes the next descriptor
    last = None  # cycle of the last accepted memory request

    def requests(first: int, addrs: list[int], write: int) -> list[int]:
        nonlocal last
        cycles, t = [], first
        for addr in addrs:
            at = t if last is None else max(t, last + interval)
            out.stalls += at - t  # valid and not ready
            out.trace.append((at, addr, write))
            cycles.append(at)
            last, t = at, at + 1
        return cycles

    for copy in program:
        a = free
        out.accepted.append(a)
        if copy.words == 0:  # error from the next cycle; the run stops at its end
            out.error, out.cycles = True, a + 2
            return out
        reads = requests(a + 1, [copy.src + k for k in range(copy.words)], 0)
        ready_from = reads[-1] + 1 if copy.hold else 0
        taken = -1
        for r in reads:  # in order, at most one per cycle, presented from r + latency
            taken = max(r + latency, taken + 1, ready_from)
        writes = requests(taken + 1, [copy.dst + k for k in range(copy.words)], 1)
        out.busy += writes[-1] - a  # busy in cycles a + 1 .. last write
        free = writes[-1] + 1
    out.cycles = free + 2  # idle from `free`: detected at the end of free + 1
    return out


def memmove(image: np.ndarray, program: list[Copy]) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """The final memory: words beyond the image in a dict, never-written words read as zero."""
    image = image.copy()
    outside: dict[int, np.ndarray] = {}

    def read(addr: int) -> np.ndarray:
        if addr < len(image):
            return image[addr].copy()
        return outside.get(addr, np.zeros(image.shape[1], dtype=np.uint32)).copy()

    for copy in program:
        if copy.words == 0:
            break
        data = [read(copy.src + k) for k in range(copy.words)]
        for k, word in enumerate(data):
            if copy.dst + k < len(image):
                image[copy.dst + k] = word
            else:
                outside[copy.dst + k] = word
    return image, outside


def _random_program(rng: np.random.Generator, n_words: int, count: int) -> list[Copy]:
    program = []
    for _ in range(count):
        words = int(rng.integers(1, DEPTH + 1))
        program.append(
            Copy(
                int(rng.integers(0, n_words - words + 1)),
                int(rng.integers(0, n_words - words + 1)),
                words,
                bool(rng.integers(0, 2)),
            )
        )
    return program


def _image(rng: np.random.Generator, config: SatConfig, n_words: int) -> np.ndarray:
    return rng.integers(0, 1 << 32, size=(n_words, config.mem_bits // 32), dtype=np.uint32)


async def _check(dut, config: SatConfig, image: np.ndarray, program: list[Copy], *, trace: Path | None = None):
    want = schedule(program, config.mem_latency, config.mem_interval)
    run = await run_program(
        dut, config=config, image=image, program=[c.encode() for c in program], budget=100_000, trace=trace
    )
    label = f"latency={config.mem_latency} interval={config.mem_interval}"
    want_image, want_outside = memmove(image, program)
    assert run.reason == "idle", f"{label}: ended by {run.reason}"
    bad = np.unique(np.argwhere(run.image != want_image)[:, 0])
    assert not len(bad), f"{label}: final image differs in words {bad}"
    assert sorted(run.outside) == sorted(want_outside), f"{label}: outside writes {sorted(run.outside)}"
    for addr, word in want_outside.items():
        assert np.array_equal(run.outside[addr], word), f"{label}: word {addr} beyond the image"
    assert run.accepted == want.accepted, f"{label}: accepted at {run.accepted}, expected {want.accepted}"
    assert run.cycles == want.cycles, f"{label}: {run.cycles} cycles, expected {want.cycles}"
    assert run.status == {"busy": 0, "error": 0, "error_code": 0}, run.status
    total = sum(c.words for c in program)
    expected_counters = dict.fromkeys(run.counters, 0)
    expected_counters.update(busy=want.busy, stall_memory=want.stalls, macs_issued=total, macs_useful=total)
    assert run.counters == expected_counters, f"{label}: counters {run.counters}, expected {expected_counters}"
    assert (run.reads, run.writes) == (total, total)
    if trace is not None:
        got = [(int(r["cycle"]), int(r["addr"]), int(r["write"])) for r in read_trace(trace)]
        assert got == want.trace, f"{label}: request trace differs"
    return run


def _trace_path() -> Path:
    return Path(os.environ[OUT_ENV]).with_suffix(".trace")


@cocotb.test()
async def random_copies_match_memmove_and_schedule(dut):
    """Random overlapping copies under several latencies and intervals (latency 0 acts as 1)."""
    base = load_config(SatConfig)
    rng = np.random.default_rng(random_seed())
    for latency, interval in ((1, 1), (8, 1), (3, 4), (0, 2), (20, 3)):
        config = base.replace(mem_latency=latency, mem_interval=interval)
        image = _image(rng, config, 64)
        await _check(dut, config, image, _random_program(rng, 64, 10), trace=_trace_path())


@cocotb.test()
async def held_responses_are_not_lost(dut):
    """With ready held low through 16 reads at latency 2, all 16 responses wait in the model's queue."""
    config = load_config(SatConfig).replace(mem_latency=2, mem_interval=1)
    rng = np.random.default_rng(random_seed())
    image = _image(rng, config, 48)
    program = [Copy(0, 32, 16, hold=True), Copy(32, 5, 16, hold=True), Copy(3, 20, 7, hold=False)]
    want = schedule(program, 2, 1)
    # Reads in cycles 1..16; held, the responses are taken in 17..32 (not 3..18); the first write is in 33.
    assert want.trace[16] == (33, 32, 1)
    await _check(dut, config, image, program)


@cocotb.test()
async def never_written_words_read_zero_and_writes_beyond_the_image_are_kept(dut):
    config = load_config(SatConfig).replace(mem_latency=4, mem_interval=2)
    rng = np.random.default_rng(random_seed())
    image = _image(rng, config, 16)
    program = [
        Copy(1000, 2, 5),  # never-loaded source: zeros
        Copy(4, 300, 8),  # beyond the image
        Copy(302, 10, 4),  # read back what was written beyond it
        Copy(0xFFFF_0000, 0xFFFF_FFF0, 3, hold=True),
    ]
    run = await _check(dut, config, image, program)
    assert not run.image[2:7].any()
    assert sorted(run.outside)[:8] == list(range(300, 308))


@cocotb.test()
async def timeout_is_reported_not_hung(dut):
    config = load_config(SatConfig).replace(mem_latency=5, mem_interval=2)
    rng = np.random.default_rng(random_seed())
    image = _image(rng, config, 64)
    program = _random_program(rng, 64, 6)
    want = schedule(program, 5, 2)
    budget = want.cycles // 2
    run = await run_program(dut, config=config, image=image, program=[c.encode() for c in program], budget=budget)
    assert run.timed_out
    assert run.reason == "timeout"
    assert run.cycles == budget
    assert run.accepted == [a for a in want.accepted if a < budget]
    assert run.status["busy"] == int(budget - 1 not in want.accepted)  # idle only while taking a descriptor
    # The same bench runs the next program normally after a timeout (the driver reloads on reset).
    await _check(dut, config, image, program[:2])


@cocotb.test()
async def error_stops_the_run_right_away(dut):
    config = load_config(SatConfig).replace(mem_latency=3, mem_interval=1)
    rng = np.random.default_rng(random_seed())
    image = _image(rng, config, 32)
    program = [Copy(0, 16, 8), Copy(1, 2, 0), Copy(16, 0, 8)]
    want = schedule(program, 3, 1)
    run = await run_program(dut, config=config, image=image, program=[c.encode() for c in program], budget=10_000)
    assert want.error
    assert run.reason == "error"
    assert not run.timed_out
    assert run.status == {"busy": 0, "error": 1, "error_code": 3}
    assert run.accepted == want.accepted
    assert len(run.accepted) == 2
    assert run.cycles == want.cycles
    assert np.array_equal(run.image, memmove(image, program)[0])  # the first copy only


@cocotb.test()
async def empty_program_ends_after_two_idle_cycles(dut):
    config = load_config(SatConfig)
    image = np.zeros((4, config.mem_bits // 32), dtype=np.uint32)
    run = await run_program(dut, config=config, image=image, program=[], budget=100)
    assert (run.reason, run.cycles, run.accepted) == ("idle", 2, [])
    assert run.counters["busy"] == 0
