"""The line streamer: runs PRUNE and UPDATE descriptors between external memory and their engines.

Both ops are element-wise streams of lines, so one small DMA serves them. It works in *chunks*
so that reads and writes never interleave on the single memory port and every chunk's timing is
a closed form (``dataflow`` models it to the cycle):

1. **read**: issue the read requests of the chunk's input lines back to back (UPDATE: per line the
   ``w``, ``v``, ``g`` acc-lines and, with ``use_mask``, the mask-line; PRUNE: one w-line each);
   the response side assembles lines and hands them to the engine;
2. **wait** until the engine has produced every output of the chunk (they queue in FIFOs sized for
   a whole chunk, so the engine never stalls);
3. **write** the outputs (UPDATE: per line ``w'``, ``v'`` then the working copy; PRUNE: the chunk's
   b-lines, then its mask-lines if ``write_mask``).

A PRUNE chunk is a whole number of *units* (whose outputs depend on no other lines): ``m`` lines
for the BP copy, ``lcm(cols, m)`` lines (whole panels covering whole groups) for the FF copy; as
many units as fit in :data:`PRUNE_CHUNK` lines. An UPDATE chunk is :data:`UPDATE_CHUNK` lines.
"""

import math

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from trainforge.hw.sat import isa
from trainforge.hw.sat.config import SatConfig
from trainforge.hw.sat.ports import mem_request_layout, mem_response_layout
from trainforge.hw.sat.prune_engine import PruneEngine
from trainforge.hw.sat.update_engine import UpdateEngine

__all__ = ["PRUNE_CHUNK", "UPDATE_CHUNK", "LineStreamer", "prune_chunk_lines"]

UPDATE_CHUNK = 8  #: acc-lines per UPDATE chunk
PRUNE_CHUNK = 32  #: target w-lines per PRUNE chunk (at least one unit)


def prune_unit_lines(config: SatConfig, m: int, transpose: bool) -> int:
    """Input lines whose PRUNE outputs depend on no other line: one group, or whole panels of whole groups."""
    return math.lcm(config.cols, m) if transpose else m


