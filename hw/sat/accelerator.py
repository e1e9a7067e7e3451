"""The SAT accelerator top: controller, DMA, double-buffered operand buffers, PE array, writeback.

docs/sat-architecture.md is the contract (formats, descriptor semantics); this module is its RTL.

GEMM pipeline
-------------
Descriptors enter a ring of ``JOB_SLOTS`` job slots (``cmd.ready`` while a slot is free and no error
was raised). Three stages work on the jobs in order, each with its own pointer:

* **DMA** (one engine, owns ``mem_req``): a fixed interleaving ``L0, L1, S0, L2, S1, L3, ...``: load
  job t's operands, then store job t-1's results. ``L(t)`` loads A (if ``load_a``) into the A half
  after the last one loaded, waiting until every earlier job reading that half has computed, then B
  likewise; read requests go out back to back (one word per accepted request). ``S(t)`` waits until
  job t has computed, then writes its acc-lines. Read data returns in order and is assembled into
  lines and written to the buffers by the response side, which marks job t *loaded* after its last
  word.
* **Feeder**: once job t is loaded (and, if its acc-lines overlap job t-1's, once t-1 has computed
  and been stored), streams the tile into the PE array: OS steps, or WS weight loads then A rows
  (with the partial sums read from the accumulator buffer when ``accumulate``).
* **Writeback**: takes the array's result rows and writes the acc-lines (OS: ``acc + row`` when
  ``accumulate``, through C FP32 adders); a job has *computed* after its last row.

Clocking
--------
One clock (``sync``). With ``SatConfig.clock_gating`` (the default) the line streamer runs on a gated copy
of it (domain ``streamer``) that stops while the streamer is idle; this changes no cycle and no
value, only what a cycle-based simulator has to evaluate (and the clock power).
"""

from amaranth.hdl import Cat, ClockDomain, ClockSignal, DomainRenamer, Module, Mux, ResetSignal, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from trainforge.hw.fp.fma import FMA, FMAConfig
from trainforge.hw.fp.ieee import FMAOp, RoundingMode
from trainforge.hw.sat import isa
from trainforge.hw.sat.config import SatConfig
from trainforge.hw.sat.pe_array import BeatKind, PEArray
from trainforge.hw.sat.ports import counters_layout, mem_request_layout, mem_response_layout, status_layout
from trainforge.hw.sat.streamer import LineStreamer

__all__ = ["GATE_TAIL", "JOB_SLOTS", "SatAccelerator"]

JOB_SLOTS = 4  #: GEMM descriptors in flight (dispatched and not yet stored)
GATE_TAIL = 16  #: cycles the line streamer's clock keeps running after it was last busy
SEQ_BITS = 32  #: job sequence numbers (programs are far shorter than 2**32 jobs)
FP32_ONE = 0x3F800000


def _job_layout(config: SatConfig) -> data.StructLayout:
    gemm = isa.descriptor_layout(config)["args"].shape["gemm"].shape
    return data.StructLayout(
        {
            "args": gemm,
            "tag": 2,
            "a_half": 1,
            "b_half": 1,
            # The job must not overwrite its A (B) half before job `a_after` (`b_after`) has computed.
            "a_wait": 1,
            "a_after": SEQ_BITS,
            "b_wait": 1,
            "b_after": SEQ_BITS,
            # Its acc-lines overlap the previous job's: wait until that one computed (and stored).
            "acc_wait": 1,
        }
    )


