"""Cycle-exact performance model of SAT accelerator programs (the scheduler's ground truth).

:func:`program_timing` predicts, for a program run in the program bench (:mod:`trainforge.sim.sat_bench`)
with its DRAM model, the exact ``cycles`` the bench reports, every descriptor's milestones and every
performance counter of the accelerator (:data:`trainforge.hw.sat.ports.COUNTER_NAMES`). It models the
RTL of :mod:`trainforge.hw.sat.accelerator` and :mod:`trainforge.hw.sat.streamer` as it is, at the level
of transfers and tiles, with arithmetic per transfer (no loop per simulated cycle):

* **memory port**: one request per ``I = mem_interval`` cycles (the bench's ready rule); a transfer of
  ``W`` words offered from cycle ``o`` (request valid held) is accepted at ``a_0 = max(o, last + I)``
  and ``a_0 + k I``; a read's data returns at ``a + L``, ``L = max(mem_latency, 1)`` (never queued: the
  accelerator always takes it).
* **DMA** (GEMM): its FSM (IDLE, LOAD_A, ISSUE_A, LOAD_B, ISSUE_B, STORE_WAIT, STORE) as a list of
  actions in the order the RTL takes them (``L0, L1, S0, L2, S1, ...``, or a store first when the next
  job is not dispatched yet), each action's cycles from closed forms.
* **feeder + PE array + writeback**: per tile, the feeder leaves IDLE one cycle after the job is
  loaded (and, for overlapping accumulator lines, computed and stored), beats follow one per cycle,
  an OS tile's last step respects :func:`~trainforge.hw.sat.pe_array.os_last_gap`, rows appear
  :func:`~trainforge.hw.sat.pe_array.latency` cycles after their beat and are written one cycle
  later (the array's :func:`~trainforge.hw.sat.pe_array.tile_schedule`, with the feeder's gaps).
* **line streamer** (PRUNE, UPDATE): per chunk, a read transfer, the engine's output time (UPDATE:
  latency 5 after the line is assembled; PRUNE: :func:`~trainforge.hw.sat.prune_engine.prune_cycles`
  generalised to the lines' actual arrival cycles, per panel for the FF copy), then a write transfer.

Dependencies between the DMA, the feeder and the dispatcher are resolved lazily in the order the
hardware resolves them (a job's compute is evaluated when the DMA first waits for it). The cost is
O(descriptors + tiles + streamer chunks) plus O(lines) per FF-copy PRUNE chunk (the transposer's
columns follow each line's arrival) and O(panels) for its mask emission.

docs/sat-timing.md has the formulas, the fill / drain convention of :func:`gemm_tile_cycles` and a
worked example.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from fractions import Fraction

from trainforge.errors import UsageError
from trainforge.hw.sat import isa
from trainforge.hw.sat.config import SatConfig
from trainforge.hw.sat.pe_array import latency, os_last_gap
from trainforge.hw.sat.ports import COUNTER_NAMES
from trainforge.hw.sat.streamer import UPDATE_CHUNK, prune_chunk_lines

__all__ = [
    "JOB_SLOTS",
    "UPDATE_LATENCY",
    "DescriptorTiming",
    "ProgramTiming",
    "TileCost",
    "gemm_tile_cycles",
    "program_timing",
    "tile_cost",
]

JOB_SLOTS = 4  #: the accelerator's GEMM job ring (``hw/sat/accelerator.py``)
UPDATE_LATENCY = 5  #: the update engine's pipeline depth (``UpdateEngine.latency``)
_NEVER = -(10**18)  # "no constraint" for max()


@dataclasses.dataclass(frozen=True)
class DescriptorTiming:
    """Milestones of one descriptor, in cycles of the program bench (cycle 0 = first after reset).

    Attributes
    ----------
    index : int
        Position in the program.
    op : str
        ``"gemm"``, ``"prune"`` or ``"update"``.
    accepted : int
        Cycle the descriptor was accepted on ``cmd``.
    load_start, load_end : int or None
        GEMM: first operand read request accepted, and the cycle the job's last operand word
        arrived (its last line written into the buffer); ``None`` without ``load_a`` and ``load_b``.
        PRUNE / UPDATE: first and last read request accepted.
    compute_start, compute_end : int
        GEMM: first cycle the feeder works on the tile (it leaves IDLE), and the cycle its last
        acc-line is written by the writeback. PRUNE / UPDATE: the cycle the first line enters the
        engine and the cycle of the engine's last output.
    store_start, store_end : int or None
        First and last write request accepted (``None`` for a GEMM without ``store``).
    done : int
        The last cycle the descriptor keeps the accelerator busy: a GEMM's slot is released (store
        pointer advanced) at the end of this cycle, a PRUNE / UPDATE returns the streamer to IDLE.
    """

    index: int
    op: str
    accepted: int
    load_start: int | None
    load_end: int | None
    compute_start: int
    compute_end: int
    store_start: int | None
    store_end: int | None
    done: int


@dataclasses.dataclass(frozen=True)
class ProgramTiming:
    """Predicted outcome of a program in the program bench.

    Attributes
    ----------
    cycles : int
        What :attr:`trainforge.sim.sat_bench.SatRun.cycles` reports: the first cycle of the final
        idle stretch plus 2.
    descriptors : list of DescriptorTiming
    counters : dict
        Every performance counter (:data:`~trainforge.hw.sat.ports.COUNTER_NAMES`) at the end of
        the run.
    """

    cycles: int
    descriptors: list[DescriptorTiming]
    counters: dict[str, int]


@dataclasses.dataclass
class _Job:
    """A GEMM in flight: the descriptor, its dispatch bookkeeping and its milestones."""

    desc: isa.Gemm
    index: int
    a_wait: bool = False
    a_after: int = 0
    b_wait: bool = False
    b_after: int = 0
    acc_wait: bool = False
    accepted: int | None = None
    load_start: int | None = None
    load_end: int | None = None
    loaded_vis: int | None = None  # first cycle `loaded` counts this job
    feed_start: int | None = None  # the feeder's IDLE cycle that takes the job (c)
    feed_last: int | None = None  # stage 0 handles the job's last beat (X)
    computed_vis: int | None = None  # first cycle `computed` counts this job
    store_start: int | None = None
    store_end: int | None = None
    stored_vis: int | None = None  # first cycle `store_ptr` counts this job


class _Model:
    def __init__(self, config: SatConfig) -> None:
        self.cfg = config
        self.interval = config.mem_interval
        self.latency = max(config.mem_latency, 1)
        self.last_req: int | None = None
        self.counters = dict.fromkeys(COUNTER_NAMES, 0)
        self.jobs: list[_Job] = []
        # Dispatcher state (half bookkeeping), kept across the whole program.
        self.cur_a = self.cur_b = 0
        self.a_user = [0, 0]
        self.b_user = [0, 0]
        self.a_used = [False, False]
        self.b_used = [False, False]
        self.prev_acc: tuple[int, int] | None = None
        # Feeder / array state.
        self.feed_idle = 0  # first cycle the feeder FSM is IDLE after its last job
        self.last_beat = _NEVER  # acceptance of the array's last beat
        self.os_last: int | None = None  # acceptance of the last OS tile's last step
        self.computed = 0  # jobs whose compute is evaluated
        # DMA / response side.
        self.dma_idle = 0  # first cycle the DMA FSM is IDLE
        self.last_pop = _NEVER  # cycle the response side last popped a segment
        self.streamer_free = 0  # first cycle the streamer is IDLE
        self.busy_end = 0  # end (exclusive) of the last busy interval

    # ---- the memory port --------------------------------------------------------------------

    def transfer(self, offered: int, words: int, *, gemm: bool) -> tuple[int, int]:
        """First and last acceptance of ``words`` requests offered back to back from ``offered``."""
        first = offered if self.last_req is None else max(offered, self.last_req + self.interval)
        last = first + (words - 1) * self.interval
        if gemm:
            self.counters["stall_memory"] += first - offered + (words - 1) * (self.interval - 1)
        self.last_req = last
        return first, last

    # ---- dispatch ---------------------------------------------------------------------------

    def add_job(self, desc: isa.Gemm, index: int) -> _Job:
        """The dispatcher's half and accumulator bookkeeping (done in program order)."""
        seq = len(self.jobs)
        job = _Job(desc, index)
        a_half = 1 - self.cur_a if desc.load_a else self.cur_a
        b_half = 1 - self.cur_b if desc.load_b else self.cur_b
        job.a_wait, job.a_after = desc.load_a and self.a_used[a_half], self.a_user[a_half]
        job.b_wait, job.b_after = desc.load_b and self.b_used[b_half], self.b_user[b_half]
        lo, hi = desc.acc_addr, desc.acc_addr + desc.rows
        job.acc_wait = self.prev_acc is not None and lo < self.prev_acc[1] and self.prev_acc[0] < hi
        self.cur_a, self.cur_b = a_half, b_half
        self.a_user[a_half] = self.b_user[b_half] = seq
        self.a_used[a_half] = self.b_used[b_half] = True
        self.prev_acc = (lo, hi)
        self.jobs.append(job)
        return job

    # ---- feeder, PE array and writeback --------------------------------------------------------

    def computed_vis(self, seq: int) -> int:
        """First cycle the ``computed`` pointer counts job ``seq`` (evaluating the feeder up to it)."""
        cfg = self.cfg
        while self.computed <= seq:
            j = self.computed
            job = self.jobs[j]
            d = job.desc
            assert job.loaded_vis is not None, "the feeder needs a job the DMA has not loaded"
            c = max(self.feed_idle, job.loaded_vis)
            if job.acc_wait and j > 0:
                prev = self.jobs[j - 1]
                assert prev.stored_vis is not None, "accumulator wait on a job not stored yet"
                c = max(c, prev.computed_vis, prev.stored_vis)
            d0 = max(c + 1, self.last_beat)  # stage 0 handles the first beat (it enters the array at d0 + 1)
            if d.dataflow == isa.Dataflow.OS:
                last = d0 + d.steps
                if self.os_last is not None:
                    last = max(last, self.os_last + os_last_gap(cfg))
                self.os_last = self.last_beat = last
                x = d0 + d.steps - 1
                last_row = last + latency(cfg) + cfg.rows - 1  # every R rows leave, used or not
                self.counters["macs_issued"] += cfg.pe_count * d.steps
            else:
                x = d0 + cfg.rows + d.rows - 1
                self.last_beat = x + 1
                last_row = x + 1 + latency(cfg)
                self.counters["macs_issued"] += cfg.pe_count * d.rows
            self.counters["macs_useful"] += d.rows * d.cols * d.steps
            job.feed_start, job.feed_last = c, x
            job.computed_vis = last_row + 2  # written by the writeback's second stage, counted after
            self.feed_idle = x + 1
            self.computed += 1
        return self.jobs[seq].computed_vis

    # ---- the DMA --------------------------------------------------------------------------------

    def run_gemms(self, descs: Sequence[tuple[int, isa.Gemm]], presented: int) -> int:
        """A run of consecutive GEMMs from a drained accelerator; returns the last acceptance cycle."""
        first = len(self.jobs)
        for index, desc in descs:
            self.add_job(desc, index)
        end = len(self.jobs)

        def dispatch_vis(seq: int) -> int:
            job = self.jobs[seq]
            if job.accepted is None:
                prev = self.jobs[seq - 1].accepted + 1 if seq > first else presented
                slot = self.jobs[seq - JOB_SLOTS].stored_vis if seq - JOB_SLOTS >= 0 else 0
                assert slot is not None, "dispatch needs a store the DMA has not done"
                job.accepted = max(prev, slot, self.streamer_free)
            return job.accepted + 1

        load_ptr = store_ptr = first
        i = self.dma_idle
        while True:
            if load_ptr < end and load_ptr - store_ptr <= 1:
                ready = dispatch_vis(load_ptr)
                if ready > i and store_ptr == load_ptr:
                    i = ready  # nothing to store: wait in IDLE for the dispatch
                if ready <= i:
                    i = self.load(self.jobs[load_ptr], i + 1)
                    load_ptr += 1
                    continue
            if store_ptr == load_ptr:
                break
            i = self.store(store_ptr, i + 1)
            store_ptr += 1
        for seq in range(first, end):
            dispatch_vis(seq)  # every job is accepted by now (the last ones may never have been asked)
        self.dma_idle = i
        last = self.jobs[end - 1]
        self.counters["busy"] += last.stored_vis - (self.jobs[first].accepted + 1)
        self.busy_end = last.stored_vis
        return last.accepted

    def load(self, job: _Job, cycle: int) -> int:
        """L(t) from its LOAD_A cycle; returns the DMA's next IDLE cycle."""
        cfg, d = self.cfg, job.desc
        lat = self.latency
        z = cycle + 1  # LOAD_B without an A load
        if d.load_a:
            start = max(cycle, self.computed_vis(job.a_after) if job.a_wait else _NEVER)
            first, last = self.transfer(start + 1, d.a_lines() * cfg.a_words, gemm=True)
            job.load_start, job.load_end = first, last + lat
            self.last_pop = last + lat
            z = last + 1
        if d.load_b:
            start = max(z, self.computed_vis(job.b_after) if job.b_wait else _NEVER)
            first, last = self.transfer(start + 1, d.steps * cfg.b_words, gemm=True)
            if job.load_start is None:
                job.load_start = first
            job.load_end = last + lat
            self.last_pop = last + lat
            job.loaded_vis = last + lat + 1
            return last + 1
        # An empty B segment closes the job once it reaches the head of the segment FIFO.
        self.last_pop = max(z + 1, self.last_pop + 1)
        job.loaded_vis = self.last_pop + 1
        return z + 1

    def store(self, seq: int, cycle: int) -> int:
        """S(t) from its STORE_WAIT cycle; returns the DMA's next IDLE cycle."""
        job = self.jobs[seq]
        s = max(cycle, self.computed_vis(seq))
        if not job.desc.store:
            job.stored_vis = s + 1
            return s + 1
        first, last = self.transfer(s + 2, job.desc.rows * self.cfg.acc_words, gemm=True)
        job.store_start, job.store_end = first, last
        job.stored_vis = last + 1
        return last + 1

    # ---- the line streamer -------------------------------------------------------------------------

    def run_streamer(self, desc: isa.Prune | isa.Update, index: int, presented: int) -> DescriptorTiming:
        cfg, lat = self.cfg, self.latency
        accepted = max(presented, self.busy_end, self.streamer_free)
        cycle = accepted + 1  # CHUNK
        is_update = isinstance(desc, isa.Update)
        if is_update:
            total, full = desc.lines, UPDATE_CHUNK
            per_line = 3 * cfg.acc_words + (cfg.mask_words if desc.use_mask else 0)
        else:
            total = desc.reduction(cfg)
            full = prune_chunk_lines(cfg, desc.m, desc.transpose)
            per_line = cfg.w_words
        reads, writes, engine = [], [], []
        start = 0
        while start < total:
            length = min(full, total - start)
            first, last = self.transfer(cycle + 1, length * per_line, gemm=False)
            reads += [first, last]
            step = per_line * self.interval
            # Line k is assembled when its last word arrives; the engine takes it the cycle after.
            arrive0 = first + (per_line - 1) * self.interval + lat + 1
            if is_update:
                out = last + lat + 1 + UPDATE_LATENCY
                words = length * (2 * cfg.acc_words + cfg.w_words)
                tail = 0
            else:
                if desc.transpose:
                    out = _ff_last_output(cfg, desc.n, desc.m, [arrive0 + k * step for k in range(length)])
                else:
                    out = last + lat + 1 + desc.m
                blines = length // desc.m * desc.n
                words = blines * cfg.b_words + (length * cfg.mask_words if desc.write_mask else 0)
                tail = 0 if desc.write_mask else length  # mask-lines dropped one per cycle
            engine += [arrive0, out]
            write_at = max(last + 1, out + 1) + 1  # WAIT sees the FIFO levels one cycle after the push
            first_w, last_w = self.transfer(write_at, words, gemm=False)
            writes += [first_w, last_w]
            cycle = last_w + tail + 1
            start += length
        done = cycle - 1
        self.counters["update" if is_update else "prune"] += cycle - (accepted + 1)
        self.counters["busy"] += cycle - (accepted + 1)
        self.streamer_free = self.busy_end = cycle
        return DescriptorTiming(
            index=index,
            op="update" if is_update else "prune",
            accepted=accepted,
            load_start=reads[0],
            load_end=reads[-1],
            compute_start=engine[0],
            compute_end=engine[-1],
            store_start=writes[0],
            store_end=writes[-1],
            done=done,
        )

    # ---- counters that need the whole schedule --------------------------------------------------

    def job_counters(self) -> None:
        names = {isa.Tag.FF: "ff", isa.Tag.BP: "bp", isa.Tag.WU: "wu", isa.Tag.OTHER: "gemm_other"}
        prev_computed = 0
        prev_idle = 0
        for job in self.jobs:
            # Cycles the job is the oldest uncomputed one while the array works (in_compute).
            begin = max(prev_computed, job.feed_start + 1)
            self.counters[names[isa.Tag(job.desc.tag)]] += job.computed_vis - begin
            # Feeder idle with this job dispatched: waiting for its operands, then for the accumulator.
            wait = max(prev_idle, job.accepted + 1)
            ready = job.feed_start
            operands_until = min(job.loaded_vis, ready)
            self.counters["stall_operands"] += max(0, operands_until - wait)
            self.counters["stall_accumulator"] += max(0, ready - max(wait, job.loaded_vis))
            prev_computed, prev_idle = job.computed_vis, job.feed_last + 1