def prune_chunk_lines(config: SatConfig, m: int, transpose: bool) -> int:
    """Input w-lines of a full PRUNE chunk (the last chunk of an op may be shorter)."""
    unit = prune_unit_lines(config, m, transpose)
    return unit * max(1, PRUNE_CHUNK // unit)


def _patterns(config: SatConfig) -> list[int]:
    return [1 << k for k in range(1, config.m_max.bit_length()) if config.m_max % (1 << k) == 0]


class LineStreamer(wiring.Component):
    """Executes one PRUNE or UPDATE descriptor at a time (see the module docstring).

    Members
    -------
    op : In(stream.Signature(isa.descriptor_layout(config)))
        A valid PRUNE or UPDATE descriptor (the controller has checked it); taken when idle.
    mem_req, mem_resp
        The memory port, as on the accelerator (the controller routes it here while ``busy``).
    busy : Out(1)
        From taking ``op`` until its last write has been accepted.
    kind : Out(1)
        The op being executed: 0 PRUNE, 1 UPDATE (for the cycle counters).
    """

    def __init__(self, *, config: SatConfig) -> None:
        if not isinstance(config, SatConfig):
            raise TypeError(f"config must be a SatConfig, not {config!r}")
        self._config = config
        super().__init__(
            {
                "op": In(stream.Signature(isa.descriptor_layout(config))),
                "mem_req": Out(stream.Signature(mem_request_layout(config))),
                "mem_resp": In(stream.Signature(mem_response_layout(config))),
                "busy": Out(1),
                "kind": Out(1),
            }
        )

    def elaborate(self, platform) -> Module:
        cfg = self._config
        m = Module()
        word = cfg.mem_bits
        aw, ww, mw, bw = cfg.acc_words, cfg.w_words, cfg.mask_words, cfg.b_words

        m.submodules.prune = prune = PruneEngine(config=cfg)
        m.submodules.update = update = UpdateEngine(config=cfg)
        chunk_max = max(
            max(prune_chunk_lines(cfg, mm, t) for mm in _patterns(cfg) for t in (False, True)), UPDATE_CHUNK
        )
        blines = SyncFIFOBuffered(width=len(prune.blines.payload.as_value()), depth=chunk_max)
        masks = SyncFIFOBuffered(width=len(prune.masks.payload.as_value()), depth=chunk_max)
        results = SyncFIFOBuffered(width=len(update.response.payload.as_value()), depth=UPDATE_CHUNK)
        m.submodules.blines, m.submodules.masks, m.submodules.results = blines, masks, results
        for src, fifo in ((prune.blines, blines), (prune.masks, masks), (update.response, results)):
            m.d.comb += [
                fifo.w_data.eq(src.payload.as_value()),
                fifo.w_en.eq(src.valid),
                src.ready.eq(fifo.w_rdy),
            ]
        bline = data.View(prune.blines.payload.shape(), blines.r_data)
        mask = data.View(prune.masks.payload.shape(), masks.r_data)
        result = data.View(update.response.payload.shape(), results.r_data)

        desc = Signal(isa.descriptor_layout(cfg))
        pr, up = desc.args.prune, desc.args.update
        is_update = Signal()
        m.d.comb += [
            self.kind.eq(is_update),
            prune.params.n.eq(pr.n),
            prune.params.m.eq(pr.m),
            prune.params.transpose.eq(pr.transpose),
            update.params.lr.eq(up.lr),
            update.params.momentum.eq(up.momentum),
            update.params.decay.eq(up.decay),
            update.params.use_mask.eq(up.use_mask),
        ]
        total = Mux(is_update, up.lines, pr.lines * Mux(pr.transpose, cfg.cols, 1))  # input lines of the op
        # Full-chunk length and the b-lines a full chunk yields, per pattern (small tables).
        chunk_full = Signal(17)
        m.d.comb += chunk_full.eq(UPDATE_CHUNK)
        with m.If(~is_update):
            for mm in _patterns(cfg):
                with m.If(pr.m == mm):
                    m.d.comb += chunk_full.eq(
                        Mux(pr.transpose, prune_chunk_lines(cfg, mm, True), prune_chunk_lines(cfg, mm, False))
                    )
        log2_m = Signal(5)
        for k in range(1, cfg.m_max.bit_length()):
            with m.If(pr.m == (1 << k)):
                m.d.comb += log2_m.eq(k)

        chunk_start = Signal(17)  # first input line of the current chunk
        chunk_len = Signal(17)
        line = Signal(17)  # read side: input line being requested
        field = Signal(2)  # UPDATE read: 0 w, 1 v, 2 g, 3 mask
        wordi = Signal(8)
        out_line = Signal(17)  # write side: output line of the chunk
        out_field = Signal(2)  # UPDATE write: 0 w', 1 v', 2 w16; PRUNE: 0 b-lines, 1 masks
        bline_count = Signal(32)  # b-lines written so far in the op
        expected_b = Signal(17)
        req = self.mem_req.payload

        # Panel walk for the FF copy: line k of the op is row (k mod cols) of panel (k div cols).
        def ff_line_addr(base, k_panel, k_row, words):
            return base + (k_panel * pr.panel_stride + k_row) * words

        rd_panel, rd_row = Signal(16), Signal(range(max(2, cfg.cols)))
        wr_panel, wr_row = Signal(16), Signal(range(max(2, cfg.cols)))

        m.d.comb += self.op.ready.eq(0)
        with m.FSM(name="streamer") as fsm:
            with m.State("IDLE"):
                m.d.comb += self.op.ready.eq(1)
                with m.If(self.op.valid):
                    m.d.sync += [
                        desc.eq(self.op.payload),
                        is_update.eq(self.op.payload.op == isa.Op.UPDATE),
                        chunk_start.eq(0),
                        bline_count.eq(0),
                        rd_panel.eq(0),
                        rd_row.eq(0),
                        wr_panel.eq(0),
                        wr_row.eq(0),
                    ]
                    m.next = "CHUNK"
            with m.State("CHUNK"):
                left = total - chunk_start
                length = Mux(left < chunk_full, left, chunk_full)
                m.d.sync += [
                    chunk_len.eq(length),
                    expected_b.eq((length >> log2_m) * pr.n),
                    line.eq(chunk_start),
                    field.eq(0),
                    wordi.eq(0),
                ]
                m.next = "READ"
            with m.State("READ"):
                m.d.comb += [self.mem_req.valid.eq(1), req.write.eq(0)]
                last_line = line == chunk_start + chunk_len - 1
                with m.If(is_update):
                    words = Mux(field == 3, mw, aw)
                    base = Mux(field == 0, up.w_addr, Mux(field == 1, up.v_addr, Mux(field == 2, up.g_addr, 0)))
                    addr = Mux(field == 3, up.mask_addr + line * mw, base + line * aw) + wordi
                    m.d.comb += req.addr.eq(addr)
                    last_field = Mux(up.use_mask, field == 3, field == 2)
                    with m.If(self.mem_req.ready):
                        with m.If(wordi != words - 1):
                            m.d.sync += wordi.eq(wordi + 1)
                        with m.Else():
                            m.d.sync += [wordi.eq(0), field.eq(Mux(last_field, 0, field + 1))]
                            with m.If(last_field):
                                m.d.sync += line.eq(line + 1)
                                with m.If(last_line):
                                    m.next = "WAIT"
                with m.Else():
                    addr = Mux(pr.transpose, ff_line_addr(pr.src_addr, rd_panel, rd_row, ww), pr.src_addr + line * ww)
                    m.d.comb += req.addr.eq(addr + wordi)
                    with m.If(self.mem_req.ready):
                        with m.If(wordi != ww - 1):
                            m.d.sync += wordi.eq(wordi + 1)
                        with m.Else():
                            m.d.sync += [wordi.eq(0), line.eq(line + 1)]
                            with m.If(rd_row == cfg.cols - 1):
                                m.d.sync += [rd_row.eq(0), rd_panel.eq(rd_panel + 1)]
                            with m.Else():
                                m.d.sync += rd_row.eq(rd_row + 1)
                            with m.If(last_line):
                                m.next = "WAIT"
            with m.State("WAIT"):
                prune_out = (blines.r_level == expected_b) & (masks.r_level == chunk_len)
                with m.If(Mux(is_update, results.r_level == chunk_len, prune_out)):
                    m.d.sync += [out_line.eq(0), out_field.eq(0), wordi.eq(0)]
                    m.next = "WRITE"
            with m.State("WRITE"):
                m.d.comb += req.write.eq(1)
                chunk_done = Signal()
                with m.If(is_update):
                    lno = chunk_start + out_line
                    words = Mux(out_field == 2, ww, aw)
                    addr = Mux(
                        out_field == 0,
                        up.w_addr + lno * aw,
                        Mux(out_field == 1, up.v_addr + lno * aw, up.w16_addr + lno * ww),
                    )
                    payload = Mux(
                        out_field == 0,
                        result.w.as_value(),
                        Mux(out_field == 1, result.v.as_value(), result.w16.as_value()),
                    )
                    m.d.comb += [
                        self.mem_req.valid.eq(1),
                        req.addr.eq(addr + wordi),
                        req.data.eq(_word_of(payload, wordi, word)),
                    ]
                    with m.If(self.mem_req.ready):
                        with m.If(wordi != words - 1):
                            m.d.sync += wordi.eq(wordi + 1)
                        with m.Else():
                            m.d.sync += [wordi.eq(0), out_field.eq(Mux(out_field == 2, 0, out_field + 1))]
                            with m.If(out_field == 2):
                                m.d.comb += results.r_en.eq(1)
                                m.d.sync += out_line.eq(out_line + 1)
                                with m.If(out_line == chunk_len - 1):
                                    m.d.comb += chunk_done.eq(1)
                with m.Elif(out_field == 0):
                    # The chunk's b-lines, consecutively from dst_addr.
                    with m.If(expected_b == 0):
                        m.d.sync += [out_field.eq(1), out_line.eq(0)]
                    with m.Else():
                        m.d.comb += [
                            self.mem_req.valid.eq(1),
                            req.addr.eq(pr.dst_addr + bline_count * bw + wordi),
                            req.data.eq(_word_of(bline.w.as_value(), wordi, word)),
                        ]
                        with m.If(self.mem_req.ready):
                            with m.If(wordi != bw - 1):
                                m.d.sync += wordi.eq(wordi + 1)
                            with m.Else():
                                m.d.comb += blines.r_en.eq(1)
                                m.d.sync += [wordi.eq(0), bline_count.eq(bline_count + 1), out_line.eq(out_line + 1)]
                                with m.If(out_line == expected_b - 1):
                                    m.d.sync += [out_field.eq(1), out_line.eq(0)]
                with m.Else():
                    # The chunk's mask-lines: written in the panel (FF) or line (BP) layout, or dropped.
                    lno = chunk_start + out_line
                    addr = Mux(pr.transpose, ff_line_addr(pr.mask_addr, wr_panel, wr_row, mw), pr.mask_addr + lno * mw)
                    m.d.comb += [
                        self.mem_req.valid.eq(pr.write_mask),
                        req.addr.eq(addr + wordi),
                        req.data.eq(_word_of(mask.keep, wordi, word)),
                    ]
                    with m.If(self.mem_req.ready | ~pr.write_mask):
                        with m.If(pr.write_mask & (wordi != mw - 1)):
                            m.d.sync += wordi.eq(wordi + 1)
                        with m.Else():
                            m.d.comb += masks.r_en.eq(1)
                            m.d.sync += [wordi.eq(0), out_line.eq(out_line + 1)]
                            with m.If(wr_row == cfg.cols - 1):
                                m.d.sync += [wr_row.eq(0), wr_panel.eq(wr_panel + 1)]
                            with m.Else():
                                m.d.sync += wr_row.eq(wr_row + 1)
                            with m.If(out_line == chunk_len - 1):
                                m.d.comb += chunk_done.eq(1)
                with m.If(chunk_done):
                    m.d.sync += chunk_start.eq(chunk_start + chunk_len)
                    with m.If(chunk_start + chunk_len == total):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "CHUNK"
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))

        # ---- response side: words -> input lines -> engine ----------------------------------------
        in_words = Mux(is_update, 3 * aw + Mux(up.use_mask, mw, 0), ww)
        rx_bits = max(3 * aw + mw, ww) * word
        rx = Signal(rx_bits)
        rx_word = Signal(8)
        out = Signal(rx_bits)
        out_valid = Signal()
        out_last = Signal()
        rx_line = Signal(17)  # input lines assembled in the op
        engine_ready = Mux(is_update, update.request.ready, prune.request.ready)
        m.d.comb += self.mem_resp.ready.eq(~out_valid | engine_ready)
        with m.If(out_valid & engine_ready):
            m.d.sync += out_valid.eq(0)
        with m.If(self.mem_resp.valid & self.mem_resp.ready):
            merged = Signal(rx_bits)
            m.d.comb += merged.eq(rx)
            for w in range(rx_bits // word):
                with m.If(rx_word == w):
                    m.d.comb += merged.word_select(w, word).eq(self.mem_resp.payload.data)
            with m.If(rx_word == in_words - 1):
                m.d.sync += [
                    out.eq(merged),
                    out_valid.eq(1),
                    # Every chunk ends an engine op: groups never span chunks, and the engine flushes
                    # what it holds back (the FF transposer's last panel) only at the end of an op.
                    out_last.eq(rx_line == chunk_start + chunk_len - 1),
                    rx_word.eq(0),
                    rx_line.eq(rx_line + 1),
                ]
            with m.Else():
                m.d.sync += [rx.eq(merged), rx_word.eq(rx_word + 1)]
        with m.If(fsm.ongoing("IDLE")):
            m.d.sync += [rx_line.eq(0), rx_word.eq(0)]
        acc_bits = aw * word
        m.d.comb += [
            update.request.valid.eq(out_valid & is_update),
            update.request.payload.w.eq(out[0 : cfg.acc_line_bits]),
            update.request.payload.v.eq(out[acc_bits : acc_bits + cfg.acc_line_bits]),
            update.request.payload.g.eq(out[2 * acc_bits : 2 * acc_bits + cfg.acc_line_bits]),
            update.request.payload.keep.eq(Mux(up.use_mask, out[3 * acc_bits : 3 * acc_bits + cfg.cols], 0)),
            update.request.payload.last.eq(out_last),
            prune.request.valid.eq(out_valid & ~is_update),
            prune.request.payload.line.eq(out[0 : cfg.w_line_bits]),
            prune.request.payload.last.eq(out_last),
        ]
        return m


def _word_of(value, index, word: int):
    """Word ``index`` of ``value`` (its last word zero-extended)."""
    width = len(value)
    pieces = [value[w * word : min((w + 1) * word, width)] for w in range(-(-width // word))]
    result = pieces[0]
    for w, piece in enumerate(pieces[1:], start=1):
        result = Mux(index == w, piece, result)
    return result
