"""The SAT prune engine: C lanes of the online N:M pruning unit, with a C x C transposer for the FF copy.

It executes the data path of a PRUNE descriptor (docs/sat-architecture.md, "PRUNE"): the controller
streams the op's dense w-lines in (``request``) and writes what comes out: the compressed b-lines
(``blines``) and the keep-mask lines (``masks``). Addresses and strides are the controller's.

``transpose = 0`` (BP copy)
    Lane ``j`` gets element ``j`` of each w-line; a group is ``m`` consecutive lines. W-line ``k``
    gives mask-line ``k`` (bit ``j`` = lane ``j``'s keep bit). For a ``lines x C`` matrix ``W`` the
    b-lines are the rows of ``nm_compress(W, n, m, dim=0)`` and the mask-lines those of
    ``nm_mask(W, n, m, dim=0)``.
``transpose = 1`` (FF copy)
    The w-lines arrive panel by panel, the C rows of a band: line ``p * C + i`` is row ``i`` of panel
    ``p``, i.e. columns ``p * C .. p * C + C - 1`` of row ``i`` of the band. A C x C transposer turns
    each panel around, so lane ``i`` walks row ``i`` of the band along its columns, panel after
    panel; a group is ``m`` consecutive columns and may span panels (``m > C``). For the band
    ``B`` (C x ``lines * C``) the b-lines are the columns of ``nm_compress(B, n, m, dim=1)``; the
    mask-lines are in the panel layout again: for each panel ``p``, for each row ``i``, the keep bits of
    row ``i``'s C columns of panel ``p`` (bit ``c`` = column ``p * C + c``), emitted panel by panel
    once every group covering the panel is decided.

Micro-architecture
------------------
``request -> [transposer] -> NMPrune -> group serialiser -> blines``
                                               ``-> masks (direct | transposed back)``

* Transposer (FF only): one C x C register array that shifts by one vector per cycle, vertically
  or horizontally, the direction alternating from panel to panel: while panel ``p`` is shifted out
  column by column, panel ``p + 1`` shifts in line by line into the places just freed, already in
  the orientation its own read-out needs. Column ``q`` of the band reaches NMPrune exactly ``C``
  cycles after line ``q`` of the request (the last panel is flushed by ``C`` shifts without input).
* NMPrune (``hw/nm_prune.py``, ``lanes = C``): one weight per lane per cycle; a group's result
  sits in its output register one cycle after the group's last weight.
* Group serialiser: emits the group's ``n`` kept values as ``n`` b-lines (slot ``s`` of every lane
  is b-line ``s``) and, in BP mode, its ``m`` mask-lines, straight from NMPrune's output register,
  which it releases on the last of them; NMPrune keeps taking weights meanwhile, so one w-line per
  cycle is sustained (``n < m`` b-lines and ``m`` mask-lines per ``m`` w-lines).
* Mask transposer (FF only): each group's ``m`` keep bits per lane are appended to a per-lane bit
  accumulator (``C + m_max - 1`` bits, enough never to stall at full rate); whenever it holds a whole
  panel (``C`` bits) the panel moves to an emission register that sends lane ``i``'s bits as
  mask-line ``i``, one per cycle.

An op ends with the transfer of its last b-line and last mask-line (both flagged ``last``); from
accepting the op's last w-line until then, ``request.ready`` is low. ``params`` must stay stable until
that last transfer and may change in the next cycle, with the next op's first w-line.
Throughout, back-pressure on either output stalls the engine without loss.

Cycle behaviour (inputs always valid, outputs always ready): :func:`prune_cycles`.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from trainforge.hw.nm_prune import NMPrune, NMPruneConfig
from trainforge.hw.sat.config import SatConfig

__all__ = [
    "PruneEngine",
    "prune_bline_layout",
    "prune_cycles",
    "prune_mask_layout",
    "prune_params_layout",
    "prune_request_layout",
]


def prune_params_layout() -> data.StructLayout:
    """The PRUNE op's run-time parameters: ``n``, ``m`` (5 bits each) and ``transpose``."""
    return data.StructLayout({"n": 5, "m": 5, "transpose": 1})