def _ff_last_output(config: SatConfig, n: int, m: int, arrivals: Sequence[int]) -> int:
    """Cycle of the prune engine's last output for one FF-copy chunk whose lines enter at ``arrivals``.

    Column ``q`` of the band enters NMPrune with line ``q + C`` (the transposer shifts one column
    out per line in), the last panel's columns in the ``C`` cycles after the last line; group ``g``
    is presented one cycle after its last column, its b-line ``s`` leaves ``s`` cycles later; panel
    ``p`` moves to the emission register at ``M_p = max(S_{g_p} + 1, M_{p-1} + C)`` and its
    mask-lines leave in ``M_p + 1 .. M_p + C`` (:func:`~trainforge.hw.sat.prune_engine.prune_cycles`).
    """
    c = config.cols
    lines = len(arrivals)
    panels = lines // c

    def column(q: int) -> int:
        return arrivals[q + c] if q + c < lines else arrivals[-1] + 1 + (q - (lines - c))

    def presented(g: int) -> int:
        return column(g * m + m - 1) + 1

    last_bline = presented(lines // m - 1) + n - 1
    move = _NEVER
    for p in range(panels):
        move = max(presented((p * c + c - 1) // m) + 1, move + c)
    return max(last_bline, move + c)


def program_timing(config: SatConfig, descriptors: Sequence[isa.Descriptor]) -> ProgramTiming:
    """Exact cycles of ``descriptors`` run in the program bench with ``config``'s DRAM model.

    Parameters
    ----------
    config : SatConfig
        The accelerator and the bench's ``mem_latency`` / ``mem_interval``.
    descriptors : sequence of Gemm, Prune, Update
        A valid program (every descriptor passes :func:`trainforge.hw.sat.isa.check`).

    Returns
    -------
    ProgramTiming

    Raises
    ------
    UsageError
        A descriptor is invalid (the RTL would stop at it with its error flag), or the program is empty.
    """
    if not isinstance(config, SatConfig):
        raise TypeError(f"config must be a SatConfig, not {config!r}")
    if not descriptors:
        raise UsageError("a program needs at least one descriptor")
    for index, desc in enumerate(descriptors):
        code = isa.check(config, desc)
        if code != isa.ErrorCode.NONE:
            raise UsageError(f"descriptor {index} is invalid ({code.name}): {desc}")
    model = _Model(config)
    timings: dict[int, DescriptorTiming] = {}
    presented = 0
    k = 0
    while k < len(descriptors):
        desc = descriptors[k]
        if isinstance(desc, isa.Gemm):
            run = []
            while k < len(descriptors) and isinstance(descriptors[k], isa.Gemm):
                run.append((k, descriptors[k]))
                k += 1
            presented = model.run_gemms(run, presented) + 1
        else:
            timing = model.run_streamer(desc, k, presented)
            timings[k] = timing
            presented = timing.accepted + 1
            k += 1
    model.job_counters()
    for job in model.jobs:
        timings[job.index] = DescriptorTiming(
            index=job.index,
            op="gemm",
            accepted=job.accepted,
            load_start=job.load_start,
            load_end=job.load_end,
            compute_start=job.feed_start + 1,
            compute_end=job.computed_vis - 1,
            store_start=job.store_start,
            store_end=job.store_end,
            done=job.stored_vis - 1,
        )
    return ProgramTiming(
        cycles=model.busy_end + 2,
        descriptors=[timings[k] for k in range(len(descriptors))],
        counters=model.counters,
    )


# --------------------------------------------------------------------------------------------
# per-tile costs for the mapping search
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TileCost:
    """Cost of one GEMM tile repeated back to back in the double-buffered pipeline.

    Convention (fill / drain): a stream of ``n`` copies of the tile run alone in the bench takes
    exactly ``cycles(n) = overheads[n % period] + n * steady`` cycles for every ``n >= linear_from``.
    ``steady`` is the exact cycles per tile of the steady state (averaged over its ``period``: with
    two buffer halves the pipeline often alternates between two tile lengths); ``overhead`` (the mean
    of ``overheads``) is the *fill + drain*: the first tile's load before any compute, the last
    tile's compute tail and store, and the bench's two end cycles.

    Attributes
    ----------
    compute : int
        Cycles per tile the feeder and the array need (closed form): OS ``max(steps + 1, R + C - 1)``
        (one feeder IDLE cycle per tile, the array's :func:`~trainforge.hw.sat.pe_array.os_last_gap`),
        WS ``R + rows + 1`` (weight load beats, A rows, the IDLE cycle).
    memory : int
        Cycles per tile the DMA needs when it never waits (closed form): the sum, over the tile's
        request words, of ``max(gap, mem_interval)`` where ``gap`` is 1 inside a transfer and 1 plus
        the DMA FSM's control cycles between transfers.
    steady : Fraction
        Exact cycles per tile in the steady state (from :func:`program_timing`): at least
        ``max(compute, memory)``, more when the double-buffer loop binds (loading tile ``t + 2`` waits
        until tile ``t`` has computed, and the DMA stores ``t`` before it) or the accumulator
        dependency does (a tile whose acc-lines overlap its predecessor's waits for its store).
    overheads : tuple of Fraction
        ``cycles(n) - n * steady`` for ``n % period == 0, 1, ...``.
    period : int
        Period (in tiles) of the steady state.
    single : int
        Cycles of the tile alone (``n = 1``).
    linear_from : int
        Smallest ``n`` from which :meth:`cycles` is exact (checked up to ``n = 24``).
    """

    compute: int
    memory: int
    steady: Fraction
    overheads: tuple[Fraction, ...]
    period: int
    single: int
    linear_from: int

    @property
    def overhead(self) -> Fraction:
        """Fill + drain: the mean of :attr:`overheads`."""
        return sum(self.overheads, Fraction(0)) / self.period

    def cycles(self, n: int) -> Fraction:
        """Cycles of ``n >= linear_from`` back-to-back copies of the tile (exact)."""
        return self.overheads[n % self.period] + n * self.steady


def _compute_cycles(config: SatConfig, desc: isa.Gemm) -> int:
    if desc.dataflow == isa.Dataflow.OS:
        return max(desc.steps + 1, os_last_gap(config))
    return config.rows + desc.rows + 1


def _memory_cycles(config: SatConfig, desc: isa.Gemm) -> int:
    """The DMA's cycles per tile with every wait satisfied (see :class:`TileCost`)."""
    # The FSM's states for one job: control cycles (None) and words (True), in order.
    seq: list[bool] = [False, False]  # IDLE, LOAD_A
    if desc.load_a:
        seq += [True] * (desc.a_lines() * config.a_words)
    seq.append(False)  # LOAD_B
    if desc.load_b:
        seq += [True] * (desc.steps * config.b_words)
    seq += [False, False]  # IDLE, STORE_WAIT
    if desc.store:
        seq.append(False)  # STORE (reads the first line)
        seq += [True] * (desc.rows * config.acc_words)
    words = [k for k, is_word in enumerate(seq) if is_word]
    if not words:
        return len(seq)
    total = 0
    for k, at in enumerate(words):
        before = words[k - 1] if k else words[-1] - len(seq)  # cyclic: the previous tile's last word
        total += max(at - before, config.mem_interval)
    return total


def tile_cost(config: SatConfig, desc: isa.Gemm, *, chained: bool | None = None) -> TileCost:
    """Steady-state cost, fill / drain and closed-form bounds of a GEMM tile repeated back to back.

    Parameters
    ----------
    config : SatConfig
    desc : Gemm
        The tile; its ``load_a``, ``load_b`` and ``store`` flags are kept for every copy.
    chained : bool, optional
        Whether each copy's acc-lines overlap its predecessor's (a reduction chained through the
        accumulator, or tiles sharing acc-lines as :func:`~trainforge.hw.sat.lines.gemm_program`'s WS
        tiles do): the feeder then waits for the previous copy's compute and store. Default
        ``False``: copies alternate between ``acc_addr`` and ``acc_addr + rows`` (as the OS tiles of
        ``gemm_program``), which needs ``acc_addr + 2 rows <= acc_lines``.
    """
    if not isinstance(desc, isa.Gemm):
        raise UsageError(f"tile_cost needs a Gemm descriptor, not {desc!r}")
    chained = bool(chained)
    if not chained and desc.acc_addr + 2 * desc.rows > config.acc_lines:
        raise UsageError(
            f"two copies of a {desc.rows}-row tile at acc_addr={desc.acc_addr} do not fit in {config.acc_lines} "
            "acc-lines: pass chained=True"
        )

    def stream(n: int) -> int:
        copies = [
            dataclasses.replace(desc, acc_addr=desc.acc_addr + (0 if chained or k % 2 == 0 else desc.rows))
            for k in range(n)
        ]
        return program_timing(config, copies).cycles

    limit = 24
    totals = {n: stream(n) for n in range(1, limit + 1)}
    diffs = {n: totals[n] - totals[n - 1] for n in range(2, limit + 1)}
    tail = range(limit // 2, limit + 1)
    period = next((p for p in range(1, 5) if all(diffs[n] == diffs[n - p] for n in tail)), None)
    if period is None:
        raise UsageError(f"no steady state within {limit} copies of {desc}")
    steady = Fraction(totals[limit] - totals[limit - period], period)
    overheads = [Fraction(0)] * period
    for n in range(limit - period + 1, limit + 1):
        overheads[n % period] = totals[n] - n * steady
    linear_from = limit
    while (
        linear_from > 1
        and totals[linear_from - 1] == overheads[(linear_from - 1) % period] + (linear_from - 1) * steady
    ):
        linear_from -= 1
    return TileCost(
        compute=_compute_cycles(config, desc),
        memory=_memory_cycles(config, desc),
        steady=steady,
        overheads=tuple(overheads),
        period=period,
        single=totals[1],
        linear_from=linear_from,
    )


def gemm_tile_cycles(config: SatConfig, desc: isa.Gemm, *, chained: bool | None = None) -> Fraction:
    """Exact cycles per tile of ``desc`` in the steady state of the double-buffered pipeline.

    ``tile_cost(config, desc, chained=chained).steady``; see :class:`TileCost` for the convention
    (a run of ``n`` such tiles takes ``overhead + n * steady`` cycles).
    """
    return tile_cost(config, desc, chained=chained).steady
