"""The SAT PE array: ``rows x cols`` FP PEs, output-stationary (OS) or weight-stationary (WS) per tile.

Every PE is the FP library's multiply-accumulate unit :class:`~trainforge.hw.fp.mac.MacUnit`
(``in_fmt x in_fmt + FP32 -> FP32``, exact product, one rounding, combinational; for FP16 a lean
datapath built for simulation speed, bit-identical to the expanding FMA) with an ``m_max``:1
activation select for N:M sparsity. The dataflow is chosen per request beat (:class:`BeatKind`), so
OS and WS tiles mix freely in one beat stream.

Request beats (:func:`pe_request_layout`)
-----------------------------------------
``kind``
    :class:`BeatKind`: ``OS_STEP`` (0), ``WS_LOAD`` (1) or ``WS_ROW`` (2); code 3 is accepted and
    ignored.
``a``
    One activation group (``m_max`` values of ``in_fmt``) per array row.
``w``
    One weight per column: ``value`` (``in_fmt``) and ``index`` (position inside the group).
``psum``
    One FP32 partial sum per column (WS rows only).
``active``, ``last``
    See below.

**OS_STEP** (the ``sat-gemm`` semantics of :mod:`trainforge.hw.sat.gemm_array`): a tile is a run of
OS_STEP beats, ``last`` on its final step. PE ``(i, j)`` computes ``t = +0``, then
``t = fma(a[i][w[j].index], w[j].value, t)`` for every step in order; the tile's ``rows`` result
rows leave on ``response``, row 0 first.

**WS_LOAD**: exactly ``rows`` beats per WS tile. Beat ``b`` (0-based) carries in ``w`` the weights of
PE row ``R - 1 - b`` and in ``active`` whether that PE row takes part; ``last`` marks beat ``R - 1``.

**WS_ROW**: one beat per A row, after the load: ``a`` is the a-line (array row ``i``'s group),
``psum[j]`` the partial sum entering the top of column ``j``. Column ``j`` computes ``p = psum[j]``,
then ``p = fma(a[i][w_ij.index], w_ij.value, p)`` for PE rows ``i = 0 .. R-1`` in order, skipping
inactive rows (their partial sum passes bit for bit). One response row per WS_ROW beat.
``last`` (the tile's final A row) is informational.

Systolic structure
------------------
Activations move right one PE per cycle (row ``i`` enters ``i`` cycles late); each column has a
*mark* chain (what the beat is) moving down one PE per cycle beside a weight chain and a partial-sum
chain (column ``j`` enters ``j`` cycles late). A beat accepted at cycle ``t`` is at PE ``(i, j)``
during cycle ``t + 1 + i + j``. Per PE:

* OS: the step's weight moves down the weight chain; the PE accumulates into its own ``acc``
  (cleared to +0 by the tile's last step, which also copies the result to an output register).
* WS: the weight register holds still; the partial sum moves down the psum chain, through the MAC
  where the row is active, unchanged where it is not. A WS_LOAD beat aimed at PE row ``r`` travels
  down the weight chain and is written into rows ``0 .. r`` as it passes: row ``r`` keeps it because
  every later beat of the load stops above ``r`` (hence the load order ``R - 1`` first).

Every beat passes every PE in acceptance order, so a WS load never disturbs rows in flight before
it (they have already passed each PE when the load reaches it) and the weights it leaves are in
place before any row after it arrives: loads overlap the previous tile's rows with no wait and no
shadow register, and OS and WS beats switch without draining. The bottom of the psum chain is
deskewed so that each WS response is one whole A row.

Output and back-pressure
------------------------
Results enter a two-entry output queue in front of ``response``. Everything else (input skew, PEs,
deskew, OS drain) advances together, one step per cycle, only while the queue is not full: with
``response.ready`` low the array stalls, nothing is lost or reordered. With ``response.ready``
always high the queue never fills.

Cycle contract (``request.valid`` and ``response.ready`` always high)
---------------------------------------------------------------------
Let ``R = rows``, ``C = cols``, ``L = R + C + 1`` (:func:`latency`). Cycle 0 is the first cycle
``request`` is valid after reset (or after at least ``R + C - 1`` idle cycles with the response
drained).

* Every beat is accepted one cycle after the previous one, except an OS_STEP beat with ``last``:
  it is accepted no earlier than ``R + C - 1`` (:func:`os_last_gap`) cycles after the previous OS
  tile's last step (that tile's output registers must have drained). That is the only wait: WS
  loads, WS rows and switches between OS and WS never wait.
* A WS_ROW beat accepted at ``t`` has its response presented (and, ready high, transferred) at
  ``t + L``.
* An OS tile whose last step is accepted at ``t`` presents its row ``i`` at ``t + L + i``.

Per tile, starting at cycle ``t0`` with no wait: an OS tile of ``s`` steps accepts its steps at
``t0 .. t0 + s - 1`` and presents rows at ``t0 + s - 1 + L + i``; the next OS tile's last step waits
until ``t0 + s - 1 + R + C - 1``, so OS tiles of at least ``R + C - 1`` steps stream back to back. A
WS tile of ``r`` A rows accepts its loads at ``t0 .. t0 + R - 1`` and row ``k`` at ``t0 + R + k``,
presented at ``t0 + R + k + L``: it occupies the request port ``R + r`` cycles, and its load
overlaps the previous tile's computation.

With gaps in ``request`` (``response.ready`` still high), a beat first offered at cycle ``o`` is
accepted at ``max(o, the cycle above)``. :func:`beat_schedule` computes all of it per beat (O(beats),
gaps included), :func:`tile_schedule` per tile in closed form (O(tiles)). With ``response.ready``
low the array stalls: every later cycle moves by the stall, results are unchanged.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from amaranth.hdl import Cat, EnableInserter, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from trainforge.hw.fp.leaves import leaf_stub
from trainforge.hw.fp.mac import MacUnit
from trainforge.hw.sat.config import SatConfig

__all__ = [
    "BeatKind",
    "BeatSchedule",
    "PEArray",
    "ProcessingElement",
    "TileTiming",
    "beat_schedule",
    "latency",
    "os_last_gap",
    "pe_request_layout",
    "pe_response_layout",
    "tile_schedule",
]


class BeatKind(enum.IntEnum):
    """What a request beat is (the 2-bit ``kind`` field)."""

    OS_STEP = 0  #: one reduction step of an output-stationary tile
    WS_LOAD = 1  #: one PE row's weights of a weight-stationary tile (``rows`` beats per tile)
    WS_ROW = 2  #: one A row streamed through the loaded weights


def _weight_layout(config: SatConfig) -> data.StructLayout:
    return data.StructLayout({"value": config.in_bits, "index": config.index_bits})


def pe_request_layout(config: SatConfig) -> data.StructLayout:
    """One request beat: ``kind``, ``a``, ``w``, ``psum``, ``active``, ``last`` (module docstring)."""
    return data.StructLayout(
        {
            "kind": 2,
            "a": data.ArrayLayout(data.ArrayLayout(config.in_bits, config.m_max), config.rows),
            "w": data.ArrayLayout(_weight_layout(config), config.cols),
            "psum": data.ArrayLayout(32, config.cols),
            "active": 1,
            "last": 1,
        }
    )


def pe_response_layout(config: SatConfig) -> data.StructLayout:
    """One result row: ``cols`` FP32 values."""
    return data.StructLayout({"row": data.ArrayLayout(32, config.cols)})


# ---- the cycle contract, in code ---------------------------------------------------------------


def latency(config: SatConfig) -> int:
    """Cycles from accepting a WS_ROW beat (or an OS tile's last step) to presenting its (first) row."""
    return config.rows + config.cols + 1


def os_last_gap(config: SatConfig) -> int:
    """Least cycles between the last steps of two OS tiles (the previous tile's rows must drain)."""
    return config.rows + config.cols - 1


@dataclass(frozen=True)
class BeatSchedule:
    """Cycles of one beat stream (see :func:`beat_schedule`).

    Attributes
    ----------
    accept : list of int
        Acceptance cycle of every request beat, in order.
    present : list of int
        Presentation cycle of every response row, in order.
    origin : list of int
        For every response row, the index of the beat it comes from (the WS_ROW beat, or the OS
        tile's last step).
    """

    accept: list[int]
    present: list[int]
    origin: list[int]


def beat_schedule(
    config: SatConfig,
    beats: Sequence[tuple[int, bool]],
    *,
    gaps: Sequence[int] | None = None,
) -> BeatSchedule:
    """Exact acceptance and presentation cycles of a beat stream, with ``response.ready`` always high.

    Parameters
    ----------
    config : SatConfig
    beats : sequence of (kind, last)
        :class:`BeatKind` (or its value) and the ``last`` flag of every beat, in order; the
        sequence must be legal (module docstring).
    gaps : sequence of int, optional
        For every beat, the cycles ``request.valid`` stays low after the previous beat was
        accepted before this beat is offered (then held until accepted). Default: no gaps, the
        first beat offered at cycle 0.

    Returns
    -------
    BeatSchedule
        O(number of beats).
    """
    if gaps is not None and len(gaps) != len(beats):
        raise ValueError(f"gaps has {len(gaps)} entries for {len(beats)} beats")
    lat, gap = latency(config), os_last_gap(config)
    accept: list[int] = []
    present: list[int] = []
    origin: list[int] = []
    previous, os_last = -1, None
    for k, (kind, last) in enumerate(beats):
        t = previous + 1 + (gaps[k] if gaps is not None else 0)
        if kind == BeatKind.OS_STEP and last:
            if os_last is not None:
                t = max(t, os_last + gap)
            os_last = t
            present += [t + lat + i for i in range(config.rows)]
            origin += [k] * config.rows
        elif kind == BeatKind.WS_ROW:
            present.append(t + lat)
            origin.append(k)
        accept.append(t)
        previous = t
    return BeatSchedule(accept, present, origin)


@dataclass(frozen=True)
class TileTiming:
    """Cycles of one tile (see :func:`tile_schedule`): first and last beat accepted, first and last row presented."""

    first_accept: int
    last_accept: int
    first_present: int
    last_present: int


def tile_schedule(config: SatConfig, tiles: Sequence[tuple[str, int]], *, start: int = 0) -> list[TileTiming]:
    """Closed-form cycles per tile, for a gap-free request stream and an always-ready response.

    Parameters
    ----------
    config : SatConfig
    tiles : sequence of (str, int)
        ``("os", steps)`` for an OS tile of ``steps >= 1`` steps, ``("ws", rows)`` for a WS tile
        (``R`` load beats, then ``rows >= 1`` A rows).
    start : int
        Acceptance cycle of the first beat.

    Returns
    -------
    list of TileTiming
        One entry per tile, O(number of tiles); identical to what :func:`beat_schedule` gives
        for the same beats.
    """
    lat, gap, rows = latency(config), os_last_gap(config), config.rows
    out: list[TileTiming] = []
    t, os_last = start, None
    for kind, count in tiles:
        if count < 1:
            raise ValueError(f"a tile needs at least one step or row, not {count}")
        if kind == "os":
            last = t + count - 1
            if os_last is not None:
                last = max(last, os_last + gap)
            os_last = last
            first = t if count > 1 else last  # only the last step waits
            out.append(TileTiming(first, last, last + lat, last + lat + rows - 1))
            t = last + 1
        elif kind == "ws":
            first_row = t + rows
            last = first_row + count - 1
            out.append(TileTiming(t, last, first_row + lat, last + lat))
            t = last + 1
        else:
            raise ValueError(f"tile kind must be 'os' or 'ws', not {kind!r}")
    return out


# ---- the RTL ------------------------------------------------------------------------------------


def _act_layout(config: SatConfig) -> data.ArrayLayout:
    """One activation group (``m_max`` values) as it moves right through a PE row."""
    return data.ArrayLayout(config.in_bits, config.m_max)


def _pe_weight_layout(config: SatConfig) -> data.StructLayout:
    """A weight as it moves down a PE column: value, index in the group, and whether its row is active."""
    return data.StructLayout({"value": config.in_bits, "index": config.index_bits, "active": 1})


def _mark_layout(config: SatConfig) -> data.StructLayout:
    """What a beat is, moving down a column beside its weight (``target``: a WS load's PE row)."""
    return data.StructLayout({"os": 1, "load": 1, "row": 1, "last": 1, "target": range(config.rows)})


class ProcessingElement(wiring.Component):
    """One PE of :class:`PEArray`: the MAC, its activation select and its chain registers.

    A separate component so that hierarchical synthesis counts it once and multiplies
    (:mod:`trainforge.hw.fp.leaves`); all of the array's PEs are identical (the array computes
    ``take``, the only row-dependent decision).

    Parameters
    ----------
    config : SatConfig
        Reads ``rows`` (mark layout), ``m_max``, ``index_bits`` and ``in_fmt``.

    Members
    -------
    en : In(1)
        Advance one step (the array's output queue has room).
    act_in, mark_in, weight_in, psum_in : In
        From the left neighbour (activations) and from above (mark, weight, partial sum).
    take : In(1)
        Latch ``weight_in`` this step (OS: always; WS load: rows down to the target).
    act, mark, weight : Out
        The registered chains, to the right and downwards.
    psum : Out(32)
        WS: this row's MAC result if the row is active, else the partial sum that entered (to below).
    result : Out(32)
        OS: the tile's result, registered by the tile's last step.
    """

    def __init__(self, *, config: SatConfig) -> None:
        if not isinstance(config, SatConfig):
            raise TypeError(f"config must be a SatConfig, not {config!r}")
        self._config = config
        act, weight, mark = _act_layout(config), _pe_weight_layout(config), _mark_layout(config)
        super().__init__(
            {
                "en": In(1),
                "act_in": In(act),
                "mark_in": In(mark),
                "weight_in": In(weight),
                "take": In(1),
                "psum_in": In(32),
                "act": Out(act),
                "mark": Out(mark),
                "weight": Out(weight),
                "psum": Out(32),
                "result": Out(32),
            }
        )

    def elaborate(self, platform) -> Module:
        cfg = self._config
        params = {"rows": cfg.rows, "m_max": cfg.m_max, "index_bits": cfg.index_bits, "in_fmt": cfg.in_fmt}
        stub = leaf_stub(self, "sat_pe", params, lambda: ProcessingElement(config=cfg), sync=True)
        if stub is not None:
            return stub
        m = Module()
        logic = Module()
        m.submodules.logic = EnableInserter(self.en)(logic)
        psum = Signal(32)
        acc = Signal(32)
        logic.d.sync += [self.act.eq(self.act_in), self.mark.eq(self.mark_in), psum.eq(self.psum_in)]
        with logic.If(self.take):
            logic.d.sync += self.weight.eq(self.weight_in)
        m.submodules.mac = mac = MacUnit(src_fmt=cfg.in_fmt)
        w, k = self.weight, self.mark
        m.d.comb += [
            mac.a.eq(self.act[w.index]),
            mac.b.eq(w.value),
            mac.c.eq(Mux(k.row, psum, acc)),
            self.psum.eq(Mux(k.row & w.active, mac.result, psum)),
        ]
        with logic.If(k.os):
            # The tile's last step leaves +0 behind: the next tile starts from it.
            logic.d.sync += acc.eq(Mux(k.last, 0, mac.result))
            with logic.If(k.last):
                logic.d.sync += self.result.eq(mac.result)
        return m


class PEArray(wiring.Component):
    """The SAT PE array, OS or WS per beat (see the module docstring).

    Parameters
    ----------
    config : SatConfig
        Reads ``rows``, ``cols``, ``m_max`` and ``in_fmt``.

    Members
    -------
    request : In(stream.Signature(pe_request_layout))
    response : Out(stream.Signature(pe_response_layout))
        One row of FP32 results per transfer: ``rows`` per OS tile, one per WS_ROW beat, in order.
    """

    def __init__(self, *, config: SatConfig) -> None:
        if not isinstance(config, SatConfig):
            raise TypeError(f"config must be a SatConfig, not {config!r}")
        self._config = config
        super().__init__(
            {
                "request": In(stream.Signature(pe_request_layout(config))),
                "response": Out(stream.Signature(pe_response_layout(config))),
            }
        )

    @property
    def config(self) -> SatConfig:
        return self._config

    @property
    def latency(self) -> int:
        """:func:`latency` of this array."""
        return latency(self._config)

    def elaborate(self, platform) -> Module:
        cfg = self._config
        rows, cols = cfg.rows, cfg.cols
        m = Module()
        # Everything but the output queue advances only while the queue has room (`advance`).
        core = Module()
        advance = Signal()
        m.submodules.core = EnableInserter(advance)(core)

        req = self.request.payload
        accept = Signal()
        cool = Signal(range(rows + cols))  # cycles until another OS tile may take its last step
        os_last = (req.kind == BeatKind.OS_STEP) & req.last
        m.d.comb += [
            self.request.ready.eq(advance & ~(os_last & (cool != 0))),
            accept.eq(self.request.valid & self.request.ready),
        ]
        with core.If(accept & os_last):
            core.d.sync += cool.eq(os_last_gap(cfg) - 1)
        with core.Elif(cool != 0):
            core.d.sync += cool.eq(cool - 1)

        # WS load beat b aims at PE row R-1-b.
        load_beat = Signal(range(rows))
        with core.If(accept):
            with core.If((req.kind == BeatKind.WS_LOAD) & ~req.last & (load_beat != rows - 1)):
                core.d.sync += load_beat.eq(load_beat + 1)
            with core.Else():
                core.d.sync += load_beat.eq(0)

        mark = _mark_layout(cfg)
        step_mark = Signal(mark)
        m.d.comb += [
            step_mark.os.eq(accept & (req.kind == BeatKind.OS_STEP)),
            step_mark.load.eq(accept & (req.kind == BeatKind.WS_LOAD)),
            step_mark.row.eq(accept & (req.kind == BeatKind.WS_ROW)),
            step_mark.last.eq(req.last),
            step_mark.target.eq(rows - 1 - load_beat),
        ]
        act_layout = _act_layout(cfg)
        weight = _pe_weight_layout(cfg)
        weight_in = [Signal(weight, name=f"w_in{j}") for j in range(cols)]
        for j in range(cols):
            m.d.comb += [
                weight_in[j].value.eq(req.w[j].value),
                weight_in[j].index.eq(req.w[j].index),
                weight_in[j].active.eq(req.active),
            ]

        # Edge skew: row i enters i cycles late, column j enters j cycles late.
        def delayed(value, shape, cycles: int, name: str):
            current = value
            for k in range(cycles):
                reg = Signal(shape, name=f"{name}_d{k}")
                core.d.sync += reg.eq(current)
                current = reg
            return current

        row_in = [delayed(req.a[i], act_layout, i, f"row{i}") for i in range(rows)]
        col_in = [delayed(weight_in[j], weight, j, f"col{j}") for j in range(cols)]
        mark_in = [delayed(step_mark, mark, j, f"mark{j}") for j in range(cols)]
        psum_in = [delayed(req.psum[j], 32, j, f"psum{j}") for j in range(cols)]

        marks: list[list] = [[None] * cols for _ in range(rows)]
        weights: list[list] = [[None] * cols for _ in range(rows)]
        acts: list[list] = [[None] * cols for _ in range(rows)]
        psum_out: list[list] = [[None] * cols for _ in range(rows)]
        results: list[list] = [[None] * cols for _ in range(rows)]
        for i in range(rows):
            for j in range(cols):
                pe = ProcessingElement(config=cfg)
                core.submodules[f"pe{i}_{j}"] = pe
                above_mark = mark_in[j] if i == 0 else marks[i - 1][j]
                # A load beat is written into every row down to its target; OS weights always move.
                m.d.comb += [
                    pe.en.eq(advance),
                    pe.act_in.eq(row_in[i] if j == 0 else acts[i][j - 1]),
                    pe.mark_in.eq(above_mark),
                    pe.weight_in.eq(col_in[j] if i == 0 else weights[i - 1][j]),
                    pe.take.eq(above_mark.os | (above_mark.load & (above_mark.target >= i))),
                    pe.psum_in.eq(psum_in[j] if i == 0 else psum_out[i - 1][j]),
                ]
                marks[i][j], weights[i][j], acts[i][j] = pe.mark, pe.weight, pe.act
                psum_out[i][j], results[i][j] = pe.psum, pe.result

        # WS deskew: column j's bottom output waits C - j cycles, so a row leaves whole.
        ws_row = [delayed(psum_out[rows - 1][j], 32, cols - j, f"deskew{j}") for j in range(cols)]
        ws_valid = delayed(marks[rows - 1][cols - 1].row, 1, 1, "ws_valid")

        # OS drain: the bottom-right PE finishing a tile's last step starts `rows` output rows.
        corner = marks[rows - 1][cols - 1]
        draining = Signal()
        drain_row = Signal(range(rows))
        with core.If(corner.os & corner.last):
            core.d.sync += [draining.eq(1), drain_row.eq(0)]
        with core.Elif(draining):
            core.d.sync += drain_row.eq(drain_row + 1)
            with core.If(drain_row == rows - 1):
                core.d.sync += draining.eq(0)
        os_row = Signal(data.ArrayLayout(32, cols))
        with m.Switch(drain_row):
            for i in range(rows):
                with m.Case(i):
                    m.d.comb += [os_row[j].eq(results[i][j]) for j in range(cols)]

        # Two-entry output queue; the array stalls while it is full (never with ready held high).
        push = Signal()
        push_row = Signal(data.ArrayLayout(32, cols))
        m.d.comb += [
            push.eq(advance & (draining | ws_valid)),
            push_row.eq(Mux(draining, os_row.as_value(), Cat(*ws_row))),
        ]
        level = Signal(range(3))
        head = Signal(data.ArrayLayout(32, cols))
        tail = Signal(data.ArrayLayout(32, cols))
        pop = Signal()
        m.d.comb += [
            advance.eq(level != 2),
            self.response.valid.eq(level != 0),
            self.response.payload.row.eq(head),
            pop.eq(self.response.valid & self.response.ready),
        ]
        with m.If(push & pop):
            m.d.sync += head.eq(push_row)  # level is 1 here: push needs room
        with m.Elif(push):
            with m.If(level == 0):
                m.d.sync += head.eq(push_row)
            with m.Else():
                m.d.sync += tail.eq(push_row)
            m.d.sync += level.eq(level + 1)
        with m.Elif(pop):
            m.d.sync += [head.eq(tail), level.eq(level - 1)]
        return m