def prune_request_layout(config: SatConfig) -> data.StructLayout:
    """One w-line in: ``line`` (``cols`` ``in_fmt`` bit patterns) and ``last`` (the op's final line)."""
    return data.StructLayout({"line": data.ArrayLayout(config.in_bits, config.cols), "last": 1})


def prune_bline_layout(config: SatConfig) -> data.StructLayout:
    """One b-line out: ``w`` (per lane ``value`` then ``index``, as the b-line format) and ``last``."""
    weight = data.StructLayout({"value": config.in_bits, "index": config.index_bits})
    return data.StructLayout({"w": data.ArrayLayout(weight, config.cols), "last": 1})


def prune_mask_layout(config: SatConfig) -> data.StructLayout:
    """One mask-line out: ``keep`` (``cols`` bits, bit ``j`` = lane or column ``j``) and ``last``."""
    return data.StructLayout({"keep": config.cols, "last": 1})


def prune_cycles(config: SatConfig, n: int, m: int, lines: int, transpose: bool) -> int:
    """Cycles of one PRUNE op with inputs always valid and outputs always ready.

    Counted from the cycle the op's first w-line is accepted to the cycle of its last output
    transfer, both included. W-line ``k`` is accepted in cycle ``k`` (one per cycle, no bubble).

    * ``transpose = 0``: group ``g`` (lines ``g m .. g m + m - 1``) sits in NMPrune's output register
      from cycle ``g m + m``; its b-line ``s`` and mask-line ``k`` leave in cycles ``g m + m + s`` and
      ``g m + m + k``. The last transfer is the last group's mask-line ``m - 1``: ``lines + m`` cycles.
    * ``transpose = 1`` (``lines`` panels, ``P = lines``): column ``q`` of the band enters NMPrune in
      cycle ``C + q``, so group ``g`` is presented in cycle ``S_g = C + (g + 1) m`` and its b-line
      ``s`` leaves in ``S_g + s`` (the last b-line in ``C + P C + n - 1``); the group's keep bits
      enter the mask accumulator in ``S_g``. Panel ``p`` is complete after group
      ``g_p = (p C + C - 1) // m`` and moves to the emission register in cycle
      ``M_p = max(S_{g_p} + 1, M_{p-1} + C)``; its mask-lines leave in ``M_p + 1 .. M_p + C``.

    Parameters
    ----------
    config : SatConfig
    n, m : int
        The pattern, ``1 <= n < m``, ``m`` dividing ``config.m_max``.
    lines : int
        The descriptor's ``lines``: w-lines (``transpose = 0``) or panels of ``C`` w-lines.
    transpose : bool

    Returns
    -------
    int

    Raises
    ------
    TypeError
        ``config`` is not a :class:`SatConfig`.
    ValueError
        An unsupported pattern, ``lines < 1``, or a reduction that is not a multiple of ``m``.
    """
    if not isinstance(config, SatConfig):
        raise TypeError(f"config must be a SatConfig, not {config!r}")
    if not (config.supports(n, m) and n < m):
        raise ValueError(f"{n}:{m} is not a PRUNE pattern of this configuration (1 <= n < m, m | {config.m_max})")
    if lines < 1:
        raise ValueError(f"lines must be a positive integer, not {lines!r}")
    c = config.cols
    reduction = lines * c if transpose else lines
    if reduction % m:
        raise ValueError(f"the reduction ({reduction} elements per lane) is not a multiple of m={m}")
    if not transpose:
        return lines + m
    last_bline = c + lines * c + n - 1
    move = -c  # M_{-1}: no earlier panel
    for p in range(lines):
        presented = c + ((p * c + c - 1) // m + 1) * m
        move = max(presented + 1, move + c)
    return max(last_bline, move + c) + 1


class PruneEngine(wiring.Component):
    """C lanes of online N:M pruning: dense w-lines in, compressed b-lines and keep-mask lines out.

    Parameters
    ----------
    config : SatConfig
        ``cols`` gives the lanes (and the transposer size), ``m_max`` the largest group,
        ``in_fmt`` the weight format.

    Members
    -------
    params : In(prune_params_layout())
        ``n``, ``m`` and ``transpose``, held stable by the controller from the op's first w-line
        until its last output transfer. ``1 <= n < m <= m_max`` with ``m | m_max`` and the
        reduction a multiple of ``m`` (``isa.check``); anything else gives unspecified output,
        but the op still ends.
    request : In(stream.Signature(prune_request_layout(config)))
        The op's w-lines in the order described in the module docstring; ``last`` marks the
        final one. Not ready from then until the op's last output transfer.
    blines : Out(stream.Signature(prune_bline_layout(config)))
        For each group position in order, its ``n`` kept elements as ``n`` b-lines (b-line ``s``:
        lane ``j``'s ``s``-th kept value, ascending in-group index, and that index). ``last`` on
        the op's final b-line.
    masks : Out(stream.Signature(prune_mask_layout(config)))
        One mask-line per w-line, in order (BP: of the same w-line; FF: in the panel layout).
        ``last`` on the op's final mask-line. A controller that does not store masks holds
        ``ready`` high.

    Timing
    ------
    One w-line per cycle sustained while the outputs are ready. BP: a group's b-lines and
    mask-lines start leaving the cycle after its last w-line is taken (latency 1), one per cycle.
    FF: the transposer adds ``C`` cycles (column ``q`` enters NMPrune ``C`` cycles after w-line
    ``q``), and a panel's mask-lines start two cycles after the group completing it is presented.
    :func:`prune_cycles` gives the exact count of an op; after its last output transfer the
    engine takes the next op's first w-line in the following cycle.

    Raises
    ------
    TypeError
        ``config`` is not a :class:`SatConfig`.
    """

    def __init__(self, *, config: SatConfig) -> None:
        if not isinstance(config, SatConfig):
            raise TypeError(f"config must be a SatConfig, not {config!r}")
        self._config = config
        self._prune_config = NMPruneConfig(lanes=config.cols, m_max=config.m_max, fmt=config.in_fmt)
        super().__init__(
            {
                "params": In(prune_params_layout()),
                "request": In(stream.Signature(prune_request_layout(config))),
                "blines": Out(stream.Signature(prune_bline_layout(config))),
                "masks": Out(stream.Signature(prune_mask_layout(config))),
            }
        )

    @property
    def config(self) -> SatConfig:
        return self._config

    @property
    def accumulator_bits(self) -> int:
        """Per-lane keep bits the FF mask accumulator holds: ``C + m_max - 1``.

        At full rate it never holds more than one partial panel plus one group (checked over
        every ``C`` and ``m``); under back-pressure a group waits until its bits fit.
        """
        return self._config.cols + self._config.m_max - 1

    def elaborate(self, platform) -> Module:
        cfg = self._config
        lanes, m_max, width = cfg.cols, cfg.m_max, cfg.in_bits
        acc_bits = self.accumulator_bits
        m = Module()
        m.submodules.prune = prune = NMPrune(config=self._prune_config)
        sparse = prune.sparse
        request, blines, masks = self.request, self.blines, self.masks
        transpose = self.params.transpose
        line_in = request.payload.line.as_value()

        # ---- pattern: anything outside 1 <= n < m <= m_max runs as 1:2, so every op ends ----
        pattern_ok = (self.params.n >= 1) & (self.params.n < self.params.m) & (self.params.m <= m_max)
        n_eff = Signal(range(m_max + 1))
        m_eff = Signal(range(m_max + 1))
        m.d.comb += [
            n_eff.eq(Mux(pattern_ok, self.params.n, 1)),
            m_eff.eq(Mux(pattern_ok, self.params.m, 2)),
            prune.pattern.n.eq(n_eff),
            prune.pattern.m.eq(m_eff),
        ]

        # ---- op state --------------------------------------------------------------------------
        seen_last = Signal()  # the op's last w-line was accepted: input closed until the op drains
        req_accept = Signal()
        m.d.comb += req_accept.eq(request.valid & request.ready)
        with m.If(req_accept & request.payload.last):
            m.d.sync += seen_last.eq(1)

        # A copy of NMPrune's group position: tells which weight completes a group.
        position = Signal(range(m_max))
        completing = Signal()
        dense_accept = Signal()
        m.d.comb += [
            completing.eq(position == m_eff - 1),
            dense_accept.eq(prune.dense.valid & prune.dense.ready),
        ]
        with m.If(dense_accept):
            m.d.sync += position.eq(Mux(completing, 0, position + 1))

        # ---- transposer (FF) ---------------------------------------------------------------------
        buf = [[Signal(width, name=f"t{r}_{c}") for c in range(lanes)] for r in range(lanes)]
        fill = Signal(range(lanes))  # lines of the panel being shifted in
        pending = Signal(range(lanes + 1))  # columns of the previous panel not yet shifted out
        horizontal = Signal()  # shift direction while the current panel fills (alternates per panel)
        draining = Signal()
        shift = Signal()
        m.d.comb += draining.eq(pending != 0)
        in_elems = [line_in[c * width : (c + 1) * width] for c in range(lanes)]
        column_out = Cat(Mux(horizontal, buf[i][0], buf[0][i]) for i in range(lanes))
        with m.If(shift):
            for r in range(lanes):
                for c in range(lanes):
                    right = buf[r][c + 1] if c + 1 < lanes else in_elems[r]
                    below = buf[r + 1][c] if r + 1 < lanes else in_elems[c]
                    m.d.sync += buf[r][c].eq(Mux(horizontal, right, below))
            with m.If(draining):
                m.d.sync += pending.eq(pending - 1)
        with m.If(transpose & req_accept):
            with m.If((fill == lanes - 1) | request.payload.last):
                m.d.sync += [fill.eq(0), pending.eq(lanes), horizontal.eq(~horizontal)]
            with m.Else():
                m.d.sync += fill.eq(fill + 1)

        # ---- NMPrune input: w-lines (BP) or transposed columns (FF), then zero padding ----
        fed_all = Signal()  # every real weight of the op has entered NMPrune
        final_weight = Signal()  # this NMPrune input is the op's last real one
        pad = Signal()  # complete a short final group (malformed ops only) with zeros
        m.d.comb += pad.eq(fed_all & (position != 0))
        with m.If(transpose):
            m.d.comb += [
                fed_all.eq(seen_last & ~draining),
                final_weight.eq(seen_last & (pending == 1)),
                prune.dense.payload.as_value().eq(Mux(pad, 0, column_out)),
                prune.dense.valid.eq((draining & (request.valid | seen_last)) | pad),
                request.ready.eq(~seen_last & (~draining | prune.dense.ready)),
                # Filling only: shift as lines arrive; draining: as columns leave.
                shift.eq(Mux(draining, dense_accept, req_accept)),
            ]
        with m.Else():
            m.d.comb += [
                fed_all.eq(seen_last),
                final_weight.eq(request.payload.last),
                prune.dense.payload.as_value().eq(Mux(pad, 0, line_in)),
                prune.dense.valid.eq((request.valid & ~seen_last) | pad),
                request.ready.eq(~seen_last & prune.dense.ready),
            ]
        final_group = Signal()  # NMPrune's output register holds the op's last group
        with m.If(dense_accept & completing):
            m.d.sync += final_group.eq(fed_all | final_weight)

        # ---- group serialiser: b-lines --------------------------------------------------------
        slot = Signal(range(self._prune_config.slots))
        blines_done = Signal()  # this group's b-lines have all left
        slot_end = Signal()
        bl_xfer = Signal()
        m.d.comb += [
            blines.valid.eq(sparse.valid & ~blines_done),
            slot_end.eq(slot == n_eff - 1),
            blines.payload.last.eq(final_group & slot_end),
            bl_xfer.eq(blines.valid & blines.ready),
        ]
        for j in range(lanes):
            m.d.comb += [
                blines.payload.w[j].value.eq(sparse.payload[j].values[slot].as_value()),
                blines.payload.w[j].index.eq(sparse.payload[j].indices[slot]),
            ]
        with m.If(bl_xfer):
            m.d.sync += slot.eq(Mux(slot_end, 0, slot + 1))
            with m.If(slot_end):
                m.d.sync += blines_done.eq(1)

        # ---- masks ---------------------------------------------------------------------------
        masks_done = Signal()  # this group's keep bits have left (BP) or entered the accumulator (FF)
        masks_finishing = Signal()
        mk_xfer = Signal()
        m.d.comb += mk_xfer.eq(masks.valid & masks.ready)

        # BP: mask-line k of a group is bit k of every lane's group mask.
        bit = Signal(range(m_max))
        bit_end = Signal()
        m.d.comb += bit_end.eq(bit == m_eff - 1)

        # FF: per-lane accumulator of keep bits, and the emission register of one panel.
        acc = [Signal(acc_bits, name=f"acc{j}") for j in range(lanes)]
        count = Signal(range(acc_bits + 1))  # valid bits in every lane's accumulator
        acc_final = Signal()  # the op's last group has been appended
        emit = [Signal(lanes, name=f"emit{j}") for j in range(lanes)]
        emit_row = Signal(range(lanes))
        emit_busy = Signal()
        emit_final = Signal()
        emit_end = Signal()
        move = Signal()
        base = Signal(range(acc_bits + 1))
        append = Signal()
        m.d.comb += [
            emit_end.eq(emit_row == lanes - 1),
            move.eq((count >= lanes) & (~emit_busy | (mk_xfer & emit_end))),
            base.eq(count - Mux(move, lanes, 0)),
            append.eq(sparse.valid & ~masks_done & (base + m_eff <= acc_bits)),
        ]

        with m.If(transpose):
            m.d.comb += [
                masks.valid.eq(emit_busy),
                masks.payload.keep.eq(emit[0]),
                masks.payload.last.eq(emit_final & emit_end),
                masks_finishing.eq(append),
            ]
            with m.If(mk_xfer):
                m.d.sync += [emit[j].eq(emit[j + 1]) for j in range(lanes - 1)]
                m.d.sync += emit_row.eq(emit_row + 1)
                with m.If(emit_end):
                    m.d.sync += [emit_row.eq(0), emit_busy.eq(0)]
            with m.If(move):
                m.d.sync += [emit[j].eq(acc[j][:lanes]) for j in range(lanes)]
                # The final panel: no second whole panel behind it (bits past it are padding).
                m.d.sync += [emit_row.eq(0), emit_busy.eq(1), emit_final.eq(acc_final & (count < 2 * lanes))]
            with m.If(move | append):
                for j in range(lanes):
                    kept = Mux(move, acc[j] >> lanes, acc[j])
                    new = Mux(append, sparse.payload[j].mask << base, 0)
                    m.d.sync += acc[j].eq(kept | new)
                m.d.sync += count.eq(base + Mux(append, m_eff, 0))
            with m.If(append & final_group):
                m.d.sync += acc_final.eq(1)
        with m.Else():
            m.d.comb += [
                masks.valid.eq(sparse.valid & ~masks_done),
                masks.payload.keep.eq(Cat(sparse.payload[j].mask.bit_select(bit, 1) for j in range(lanes))),
                masks.payload.last.eq(final_group & bit_end),
                masks_finishing.eq(mk_xfer & bit_end),
            ]
            with m.If(mk_xfer):
                m.d.sync += bit.eq(Mux(bit_end, 0, bit + 1))
        with m.If(masks_finishing):
            m.d.sync += masks_done.eq(1)

        # NMPrune's output register is released once both halves of the group are out.
        m.d.comb += sparse.ready.eq((blines_done | (bl_xfer & slot_end)) & (masks_done | masks_finishing))
        with m.If(sparse.valid & sparse.ready):
            m.d.sync += [blines_done.eq(0), masks_done.eq(0)]

        # ---- end of op: both final transfers done -> back to the initial state -----------------
        blines_final = Signal()
        masks_final = Signal()
        blines_final_now = blines_final | (bl_xfer & blines.payload.last)
        masks_final_now = masks_final | (mk_xfer & masks.payload.last)
        with m.If(blines_final_now & masks_final_now):
            m.d.sync += [
                blines_final.eq(0),
                masks_final.eq(0),
                seen_last.eq(0),
                horizontal.eq(0),
                fill.eq(0),
                count.eq(0),
                acc_final.eq(0),
                emit_final.eq(0),
                final_group.eq(0),
            ]
            m.d.sync += [a.eq(0) for a in acc]  # drop padding bits past the last panel
        with m.Else():
            m.d.sync += [blines_final.eq(blines_final_now), masks_final.eq(masks_final_now)]
        return m