class SatAccelerator(wiring.Component):
    """The SAT N:M sparse training accelerator (GEMM tiles; see the module docstring).

    Parameters
    ----------
    config : SatConfig
        ``config.clock_gating`` stops the line streamer's clock while it is idle (a latch-based
        clock gate; see ``_gate_streamer_clock``). Cycle-identical either way; on (the default)
        Verilator skips the idle prune and update engines during GEMMs. Off
        gives a single clock domain, e.g. for FPGA flows that want no logic on clock nets.

    Members
    -------
    cmd : In(stream.Signature(isa.descriptor_layout(config)))
        Command descriptors, executed in order.
    mem_req : Out(stream.Signature(mem_request_layout(config)))
        Word reads and writes to external memory.
    mem_resp : In(stream.Signature(mem_response_layout(config)))
        Read data, in request order.
    status : Out(status_layout())
        ``busy``, sticky ``error`` and its ``error_code`` (:class:`~trainforge.hw.sat.isa.ErrorCode`).
        After a descriptor fails its checks no further one is taken; ``error`` rises once every
        descriptor before it has completed, so memory then holds exactly their results.
    counters : Out(counters_layout())
        Performance counters since reset.
    """

    def __init__(self, *, config: SatConfig) -> None:
        if not isinstance(config, SatConfig):
            raise TypeError(f"config must be a SatConfig, not {config!r}")
        self._config = config
        self._clock_gating = config.clock_gating
        super().__init__(
            {
                "cmd": In(stream.Signature(isa.descriptor_layout(config))),
                "mem_req": Out(stream.Signature(mem_request_layout(config))),
                "mem_resp": In(stream.Signature(mem_response_layout(config))),
                "status": Out(status_layout()),
                "counters": Out(counters_layout()),
            }
        )

    @property
    def config(self) -> SatConfig:
        return self._config

    def elaborate(self, platform) -> Module:
        cfg = self._config
        m = Module()
        job_layout = _job_layout(cfg)
        slots = Signal(data.ArrayLayout(job_layout, JOB_SLOTS))
        slot_bits = (JOB_SLOTS - 1).bit_length()

        # ---- sequence counters of the pipeline ------------------------------------------------
        dispatched = Signal(SEQ_BITS)  # jobs accepted from cmd
        load_ptr = Signal(SEQ_BITS)  # jobs whose loads the DMA has issued
        store_ptr = Signal(SEQ_BITS)  # jobs the DMA has stored (or skipped storing)
        loaded = Signal(SEQ_BITS)  # jobs whose operands are all in the buffers
        fed = Signal(SEQ_BITS)  # jobs the feeder has sent to the array
        computed = Signal(SEQ_BITS)  # jobs fully written back

        def slot(seq):
            return slots[seq[:slot_bits]]

        # ---- buffers ----------------------------------------------------------------------------
        m.submodules.a_buf = a_buf = Memory(shape=cfg.a_line_bits, depth=2 * cfg.a_lines, init=[])
        m.submodules.b_buf = b_buf = Memory(shape=cfg.b_line_bits, depth=2 * cfg.b_lines, init=[])
        m.submodules.acc_buf = acc_buf = Memory(shape=cfg.acc_line_bits, depth=cfg.acc_lines, init=[])
        a_wr, b_wr = a_buf.write_port(), b_buf.write_port()
        a_rd, b_rd = a_buf.read_port(), b_buf.read_port()
        acc_wr = acc_buf.write_port()
        acc_psum_rd = acc_buf.read_port()  # feeder: WS partial sums
        acc_wb_rd = acc_buf.read_port()  # writeback: OS accumulate
        acc_st_rd = acc_buf.read_port()  # DMA: stores

        # ---- dispatch and the error checks (isa.check in hardware) ------------------------------
        desc = self.cmd.payload
        gemm = desc.args.gemm
        error = Signal()  # a descriptor failed its checks: take no more (raised once the work before it is done)
        error_code = Signal(3)
        code = Signal(3)
        n, mm = gemm.n, gemm.m
        pow2_divides = Signal()
        m.d.comb += pow2_divides.eq(0)
        for k in range(cfg.m_max.bit_length()):
            if cfg.m_max % (1 << k) == 0:
                with m.If(mm == (1 << k)):
                    m.d.comb += pow2_divides.eq(1)
        os_mode = gemm.dataflow == isa.Dataflow.OS
        a_needed = Mux(os_mode, 0, gemm.rows)
        pr, up = desc.args.prune, desc.args.update
        pr_reduction = Mux(pr.transpose, pr.lines * cfg.cols, pr.lines)
        pr_pattern_ok = Signal()
        m.d.comb += pr_pattern_ok.eq(0)
        for k in range(1, cfg.m_max.bit_length()):
            if cfg.m_max % (1 << k) == 0:
                with m.If(pr.m == (1 << k)):
                    m.d.comb += pr_pattern_ok.eq((pr.n >= 1) & (pr.n < pr.m))
        with m.Switch(desc.op):
            with m.Case(isa.Op.GEMM):
                with m.If(~pow2_divides | (n == 0) | (n > mm)):
                    m.d.comb += code.eq(isa.ErrorCode.BAD_PATTERN)
                with m.Elif((gemm.rows == 0) | (gemm.cols == 0) | (gemm.steps == 0)):
                    m.d.comb += code.eq(isa.ErrorCode.ZERO_DIM)
                with m.Elif(
                    (gemm.cols > cfg.cols) | (os_mode & (gemm.rows > cfg.rows)) | (~os_mode & (gemm.steps > cfg.rows))
                ):
                    m.d.comb += code.eq(isa.ErrorCode.TILE_TOO_BIG)
                with m.Elif(
                    (os_mode & (gemm.steps > n * cfg.a_lines))
                    | (~os_mode & (a_needed > cfg.a_lines))
                    | (os_mode & (gemm.steps > cfg.b_lines))
                    | (gemm.acc_addr + gemm.rows > cfg.acc_lines)
                ):
                    m.d.comb += code.eq(isa.ErrorCode.BUFFER_OVERFLOW)
            with m.Case(isa.Op.PRUNE):
                with m.If(~pr_pattern_ok):
                    m.d.comb += code.eq(isa.ErrorCode.BAD_PATTERN)
                with m.Elif(pr.lines == 0):
                    m.d.comb += code.eq(isa.ErrorCode.ZERO_DIM)
                with m.Elif((pr_reduction & (pr.m - 1)) != 0):
                    m.d.comb += code.eq(isa.ErrorCode.BAD_PATTERN)
            with m.Case(isa.Op.UPDATE), m.If(up.lines == 0):
                m.d.comb += code.eq(isa.ErrorCode.ZERO_DIM)
            with m.Default():
                m.d.comb += code.eq(isa.ErrorCode.BAD_OP)

        # PRUNE and UPDATE run in the line streamer, alone: after every GEMM in flight is stored.
        streamer = LineStreamer(config=cfg)
        if self._clock_gating:
            m.submodules.streamer = DomainRenamer("streamer")(streamer)
        else:
            m.submodules.streamer = streamer
        is_gemm = desc.op == isa.Op.GEMM
        drained = Signal()
        free_slot = Signal()
        m.d.comb += [
            free_slot.eq((dispatched - store_ptr) < JOB_SLOTS),
            drained.eq(dispatched == store_ptr),
            self.cmd.ready.eq(
                ~error
                & Mux(
                    code != isa.ErrorCode.NONE,
                    1,
                    ~streamer.busy & Mux(is_gemm, free_slot, drained & streamer.op.ready),
                )
            ),
            streamer.op.payload.eq(desc),
            streamer.op.valid.eq(self.cmd.valid & self.cmd.ready & (code == isa.ErrorCode.NONE) & ~is_gemm),
        ]
        # Half bookkeeping: which half each buffer filled last and the last job reading each half.
        cur_a, cur_b = Signal(), Signal()
        a_user = Signal(data.ArrayLayout(SEQ_BITS, 2))
        b_user = Signal(data.ArrayLayout(SEQ_BITS, 2))
        a_used = Signal(2)
        b_used = Signal(2)
        prev_lo = Signal(16)
        prev_hi = Signal(17)
        prev_valid = Signal()
        with m.If(self.cmd.valid & self.cmd.ready):
            with m.If(code != isa.ErrorCode.NONE):
                m.d.sync += [error.eq(1), error_code.eq(code)]
            with m.Elif(is_gemm):
                new = slot(dispatched)
                a_half = Mux(gemm.load_a, ~cur_a, cur_a)
                b_half = Mux(gemm.load_b, ~cur_b, cur_b)
                lo, hi = gemm.acc_addr, gemm.acc_addr + gemm.rows
                m.d.sync += [
                    new.args.eq(gemm),
                    new.tag.eq(desc.tag),
                    new.a_half.eq(a_half),
                    new.b_half.eq(b_half),
                    new.a_wait.eq(gemm.load_a & a_used.bit_select(a_half, 1)),
                    new.a_after.eq(a_user[a_half]),
                    new.b_wait.eq(gemm.load_b & b_used.bit_select(b_half, 1)),
                    new.b_after.eq(b_user[b_half]),
                    new.acc_wait.eq(prev_valid & (lo < prev_hi) & (prev_lo < hi)),
                    cur_a.eq(a_half),
                    cur_b.eq(b_half),
                    a_user[a_half].eq(dispatched),
                    b_user[b_half].eq(dispatched),
                    a_used.bit_select(a_half, 1).eq(1),
                    b_used.bit_select(b_half, 1).eq(1),
                    prev_lo.eq(lo),
                    prev_hi.eq(hi),
                    prev_valid.eq(1),
                    dispatched.eq(dispatched + 1),
                ]

        # ---- DMA issue side: L0, L1, S0, L2, S1, ... ---------------------------------------------
        word = cfg.mem_bits
        gemm_req = stream.Signature(mem_request_layout(cfg)).create()
        gemm_resp = stream.Signature(mem_response_layout(cfg)).flip().create()
        req = gemm_req.payload
        seg_layout = data.StructLayout({"is_b": 1, "half": 1, "lines": 17, "job_end": 1})
        m.submodules.segments = segments = SyncFIFO(width=seg_layout.size, depth=4)
        seg_in = data.View(seg_layout, segments.w_data)
        addr = Signal(32)
        remaining = Signal(32)  # words left to issue in the current transfer
        load_job = slot(load_ptr)
        store_job = slot(store_ptr)
        st_line = Signal(16)
        st_word = Signal(range(max(2, cfg.acc_words)))
        st_have = Signal()  # the acc read port holds the line being written out
        st_lines_left = Signal(17)
        with m.FSM(name="dma"):
            with m.State("IDLE"):
                with m.If((load_ptr != dispatched) & ((load_ptr - store_ptr) <= 1)):
                    m.next = "LOAD_A"
                with m.Elif(store_ptr != load_ptr):
                    m.next = "STORE_WAIT"
            with m.State("LOAD_A"):
                largs = load_job.args
                groups = (largs.steps + largs.n - 1) // largs.n  # a Verilog divide: one instance, at the DMA
                lines_a = Mux(largs.dataflow == isa.Dataflow.OS, groups, largs.rows)
                free = ~load_job.a_wait | ((computed - load_job.a_after - 1) < (1 << (SEQ_BITS - 1)))
                with m.If(~load_job.args.load_a):
                    m.next = "LOAD_B"
                with m.Elif(free & segments.w_rdy):
                    m.d.comb += [
                        segments.w_en.eq(1),
                        seg_in.is_b.eq(0),
                        seg_in.half.eq(load_job.a_half),
                        seg_in.lines.eq(lines_a),
                    ]
                    m.d.sync += [addr.eq(load_job.args.a_addr), remaining.eq(lines_a * cfg.a_words)]
                    m.next = "ISSUE_A"
            with m.State("ISSUE_A"):
                m.d.comb += [gemm_req.valid.eq(1), req.addr.eq(addr), req.write.eq(0)]
                with m.If(gemm_req.ready):
                    m.d.sync += [addr.eq(addr + 1), remaining.eq(remaining - 1)]
                    with m.If(remaining == 1):
                        m.next = "LOAD_B"
            with m.State("LOAD_B"):
                free = ~load_job.b_wait | ((computed - load_job.b_after - 1) < (1 << (SEQ_BITS - 1)))
                with m.If(segments.w_rdy & (~load_job.args.load_b | free)):
                    m.d.comb += [
                        segments.w_en.eq(1),
                        seg_in.is_b.eq(1),
                        seg_in.half.eq(load_job.b_half),
                        seg_in.lines.eq(Mux(load_job.args.load_b, load_job.args.steps, 0)),
                        seg_in.job_end.eq(1),
                    ]
                    m.d.sync += [addr.eq(load_job.args.b_addr), remaining.eq(load_job.args.steps * cfg.b_words)]
                    with m.If(load_job.args.load_b):
                        m.next = "ISSUE_B"
                    with m.Else():
                        m.d.sync += load_ptr.eq(load_ptr + 1)
                        m.next = "IDLE"
            with m.State("ISSUE_B"):
                m.d.comb += [gemm_req.valid.eq(1), req.addr.eq(addr), req.write.eq(0)]
                with m.If(gemm_req.ready):
                    m.d.sync += [addr.eq(addr + 1), remaining.eq(remaining - 1)]
                    with m.If(remaining == 1):
                        m.d.sync += load_ptr.eq(load_ptr + 1)
                        m.next = "IDLE"
            # Wait for the compute even without a store: the job's slot stays in use until then.
            with m.State("STORE_WAIT"), m.If(computed != store_ptr):
                with m.If(~store_job.args.store):
                    m.d.sync += store_ptr.eq(store_ptr + 1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [
                        addr.eq(store_job.args.c_addr),
                        st_line.eq(store_job.args.acc_addr),
                        st_lines_left.eq(store_job.args.rows),
                        st_word.eq(0),
                        st_have.eq(0),
                    ]
                    m.next = "STORE"
            with m.State("STORE"):
                # The acc read port holds a line (st_have) while its words go out one per request.
                last_word = st_word == cfg.acc_words - 1
                advance = ~st_have | (last_word & gemm_req.ready)
                m.d.comb += [
                    acc_st_rd.addr.eq(st_line),
                    acc_st_rd.en.eq(advance),
                    gemm_req.valid.eq(st_have),
                    req.addr.eq(addr),
                    req.write.eq(1),
                    req.data.eq(acc_st_rd.data.word_select(st_word, word) if cfg.acc_words > 1 else acc_st_rd.data),
                ]
                with m.If(st_have & gemm_req.ready):
                    m.d.sync += [addr.eq(addr + 1), st_word.eq(Mux(last_word, 0, st_word + 1))]
                with m.If(advance):
                    with m.If(st_lines_left != 0):
                        m.d.sync += [st_line.eq(st_line + 1), st_lines_left.eq(st_lines_left - 1), st_have.eq(1)]
                    with m.Else():
                        m.d.sync += [st_have.eq(0), store_ptr.eq(store_ptr + 1)]
                        m.next = "IDLE"

        # ---- DMA response side: words -> lines -> buffers ----------------------------------------
        resp = gemm_resp
        line_reg = Signal(max(cfg.a_words, cfg.b_words) * word)
        word_idx = Signal(range(max(2, cfg.a_words, cfg.b_words)))
        line_idx = Signal(17)
        seg = data.View(seg_layout, segments.r_data)
        wpl = Mux(seg.is_b, cfg.b_words, cfg.a_words)
        m.d.comb += resp.ready.eq(segments.r_rdy & (seg.lines != 0))
        full_line = Signal.like(line_reg)
        m.d.comb += full_line.eq(line_reg)
        for w in range(max(cfg.a_words, cfg.b_words)):
            with m.If(word_idx == w):
                m.d.comb += full_line.word_select(w, word).eq(resp.payload.data)
        with m.If(segments.r_rdy & (seg.lines == 0)):
            # An empty segment (no B load) only closes its job.
            m.d.comb += segments.r_en.eq(1)
            with m.If(seg.job_end):
                m.d.sync += loaded.eq(loaded + 1)
        with m.If(resp.valid & resp.ready):
            line_done = word_idx == wpl - 1
            m.d.sync += [line_reg.eq(full_line), word_idx.eq(Mux(line_done, 0, word_idx + 1))]
            with m.If(line_done):
                with m.If(seg.is_b):
                    m.d.comb += [
                        b_wr.en.eq(1),
                        b_wr.addr.eq(Cat(line_idx[: (cfg.b_lines - 1).bit_length()], seg.half)),
                        b_wr.data.eq(full_line),
                    ]
                with m.Else():
                    m.d.comb += [
                        a_wr.en.eq(1),
                        a_wr.addr.eq(Cat(line_idx[: (cfg.a_lines - 1).bit_length()], seg.half)),
                        a_wr.data.eq(full_line),
                    ]
                with m.If(line_idx == seg.lines - 1):
                    m.d.comb += segments.r_en.eq(1)
                    m.d.sync += line_idx.eq(0)
                    with m.If(seg.job_end):
                        m.d.sync += loaded.eq(loaded + 1)
                with m.Else():
                    m.d.sync += line_idx.eq(line_idx + 1)

        # ---- feeder: buffers -> PE array ----------------------------------------------------------
        m.submodules.array = array = PEArray(config=cfg)
        beat = array.request.payload
        feed_job = slot(fed)
        fargs = feed_job.args
        # Stage 0 chooses the lines to read; stage 1 (the read ports' outputs) is the beat.
        s1_valid = Signal()
        s1_kind = Signal(2)
        s1_last = Signal()
        s1_active = Signal()
        s1_psum_zero = Signal()
        advance = ~s1_valid | array.request.ready
        m.d.comb += [
            a_rd.en.eq(advance),
            b_rd.en.eq(advance),
            acc_psum_rd.en.eq(advance),
            array.request.valid.eq(s1_valid),
            beat.kind.eq(s1_kind),
            beat.last.eq(s1_last),
            beat.active.eq(s1_active),
            beat.a.eq(a_rd.data),
            beat.w.eq(Mux(s1_active | (s1_kind != BeatKind.WS_LOAD), b_rd.data, 0)),
            beat.psum.eq(Mux(s1_psum_zero, 0, acc_psum_rd.data)),
        ]
        with m.If(advance):
            m.d.sync += s1_valid.eq(0)
        step = Signal(16)  # OS: reduction step; WS: load beat, then A row
        group = Signal(16)  # OS: a-line of the current step
        within = Signal(5)  # OS: steps taken in the current group
        a_bits = (cfg.a_lines - 1).bit_length()
        b_bits = (cfg.b_lines - 1).bit_length()
        ready_to_feed = Signal()
        m.d.comb += ready_to_feed.eq((fed != loaded) & (~feed_job.acc_wait | ((computed == fed) & (store_ptr == fed))))
        s1_useful = Signal(16)  # useful MACs of the beat in stage 1
        with m.FSM(name="feeder") as feeder_fsm:
            with m.State("IDLE"), m.If(ready_to_feed):
                m.d.sync += [step.eq(0), group.eq(0), within.eq(0)]
                with m.If(fargs.dataflow == isa.Dataflow.OS):
                    m.next = "OS"
                with m.Else():
                    m.next = "WS_LOAD"
            with m.State("OS"), m.If(advance):
                last = step == fargs.steps - 1
                m.d.comb += [
                    a_rd.addr.eq(Cat(group[:a_bits], feed_job.a_half)),
                    b_rd.addr.eq(Cat(step[:b_bits], feed_job.b_half)),
                ]
                m.d.sync += [
                    s1_valid.eq(1),
                    s1_kind.eq(BeatKind.OS_STEP),
                    s1_useful.eq(fargs.rows * fargs.cols),
                    s1_last.eq(last),
                    s1_active.eq(1),
                    step.eq(step + 1),
                ]
                with m.If(within == fargs.n - 1):
                    m.d.sync += [within.eq(0), group.eq(group + 1)]
                with m.Else():
                    m.d.sync += within.eq(within + 1)
                with m.If(last):
                    m.d.sync += fed.eq(fed + 1)
                    m.next = "IDLE"
            with m.State("WS_LOAD"), m.If(advance):
                pe_row = cfg.rows - 1 - step
                m.d.comb += b_rd.addr.eq(Cat(pe_row[:b_bits], feed_job.b_half))
                m.d.sync += [
                    s1_valid.eq(1),
                    s1_kind.eq(BeatKind.WS_LOAD),
                    s1_last.eq(step == cfg.rows - 1),
                    s1_active.eq(pe_row < fargs.steps),
                    step.eq(step + 1),
                ]
                with m.If(step == cfg.rows - 1):
                    m.d.sync += step.eq(0)
                    m.next = "WS_ROWS"
            with m.State("WS_ROWS"), m.If(advance):
                last = step == fargs.rows - 1
                m.d.comb += [
                    a_rd.addr.eq(Cat(step[:a_bits], feed_job.a_half)),
                    acc_psum_rd.addr.eq(fargs.acc_addr + step),
                ]
                m.d.sync += [
                    s1_valid.eq(1),
                    s1_kind.eq(BeatKind.WS_ROW),
                    s1_useful.eq(fargs.steps * fargs.cols),
                    s1_last.eq(last),
                    s1_active.eq(1),
                    s1_psum_zero.eq(~fargs.accumulate),
                    step.eq(step + 1),
                ]
                with m.If(last):
                    m.d.sync += fed.eq(fed + 1)
                    m.next = "IDLE"
        feeding = Signal()
        m.d.comb += feeding.eq(~feeder_fsm.ongoing("IDLE"))

        # ---- writeback: array rows -> acc-lines ---------------------------------------------------
        wb_job = slot(computed)
        wargs = wb_job.args
        wb_row = Signal(16)
        w2_valid = Signal()
        w2_write = Signal()
        w2_last = Signal()
        w2_add = Signal()
        w2_line = Signal(range(cfg.acc_lines))
        w2_row = Signal(data.ArrayLayout(32, cfg.cols))
        w2_cols = Signal(16)
        m.d.comb += array.response.ready.eq(1)
        resp_row = array.response.payload.row
        wb_os = wargs.dataflow == isa.Dataflow.OS
        with m.If(array.response.valid):
            last_row = Mux(wb_os, wb_row == cfg.rows - 1, wb_row == wargs.rows - 1)
            m.d.comb += [acc_wb_rd.addr.eq(wargs.acc_addr + wb_row), acc_wb_rd.en.eq(1)]
            m.d.sync += [
                w2_write.eq(wb_row < wargs.rows),
                w2_last.eq(last_row),
                w2_add.eq(wb_os & wargs.accumulate),
                w2_line.eq(wargs.acc_addr + wb_row),
                w2_row.eq(resp_row),
                w2_cols.eq(wargs.cols),
                wb_row.eq(Mux(last_row, 0, wb_row + 1)),
            ]
        m.d.sync += w2_valid.eq(array.response.valid)
        adders = []
        for j in range(cfg.cols):
            adder = FMA(config=FMAConfig(fmt="fp32", pipeline_stages=0, ops="add"))
            m.submodules[f"acc_add{j}"] = adder
            adders.append(adder)
            old = acc_wb_rd.data[32 * j : 32 * j + 32]
            m.d.comb += [
                adder.request.valid.eq(1),
                adder.response.ready.eq(1),
                adder.request.payload.a.eq(w2_row[j]),
                adder.request.payload.b.eq(FP32_ONE),
                adder.request.payload.c.eq(old),
                adder.request.payload.op.eq(FMAOp.ADD),
                adder.request.payload.rm.eq(RoundingMode.RNE),
            ]
        line_out = Signal(cfg.acc_line_bits)
        for j, adder in enumerate(adders):
            value = Mux(w2_add, adder.response.payload.result, w2_row[j])
            m.d.comb += line_out[32 * j : 32 * j + 32].eq(Mux(j < w2_cols, value, 0))
        with m.If(w2_valid):
            m.d.comb += [acc_wr.en.eq(w2_write), acc_wr.addr.eq(w2_line), acc_wr.data.eq(line_out)]
            with m.If(w2_last):
                m.d.sync += computed.eq(computed + 1)

        # ---- the memory port: the streamer's while it runs, else the GEMM DMA's ----------------------
        with m.If(streamer.busy):
            m.d.comb += [
                self.mem_req.payload.eq(streamer.mem_req.payload),
                self.mem_req.valid.eq(streamer.mem_req.valid),
                streamer.mem_req.ready.eq(self.mem_req.ready),
                streamer.mem_resp.payload.eq(self.mem_resp.payload),
                streamer.mem_resp.valid.eq(self.mem_resp.valid),
                self.mem_resp.ready.eq(streamer.mem_resp.ready),
            ]
        with m.Else():
            m.d.comb += [
                self.mem_req.payload.eq(gemm_req.payload),
                self.mem_req.valid.eq(gemm_req.valid),
                gemm_req.ready.eq(self.mem_req.ready),
                gemm_resp.payload.eq(self.mem_resp.payload),
                gemm_resp.valid.eq(self.mem_resp.valid),
                self.mem_resp.ready.eq(gemm_resp.ready),
            ]

        if self._clock_gating:
            self._gate_streamer_clock(m, streamer)

        # ---- status and counters ------------------------------------------------------------------
        busy = Signal()
        m.d.comb += [
            busy.eq((dispatched != store_ptr) | streamer.busy),
            self.status.busy.eq(busy),
            self.status.error.eq(error & ~busy),
            self.status.error_code.eq(error_code),
        ]
        counters = self.counters
        in_compute = (fed != computed) | feeding
        oldest_tag = wb_job.tag
        feed_waiting = ~feeding & (fed != dispatched)
        beat_taken = array.request.valid & array.request.ready
        beat_kind = array.request.payload.kind
        m.d.sync += [
            counters.busy.eq(counters.busy + busy),
            counters.ff.eq(counters.ff + (in_compute & (oldest_tag == isa.Tag.FF))),
            counters.bp.eq(counters.bp + (in_compute & (oldest_tag == isa.Tag.BP))),
            counters.wu.eq(counters.wu + (in_compute & (oldest_tag == isa.Tag.WU))),
            counters.gemm_other.eq(counters.gemm_other + (in_compute & (oldest_tag == isa.Tag.OTHER))),
            counters.prune.eq(counters.prune + (streamer.busy & (streamer.kind == 0))),
            counters.update.eq(counters.update + (streamer.busy & (streamer.kind == 1))),
            counters.stall_operands.eq(counters.stall_operands + (feed_waiting & (fed == loaded))),
            counters.stall_accumulator.eq(
                counters.stall_accumulator + (feed_waiting & (fed != loaded) & ~ready_to_feed)
            ),
            counters.stall_memory.eq(counters.stall_memory + (gemm_req.valid & ~gemm_req.ready)),
        ]
        with m.If(beat_taken & (beat_kind != BeatKind.WS_LOAD)):
            m.d.sync += [
                counters.macs_issued.eq(counters.macs_issued + cfg.rows * cfg.cols),
                counters.macs_useful.eq(counters.macs_useful + s1_useful),
            ]
        return m

    @staticmethod
    def _gate_streamer_clock(m: Module, streamer: LineStreamer) -> None:
        # The streamer (the prune and update engines) is idle
        # through GEMM work. Its clock stops then: a cycle-based simulator (Verilator) skips the
        # logic of a domain whose clock has no edge, and the hardware saves the clock power. It
        # runs while reset is asserted, while a descriptor is handed to it, while it is busy and
        # for GATE_TAIL cycles after (its pipelines and idle-state registers settle), so every one
        # of its registers sees each edge in which it could change: behaviour is cycle-identical.
        # The enable is latched while the clock is low (a standard clock gate), so the gated clock
        # has no glitch.
        m.domains.streamer = ClockDomain("streamer", local=True)
        m.domains.gate = ClockDomain("gate", clk_edge="neg", reset_less=True, local=True)
        tail = Signal(range(GATE_TAIL + 1))
        enable = Signal()
        latched = Signal()
        active = streamer.busy | streamer.op.valid
        with m.If(active):
            m.d.sync += tail.eq(GATE_TAIL)
        with m.Elif(tail != 0):
            m.d.sync += tail.eq(tail - 1)
        m.d.comb += [
            enable.eq(active | (tail != 0) | ResetSignal("sync")),
            ClockSignal("gate").eq(ClockSignal("sync")),
            ClockSignal("streamer").eq(ClockSignal("sync") & latched),
            ResetSignal("streamer").eq(ResetSignal("sync")),
        ]
        m.d.gate += latched.eq(enable)
