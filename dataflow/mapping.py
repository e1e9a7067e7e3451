"""Mapping search for the SAT accelerator: per GEMM, dataflow x tile sizes x loop order, vectorised.

Two layers:

* :func:`tile_costs`: the cost of a GEMM tile repeated back to back (``steady`` cycles per tile and
  the fill / drain ``overheads``), for arrays of tiles at once. It evaluates the max-plus
  recurrences of :mod:`trainforge.dataflow.sat_timing` (DMA actions ``L0, L1, S0, L2, S1, ...``,
  feeder, array, writeback) as NumPy expressions over the batch, one step per copy, and reproduces
  :func:`~trainforge.dataflow.sat_timing.tile_cost` exactly (``tests/dataflow/test_mapping.py``
  checks every field on random tiles). :func:`steady_closed_form` is the per-tile steady state as
  one max of cycle means (no recurrence), exact where docs/scheduler.md says and an upper bound
  elsewhere.
* :func:`search`: for every GEMM of a list and every candidate mapping (:class:`Mapping`), the tile
  classes of the stream the mapping emits (:func:`gemm_tiles`), their counts, a cycle estimate
  ``sum(count * steady) + overhead`` and the energy of the stream's actions
  (:func:`~trainforge.dataflow.energy.gemm_actions` counts through
  :func:`~trainforge.dataflow.energy.energy_matrix`), all as arrays; the objective picks one
  candidate per GEMM. The estimate composes steady states of identical-copy streams, so a stream that
  mixes tile classes is approximated (docs/scheduler.md reports the error against
  :func:`~trainforge.dataflow.sat_timing.program_timing`, which the scheduler uses for its totals).

Loop orders (which operand stays in its buffer half across consecutive tiles, ``load_a`` /
``load_b`` off), with a *group* of output tiles that share it (each with its own acc-lines):

``a``   row blocks outer: the A chunk of a row block is loaded once per K chunk and the column
        blocks of the group follow.
``b``   column blocks outer: the B chunk is loaded once per K chunk and the row blocks of the group
        follow.

Group 1 is the K-innermost order (:func:`~trainforge.hw.sat.lines.gemm_program`'s), where a K split
chains through the accumulator.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from trainforge.dataflow.energy import ACTION_FIELDS, EnergyTable, energy_matrix, gemm_actions
from trainforge.errors import UsageError
from trainforge.hw.sat import isa
from trainforge.hw.sat.config import SatConfig
from trainforge.hw.sat.pe_array import latency, os_last_gap

__all__ = [
    "OBJECTIVES",
    "ORDERS",
    "GemmShape",
    "Mapping",
    "SearchResult",
    "candidates",
    "estimate_mapping",
    "gemm_tiles",
    "search",
    "steady_closed_form",
    "tile_costs",
]

ORDERS = ("a", "b")
OBJECTIVES = ("latency", "energy", "edp")
_NEVER = -(10**15)


# --------------------------------------------------------------------------------------------
# per-tile cost (vectorised recurrence of the exact model)
# --------------------------------------------------------------------------------------------


def _arr(x: Any, dtype: Any = np.int64) -> np.ndarray:
    return np.asarray(x, dtype=dtype)


def tile_costs(
    config: SatConfig,
    *,
    dataflow: Any,
    rows: Any,
    cols: Any = 1,
    steps: Any,
    n: Any,
    load_a: Any = True,
    load_b: Any = True,
    store: Any = True,
    chained: Any = False,
    copies: int = 24,
) -> dict[str, np.ndarray]:
    """Exact cost of each tile repeated back to back, for arrays of tiles (broadcast together).

    Parameters
    ----------
    config : SatConfig
    dataflow : array_like
        ``isa.Dataflow`` values (0 = OS, 1 = WS) or ``"os"`` / ``"ws"``.
    rows, cols, steps, n : array_like of int
        The descriptor fields (``n`` of its ``n:m``; only the A-line count ``ceil(steps / n)`` of an
        OS tile depends on it). ``cols`` does not change the timing.
    load_a, load_b, store, chained : array_like of bool
        Descriptor flags kept for every copy, and whether consecutive copies share acc-lines (as
        :func:`~trainforge.dataflow.sat_timing.tile_cost`'s ``chained``).
    copies : int
        Copies evaluated (24, as ``tile_cost``; fewer is faster and still exact once the stream is
        periodic, which short streams reach after 2 or 3 copies).

    Returns
    -------
    dict of numpy.ndarray
        ``steady`` (float), ``overhead0`` / ``overhead1`` (``cycles(n) - n * steady`` for even /
        odd ``n``; equal when ``period == 1``), ``period``, ``single``, ``linear_from``, ``compute``,
        ``memory`` and ``cycles`` (``(..., copies)``: ``cycles[..., k]`` for ``k + 1`` copies).
        ``period`` is 0 where no period up to 4 was found (never seen; ``tile_cost`` raises there).
    """
    if isinstance(dataflow, str) or (isinstance(dataflow, np.ndarray) and dataflow.dtype.kind == "U"):
        dataflow = np.char.lower(np.asarray(dataflow)) == "ws"
    ws, rows, steps, n = np.broadcast_arrays(_arr(dataflow) != 0, _arr(rows), _arr(steps), _arr(n))
    la, lb, st, ch = (np.broadcast_to(_arr(x, bool), ws.shape) for x in (load_a, load_b, store, chained))
    shape = ws.shape
    ws, rows, steps, n, la, lb, st, ch = (np.ravel(x) for x in (ws, rows, steps, n, la, lb, st, ch))
    b = ws.size
    cfg = config
    interval, lat = cfg.mem_interval, max(cfg.mem_latency, 1)
    lpe, gap, r = latency(cfg), os_last_gap(cfg), cfg.rows
    a_lines = np.where(ws, rows, -(-steps // n))
    wa = a_lines * cfg.a_words
    wb = steps * cfg.b_words
    wst = rows * cfg.acc_words
    never = np.full(b, _NEVER, dtype=np.int64)

    last_req = never.copy()  # no request yet: max(offered, _NEVER + I) == offered
    last_pop = never.copy()
    i = np.zeros(b, dtype=np.int64)
    feed_idle = np.zeros(b, dtype=np.int64)
    last_beat = never.copy()
    os_last = never.copy()
    computed: list[np.ndarray] = []
    stored: list[np.ndarray] = []
    accepted: list[np.ndarray] = []
    cycles = np.empty((b, copies), dtype=np.int64)
    late = np.zeros(b, dtype=bool)

    def transfer(offered: np.ndarray, words: np.ndarray, last_req: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        first = np.maximum(offered, last_req + interval)
        return first, first + (words - 1) * interval

    for t in range(copies):
        # dispatch: one descriptor per cycle, a job slot freed by the store of t - 4
        acc_t = np.zeros(b, dtype=np.int64) if t == 0 else accepted[t - 1] + 1
        if t >= 4:
            acc_t = np.maximum(acc_t, stored[t - 4])
        accepted.append(acc_t)
        if t == 0:
            i = np.maximum(i, acc_t + 1)  # the DMA waits in IDLE for the first dispatch
        else:
            late |= acc_t + 1 > i  # would store first: not modelled here (never seen)
        # L(t) from its LOAD_A cycle
        cyc = i + 1
        z = cyc + 1
        wait = computed[t - 2] if t >= 2 else never
        start = np.maximum(cyc, wait)
        _, last = transfer(start + 1, wa, last_req)
        last_req = np.where(la, last, last_req)
        last_pop = np.where(la, last + lat, last_pop)
        z = np.where(la, last + 1, z)
        start = np.maximum(z, wait)
        _, last = transfer(start + 1, wb, last_req)
        last_req = np.where(lb, last, last_req)
        pop_nob = np.maximum(z + 1, last_pop + 1)
        loaded = np.where(lb, last + lat + 1, pop_nob + 1)
        last_pop = np.where(lb, last + lat, pop_nob)
        i = np.where(lb, last + 1, z + 1)
        # S(t - 1)
        if t >= 1:
            s = np.maximum(i + 1, computed[t - 1])
            _first, last = transfer(s + 2, wst, last_req)
            last_req = np.where(st, last, last_req)
            stored[t - 1] = np.where(st, last + 1, s + 1)
            i = stored[t - 1]
        # feeder, array, writeback of job t
        c = np.maximum(feed_idle, loaded)
        if t >= 1:
            c = np.where(ch, np.maximum(c, np.maximum(computed[t - 1], stored[t - 1])), c)
        d0 = np.maximum(c + 1, last_beat)
        last_os = d0 + steps
        if t >= 1:
            last_os = np.maximum(last_os, os_last + gap)
        os_last = np.where(ws, os_last, last_os)
        x = np.where(ws, d0 + r + rows - 1, d0 + steps - 1)
        last_beat = np.where(ws, x + 1, last_os)
        last_row = np.where(ws, x + 1 + lpe, last_os + lpe + r - 1)
        computed.append(last_row + 2)
        feed_idle = x + 1
        stored.append(never)  # filled by S(t) in the next round
        # the run of exactly t + 1 copies ends with S(t) straight after S(t - 1)
        s = np.maximum(i + 1, computed[t])
        _, last = transfer(s + 2, wst, last_req)
        cycles[:, t] = np.where(st, last + 1, s + 1) + 2
    if late.any():
        raise UsageError("tile_costs: a dispatch arrived after the DMA was idle (not modelled); use tile_cost")

    # steady state and fill / drain, as tile_cost derives them from the totals
    diffs = np.diff(cycles, axis=1)  # diffs[:, k] = cycles(k + 2) - cycles(k + 1)
    lo = copies // 2
    period = np.zeros(b, dtype=np.int64)
    for p in range(4, 0, -1):
        ok = np.ones(b, dtype=bool)
        for nn in range(lo, copies + 1):
            ok &= diffs[:, nn - 2] == diffs[:, nn - 2 - p]
        period = np.where(ok, p, period)
    pp = np.maximum(period, 1)
    total = cycles[:, copies - 1]
    back = np.take_along_axis(cycles, (copies - 1 - pp)[:, None], axis=1)[:, 0]
    steady = (total - back) / pp
    # overheads[n % period] for the last `period` n (periods 1 and 2 cover every case seen)
    ns = np.arange(1, copies + 1)
    ovh = cycles - ns[None, :] * steady[:, None]
    even = ovh[:, copies - 1 if copies % 2 == 0 else copies - 2]
    odd = ovh[:, copies - 1 if copies % 2 == 1 else copies - 2]
    overhead0 = np.where(pp == 1, ovh[:, -1], even)
    overhead1 = np.where(pp == 1, ovh[:, -1], odd)
    pred = np.where(ns[None, :] % 2 == 0, overhead0[:, None], overhead1[:, None]) + ns[None, :] * steady[:, None]
    exact = np.isclose(pred, cycles)
    # linear_from: smallest n from which every total is on the line
    bad_after = np.where(~exact, ns[None, :], 0).max(axis=1)
    linear_from = np.minimum(bad_after + 1, copies)
    compute = np.where(ws, r + rows + 1, np.maximum(steps + 1, gap))
    memory = _memory_closed_form(cfg, la, lb, st, wa, wb, wst)
    out = {
        "steady": steady,
        "overhead0": overhead0,
        "overhead1": overhead1,
        "period": period,
        "single": cycles[:, 0],
        "linear_from": linear_from,
        "compute": compute,
        "memory": memory,
    }
    out = {k: v.reshape(shape) for k, v in out.items()}
    out["cycles"] = cycles.reshape(*shape, copies)
    return out


def _memory_closed_form(
    cfg: SatConfig, la: np.ndarray, lb: np.ndarray, st: np.ndarray, wa: np.ndarray, wb: np.ndarray, wst: np.ndarray
) -> np.ndarray:
    """The DMA's cycles per tile when it never waits (``sat_timing._memory_cycles``, vectorised).

    One job's FSM cycles: IDLE, LOAD_A, the A words, LOAD_B, the B words, IDLE, STORE_WAIT, STORE,
    the store words; a word costs ``max(gap, I)`` with ``gap`` the cycles since the previous word
    (cyclically, the previous tile's last word).
    """
    interval = cfg.mem_interval
    wa, wb, wst = wa * la, wb * lb, wst * st
    total = 2 + wa + 1 + wb + 2 + st.astype(np.int64) + wst  # FSM cycles of one job
    words = wa + wb + wst
    # inside a transfer every gap is 1; the first word of each transfer has a longer gap
    inner = np.maximum(1, interval) * (np.maximum(wa - 1, 0) + np.maximum(wb - 1, 0) + np.maximum(wst - 1, 0))
    # positions of the transfers' first and last words in the job's cycle sequence
    a_first, a_last = 2, 2 + wa - 1
    b_first = 2 + wa + 1
    b_last = b_first + wb - 1
    s_first = b_first + wb + 3
    s_last = s_first + wst - 1
    firsts = ((wa > 0, a_first, a_last), (wb > 0, b_first, b_last), (wst > 0, s_first, s_last))
    gaps = np.zeros_like(total)
    # the previous transfer of the same job, else the last one of the previous job (cyclic)
    final_last = np.where(wst > 0, s_last, np.where(wb > 0, b_last, a_last)) - total
    prev_last = final_last
    for present, f, lst in firsts:
        gaps += np.where(present, np.maximum(f - prev_last, interval), 0)
        prev_last = np.where(present, lst, prev_last)
    return np.where(words > 0, inner + gaps, total)


def steady_closed_form(config: SatConfig, **fields: Any) -> np.ndarray:
    """Steady cycles per tile as one max of cycle means (no recurrence): an upper bound, exact in the
    regimes docs/scheduler.md lists (compute- or memory-bound tiles of identical copies).

    ``max(compute, memory, loop / 2, chain)`` where ``loop`` is the double-buffer cycle over two
    tiles (load, data latency, feed, array latency, writeback, store) and ``chain`` the accumulator
    dependency of chained copies. Fields as :func:`tile_costs`.
    """
    cfg = config
    ws = _arr(fields["dataflow"]) != 0
    rows, steps, n = _arr(fields["rows"]), _arr(fields["steps"]), _arr(fields["n"])
    la = _arr(fields.get("load_a", True), bool)
    lb = _arr(fields.get("load_b", True), bool)
    st = _arr(fields.get("store", True), bool)
    ch = _arr(fields.get("chained", False), bool)
    interval, lat = cfg.mem_interval, max(cfg.mem_latency, 1)
    lpe, gap, r = latency(cfg), os_last_gap(cfg), cfg.rows
    a_lines = np.where(ws, rows, -(-steps // n))
    wa, wb, wst = a_lines * cfg.a_words * la, steps * cfg.b_words * lb, rows * cfg.acc_words * st
    compute = np.where(ws, r + rows + 1, np.maximum(steps + 1, gap))
    memory = _memory_closed_form(cfg, la, lb, st, a_lines * cfg.a_words, steps * cfg.b_words, rows * cfg.acc_words)
    # feed span from the job's first feeder cycle to computed (exclusive)
    span = np.where(ws, r + rows + 1 + lpe + 2, np.maximum(steps, 1) + lpe + r - 1 + 2 + 1)
    load = np.maximum(wa - 1, 0) * interval + np.maximum(wb - 1, 0) * interval + 2 * (wa > 0) + 1 + (wb > 0)
    store_t = np.where(st, 2 + np.maximum(wst - 1, 0) * interval + 1, 1)
    loop = load + lat + 1 + span + store_t + 1
    chain = np.where(ch, span + store_t, 0)
    return np.maximum.reduce([compute, memory, -(-loop // 2), chain]).astype(float)


# --------------------------------------------------------------------------------------------
# GEMMs and mappings
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GemmShape:
    """``out[M x N] = A[M x K] . B[K x N]`` with B ``n:m`` compressed along K (``n == m``: dense)."""

    m_rows: int
    n_cols: int
    k: int
    n: int
    m: int
    count: int = 1

    @property
    def steps(self) -> int:
        """Compressed reduction steps: ``K`` dense, ``ceil(K / m) * n`` sparse."""
        return self.k if self.n == self.m else -(-self.k // self.m) * self.n


@dataclasses.dataclass(frozen=True)
class Mapping:
    """One candidate: dataflow, tile sizes and loop order.

    Attributes
    ----------
    dataflow : {"os", "ws"}
    tile_rows : int
        OS: rows per tile (<= R). WS: A rows per tile (<= min(a_lines, acc_lines)).
    tile_steps : int
        Compressed steps per tile (OS: <= b_lines and ceil(steps / n) <= a_lines; WS: <= R).
    order : {"a", "b"}
        ``a``: row blocks outer, A stays while a group of column blocks passes; ``b``: column
        blocks outer, B stays while a group of row blocks passes.
    group : int
        Output tiles sharing the stationary operand, each with its own acc-lines (``group * tile_rows
        <= acc_lines``). ``1`` is the K-innermost order (every tile loads both operands, a K split
        chains through the accumulator).
    """

    dataflow: Literal["os", "ws"]
    tile_rows: int
    tile_steps: int
    order: Literal["a", "b"]
    group: int = 1

    def label(self) -> str:
        return f"{self.dataflow.upper()} {self.tile_rows}x{self.tile_steps} {self.order}{self.group}"


def _blocks(total: int, size: int) -> list[int]:
    return [min(size, total - s) for s in range(0, total, size)]


def _slots(config: SatConfig, tile_rows: int, acc_lines: int | None) -> int:
    return max(1, (acc_lines or config.acc_lines) // tile_rows)


def gemm_tiles(
    config: SatConfig,
    gemm: GemmShape,
    mapping: Mapping,
    *,
    tag: isa.Tag = isa.Tag.OTHER,
    acc_base: int = 0,
    acc_lines: int | None = None,
) -> list[isa.Gemm]:
    """The descriptor stream of one product of ``gemm`` under ``mapping`` (addresses are nominal).

    Loop nest: ``for o in outer blocks: for group: for kc in K chunks: for member in group: tile``
    (outer = row blocks for order ``a``, column blocks for ``b``). Output tile number ``u`` (in
    order of first appearance) uses acc-lines ``acc_base + (u mod S) * tile_rows``, ``S =
    acc_lines // tile_rows`` slots, so consecutive tiles share acc-lines only along a K chain of a
    one-tile group (or when ``S == 1``). A tile loads an operand only when it differs from the
    previous tile's (:func:`~trainforge.hw.sat.lines.gemm_program`'s rule).
    """
    cfg = config
    ws = mapping.dataflow == "ws"
    tr, ts = mapping.tile_rows, mapping.tile_steps
    row_blocks = _blocks(gemm.m_rows, tr)
    col_blocks = _blocks(gemm.n_cols, cfg.cols)
    k_chunks = _blocks(gemm.steps, ts)
    nk = len(k_chunks)
    slots = _slots(cfg, tr, acc_lines)
    df = isa.Dataflow.WS if ws else isa.Dataflow.OS
    out: list[isa.Gemm] = []
    prev_a = prev_b = None
    g = max(1, mapping.group)
    outer, inner = (row_blocks, col_blocks) if mapping.order == "a" else (col_blocks, row_blocks)
    u = 0
    for o in range(len(outer)):
        for g0 in range(0, len(inner), g):
            members = range(g0, min(g0 + g, len(inner)))
            for kc in range(nk):
                for j, i in enumerate(members):
                    rb, p = (o, i) if mapping.order == "a" else (i, o)
                    rows, cols, steps = row_blocks[rb], col_blocks[p], k_chunks[kc]
                    key_a, key_b = (rb, kc), (p, kc)
                    a_lines = rows if ws else -(-steps // gemm.n)
                    out.append(
                        isa.Gemm(
                            tag=tag,
                            dataflow=df,
                            n=gemm.n,
                            m=gemm.m,
                            rows=rows,
                            cols=cols,
                            steps=steps,
                            a_addr=(rb * nk + kc) * a_lines * cfg.a_words,
                            b_addr=(p * nk + kc) * ts * cfg.b_words,
                            c_addr=(p * gemm.m_rows + rb * tr) * cfg.acc_words,
                            acc_addr=acc_base + ((u + j) % slots) * tr,
                            load_a=key_a != prev_a,
                            load_b=key_b != prev_b,
                            accumulate=kc > 0,
                            store=kc == nk - 1,
                        )
                    )
                    prev_a, prev_b = key_a, key_b
            u += len(members)
    return out


def candidates(config: SatConfig, gemm: GemmShape, *, acc_lines: int | None = None) -> list[Mapping]:
    """Every mapping of ``gemm`` that fits the buffers (``acc_lines``: the acc-lines it may use).

    OS: ``min(R, M)`` rows, K chunks of ``8 n * 2^j`` steps and the largest that fits
    (``steps <= b_lines``, ``ceil(steps / n) <= a_lines``); WS: ``min(R, steps)`` steps, A rows
    ``R * 2^j`` up to ``min(a_lines, acc_lines, M)``; both orders; groups 1, 2, 4, ... up to the
    acc-line slots and the blocks there are.
    """
    cfg = config
    acc = acc_lines or cfg.acc_lines
    total = gemm.steps
    n_cols = -(-gemm.n_cols // cfg.cols)
    out: list[Mapping] = []

    def groups(tile_rows: int, order: str) -> list[int]:
        slots = acc // tile_rows
        blocks = n_cols if order == "a" else -(-gemm.m_rows // tile_rows)
        top = min(slots, blocks)
        gs, g = [1], 2
        while g < top:
            gs.append(g)
            g *= 2
        if top >= 2:
            gs.append(top)
        return sorted(set(gs))

    os_rows = min(cfg.rows, gemm.m_rows)
    max_os = min(cfg.b_lines, cfg.a_lines * gemm.n, total)
    if max_os < total:
        max_os = max_os // gemm.n * gemm.n
    options = {max_os} if max_os >= 1 else set()
    s = gemm.n * 8
    while s < max_os:
        options.add(s)
        s *= 2
    if os_rows <= acc:
        for s in sorted(options):
            for order in ("a", "b"):
                out.extend(Mapping("os", os_rows, s, order, g) for g in groups(os_rows, order))
    ws_steps = min(cfg.rows, total)
    limit = min(cfg.a_lines, acc, gemm.m_rows)
    sizes, tr = set(), min(cfg.rows, gemm.m_rows)
    while tr < limit:
        sizes.add(tr)
        tr *= 2
    if limit >= 1:
        sizes.add(limit)
    for tr in sorted(sizes):
        for order in ("a", "b"):
            out.extend(Mapping("ws", tr, ws_steps, order, g) for g in groups(tr, order))
    if not out:
        raise UsageError(f"no tile of {gemm} fits the buffers (acc_lines={acc})")
    return out


# --------------------------------------------------------------------------------------------
# tile classes of a mapping's stream, vectorised over (GEMM, candidate)
# --------------------------------------------------------------------------------------------

_CLASS_FIELDS = ("ws", "rows", "cols", "steps", "n", "load_a", "load_b", "store", "accumulate", "chained", "count")


def _runs(sizes: list[int]) -> list[tuple[int, bool, int]]:
    """``(size, is_first, multiplicity)`` of a block list (all full but possibly the last)."""
    out = [(sizes[0], True, 1)]
    if len(sizes) > 2:
        out.append((sizes[1], False, len(sizes) - 2))
    if len(sizes) > 1:
        out.append((sizes[-1], False, 1))
    return out


def _classes(config: SatConfig, gemm: GemmShape, mp: Mapping, acc_lines: int | None = None) -> dict[tuple, int]:
    """Tile classes of :func:`gemm_tiles`'s stream, counted from the loop nest without emitting it.

    Keys ``(ws, rows, cols, steps, n, load_a, load_b, store, accumulate, chained)``, values the
    number of tiles; ``tests/dataflow/test_mapping.py`` checks them against the emitted stream.
    """
    cfg = config
    ws = int(mp.dataflow == "ws")
    row_blocks = _blocks(gemm.m_rows, mp.tile_rows)
    col_blocks = _blocks(gemm.n_cols, cfg.cols)
    ks = _blocks(gemm.steps, mp.tile_steps)
    nk = len(ks)
    slots = _slots(cfg, mp.tile_rows, acc_lines)
    g = max(1, mp.group)
    a_order = mp.order == "a"
    outer, inner = (row_blocks, col_blocks) if a_order else (col_blocks, row_blocks)
    n_outer, n_inner = len(outer), len(inner)
    group_list = [inner[g0 : g0 + g] for g0 in range(0, n_inner, g)]
    # distinct groups: (members, is_first_group, multiplicity)
    groups: list[tuple[list[int], bool, int]] = [(group_list[0], True, 1)]
    if len(group_list) > 2:
        groups.append((group_list[1], False, len(group_list) - 2))
    if len(group_list) > 1:
        groups.append((group_list[-1], False, 1))
    kcs = [(ks[0], 0, 1)]
    if nk > 2:
        kcs.append((ks[1], 1, nk - 2))
    if nk > 1:
        kcs.append((ks[-1], nk - 1, 1))
    out: dict[tuple, int] = {}
    n = gemm.n
    for ov, o_first, om in _runs(outer):
        for members, g_first, gm in groups:
            size = len(members)
            for kv, kc, km in kcs:
                for j, iv in enumerate(members):
                    if j > 0:
                        stat, other = False, True
                    elif kc > 0:
                        stat, other = True, True
                    elif not g_first:
                        stat, other = nk > 1, True
                    else:  # first tile of an outer block (the stream's first tile is fixed below)
                        stat, other = True, not (n_inner == 1 and nk == 1)
                    la, lb = (stat, other) if a_order else (other, stat)
                    chained = slots == 1 or (size == 1 and kc > 0)
                    rv, cv = (ov, iv) if a_order else (iv, ov)
                    key = (ws, rv, cv, kv, n, la, lb, kc == nk - 1, kc > 0, chained)
                    out[key] = out.get(key, 0) + om * gm * km
                    if o_first and g_first and kc == 0 and j == 0 and not (la and lb):
                        # the stream's first tile loads both operands
                        out[key] -= 1
                        first = (ws, rv, cv, kv, n, True, True, kc == nk - 1, False, chained)
                        out[first] = out.get(first, 0) + 1
    del n_outer
    return {k: v for k, v in out.items() if v}


@dataclasses.dataclass
class SearchResult:
    """The chosen mapping per GEMM and the estimates of every candidate.

    Attributes
    ----------
    best : list of Mapping
        One per GEMM, by the objective.
    cycles, energy_j : list of numpy.ndarray
        Per GEMM, the estimate of each candidate (``candidates[i]`` order) for ``count`` products.
    candidates : list of list of Mapping
    evaluations : int
        (GEMM x candidate) points costed.
    """

    best: list[Mapping]
    best_index: list[int]
    cycles: list[np.ndarray]
    energy_j: list[np.ndarray]
    candidates: list[list[Mapping]]
    evaluations: int


def _candidate_arrays(
    config: SatConfig, gemms: Sequence[GemmShape], cands: Sequence[Sequence[Mapping]]
) -> dict[str, np.ndarray]:
    """One entry per (GEMM, candidate): the GEMM's and the mapping's numbers as int64 arrays."""
    rows = []
    for gemm, cl in zip(gemms, cands, strict=True):
        base = (gemm.m_rows, gemm.n_cols, gemm.steps, gemm.n)
        rows.extend((*base, mp.dataflow == "ws", mp.tile_rows, mp.tile_steps, mp.order == "a", mp.group) for mp in cl)
    table = np.array(rows, dtype=np.int64).reshape(-1, 9)
    names = ("M", "N", "S", "n", "ws", "tr", "ts", "a_order", "g")
    return {name: table[:, k] for k, name in enumerate(names)}


def _class_table(
    config: SatConfig, c: dict[str, np.ndarray], acc_lines: int | None = None
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Tile classes of every candidate's stream, vectorised (the rules of :func:`_classes`).

    Each candidate's stream is split into 3 x 3 x 3 x 3 slots (first / middle / last outer block,
    group, K chunk; first / middle / ragged-last group member) plus the stream's first tile; a slot
    is one tile class with a multiplicity (0 when the slot does not exist). Returns the live slots'
    fields and the candidate each belongs to.
    """
    cfg = config
    cols_hw = cfg.cols
    m_, n_, s_, tr, ts, g = c["M"], c["N"], c["S"], c["tr"], c["ts"], np.maximum(c["g"], 1)
    a_order = c["a_order"].astype(bool)
    nrb, rl = -(-m_ // tr), m_ - (-(-m_ // tr) - 1) * tr
    ncb, cl = -(-n_ // cols_hw), n_ - (-(-n_ // cols_hw) - 1) * cols_hw
    nk, kl = -(-s_ // ts), s_ - (-(-s_ // ts) - 1) * ts
    slots = np.maximum((acc_lines or cfg.acc_lines) // tr, 1)
    n_out = np.where(a_order, nrb, ncb)
    out_full, out_last = np.where(a_order, tr, cols_hw), np.where(a_order, rl, cl)
    n_in = np.where(a_order, ncb, nrb)
    in_full, in_last = np.where(a_order, cols_hw, tr), np.where(a_order, cl, rl)
    ng = -(-n_in // g)
    g_last = n_in - (ng - 1) * g
    one = np.ones_like(m_)
    zero = np.zeros_like(m_)
    # outer runs: (size, first, mult)
    o_runs = [
        (np.where(n_out == 1, out_last, out_full), True, one),
        (out_full, False, np.maximum(n_out - 2, 0)),
        (out_last, False, (n_out > 1).astype(np.int64)),
    ]
    # groups: (size, has the ragged last inner block, first, mult)
    g_runs = [
        (np.where(ng == 1, g_last, g), ng == 1, True, one),
        (g, np.zeros_like(a_order), False, np.maximum(ng - 2, 0)),
        (g_last, np.ones_like(a_order), False, (ng > 1).astype(np.int64)),
    ]
    k_runs = [
        (np.where(nk == 1, kl, ts), zero, one),
        (ts, one, np.maximum(nk - 2, 0)),
        (kl, nk - 1, (nk > 1).astype(np.int64)),
    ]
    parts: list[dict[str, np.ndarray]] = []

    def add(live: np.ndarray, **fields: Any) -> None:
        idx = np.flatnonzero(live)
        if idx.size:
            part = {k: np.broadcast_to(v, live.shape)[idx] for k, v in fields.items()}
            part["owner"] = idx
            parts.append(part)

    for ov, o_first, om in o_runs:
        for size, ragged, g_first, gm in g_runs:
            # members: j = 0, middle j > 0 of full size, the ragged last member (j > 0)
            j0_val = np.where(ragged & (size == 1), in_last, in_full)
            mid_count = np.where(ragged, np.maximum(size - 2, 0), size - 1)
            last_count = (ragged & (size > 1)).astype(np.int64)
            members = [(True, j0_val, one), (False, in_full, mid_count), (False, in_last, last_count)]
            for kv, kc, km in k_runs:
                base = om * gm * km
                if not base.any():
                    continue
                for first_member, iv, jm in members:
                    mult = base * jm
                    if o_first and g_first and first_member:
                        mult = mult - (kc == 0)  # the stream's first tile is its own slot below
                    if first_member:
                        if g_first:
                            stat = True
                            other = (kc > 0) | ~((n_in == 1) & (nk == 1))
                        else:
                            stat = (kc > 0) | (nk > 1)
                            other = True
                    else:
                        stat, other = False, True
                    add(
                        mult > 0,
                        rows=np.where(a_order, ov, iv),
                        cols=np.where(a_order, iv, ov),
                        steps=kv,
                        load_a=np.where(a_order, stat, other),
                        load_b=np.where(a_order, other, stat),
                        store=kc == nk - 1,
                        accumulate=kc > 0,
                        chained=(slots == 1) | ((size == 1) & (kc > 0)),
                        count=mult,
                    )
    first_rows = np.where(nrb == 1, rl, tr)
    first_cols = np.where(ncb == 1, cl, cols_hw)
    add(
        one > 0,
        rows=np.where(a_order, first_rows, np.where((ng == 1) & (nrb == 1), rl, tr)),
        cols=np.where(a_order, np.where((ng == 1) & (ncb == 1), cl, cols_hw), first_cols),
        steps=np.where(nk == 1, kl, ts),
        load_a=True,
        load_b=True,
        store=nk == 1,
        accumulate=False,
        chained=slots == 1,
        count=one,
    )
    out = {k: np.concatenate([p[k] for p in parts]).astype(np.int64, copy=False) for k in parts[0]}
    owner = out.pop("owner")
    out["ws"] = c["ws"][owner]
    out["n"] = c["n"][owner]
    return out, owner


def estimate_mapping(
    config: SatConfig,
    gemms: Sequence[GemmShape],
    cands: Sequence[Sequence[Mapping]],
    *,
    energy_table: EnergyTable | None = None,
    acc_lines: int | None = None,
    copies: int = 8,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Cycle and energy estimates of every candidate of every GEMM (``count`` products each).

    Cycles: ``sum over tile classes of count * steady + the largest class overhead`` (fill and drain
    once per GEMM); energy: the classes' :func:`~trainforge.dataflow.energy.gemm_actions` times their
    counts through :func:`~trainforge.dataflow.energy.energy_matrix`.
    """
    f, owner = _class_table(config, _candidate_arrays(config, gemms, cands), acc_lines)
    # identical classes (the timing ignores cols and accumulate) are costed once: one int64 key each
    key = f["steps"]
    for name, bits in (("rows", 17), ("n", 6), ("ws", 1), ("load_a", 1), ("load_b", 1), ("store", 1), ("chained", 1)):
        key = (key << bits) | f[name]
    uniq, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    u = {name: f[name][first] for name in ("ws", "rows", "steps", "n", "load_a", "load_b", "store", "chained")}
    cost = tile_costs(
        config,
        dataflow=u["ws"],
        rows=u["rows"],
        steps=u["steps"],
        n=u["n"],
        load_a=u["load_a"].astype(bool),
        load_b=u["load_b"].astype(bool),
        store=u["store"].astype(bool),
        chained=u["chained"].astype(bool),
        copies=copies,
    )
    del uniq
    steady = cost["steady"][inverse]
    overhead = np.maximum(cost["overhead0"], cost["overhead1"])[inverse]
    count = f["count"]
    flags = {k: f[k].astype(bool) for k in ("load_a", "load_b", "accumulate", "store")}
    matrix = energy_matrix(config, energy_table).sum(axis=1)  # joules per count, all components
    ws = f["ws"].astype(bool)
    joules = np.zeros(len(count))
    for dataflow, sel in (("os", ~ws), ("ws", ws)):
        if sel.any():
            acts = gemm_actions(
                config,
                dataflow=dataflow,
                n=f["n"][sel],
                rows=f["rows"][sel],
                cols=f["cols"][sel],
                steps=f["steps"][sel],
                **{k: v[sel] for k, v in flags.items()},
            )
            total = np.zeros(int(sel.sum()))
            for k, name in enumerate(ACTION_FIELDS):  # a dot product without stacking 17 arrays
                if matrix[k]:
                    total += np.asarray(getattr(acts, name), dtype=np.float64) * matrix[k]
            joules[sel] = total
    n_cands = sum(len(c) for c in cands)
    cyc = np.bincount(owner, weights=count * steady, minlength=n_cands)
    order = np.argsort(owner, kind="stable")  # every candidate has at least its first tile
    starts = np.searchsorted(owner[order], np.arange(n_cands))
    cyc = cyc + np.maximum.reduceat(overhead[order], starts)
    energy = np.bincount(owner, weights=count * joules, minlength=n_cands)
    cycles_out, energy_out, pos = [], [], 0
    for gemm, cl in zip(gemms, cands, strict=True):
        k = len(cl)
        cycles_out.append(cyc[pos : pos + k] * gemm.count)
        energy_out.append(energy[pos : pos + k] * gemm.count)
        pos += k
    return cycles_out, energy_out


def search(
    config: SatConfig,
    gemms: Sequence[GemmShape],
    *,
    objective: str = "latency",
    energy_table: EnergyTable | None = None,
    acc_lines: int | None = None,
    cands: Sequence[Sequence[Mapping]] | None = None,
    copies: int = 8,
) -> SearchResult:
    """The best mapping of each GEMM by ``objective`` (``latency``, ``energy`` or ``edp``).

    Every candidate of every GEMM is costed in one vectorised pass (:func:`estimate_mapping`).
    """
    if objective not in OBJECTIVES:
        raise UsageError(f"objective must be one of {', '.join(OBJECTIVES)}, not {objective!r}")
    if cands is None:
        cands = [candidates(config, g, acc_lines=acc_lines) for g in gemms]
    cycles, energy = estimate_mapping(
        config, gemms, cands, energy_table=energy_table, acc_lines=acc_lines, copies=copies
    )
    best, best_index = [], []
    for cl, cy, en in zip(cands, cycles, energy, strict=True):
        score = {"latency": cy, "energy": en, "edp": cy * en}[objective]
        k = int(np.lexsort((np.arange(len(cl)), cy, score))[0])
        best.append(cl[k])
        best_index.append(k)
    return SearchResult(best, best_index, cycles, energy, [list(c) for c in cands], sum(len(c) for c in cands))
