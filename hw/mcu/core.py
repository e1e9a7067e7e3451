"""One MCU cluster core: RV32IM + Xpulp + Zfinx/smallFloat, issuing exactly as ``docs/mcu-core.md`` says.

The core issues one instruction per cycle, in order, from an ideal (combinational) instruction
memory. Its timing is the contract's, by construction:

* **Scoreboard.** Each register has a counter of the cycles until its pending value is written
  (``latency - 1`` at issue: 1 for a load, ``fpu_latency - 1`` for FP, 0 otherwise) and the cause a
  reader waiting on it is charged with (``load-use`` / ``fpu-raw``). An instruction issues only
  when every register it reads has a zero counter.
* **Writes.** ALU, ``mul``/``p.mac``, ``csrr``, links and post-incremented addresses are written at
  the end of the issue cycle (ready the next cycle), a load's data at the end of the next cycle
  (ready 2 cycles after issue), an FP result after ``fpu_latency - 1`` delay registers. A later
  instruction writing the same register cancels pending FP writes of it, so the in-order result
  always wins (write-after-write).
* **Control.** A taken branch, ``jal`` or ``jalr`` sets ``branch_penalty`` bubble cycles. Two
  hardware loop register sets (0 = inner, priority) jump from the loop's last instruction back to
  its start with no bubble while the counter is above 1.
* **Shared FPU.** With ``fpu_share`` > 1 an FP instruction waits until ``fpu_share`` cycles after
  the core's previous FP issue.
* **TCDM.** A load or store that satisfies all of the above raises ``req_valid``; it issues only in
  a cycle its bank grants it (``req_grant``, combinational from the cluster's arbiter).

FP datapath: :class:`~trainforge.hw.mcu.fp_simd.FPSimd` (combinational) executes the SIMD ops,
``fmadd.s``, ``fadd.s`` (as ``rs1 * 1.0 + rs2``: exact product, one rounding, identical to an add)
and the scalar FP16 ops on its lane 0 (``fadd.h`` = ``vfadd.h``, ``fmul.h`` = ``vfmul.h``,
``fmadd.h`` = ``vfmac.h`` with ``rs3`` as addend; the lane is the :mod:`trainforge.hw.fp.fma` unit);
``fcvt.h.s`` / ``fcvt.s.h`` are :class:`~trainforge.hw.fp.convert.Convert` units; ``fcvt.s.wu`` is
an unsigned integer to FP32 rounding here (no library unit converts integers). Everything rounds
to nearest even. Scalar FP16 results are sign-extended to 32 bits (Zhinx); readers use bits 15:0.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from trainforge.errors import ConfigError
from trainforge.hw.fp.convert import Convert, ConvertConfig
from trainforge.hw.fp.ieee import RoundingMode
from trainforge.hw.mcu import isa
from trainforge.hw.mcu.fp_simd import FPSimd, FPSimdConfig, SimdOp

__all__ = ["COUNTERS", "EXIT", "TCDM_BASE", "CoreTiming", "McuCore", "counters_layout"]

EXIT = 0xFFFF_FFFC
"""Return address a core starts with: fetching it halts the core."""

TCDM_BASE = 0x1000_0000
"""Byte address of the first TCDM word."""

COUNTERS = (
    "cycles",
    "instructions",
    "load-use",
    "fpu-raw",
    "fpu-share",
    "branch",
    "tcdm",
    "loads",
    "stores",
    "fp_ops",
)
"""Per-core performance counters, in port order (32 bits each): the cycles from the core's start
to its halt, instructions issued, stall cycles per cause, TCDM loads and stores, FP instructions."""


def counters_layout() -> data.ArrayLayout:
    """Layout of the ``counters`` port: one 32-bit counter per :data:`COUNTERS` entry."""
    return data.ArrayLayout(32, len(COUNTERS))


class CoreTiming:
    """The timing parameters one core is built with (validated, keyword-only).

    Parameters
    ----------
    fpu_latency : int
        1..4: an FP result is ready this many cycles after issue.
    fpu_share : int
        1..32: minimum cycles between two FP issues of the core.
    branch_penalty : int
        0..16 bubbles after a taken branch or jump.
    load_latency : int
        Must be 2 (the write-back structure of this core).

    Raises
    ------
    trainforge.errors.ConfigError
        A value the RTL cannot implement.
    """

    def __init__(self, *, fpu_latency: int = 1, fpu_share: int = 1, branch_penalty: int = 2, load_latency: int = 2):
        for name, value, lo, hi in (
            ("fpu_latency", fpu_latency, 1, 4),
            ("fpu_share", fpu_share, 1, 32),
            ("branch_penalty", branch_penalty, 0, 16),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ConfigError(f"{name} must be an integer in {lo}..{hi} for the MCU RTL core, not {value!r}")
        if load_latency != 2:
            raise ConfigError(
                f"load_latency must be 2 for the MCU RTL core (single-cycle TCDM + write-back), not {load_latency!r}"
            )
        self.fpu_latency = fpu_latency
        self.fpu_share = fpu_share
        self.branch_penalty = branch_penalty
        self.load_latency = load_latency


def _sext(value, bits: int = 32):
    return Cat(value, value[-1].replicate(bits - len(value)))


def _u2f32(m: Module, x: Signal) -> Signal:
    """Unsigned 32-bit integer to FP32, round to nearest even (``fcvt.s.wu``)."""
    lz = Signal(6)
    with m.If(x == 0):
        m.d.comb += lz.eq(32)
    for i in range(32):  # priority: the highest set bit decides
        with m.If(x[i]):
            m.d.comb += lz.eq(31 - i)
    norm = Signal(32)
    m.d.comb += norm.eq(x << lz[:5])
    mant = norm[8:31]  # 23 bits below the hidden one
    guard, sticky = norm[7], norm[:7].any()
    up = guard & (sticky | norm[8])
    rounded = Signal(32)
    exp = Signal(8)
    m.d.comb += exp.eq(127 + 31 - lz)
    # the carry out of the mantissa increments the exponent field: Cat(mant, exp) + up does both
    m.d.comb += rounded.eq(Cat(mant, exp) + up)
    out = Signal(32)
    m.d.comb += out.eq(Mux(x == 0, 0, rounded))
    return out


class McuCore(wiring.Component):
    """One core of the cluster.

    Parameters
    ----------
    timing : CoreTiming
    hartid : int
        Core index (``mhartid``).
    stack_top : int
        Initial ``sp``.

    Members
    -------
    init : In(1)
        Reset the architectural state to the start state (pulse with the cluster's ``start``).
    run : In(1)
        The core may issue (high from its fork on).
    args : In(32)
        Initial ``a0``.
    imem_addr : Out(32)
        Fetch byte address (the PC).
    imem_data : In(32)
        The instruction at ``imem_addr``, in the same cycle.
    req_valid, req_we : Out(1)
    req_addr, req_wdata : Out(32)
    req_be : Out(4)
        The TCDM access of the instruction ready to issue.
    req_grant : In(1)
        The bank takes the access this cycle (the instruction issues).
    rdata : In(32)
        Read data of the access granted in the previous cycle.
    halted : Out(1)
        The core's next fetch is ``EXIT`` (from that cycle on).
    counters : Out(counters_layout())
    """

    def __init__(self, *, timing: CoreTiming, hartid: int, stack_top: int) -> None:
        if not isinstance(timing, CoreTiming):
            raise TypeError(f"timing must be a CoreTiming, not {timing!r}")
        if isinstance(hartid, bool) or not isinstance(hartid, int) or not 0 <= hartid < 32:
            raise ValueError(f"hartid must be an integer in 0..31, not {hartid!r}")
        self._timing, self._hartid, self._stack_top = timing, hartid, stack_top
        super().__init__(
            {
                "init": In(1),
                "run": In(1),
                "args": In(32),
                "imem_addr": Out(32),
                "imem_data": In(32),
                "req_valid": Out(1),
                "req_we": Out(1),
                "req_addr": Out(32),
                "req_wdata": Out(32),
                "req_be": Out(4),
                "req_grant": In(1),
                "rdata": In(32),
                "halted": Out(1),
                "counters": Out(counters_layout()),
            }
        )

    @property
    def timing(self) -> CoreTiming:
        return self._timing

    def elaborate(self, platform) -> Module:
        tm = self._timing
        m = Module()
        instr = self.imem_data
        pc = Signal(32)
        m.d.comb += self.imem_addr.eq(pc)

        # ---- decode: one comparator per table entry
        op = {mn: Signal(name="is_" + mn.replace(".", "_")) for mn in isa.INSTRUCTIONS}
        for mn, s in isa.INSTRUCTIONS.items():
            m.d.comb += op[mn].eq((instr & s.mask) == (s.match & s.mask))

        def any_of(*names: str):
            return Cat(*(op[n] for n in names)).any()

        fmt_names = {f: [mn for mn, s in isa.INSTRUCTIONS.items() if s.fmt == f] for f in isa.FORMATS}
        unit_names = {u: [mn for mn, s in isa.INSTRUCTIONS.items() if s.unit == u] for u in isa.UNITS}
        is_load, is_store, is_fp = any_of(*unit_names["load"]), any_of(*unit_names["store"]), any_of(*unit_names["fpu"])
        is_mem = Signal()
        m.d.comb += is_mem.eq(is_load | is_store)
        is_post = any_of("p.lw", "p.lh", "p.lhu", "p.sw", "p.sh")
        is_branch = any_of(*fmt_names["B"])
        valid_instr = Cat(*op.values()).any()

        rd, rs1, rs2, rs3f = instr[7:12], instr[15:20], instr[20:25], instr[27:32]
        uses_rs1 = valid_instr & ~any_of("lui", "auipc", "jal", "lp.starti", "lp.endi", "lp.counti", "lp.setupi")
        uses_rs2 = any_of(*fmt_names["R"], *fmt_names["R4"], *fmt_names["RF"], *fmt_names["S"], *fmt_names["B"])
        reads_rd = any_of(*(mn for mn, s in isa.INSTRUCTIONS.items() if s.reads_rd))
        uses_rs3 = any_of(*fmt_names["R4"]) | reads_rd
        rs3 = Signal(5)
        m.d.comb += rs3.eq(Mux(any_of(*fmt_names["R4"]), rs3f, rd))
        writes_rd = (
            valid_instr & ~is_store & ~is_branch & ~any_of(*(n for n in isa.INSTRUCTIONS if n.startswith("lp.")))
        )
        wr_en = Signal()
        m.d.comb += wr_en.eq(writes_rd & (rd != 0))

        # ---- registers
        regs = [Signal(32, name=f"x{i}") for i in range(32)]
        rf = Array(regs)
        a, b, c = Signal(32), Signal(32), Signal(32)
        m.d.comb += [a.eq(rf[rs1]), b.eq(rf[rs2]), c.eq(rf[rs3])]
        busy = Array(Signal(2, name=f"busy{i}") for i in range(32))  # cycles until written (max fpu_latency-1 = 3)
        why_fp = Array(Signal(name=f"why_fp{i}") for i in range(32))  # the pending value is an FP result

        # ---- immediates
        imm_i = _sext(instr[20:32])
        imm_s = _sext(Cat(instr[7:12], instr[25:32]))
        imm_b = _sext(Cat(Const(0, 1), instr[8:12], instr[25:31], instr[7], instr[31]))
        imm_u = Cat(Const(0, 12), instr[12:32])
        imm_j = _sext(Cat(Const(0, 1), instr[21:31], instr[20], instr[12:20], instr[31]))
        lp_imm12 = instr[20:32]
        lp_idx = instr[7]

        # ---- issue conditions
        bubble = Signal(5)
        halted_r = Signal()
        halted = Signal()
        m.d.comb += [halted.eq(halted_r | ((pc == EXIT) & (bubble == 0))), self.halted.eq(halted)]
        fp_wait = Signal(range(33))
        # the largest remaining busy count among the sources, and whether the first source (in
        # rs1, rs2, rs3 order) with that count waits for an FP result: the cycle model's attribution
        waits = []
        for used, idx in ((uses_rs1, rs1), (uses_rs2, rs2), (uses_rs3, rs3)):
            w = Signal(2)
            m.d.comb += w.eq(Mux(used, busy[idx], 0))
            waits.append((w, why_fp[idx]))
        src_wait = Signal(2)
        w1, w2, w3 = (w for w, _ in waits)
        m.d.comb += src_wait.eq(Mux(w1 >= w2, Mux(w1 >= w3, w1, w3), Mux(w2 >= w3, w2, w3)))
        src_fp = Signal()
        with m.If(w1 == src_wait):
            m.d.comb += src_fp.eq(waits[0][1])
        with m.Elif(w2 == src_wait):
            m.d.comb += src_fp.eq(waits[1][1])
        with m.Else():
            m.d.comb += src_fp.eq(waits[2][1])
        fp_block = is_fp & (fp_wait != 0)
        active = self.run & ~halted
        ready = Signal()
        m.d.comb += ready.eq(active & (bubble == 0) & (src_wait == 0) & ~fp_block)
        issue = Signal()
        m.d.comb += [
            self.req_valid.eq(ready & is_mem),
            issue.eq(ready & (~is_mem | self.req_grant)),
        ]

        # ---- integer results
        alu = Signal(32)
        sa, sb_ = a.as_signed(), b.as_signed()
        shamt_i, shamt_r = instr[20:25], b[:5]
        pc4 = pc + 4
        results = [
            ("lui", imm_u),
            ("auipc", pc + imm_u),
            ("addi", a + imm_i),
            ("slti", sa < imm_i.as_signed()),
            ("sltiu", a < imm_i),
            ("xori", a ^ imm_i),
            ("ori", a | imm_i),
            ("andi", a & imm_i),
            ("slli", a << shamt_i),
            ("srli", a >> shamt_i),
            ("srai", sa >> shamt_i),
            ("add", a + b),
            ("sub", a - b),
            ("sll", a << shamt_r),
            ("slt", sa < sb_),
            ("sltu", a < b),
            ("xor", a ^ b),
            ("srl", a >> shamt_r),
            ("sra", sa >> shamt_r),
            ("or", a | b),
            ("and", a & b),
            ("jal", pc4),
            ("jalr", pc4),
            ("mul", (a * b)[:32]),
            ("csrrs", Mux(lp_imm12 == isa.CSR_MHARTID, self._hartid, 0)),
            ("p.mac", (c + a * b)[:32]),
            ("p.minu", Mux(a < b, a, b)),
            ("pv.shuffle.h", Cat(Mux(b[0], a[16:], a[:16]), Mux(b[16], a[16:], a[:16]))),
            (
                "pv.shuffle2.h",
                Cat(
                    Mux(b[0], Mux(b[1], a, c)[16:], Mux(b[1], a, c)[:16]),
                    Mux(b[16], Mux(b[17], a, c)[16:], Mux(b[17], a, c)[:16]),
                ),
            ),
            ("pv.pack.h", Cat(b[:16], a[:16])),
        ]
        for mn, value in results:
            with m.If(op[mn]):
                m.d.comb += alu.eq(value)
        taken = Signal()
        m.d.comb += taken.eq(
            (op["beq"] & (a == b))
            | (op["bne"] & (a != b))
            | (op["blt"] & (sa < sb_))
            | (op["bge"] & (sa >= sb_))
            | (op["bltu"] & (a < b))
            | (op["bgeu"] & (a >= b))
            | op["jal"]
            | op["jalr"]
        )
        target = Signal(32)
        m.d.comb += target.eq(Mux(op["jalr"], (a + imm_i) & ~1, pc + Mux(op["jal"], imm_j, imm_b)))

        # ---- FP datapath (combinational units; the core adds fpu_latency - 1 delay registers)
        simd = FPSimd(config=FPSimdConfig(lane_fmt="fp16", pipeline_stages=0))
        to_h = Convert(config=ConvertConfig(src_fmt="fp32", dst_fmt="fp16", pipeline_stages=0))
        to_s = Convert(config=ConvertConfig(src_fmt="fp16", dst_fmt="fp32", pipeline_stages=0))
        m.submodules.fpsimd, m.submodules.cvt_h_s, m.submodules.cvt_s_h = simd, to_h, to_s
        simd_op = Signal(SimdOp)
        with m.If(any_of("vfadd.h", "fadd.h")):
            m.d.comb += simd_op.eq(SimdOp.VFADD_H)
        with m.Elif(any_of("vfmul.h", "fmul.h")):
            m.d.comb += simd_op.eq(SimdOp.VFMUL_H)
        with m.Elif(any_of("vfmac.h", "fmadd.h")):
            m.d.comb += simd_op.eq(SimdOp.VFMAC_H)
        with m.Elif(op["vfdotpex.s.h"]):
            m.d.comb += simd_op.eq(SimdOp.VFDOTPEX_S_H)
        with m.Else():
            m.d.comb += simd_op.eq(SimdOp.FMADD_S)
        one_s = 0x3F80_0000
        m.d.comb += [
            simd.request.valid.eq(1),
            simd.response.ready.eq(1),
            simd.request.payload.rs1.eq(a),
            simd.request.payload.rs2.eq(Mux(op["fadd.s"], one_s, b)),
            simd.request.payload.rs3.eq(Mux(op["fadd.s"], b, c)),
            simd.request.payload.op.eq(simd_op),
            simd.request.payload.rm.eq(RoundingMode.RNE),
            to_h.request.valid.eq(1),
            to_h.response.ready.eq(1),
            to_h.request.payload.a.eq(a),
            to_h.request.payload.rm.eq(RoundingMode.RNE),
            to_s.request.valid.eq(1),
            to_s.response.ready.eq(1),
            to_s.request.payload.a.eq(a[:16]),
            to_s.request.payload.rm.eq(RoundingMode.RNE),
        ]
        simd_out = simd.response.payload.result
        u2f = _u2f32(m, a)
        fp_res = Signal(32)
        with m.If(any_of("fadd.h", "fmul.h", "fmadd.h")):
            m.d.comb += fp_res.eq(_sext(simd_out[:16]))
        with m.Elif(op["fcvt.h.s"]):
            m.d.comb += fp_res.eq(_sext(to_h.response.payload.result))
        with m.Elif(op["fcvt.s.h"]):
            m.d.comb += fp_res.eq(to_s.response.payload.result)
        with m.Elif(op["fcvt.s.wu"]):
            m.d.comb += fp_res.eq(u2f)
        with m.Else():
            m.d.comb += fp_res.eq(simd_out)

        # ---- memory access
        addr = Signal(32)
        m.d.comb += addr.eq(Mux(is_post, a, a + Mux(is_store, imm_s, imm_i)))
        off = addr[:2]
        byte_st, half_st = any_of("sb"), any_of("sh", "p.sh")
        m.d.comb += [
            self.req_addr.eq(addr),
            self.req_we.eq(is_store),
            self.req_wdata.eq(Mux(byte_st, b[:8].replicate(4), Mux(half_st, b[:16].replicate(2), b))),
            self.req_be.eq(Mux(byte_st, Const(1, 4) << off, Mux(half_st, Const(3, 4) << off, 0xF))),
        ]
        # load write-back stage (the access was granted last cycle; the bank answers now)
        ld_valid, ld_rd, ld_off = Signal(), Signal(5), Signal(2)
        ld_kind = Signal(3)  # funct3: 0 lb, 1 lh, 2 lw, 4 lbu, 5 lhu
        shifted = Signal(32)
        m.d.comb += shifted.eq(self.rdata >> Cat(Const(0, 3), ld_off))
        ld_value = Signal(32)
        with m.Switch(ld_kind):
            with m.Case(0):
                m.d.comb += ld_value.eq(_sext(shifted[:8]))
            with m.Case(1):
                m.d.comb += ld_value.eq(_sext(shifted[:16]))
            with m.Case(4):
                m.d.comb += ld_value.eq(shifted[:8])
            with m.Case(5):
                m.d.comb += ld_value.eq(shifted[:16])
            with m.Default():
                m.d.comb += ld_value.eq(self.rdata)

        # ---- FP delay line: fpu_latency - 1 stages of (valid, rd, value)
        depth = tm.fpu_latency - 1
        fq_valid = [Signal(name=f"fq{k}_valid") for k in range(depth)]
        fq_rd = [Signal(5, name=f"fq{k}_rd") for k in range(depth)]
        fq_val = [Signal(32, name=f"fq{k}_val") for k in range(depth)]

        # ---- hardware loops
        lp_start = [Signal(32, name=f"lp{i}_start") for i in range(2)]
        lp_end = [Signal(32, name=f"lp{i}_end") for i in range(2)]
        lp_count = [Signal(32, name=f"lp{i}_count") for i in range(2)]
        at_end = [Signal(name=f"lp{i}_at_end") for i in range(2)]
        m.d.comb += [at_end[i].eq((pc == lp_end[i]) & (lp_count[i] != 0)) for i in range(2)]
        jump0 = at_end[0] & (lp_count[0] > 1)
        jump1 = ~jump0 & at_end[1] & (lp_count[1] > 1)

        # ---- performance counters
        cnt = {name: Signal(32, name="cnt_" + name.replace("-", "_")) for name in COUNTERS}
        m.d.comb += [self.counters[i].eq(cnt[name]) for i, name in enumerate(COUNTERS)]

        # ---- sequential behaviour
        with m.If(self.init):
            m.d.sync += [pc.eq(0), bubble.eq(0), halted_r.eq(0), fp_wait.eq(0), ld_valid.eq(0)]
            for i in range(1, 32):
                init = {1: EXIT, 2: self._stack_top}.get(i, 0)
                m.d.sync += regs[i].eq(self.args if i == 10 else init)
            m.d.sync += [busy[i].eq(0) for i in range(32)]
            m.d.sync += [v.eq(0) for v in fq_valid]
            m.d.sync += [s.eq(0) for s in (*lp_start, *lp_end, *lp_count)]
            m.d.sync += [s.eq(0) for s in cnt.values()]
        with m.Else():
            # scoreboard countdown (an issue below overrides its destination)
            for i in range(32):
                with m.If(busy[i] != 0):
                    m.d.sync += busy[i].eq(busy[i] - 1)
            with m.If(fp_wait != 0):
                m.d.sync += fp_wait.eq(fp_wait - 1)
            with m.If(bubble != 0):
                m.d.sync += bubble.eq(bubble - 1)
            with m.If(self.run & halted):
                m.d.sync += halted_r.eq(1)
            # writes, lowest priority first: FP delay line, load write-back, then the issuing instruction
            if depth:
                with m.If(fq_valid[-1]):
                    m.d.sync += rf[fq_rd[-1]].eq(fq_val[-1])
            with m.If(ld_valid):
                m.d.sync += rf[ld_rd].eq(ld_value)
            m.d.sync += ld_valid.eq(0)
            for k in range(1, depth):
                m.d.sync += [fq_valid[k].eq(fq_valid[k - 1]), fq_rd[k].eq(fq_rd[k - 1]), fq_val[k].eq(fq_val[k - 1])]
            if depth:
                m.d.sync += fq_valid[0].eq(0)

            # counters
            with m.If(active):
                m.d.sync += cnt["cycles"].eq(cnt["cycles"] + 1)
                with m.If(issue):
                    m.d.sync += cnt["instructions"].eq(cnt["instructions"] + 1)
                    with m.If(is_load):
                        m.d.sync += cnt["loads"].eq(cnt["loads"] + 1)
                    with m.If(is_store):
                        m.d.sync += cnt["stores"].eq(cnt["stores"] + 1)
                    with m.If(is_fp):
                        m.d.sync += cnt["fp_ops"].eq(cnt["fp_ops"] + 1)
                with m.Elif(bubble != 0):
                    m.d.sync += cnt["branch"].eq(cnt["branch"] + 1)
                with m.Elif(fp_block & (fp_wait > src_wait)):
                    m.d.sync += cnt["fpu-share"].eq(cnt["fpu-share"] + 1)
                with m.Elif((src_wait != 0) & src_fp):
                    m.d.sync += cnt["fpu-raw"].eq(cnt["fpu-raw"] + 1)
                with m.Elif(src_wait != 0):
                    m.d.sync += cnt["load-use"].eq(cnt["load-use"] + 1)
                with m.Else():
                    m.d.sync += cnt["tcdm"].eq(cnt["tcdm"] + 1)

            with m.If(issue):
                # a later write of the same register cancels pending FP writes of it (the value
                # moving into stage k comes from stage k - 1; the last stage writes this cycle and
                # loses to the issuing instruction's own write by statement order)
                for k in range(1, depth):
                    with m.If(wr_en & (fq_rd[k - 1] == rd)):
                        m.d.sync += fq_valid[k].eq(0)
                with m.If(wr_en):
                    with m.If(is_load):
                        m.d.sync += [busy[rd].eq(1), why_fp[rd].eq(0), ld_valid.eq(1), ld_rd.eq(rd)]
                    with m.Elif(is_fp):
                        m.d.sync += [busy[rd].eq(depth), why_fp[rd].eq(1)]
                        if depth:
                            m.d.sync += [fq_valid[0].eq(1), fq_rd[0].eq(rd), fq_val[0].eq(fp_res)]
                        else:
                            m.d.sync += rf[rd].eq(fp_res)
                    with m.Else():
                        m.d.sync += [busy[rd].eq(0), why_fp[rd].eq(0), rf[rd].eq(alu)]
                m.d.sync += [ld_off.eq(addr[:2]), ld_kind.eq(instr[12:15])]
                with m.If(is_post & (rs1 != 0)):
                    m.d.sync += [rf[rs1].eq(a + Mux(is_store, imm_s, imm_i)), busy[rs1].eq(0)]
                with m.If(is_fp):
                    m.d.sync += fp_wait.eq(tm.fpu_share - 1)
                # hardware loop set-up
                for i in range(2):
                    with m.If(lp_idx == i):
                        with m.If(op["lp.starti"]):
                            m.d.sync += lp_start[i].eq(pc + (lp_imm12 << 1))
                        with m.If(op["lp.endi"]):
                            m.d.sync += lp_end[i].eq(pc + (lp_imm12 << 1))
                        with m.If(op["lp.count"]):
                            m.d.sync += lp_count[i].eq(a)
                        with m.If(op["lp.counti"]):
                            m.d.sync += lp_count[i].eq(lp_imm12)
                        with m.If(op["lp.setup"]):
                            m.d.sync += [lp_start[i].eq(pc4), lp_end[i].eq(pc + (lp_imm12 << 1)), lp_count[i].eq(a)]
                        with m.If(op["lp.setupi"]):
                            m.d.sync += [
                                lp_start[i].eq(pc4),
                                lp_end[i].eq(pc + (instr[15:20] << 1)),
                                lp_count[i].eq(lp_imm12),
                            ]
                # next PC
                with m.If(taken):
                    m.d.sync += [pc.eq(target), bubble.eq(tm.branch_penalty)]
                with m.Elif(jump0):
                    m.d.sync += [pc.eq(lp_start[0]), lp_count[0].eq(lp_count[0] - 1)]
                with m.Elif(jump1):
                    m.d.sync += [pc.eq(lp_start[1]), lp_count[1].eq(lp_count[1] - 1)]
                    with m.If(at_end[0]):
                        m.d.sync += lp_count[0].eq(0)
                with m.Else():
                    m.d.sync += pc.eq(pc4)
                    for i in range(2):
                        with m.If(at_end[i]):
                            m.d.sync += lp_count[i].eq(0)
            # x0 stays zero whatever was assigned to it above
            m.d.sync += regs[0].eq(0)
        return m
