"""Instruction-level cycle models of the training matmuls ``C = A . B`` on the MCU cluster.

``A`` is ``N x K``, ``B`` is ``K x M`` (or stored transposed, ``M x K``, when ``trans_b``), ``C`` is
``N x M``, all row-major in L1. Every kernel is written as an explicit program (:mod:`.core`): the
per-core preamble, the loops over output blocks with their pointer updates, the inner loop over ``K``
(the instruction list below), the epilogue that stores the block, and the remainder loops for shapes
that the unroll does not divide. :func:`kernel_cycles` issues the program of every core with the core
timing rules, adds TCDM bank contention between the cores (:mod:`.tcdm`), the fork and the barrier.

Inner-loop instructions per iteration (U output rows x V output columns, ``e`` bytes per element):

============  ========  ==============================================================  ============
mode          k/iter    instructions                                                    MACs
============  ========  ==============================================================  ============
scalar        ``u``     ``u*(U+V)`` loads, ``u*U*V`` ``fmadd.s``/``fmadd.h``               ``u*U*V``
simd          2         not transposed: ``U`` A-vector loads, ``V`` B-vector loads         ``2*U*V``
                        (rows k and k+1), ``2U`` lane broadcasts (``pv.shuffle.h``),
                        ``U*V`` ``vfmac.h``; transposed: ``U+V`` vector loads,
                        ``U*V`` ``vfmac.h`` (each accumulator holds two partial sums)
simd_pack     2         ``U`` A-vector loads, ``2V`` halfword B loads, ``V`` ``pv.pack.h``,  ``2*U*V``
                        ``U*V`` ``vfmac.h`` (the tutorial's ``vm_SIMD_naive``)
dotpex        2         transposed: ``U+V`` vector loads, ``U*V`` ``vfdotpex.s.h`` into      ``2*U*V``
                        FP32 accumulators; not transposed: ``U`` + ``V`` vector loads,
                        ``V/2`` ``pv.pack.h`` + ``V/2`` ``pv.shuffle2.h`` pairing rows k and
                        k+1, ``U*V`` ``vfdotpex``
dw_bitcast    2         the library's SIMD depthwise kernel: ``U`` A-vector loads, per       ``2*U*V``
                        column a B-vector load and per output ``vfmul.h``, ``and``,
                        ``srli``, ``add``, ``fcvt.s.wu``, ``fcvt.h.s``, ``fadd.h``
============  ========  ==============================================================  ============

Loads use post-increment addressing; the loads come first in the body (for scalar kernels the
smaller operand group first), then the shuffles/packs, then the FMAs, so a load-use stall remains
only where the body is too short to hide it (the naive kernels, ``vm_T_SIMD``). The full accounting,
with the preamble, epilogues and remainders, is in ``docs/mcu.md``.

The programs are real RV32 + Xpulp + smallFloat code (``docs/mcu-core.md``) with symbolic registers:
:func:`trainforge.dataflow.mcu.program.kernel_image` allocates them and prints the one program all
cores run; :mod:`.cluster_sim` runs that text on every core with exact TCDM arbitration, which
:func:`kernel_cycles` uses for multi-core kernels up to :data:`EXACT_LIMIT` dynamic instructions.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

from trainforge.dataflow.mcu.cluster import ClusterConfig, dtype_bytes
from trainforge.dataflow.mcu.core import (
    CoreSim,
    CoreStats,
    Instr,
    Loop,
    Node,
    Timing,
    count_instructions,
    fits12,
    li_instrs,
    loop_setup,
    render,
)
from trainforge.dataflow.mcu.tcdm import Contention, contention
from trainforge.errors import UsageError

__all__ = [
    "EXACT_LIMIT",
    "KERNELS",
    "KernelResult",
    "KernelSpec",
    "ProgramParts",
    "core_timing",
    "kernel_cycles",
    "kernel_names",
    "kernel_program",
    "program_parts",
    "split",
]

MODES = ("scalar", "simd", "simd_pack", "dotpex", "dw_bitcast")
REGISTER_BUDGET = 21
"""Data registers a kernel's inner loop can hold: x1..x31 minus sp, gp, tp, the A and B pointers
and the five values live across it (row and column pointers, bounds); FP values share the integer
register file (Zfinx, as the PULP cores with SIMD FP16). Each register beyond it is an accumulator
reloaded and spilled every iteration (one ``lw`` and one ``sw``)."""
PARALLEL = ("N", "M", "G")
ORIGINS = ("library", "later", "tutorial", "beyond")


@dataclasses.dataclass(frozen=True, kw_only=True)
class KernelSpec:
    """One matmul kernel.

    Attributes
    ----------
    name : str
        The PULP-TrainLib name (``mm_unroll_2x4``, ``mm_fp16_SIMD_4x8``), the tutorial's
        (``vm_T_SIMD``) or ours (``mm_fp16_dotpex_4x8``).
    fmt : {"fp32", "fp16"}
        Element format; ``fp16`` kernels also run ``bf16`` (same instructions, other lane format).
    mode : {"scalar", "simd", "simd_pack", "dotpex", "dw_bitcast"}
        Inner-loop structure (see the module table; ``dw_bitcast`` is the library's SIMD depthwise
        kernel, which reduces the two lanes of each product with integer masks and a conversion).
    rows, cols : int
        Output block ``U x V`` computed together. For SIMD kernels the library's name counts the
        FP16 elements loaded instead: ``SIMD_4x8`` loads 4 of A and 8 of B and computes 2 x 4.
    kunroll : int
        Reduction elements per inner iteration.
    parallel : {"N", "M", "G"}
        Dimension split over the cores: rows of C, columns of C, or independent groups
        (depthwise channels).
    layouts : tuple of bool
        Supported ``trans_b`` values.
    origin : {"library", "later", "tutorial", "beyond"}
        Paper-era PULP-TrainLib, a later PULP-TrainLib addition, its tutorial, or beyond the paper.
    fallback : str or None
        Kernel used instead when the shape is smaller than the block (as the library does).
    summary : str
    """

    name: str
    fmt: str
    mode: str
    rows: int = 1
    cols: int = 1
    kunroll: int = 1
    parallel: str = "N"
    layouts: tuple[bool, ...] = (False, True)
    origin: str = "library"
    fallback: str | None = None
    summary: str = ""

    def __post_init__(self) -> None:
        if self.mode not in MODES or self.parallel not in PARALLEL or self.origin not in ORIGINS:
            raise ValueError(f"invalid kernel spec {self!r}")
        if self.mode != "scalar" and self.kunroll != 2:
            raise ValueError(f"{self.name}: SIMD kernels step k by 2")

    @property
    def simd(self) -> bool:
        """Uses the FP16 SIMD instructions (needs ``simd_lanes == 2``)."""
        return self.mode != "scalar"

    def macs_per_iteration(self) -> int:
        """MACs of one inner-loop iteration."""
        return self.rows * self.cols * self.kunroll

    def registers(self, trans_b: bool) -> int:
        """Data registers live in the inner loop: accumulators, operands, shuffled/packed values."""
        u, v = self.rows, self.cols
        if self.mode == "scalar":
            data = u * v + self.kunroll * (u + v)
        elif self.mode == "simd" and not trans_b:
            data = u * v // 2 + u + v + 2 * u
        elif self.mode == "simd_pack":
            data = u * v + u + 2 * v + v
        elif self.mode == "dotpex" and not trans_b:
            data = u * v + u + 2 * v
        elif self.mode == "dw_bitcast":
            data = u * v + u + 4 * v
        else:
            data = u * v + u + v
        return data

    def spills(self, trans_b: bool) -> int:
        """Accumulators that do not fit :data:`REGISTER_BUDGET` and live on the stack."""
        return max(0, self.registers(trans_b) - REGISTER_BUDGET)


def _specs() -> dict[str, KernelSpec]:
    specs: list[KernelSpec] = []
    # ---- FP32: the library's 24 (naive, u2, unrolled U x V; parallel over N or M)
    for par, pre in (("N", "mm"), ("M", "mm_M")):
        specs.append(KernelSpec(name=pre, fmt="fp32", mode="scalar", parallel=par, summary="naive dot products"))
        specs.append(
            KernelSpec(
                name=f"{pre}_u2",
                fmt="fp32",
                mode="scalar",
                kunroll=2,
                parallel=par,
                fallback=pre,
                summary="naive, k unrolled by 2",
            )
        )
        for u, v in ((1, 2), (1, 4), (1, 8), (2, 1), (4, 1), (8, 1), (2, 2), (2, 4), (4, 2), (4, 4)):
            specs.append(
                KernelSpec(
                    name=f"{pre}_unroll_{u}x{v}",
                    fmt="fp32",
                    mode="scalar",
                    rows=u,
                    cols=v,
                    parallel=par,
                    fallback=pre,
                    summary=f"{u} rows x {v} columns of C per inner loop",
                )
            )
    # ---- FP32 depthwise (per-channel products, parallel over channels)
    specs += [
        KernelSpec(name="mm_dw", fmt="fp32", mode="scalar", parallel="G", summary="depthwise, naive"),
        KernelSpec(
            name="mm_dw_u2",
            fmt="fp32",
            mode="scalar",
            kunroll=2,
            parallel="G",
            fallback="mm_dw",
            summary="depthwise, k unrolled by 2",
        ),
        KernelSpec(
            name="mm_dw_unroll_1x2",
            fmt="fp32",
            mode="scalar",
            cols=2,
            parallel="G",
            fallback="mm_dw",
            summary="depthwise, 2 outputs",
        ),
        KernelSpec(
            name="mm_dw_unroll_1x4",
            fmt="fp32",
            mode="scalar",
            cols=4,
            parallel="G",
            fallback="mm_dw",
            summary="depthwise, 4 outputs",
        ),
    ]
    # ---- FP16: the library's (naive, SIMD 2x4 / 4x8, scalar unrolled), parallel over N or M
    for par, pre in (("N", "mm"), ("M", "mm_M")):
        specs.append(
            KernelSpec(
                name=f"{pre}_fp16",
                fmt="fp16",
                mode="scalar",
                parallel=par,
                summary="naive FP16 dot products (FP16 accumulation)",
            )
        )
        specs.append(
            KernelSpec(
                name=f"{pre}_fp16_SIMD_2x4",
                fmt="fp16",
                mode="simd",
                cols=2,
                kunroll=2,
                parallel=par,
                fallback=f"{pre}_fp16",
                summary="vfmac.h, 1 x 2 outputs (2 A and 4 B elements per k-step)",
            )
        )
        specs.append(
            KernelSpec(
                name=f"{pre}_fp16_SIMD_4x8",
                fmt="fp16",
                mode="simd",
                rows=2,
                cols=4,
                kunroll=2,
                parallel=par,
                fallback=f"{pre}_fp16_SIMD_2x4",
                summary="vfmac.h, 2 x 4 outputs (4 A and 8 B elements per k-step)",
            )
        )
    for u in (2, 4, 8):
        specs.append(
            KernelSpec(
                name=f"mm_fp16_unroll_{u}x1",
                fmt="fp16",
                mode="scalar",
                rows=u,
                fallback="mm_fp16",
                origin="later",
                summary=f"scalar FP16, {u} rows of C per inner loop",
            )
        )
    specs += [
        KernelSpec(name="mm_dw_fp16", fmt="fp16", mode="scalar", parallel="G", summary="depthwise FP16, naive"),
        KernelSpec(
            name="mm_dw_fp16_SIMD_1x2_u2",
            fmt="fp16",
            mode="dw_bitcast",
            cols=2,
            kunroll=2,
            parallel="G",
            layouts=(True,),
            fallback="mm_dw_fp16",
            summary="depthwise FP16: vfmul.h, lanes summed through integer masks and a conversion",
        ),
        KernelSpec(
            name="mm_dw_fp16_SIMD_1x2",
            fmt="fp16",
            mode="simd",
            cols=2,
            kunroll=2,
            parallel="G",
            origin="beyond",
            fallback="mm_dw_fp16",
            summary="depthwise FP16, vfmac.h, 2 outputs",
        ),
    ]
    # ---- the tutorial's vector-matrix kernels (parallel over M, as vm_T_SIMD_parallel)
    specs += [
        KernelSpec(
            name="vm_naive",
            fmt="fp16",
            mode="scalar",
            parallel="M",
            origin="tutorial",
            summary="tutorial: 2 loads + 1 FMA per MAC",
        ),
        KernelSpec(
            name="vm_SIMD_naive",
            fmt="fp16",
            mode="simd_pack",
            kunroll=2,
            parallel="M",
            layouts=(False,),
            origin="tutorial",
            fallback="vm_naive",
            summary="tutorial: 1 vector + 2 halfword loads, pack, vfmac.h per 2 MACs",
        ),
        KernelSpec(
            name="vm_T_SIMD",
            fmt="fp16",
            mode="simd",
            kunroll=2,
            parallel="M",
            layouts=(True,),
            origin="tutorial",
            fallback="vm_naive",
            summary="tutorial: B transposed, 2 loads + vfmac.h per 2 MACs",
        ),
    ]
    # ---- beyond the paper: FP32-accumulating vfdotpex.s.h kernels
    for par, pre in (("N", "mm"), ("M", "mm_M")):
        for u, v, fb in ((1, 2, f"{pre}_fp16"), (2, 4, f"{pre}_fp16_dotpex_2x4"), (3, 4, f"{pre}_fp16_dotpex_4x8")):
            name = f"{pre}_fp16_dotpex_{2 * u}x{2 * v}"
            specs.append(
                KernelSpec(
                    name=name,
                    fmt="fp16",
                    mode="dotpex",
                    rows=u,
                    cols=v,
                    kunroll=2,
                    parallel=par,
                    origin="beyond",
                    fallback=fb,
                    summary=f"vfdotpex.s.h into FP32 accumulators, {u} x {v} outputs",
                )
            )
    specs.append(
        KernelSpec(
            name="mm_dw_fp16_dotpex_1x2",
            fmt="fp16",
            mode="dotpex",
            cols=2,
            kunroll=2,
            parallel="G",
            origin="beyond",
            fallback="mm_dw_fp16",
            summary="depthwise, vfdotpex.s.h, FP32 accumulators",
        )
    )
    return {s.name: s for s in specs}


KERNELS: dict[str, KernelSpec] = _specs()
"""Every kernel model by name."""


def kernel_names(dtype: str | None = None, *, origin: str | None = None) -> list[str]:
    """Kernel names, optionally only those for ``dtype`` and of one ``origin``."""
    fmt = None if dtype is None else ("fp32" if dtype == "fp32" else "fp16")
    return [
        s.name for s in KERNELS.values() if (fmt is None or s.fmt == fmt) and (origin is None or s.origin == origin)
    ]


def split(total: int, parts: int, index: int) -> tuple[int, int]:
    """``[start, stop)`` of ``index``'s share when ``total`` is split in blocks of ``ceil(total/parts)``."""
    block = -(-total // parts)
    start = min(total, index * block)
    return start, min(total, start + block)


def core_timing(cluster: ClusterConfig, team_cores: int) -> Timing:
    """The :class:`~.core.Timing` of a core of a team of ``team_cores`` forked cores.

    A shared FPU's interval is the team's ``fpu_share(team_cores)``, however many of the team's cores
    have work: the FPU arbitration is fixed when the team is forked (``docs/mcu-core.md``, rule 3), as
    the cluster RTL implements it.
    """
    return Timing(
        load_latency=cluster.load_latency,
        fpu_latency=cluster.fpu_latency,
        branch_penalty=cluster.branch_penalty,
        fpu_interval=cluster.fpu_share(min(team_cores, cluster.cores)),
    )


# ---------------------------------------------------------------------------------------------
# program builders: real RV32 + Xpulp + smallFloat instructions (registers still symbolic; the
# lowering in :mod:`.program` allocates them and prints the assembly)

FIXED_REGISTERS = {"zero": 0, "ra": 1, "sp": 2, "a0": 10}
"""Registers with a fixed meaning in the programs: x0, the return address, the stack, the args."""

ARG_FIELDS = ("A", "B", "C", "P", "sA", "sB", "sC")
"""The argument structure's words, in order: the addresses of A, B (or B^T) and C, the extent of the
parallel dimension (N, M or the groups), the bytes A and B advance per unit of it and the elements C
advances per unit of it."""


def _ops(fmt: str) -> dict[str, str]:
    if fmt == "fp32":
        return {"ld": "p.lw", "ld0": "lw", "st": "p.sw", "st0": "sw", "fma": "fmadd.s"}
    # FP16 in the low half of an integer register (Zhinx): zero-extending loads keep the upper lane +0
    return {"ld": "p.lhu", "ld0": "lhu", "st": "p.sh", "st0": "sh", "fma": "fmadd.h"}


_PLAIN = {"p.lw": "lw", "p.lhu": "lhu", "p.sw": "sw", "p.sh": "sh"}


def _ld(op: str, dst: str, ptr: str, stream: str, offset: int) -> Instr:
    """A load of ``stream`` at ``offset`` bytes from ``ptr`` (as the iteration starts); the
    post-increment and the immediates are set by :func:`_mark_increments`."""
    return Instr(_PLAIN.get(op, op), dst=dst, src=(ptr,), unit="load", stream=stream, offset=offset, imm=offset)


def _mark_increments(loads: list[Instr], strides: dict[str, int]) -> list[Instr]:
    """Post-increment each pointer on its first load of the iteration (the one at offset 0).

    Xpulp's ``p.lw rd, imm(rs1!)`` reads ``mem[rs1]`` and then adds ``imm`` (the pointer's stride per
    iteration) to ``rs1``; the later loads from the same pointer use the immediate ``offset -
    stride`` from the incremented pointer. ``offset`` keeps the byte offset from the pointer at the
    start of the iteration (for listings and the contention model).
    """
    inc = {v: k for k, v in _PLAIN.items()}
    first: set[str] = set()
    out = []
    for ins in loads:
        ptr = ins.src[0]
        stride = strides[ptr]
        if ptr not in first:
            first.add(ptr)
            if ins.offset != 0:
                raise AssertionError(f"first load of {ptr} must be at offset 0, not {ins.offset}")
            out.append(dataclasses.replace(ins, op=inc[ins.op], inc=ptr, imm=stride))
        else:
            out.append(dataclasses.replace(ins, imm=ins.offset - stride))
    return out


@dataclasses.dataclass(frozen=True)
class _Geometry:
    k: int  # reduction length
    m: int  # row length of B (not transposed) and of C
    e: int  # bytes per element
    trans_b: bool


class _Consts:
    """Constant registers a program variant sets once at its start (masks, hardware-loop counts,
    immediates too wide for an instruction)."""

    def __init__(self) -> None:
        self.values: dict[int, str] = {}

    def reg(self, value: int) -> str:
        value &= 0xFFFFFFFF
        if value == 0:
            return "zero"
        if value not in self.values:
            self.values[value] = f"k{len(self.values)}"
        return self.values[value]

    def init(self) -> list[Instr]:
        return [ins for value, name in self.values.items() for ins in li_instrs(name, value)]


def _addi(dst: str, src: str, value: int, consts: _Consts) -> Instr:
    """``dst = src + value``: ``addi`` when the immediate fits, else ``add`` with a constant register."""
    if fits12(value):
        return Instr("addi", dst=dst, src=(src,), imm=value)
    return Instr("add", dst=dst, src=(src, consts.reg(value)))


def _static_length(body: Sequence[Node]) -> int:
    """Instructions in a loop body's text (its nested loops' setup and software-loop overhead included)."""
    total = 0
    for node in body:
        if isinstance(node, Instr):
            total += 1
        elif isinstance(node, Loop) and node.count:
            total += len(loop_setup(node, 0)) + _static_length(node.body) + (0 if node.hw else 2)
    return total


def _hw_loop(count: int, body: Sequence[Node], consts: _Consts, **kw: Any) -> Loop:
    """A hardware loop: ``lp.setupi`` when the count (12 bits) and the body (up to 15 instructions, the
    reach of its 5-bit end offset) fit, else ``lp.setup`` with the count in a constant register."""
    body = tuple(body)
    if count == 0:
        return Loop(0, body, hw=True, **kw)
    if count < 4096 and _static_length(body) <= 15:
        return Loop(count, body, hw=True, **kw)
    return Loop(count, body, hw=True, counter=consts.reg(count), **kw)


def _inner_body(spec: KernelSpec, u_rows: int, v_cols: int, g: _Geometry, consts: _Consts) -> tuple[list[Instr], dict]:
    """Inner-loop body for a ``u_rows x v_cols`` block and the per-iteration stream strides."""
    e, k, m, tb = g.e, g.k, g.m, g.trans_b
    ops = _ops(spec.fmt)
    ku = spec.kunroll
    body: list[Instr] = []
    if spec.mode == "scalar":
        pstride = {"pa": ku * e, "pb": ku * e if tb else ku * m * e}
        a_loads = [_ld(ops["ld"], f"a{kk}_{u}", "pa", "A", (u * k + kk) * e) for kk in range(ku) for u in range(u_rows)]
        b_off = (lambda kk, v: (v * k + kk) * e) if tb else (lambda kk, v: (kk * m + v) * e)
        b_loads = [_ld(ops["ld"], f"b{kk}_{v}", "pb", "B", b_off(kk, v)) for kk in range(ku) for v in range(v_cols)]
        loads = (b_loads + a_loads) if v_cols < u_rows else (a_loads + b_loads)
        body += _mark_increments(loads, pstride)
        for kk in range(ku):
            pairs = (
                [(u, v) for v in range(v_cols) for u in range(u_rows)]
                if v_cols < u_rows
                else [(u, v) for u in range(u_rows) for v in range(v_cols)]
            )
            for u, v in pairs:
                acc = f"c{u}_{v}"
                body.append(Instr(ops["fma"], dst=acc, src=(acc, f"a{kk}_{u}", f"b{kk}_{v}"), unit="fpu"))
        return body, {"A": pstride["pa"], "B": pstride["pb"]}
    # the 16-bit SIMD modes: k steps by 2, vectors are 32-bit words
    pstride = {"pa": 2 * e, "pb": 2 * e if tb else 2 * m * e}
    strides = {"A": pstride["pa"], "B": pstride["pb"]}
    a_loads = [_ld("p.lw", f"av{u}", "pa", "A", u * k * e) for u in range(u_rows)]
    if spec.mode == "dw_bitcast":  # res += (float)((p & 0xffff) + (p >> 16)), p = a * b (bit patterns)
        low = consts.reg(0xFFFF)
        loads = list(a_loads)
        for v in range(v_cols):
            loads.append(_ld("p.lw", f"b{v}", "pb", "B", v * k * e))
        loads = _mark_increments(loads, pstride)
        body += loads[:u_rows]
        for v in range(v_cols):
            body.append(loads[u_rows + v])
            for u in range(u_rows):
                t = f"{u}_{v}"
                body += [
                    Instr("vfmul.h", dst=f"p{t}", src=(f"av{u}", f"b{v}"), unit="fpu"),
                    Instr("and", dst=f"x{t}", src=(f"p{t}", low)),
                    Instr("srli", dst=f"y{t}", src=(f"p{t}",), imm=16),
                    Instr("add", dst=f"s{t}", src=(f"x{t}", f"y{t}")),
                    Instr("fcvt.s.wu", dst=f"f{t}", src=(f"s{t}",), unit="fpu"),
                    Instr("fcvt.h.s", dst=f"h{t}", src=(f"f{t}",), unit="fpu"),
                    Instr("fadd.h", dst=f"c{t}", src=(f"c{t}", f"h{t}"), unit="fpu"),
                ]
        return body, strides
    if spec.mode == "simd_pack":
        b_loads = []
        for v in range(v_cols):
            b_loads.append(_ld("p.lhu", f"bl{v}", "pb", "B", v * e))
            b_loads.append(_ld("p.lhu", f"bh{v}", "pb", "B", (m + v) * e))
        body += _mark_increments(b_loads + a_loads, pstride)
        # pv.pack.h rd = {rs1 (hi lane), rs2 (lo lane)}: lane 0 = row k, lane 1 = row k + 1
        body += [Instr("pv.pack.h", dst=f"b{v}", src=(f"bh{v}", f"bl{v}")) for v in range(v_cols)]
        body += [
            Instr("vfmac.h", dst=f"c{u}_{v}", src=(f"c{u}_{v}", f"av{u}", f"b{v}"), unit="fpu")
            for u in range(u_rows)
            for v in range(v_cols)
        ]
        return body, strides
    if tb:  # simd or dotpex with B transposed: one vector per row of B^T
        b_loads = [_ld("p.lw", f"b{v}", "pb", "B", v * k * e) for v in range(v_cols)]
        body += _mark_increments(a_loads + b_loads, pstride)
        op = "vfmac.h" if spec.mode == "simd" else "vfdotpex.s.h"
        body += [
            Instr(op, dst=f"c{u}_{v}", src=(f"c{u}_{v}", f"av{u}", f"b{v}"), unit="fpu")
            for u in range(u_rows)
            for v in range(v_cols)
        ]
        return body, strides
    # not transposed: rows k and k+1 of B, v_cols // 2 vectors each
    words = max(1, v_cols // 2)
    b_loads = [_ld("p.lw", f"b{r}_{w}", "pb", "B", (r * m + 2 * w) * e) for r in range(2) for w in range(words)]
    body += _mark_increments(a_loads + b_loads, pstride)
    if spec.mode == "simd":
        # broadcast a[k] and a[k+1]: pv.shuffle.h selects lane rs2.H[i][0] for lane i (x0: lane 0)
        one = consts.reg(0x0001_0001)
        for u in range(u_rows):
            body.append(Instr("pv.shuffle.h", dst=f"s{u}_0", src=(f"av{u}", "zero")))
            body.append(Instr("pv.shuffle.h", dst=f"s{u}_1", src=(f"av{u}", one)))
        for r in range(2):
            for u in range(u_rows):
                for w in range(words):
                    acc = f"c{u}_{w}"
                    body.append(Instr("vfmac.h", dst=acc, src=(acc, f"s{u}_{r}", f"b{r}_{w}"), unit="fpu"))
        return body, strides
    # dotpex, not transposed: pair rows k and k+1 column by column. Column 2w: pv.pack.h {b1.H0, b0.H0};
    # column 2w+1 in place of b0: pv.shuffle2.h rd.H0 = rd.H1 (sel 01), rd.H1 = rs1.H1 (sel 11)
    mix = consts.reg(0x0003_0001)
    pairs = {}
    for w in range(words):
        body.append(Instr("pv.pack.h", dst=f"p{2 * w}", src=(f"b1_{w}", f"b0_{w}")))
        body.append(Instr("pv.shuffle2.h", dst=f"b0_{w}", src=(f"b0_{w}", f"b1_{w}", mix)))
        pairs[2 * w], pairs[2 * w + 1] = f"p{2 * w}", f"b0_{w}"
    body += [
        Instr("vfdotpex.s.h", dst=f"c{u}_{v}", src=(f"c{u}_{v}", f"av{u}", pairs[v]), unit="fpu")
        for u in range(u_rows)
        for v in range(v_cols)
    ]
    return body, strides


def _accumulators(spec: KernelSpec, u_rows: int, v_cols: int, trans_b: bool) -> list[str]:
    if spec.mode == "simd" and not trans_b:
        return [f"c{u}_{w}" for u in range(u_rows) for w in range(max(1, v_cols // 2))]
    return [f"c{u}_{v}" for u in range(u_rows) for v in range(v_cols)]


def _k_tail(spec: KernelSpec, u_rows: int, v_cols: int, g: _Geometry) -> list[Instr]:
    """The leftover k (``K % kunroll``) of one output block, after the inner loop (the pointers point
    at it)."""
    if g.k % spec.kunroll == 0:
        return []
    e, k, tb = g.e, g.k, g.trans_b
    ops = _ops(spec.fmt)
    if spec.mode in ("scalar", "dw_bitcast"):  # K odd: one more plain step
        loads = [_ld(ops["ld0"], f"ta{u}", "pa", "A", u * k * e) for u in range(u_rows)]
        loads += [_ld(ops["ld0"], f"tb{v}", "pb", "B", (v * k if tb else v) * e) for v in range(v_cols)]
        fma = ops["fma"] if spec.mode == "scalar" else "fmadd.h"
        fmas = [
            Instr(fma, dst=f"c{u}_{v}", src=(f"c{u}_{v}", f"ta{u}", f"tb{v}"), unit="fpu")
            for u in range(u_rows)
            for v in range(v_cols)
        ]
        return loads + fmas
    if spec.mode == "simd" and not tb:  # broadcast the last A element, multiply the last B row
        out: list[Instr] = []
        for u in range(u_rows):
            out.append(_ld("lhu", f"ta{u}", "pa", "A", u * k * e))
        for u in range(u_rows):
            out.append(Instr("pv.pack.h", dst=f"tA{u}", src=(f"ta{u}", f"ta{u}")))
        words = max(1, v_cols // 2)
        out += [_ld("lw", f"tb{w}", "pb", "B", 2 * w * e) for w in range(words)]
        out += [
            Instr("vfmac.h", dst=f"c{u}_{w}", src=(f"c{u}_{w}", f"tA{u}", f"tb{w}"), unit="fpu")
            for u in range(u_rows)
            for w in range(words)
        ]
        return out
    # transposed, packed or dotpex: halfword loads zero the upper lane, one more vfmac/vfdotpex
    op = "vfdotpex.s.h" if spec.mode == "dotpex" else "vfmac.h"
    loads = [_ld("lhu", f"ta{u}", "pa", "A", u * k * e) for u in range(u_rows)]
    loads += [_ld("lhu", f"tb{v}", "pb", "B", (v * k if tb else v) * e) for v in range(v_cols)]
    return loads + [
        Instr(op, dst=f"c{u}_{v}", src=(f"c{u}_{v}", f"ta{u}", f"tb{v}"), unit="fpu")
        for u in range(u_rows)
        for v in range(v_cols)
    ]


def _row_stores(u_rows: int, results: dict[int, list[tuple[int, str, str]]], g: _Geometry, consts: _Consts):
    """Store a block's rows as the library's C indexes them, ``C[(i + u) * M + j + v]``: ``ci`` is the
    index of the block's first element; per block row its byte address (``slli``, ``add`` C; the next
    rows first step the index by ``M``: ``addi ix``), then the row's stores at offsets ``v * e``."""
    e = g.e
    out: list[Instr] = []
    for u in range(u_rows):
        index = "ci" if u == 0 else "ix"
        if u:
            out.append(_addi("ix", "ci" if u == 1 else "ix", g.m, consts))
        out += [
            Instr("slli", dst="pcx", src=(index,), imm=e.bit_length() - 1),
            Instr("add", dst="pcx", src=("pcx", "arg_C")),
        ]
        out += [
            Instr(_PLAIN[op], src=(reg, "pcx"), unit="store", stream="C", offset=(u * g.m + v) * e, imm=v * e)
            for v, reg, op in results[u]
        ]
    return out


def _epilogue(spec: KernelSpec, u_rows: int, v_cols: int, g: _Geometry, consts: _Consts) -> list[Instr]:
    """Store one output block (reducing the two SIMD lanes first where they hold partial sums)."""
    tb = g.trans_b
    ops = _ops(spec.fmt)
    out: list[Instr] = []
    results: dict[int, list[tuple[int, str, str]]] = {u: [] for u in range(u_rows)}  # (column, reg, store)
    if spec.mode in ("scalar", "dw_bitcast"):
        st = ops["st"] if spec.mode == "scalar" else "p.sh"
        for u in range(u_rows):
            results[u] = [(v, f"c{u}_{v}", st) for v in range(v_cols)]
    elif spec.mode == "simd" and not tb:
        for u in range(u_rows):
            results[u] = [(2 * w, f"c{u}_{w}", "p.sw") for w in range(max(1, v_cols // 2))]
    else:
        for u in range(u_rows):
            for v in range(v_cols):
                acc, r = f"c{u}_{v}", f"r{u}_{v}"
                if spec.mode == "dotpex":
                    out.append(Instr("fcvt.h.s", dst=r, src=(acc,), unit="fpu"))
                else:  # lane 1 down to lane 0, then add the two partial sums (lane 0 of the result)
                    out.append(Instr("srli", dst=f"h{u}_{v}", src=(acc,), imm=16))
                    out.append(Instr("fadd.h", dst=r, src=(acc, f"h{u}_{v}"), unit="fpu"))
            row: list[tuple[int, str, str]] = []
            for v in range(0, v_cols - 1, 2):
                out.append(Instr("pv.pack.h", dst=f"w{u}_{v}", src=(f"r{u}_{v + 1}", f"r{u}_{v}")))
                row.append((v, f"w{u}_{v}", "p.sw"))
            if v_cols % 2:
                row.append((v_cols - 1, f"r{u}_{v_cols - 1}", "p.sh"))
            results[u] = row
    return out + _row_stores(u_rows, results, g, consts)


def _spill_offset(i: int) -> int:
    return -4 * (i + 1)


def _block(
    spec: KernelSpec, u_rows: int, v_cols: int, g: _Geometry, consts: _Consts, *, probe: bool
) -> tuple[list[Node], dict]:
    """One output block: accumulator init, pointer setup, inner loop, k tail, epilogue."""
    body, strides = _inner_body(spec, u_rows, v_cols, g, consts)
    accs = _accumulators(spec, u_rows, v_cols, g.trans_b)
    spilled: list[str] = []
    if u_rows == spec.rows and v_cols == spec.cols and spec.spills(g.trans_b):
        # accumulators beyond the register budget live on the stack below sp
        spilled = accs[-spec.spills(g.trans_b) :]
        slot = {acc: _spill_offset(i) for i, acc in enumerate(spilled)}
        reloads = [Instr("lw", dst=acc, src=("sp",), unit="load", imm=slot[acc]) for acc in spilled]
        stores = [Instr("sw", src=(acc, "sp"), unit="store", imm=slot[acc]) for acc in spilled]
        body = reloads + body + stores
    nodes: list[Node] = [
        Instr("sw", src=("zero", "sp"), unit="store", imm=_spill_offset(spilled.index(acc)))
        if acc in spilled
        else Instr("mv", dst=acc, src=("zero",))
        for acc in accs
    ]
    bstep = v_cols * g.k * g.e if g.trans_b else v_cols * g.e
    nodes += [
        Instr("mv", dst="pa", src=("pa_row",)),
        Instr("mv", dst="pb", src=("pbj",)),
        _addi("pbj", "pbj", bstep, consts),
    ]
    nodes.append(_hw_loop(g.k // spec.kunroll, body, consts, label="k", probe=probe))
    if spilled and g.k // spec.kunroll == 0:
        raise AssertionError("spilled accumulators need the inner loop")
    nodes += [Instr("lw", dst=acc, src=("sp",), unit="load", imm=_spill_offset(i)) for i, acc in enumerate(spilled)]
    nodes += _k_tail(spec, u_rows, v_cols, g)
    nodes += _epilogue(spec, u_rows, v_cols, g, consts)
    nodes.append(Instr("addi", dst="ci", src=("ci",), imm=v_cols))
    return nodes, strides


def _naive_column(fmt: str, u_rows: int, g: _Geometry, consts: _Consts) -> list[Node]:
    """One leftover column for ``u_rows`` rows: a naive dot product per row (as the library does)."""
    ops = _ops(fmt)
    e = g.e
    pstride = {"pa": e, "pb": e if g.trans_b else g.m * e}
    nodes: list[Node] = []
    for u in range(u_rows):
        loads = _mark_increments([_ld(ops["ld"], "a", "pa", "A", 0), _ld(ops["ld"], "b", "pb", "B", 0)], pstride)
        nodes += [
            Instr("mv", dst="c", src=("zero",)),
            _addi("pa", "pa_row", u * g.k * e, consts),
            Instr("mv", dst="pb", src=("pbj",)),
            _hw_loop(g.k, (*loads, Instr(ops["fma"], dst="c", src=("c", "a", "b"), unit="fpu")), consts, label="k"),
            *([_addi("ix", "ci" if u == 1 else "ix", g.m, consts)] if u else []),
            Instr("slli", dst="pcx", src=("ix" if u else "ci",), imm=e.bit_length() - 1),
            Instr("add", dst="pcx", src=("pcx", "arg_C")),
            Instr(ops["st0"], src=("c", "pcx"), unit="store", stream="C", offset=u * g.m * e, imm=0),
        ]
    nodes += [
        Instr("addi", dst="ci", src=("ci",), imm=1),
        _addi("pbj", "pbj", g.k * e if g.trans_b else e, consts),
    ]
    return nodes


def _rows(
    spec: KernelSpec, rows: int, cols: int, g: _Geometry, consts: _Consts, *, probe: bool
) -> tuple[list[Node], dict, int]:
    """Rows ``rows`` x columns ``cols`` of C: full blocks, leftover columns, leftover rows."""
    u, v = spec.rows, spec.cols
    strides: dict = {}
    main_iterations = 0
    nodes: list[Node] = []
    for u_rows, count, first in ((u, rows // u, True), (1, rows % u if u > 1 else 0, False)):
        if count == 0:
            continue
        main = first or rows // u == 0
        block, s = _block(spec, u_rows, v, g, consts, probe=probe and main)
        if main:
            strides = s
            main_iterations = count * (cols // v) * (g.k // spec.kunroll)
        # ci = C index of the current block's first element; after a row of blocks it has passed
        # `cols` columns: step it to the next block row
        body: list[Node] = [
            Instr("mv", dst="pbj", src=("pb0",)),
            _hw_loop(cols // v, block, consts, label="cols"),
            _hw_loop(cols % v, _naive_column(spec.fmt, u_rows, g, consts), consts, label="cols left"),
            _addi("pa_row", "pa_row", u_rows * g.k * g.e, consts),
        ]
        if u_rows * g.m != cols:
            body.append(_addi("ci", "ci", u_rows * g.m - cols, consts))
        label = "rows" if first else "rows left"
        nodes.append(Loop(count, tuple(body), hw=False, label=label, counter="nr" if first else "nr1"))
    return nodes, strides, main_iterations


def _preamble(cores: int, block: int) -> list[Instr]:
    """Argument loads, core id, this core's share ``[start, stop)`` of the parallel dimension (as
    PULP-TrainLib's kernel prologue); the two dispatch branches follow (:func:`_dispatch`)."""
    loads = [Instr("lw", dst=f"arg_{name}", src=("a0",), unit="load", imm=4 * i) for i, name in enumerate(ARG_FIELDS)]
    if cores & (cores - 1) == 0:  # block = ceil(P / cores) = (P + cores - 1) >> log2(cores)
        share = [
            Instr("addi", dst="bs", src=("arg_P",), imm=cores - 1),
            Instr("srli", dst="bs", src=("bs",), imm=cores.bit_length() - 1),
        ]
    else:  # no divider (RV32M subset: mul only): the block size is a constant of the program
        share = li_instrs("bs", block)
    return [
        *loads,
        Instr("csrr", dst="id", imm=0xF14),
        *share,
        Instr("mul", dst="start", src=("id", "bs")),
        Instr("add", dst="end", src=("start", "bs")),
        Instr("p.minu", dst="stop", src=("end", "arg_P")),
    ]


def _dispatch(*, idle: bool, partial: bool) -> list[Instr]:
    """``bgeu start, stop, .Lidle`` (no work), ``bne stop, end, .Lpart`` (a share cut by the end)."""
    out = [Instr("bgeu", src=("start", "stop"), unit="ctrl", target=".Lidle", jump=idle)]
    if not idle:
        out.append(Instr("bne", src=("stop", "end"), unit="ctrl", target=".Lpart", jump=partial))
    return out


def _pointers(parallel: str) -> list[Instr]:
    """This core's first A row and B column (or group): ``base + start * stride``; its first C element
    index ``ci = start * sC``."""
    out: list[Instr] = []
    for ptr, base, stride, offset in (
        ("pa_row", "arg_A", "arg_sA", parallel in "NG"),
        ("pb0", "arg_B", "arg_sB", parallel in "MG"),
    ):
        if offset:
            out += [
                Instr("mul", dst=f"o_{ptr}", src=("start", stride)),
                Instr("add", dst=ptr, src=(f"o_{ptr}", base)),
            ]
        else:
            out.append(Instr("mv", dst=ptr, src=(base,)))
    out.append(Instr("mul", dst="ci", src=("start", "arg_sC")))
    return out


_RET = Instr("ret", src=("ra",), unit="ctrl", jump=True)


@dataclasses.dataclass(frozen=True)
class _CoreWork:
    groups: int
    rows: int
    cols: int
    row0: int
    col0: int
    group0: int


def _variant(spec: KernelSpec, work: _CoreWork, g: _Geometry) -> tuple[list[Node], dict, int]:
    """The code of one core share after the dispatch: pointers, constants, the loops, ``ret``."""
    consts = _Consts()
    rows_nodes, strides, iterations = _rows(spec, work.rows, work.cols, g, consts, probe=True)
    if spec.parallel == "G":
        # the rows leave pa_row and ci at the next group's A and C; B of a group is K x M
        step = _addi("pb0", "pb0", g.k * g.m * g.e, consts)
        nodes: list[Node] = [Loop(work.groups, (*rows_nodes, step), hw=False, label="groups", counter="ngr")]
        iterations *= work.groups
    else:
        nodes = rows_nodes
    return [*_pointers(spec.parallel), *consts.init(), *nodes, _RET], strides, iterations


def _core_program(
    spec: KernelSpec, work: _CoreWork, g: _Geometry, *, cores: int, block: int
) -> tuple[list[Node], dict, int]:
    """The program one core issues: preamble, dispatch, its share's variant."""
    size = {"N": work.rows, "M": work.cols, "G": work.groups}[spec.parallel]
    pre = _preamble(cores, block)
    if size == 0 or work.groups == 0 or work.rows == 0 or work.cols == 0:
        return [*pre, *_dispatch(idle=True, partial=False), _RET], {}, 0
    variant, strides, iterations = _variant(spec, work, g)
    return [*pre, *_dispatch(idle=False, partial=size != block), *variant], strides, iterations


def _parallel_extent(spec: KernelSpec, *, n: int, m: int, groups: int) -> int:
    return {"N": n, "M": m, "G": groups}[spec.parallel]


def kernel_program(
    name: str,
    *,
    n: int,
    k: int,
    m: int,
    groups: int = 1,
    trans_b: bool = False,
    dtype: str = "fp16",
    cores: int = 1,
    core: int = 0,
) -> list[Node]:
    """The program core ``core`` runs for a kernel (after any fallback); see :func:`render`.

    Parameters are those of :func:`kernel_cycles`. Registers are symbolic (``zero``, ``ra``, ``sp``,
    ``a0`` are x0, x1, x2, x10); :func:`trainforge.dataflow.mcu.program.kernel_image` allocates them
    and prints the one assembly program every core runs.
    """
    spec, _ = _resolve(name, n=n, k=k, m=m, groups=groups, trans_b=trans_b, dtype=dtype, cores=cores)
    g = _Geometry(k=k, m=m, e=dtype_bytes(dtype), trans_b=trans_b)
    kernel_groups = groups if spec.parallel == "G" else 1
    work = _work(spec, n=n, m=m, groups=kernel_groups, cores=cores, core=core)
    block = -(-_parallel_extent(spec, n=n, m=m, groups=kernel_groups) // cores)
    return _core_program(spec, work, g, cores=cores, block=block)[0]


def _work(spec: KernelSpec, *, n: int, m: int, groups: int, cores: int, core: int) -> _CoreWork:
    if spec.parallel == "N":
        r0, r1 = split(n, cores, core)
        return _CoreWork(groups=groups, rows=r1 - r0, cols=m, row0=r0, col0=0, group0=0)
    if spec.parallel == "M":
        c0, c1 = split(m, cores, core)
        return _CoreWork(groups=groups, rows=n, cols=c1 - c0, row0=0, col0=c0, group0=0)
    g0, g1 = split(groups, cores, core)
    return _CoreWork(groups=g1 - g0, rows=n, cols=m, row0=0, col0=0, group0=g0)


# ---------------------------------------------------------------------------------------------
# cluster-level cycles


@dataclasses.dataclass(frozen=True, kw_only=True)
class KernelResult:
    """Cycles of one matmul on the cluster, with the accounting behind them.

    Attributes
    ----------
    name : str
        The kernel asked for.
    kernel : str
        The kernel that ran (differs when the shape made the library fall back).
    dtype : str
    n, k, m, groups : int
        ``groups`` independent ``N x K x M`` products.
    cores : int
        Cores the kernel was forked on.
    trans_b : bool
    cycles : int
        Fork + slowest core (its own cycles + its bank-conflict stalls) + barrier.
    macs : int
        ``groups * n * k * m``.
    core_cycles : tuple of int
        Each core's cycles without contention.
    contention : tuple of int
        Each core's bank-conflict stalls.
    sync_cycles : int
        Fork and barrier cycles (0 on one core: a direct call).
    instructions : int
        Instructions of the slowest core.
    stalls : dict of str to int
        Stall cycles of the slowest core by cause.
    inner_loop : tuple of str
        The main inner loop's instructions (the slowest core's program).
    inner_cycles : int
        Cycles of one steady-state inner iteration.
    inner_macs : int
        MACs of one inner iteration.
    registers : int
        Live registers of the inner loop (accumulators, operands, pointers).
    contention_model : {"none", "exact", "extrapolated"}
        How bank conflicts were counted: not at all (one core, or ``bank_conflicts=False``), by the
        exact joint simulation of every core's whole program (:mod:`.cluster_sim`, when the kernel
        is small enough: :data:`EXACT_LIMIT`), or from the main inner loop extrapolated (:mod:`.tcdm`).
    """

    name: str
    kernel: str
    dtype: str
    n: int
    k: int
    m: int
    groups: int
    cores: int
    trans_b: bool
    cycles: int
    macs: int
    core_cycles: tuple[int, ...]
    contention: tuple[int, ...]
    sync_cycles: int
    instructions: int
    stalls: dict[str, int]
    inner_loop: tuple[str, ...]
    inner_cycles: int
    inner_macs: int
    registers: int
    contention_model: str = "none"

    @property
    def mac_per_cycle(self) -> float:
        """MACs per cluster cycle."""
        return self.macs / self.cycles if self.cycles else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (``mac_per_cycle`` included)."""
        d = dataclasses.asdict(self)
        d["core_cycles"] = list(self.core_cycles)
        d["contention"] = list(self.contention)
        d["inner_loop"] = list(self.inner_loop)
        d["mac_per_cycle"] = self.mac_per_cycle
        return d


def _check_shape(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{name} must be a positive integer, not {value!r}")
    return value


def _resolve(
    name: str, *, n: int, k: int, m: int, groups: int, trans_b: bool, dtype: str, cores: int
) -> tuple[KernelSpec, list[str]]:
    if name not in KERNELS:
        raise UsageError(f"unknown kernel {name!r}; valid: {', '.join(KERNELS)}")
    for field, value in (("n", n), ("k", k), ("m", m), ("groups", groups), ("cores", cores)):
        _check_shape(field, value)
    if dtype not in ("fp32", "fp16", "bf16"):
        raise UsageError(f"dtype must be one of fp32, fp16, bf16, not {dtype!r}")
    if not isinstance(trans_b, bool):
        raise UsageError(f"trans_b must be True or False, not {trans_b!r}")
    spec = KERNELS[name]
    fmt = "fp32" if dtype == "fp32" else "fp16"
    if spec.fmt != fmt:
        raise UsageError(f"kernel {name!r} is a {spec.fmt} kernel; dtype {dtype!r} needs a {fmt} one")
    if trans_b not in spec.layouts:
        layout = "transposed" if trans_b else "not transposed"
        raise UsageError(f"kernel {name!r} does not take B {layout}")
    chain = [name]
    while True:
        par_rows = -(-n // cores) if spec.parallel == "N" else n
        par_cols = -(-m // cores) if spec.parallel == "M" else m
        too_small = k < spec.kunroll or par_rows < spec.rows or par_cols < spec.cols
        if not too_small or spec.fallback is None or trans_b not in KERNELS[spec.fallback].layouts:
            break
        spec = KERNELS[spec.fallback]
        chain.append(spec.name)
    return spec, chain


def kernel_cycles(
    name: str,
    *,
    n: int,
    k: int,
    m: int,
    groups: int = 1,
    dtype: str = "fp16",
    cores: int | None = None,
    trans_b: bool = False,
    cluster: ClusterConfig | None = None,
    bank_conflicts: bool = True,
) -> KernelResult:
    """Cycles of kernel ``name`` computing ``C[N x M] = A[N x K] . B[K x M]`` on the cluster.

    Parameters
    ----------
    name : str
        A key of :data:`KERNELS`.
    n, k, m : int
        The matmul shape.
    groups : int
        Independent products of that shape (depthwise channels). Kernels parallel over ``G`` split
        them over the cores; the others run them one after the other, each forked.
    dtype : {"fp16", "bf16", "fp32"}
    cores : int, optional
        Cores to fork on (default: all of ``cluster``); 1 is a direct call without fork and barrier.
    trans_b : bool
        ``B`` stored transposed (``M x K``).
    cluster : ClusterConfig, optional
        Default: ``ClusterConfig()``.
    bank_conflicts : bool
        Model TCDM bank contention between the cores (default). Without it the result is a lower
        bound of the cycles with it, which the autotuner uses to prune.

    Returns
    -------
    KernelResult

    Raises
    ------
    trainforge.errors.UsageError
        Unknown kernel, a shape that is not a positive integer, a dtype the kernel does not run,
        a layout it does not take, SIMD kernels on a cluster without SIMD lanes, or more cores than
        the cluster has.
    """
    cluster = ClusterConfig() if cluster is None else cluster
    cores = cluster.cores if cores is None else cores
    _check_shape("cores", cores)
    if cores > cluster.cores:
        raise UsageError(f"cores must be <= {cluster.cores} (the cluster's), not {cores}")
    return _kernel_cycles(name, n, k, m, groups, dtype, cores, trans_b, cluster, bank_conflicts)


@functools.lru_cache(maxsize=16384)
def _kernel_cycles(
    name: str,
    n: int,
    k: int,
    m: int,
    groups: int,
    dtype: str,
    cores: int,
    trans_b: bool,
    cluster: ClusterConfig,
    bank_conflicts: bool,
) -> KernelResult:
    spec, _ = _resolve(name, n=n, k=k, m=m, groups=groups, trans_b=trans_b, dtype=dtype, cores=cores)
    if spec.simd and cluster.simd_lanes < 2:
        raise UsageError(f"kernel {spec.name!r} needs FP16 SIMD (simd_lanes=2); the cluster has simd_lanes=1")
    e = dtype_bytes(dtype)
    g = _Geometry(k=k, m=m, e=e, trans_b=trans_b)
    sequential = groups if spec.parallel != "G" else 1
    kernel_groups = 1 if spec.parallel != "G" else groups
    works = [_work(spec, n=n, m=m, groups=kernel_groups, cores=cores, core=c) for c in range(cores)]
    block = -(-_parallel_extent(spec, n=n, m=m, groups=kernel_groups) // cores)
    active = [c for c, w in enumerate(works) if w.groups and w.rows and w.cols]
    timing = core_timing(cluster, cores)

    stats_by_shape: dict[tuple[int, int, int], tuple[CoreStats, dict, int, list[Node]]] = {}
    per_core: list[CoreStats] = []
    for w in works:
        key = (w.groups, w.rows, w.cols)
        if key not in stats_by_shape:
            program, strides, iterations = _core_program(spec, w, g, cores=cores, block=block)
            stats_by_shape[key] = (CoreSim(timing).run(program), strides, iterations, program)
        per_core.append(stats_by_shape[key][0])
    core_cycles = tuple(s.cycles for s in per_core)
    slowest = max(range(cores), key=lambda c: core_cycles[c])
    stats, strides, iterations, program = stats_by_shape[
        (works[slowest].groups, works[slowest].rows, works[slowest].cols)
    ]

    conflicts: tuple[int, ...] = (0,) * cores
    model = "none"
    exact = None
    if bank_conflicts and len(active) > 1:
        dynamic = sum(count_instructions(stats_by_shape[(w.groups, w.rows, w.cols)][3]) for w in works)
        if dynamic <= EXACT_LIMIT:
            exact = _exact_run(name, n, k, m, kernel_groups, dtype, cores, trans_b, cluster)
    if exact is not None:
        model = "exact"
        conflicts = tuple(run.cycles - cc for run, cc in zip(exact.cores, core_cycles, strict=True))
    elif bank_conflicts and len(active) > 1 and stats.probe is not None and stats.probe.accesses:
        model = "extrapolated"
        a_base = 0
        b_base = _align(groups * n * k * e if spec.parallel == "G" else n * k * e)
        bases = []
        for c in active:
            w = works[c]
            a = a_base + ((w.group0 * n + w.row0) * k) * e
            b = b_base + w.group0 * k * m * e + (w.col0 * k * e if trans_b else w.col0 * e)
            bases.append((("A", a), ("B", b)))
        result: Contention = contention(
            period=stats.probe.period,
            accesses=stats.probe.accesses,
            bases=tuple(bases),
            strides=tuple(sorted(strides.items())),
            iterations=iterations,
            banks=cluster.l1_banks,
        )
        full = [0] * cores
        for c, stall in zip(active, result.per_core, strict=True):
            full[c] = stall
        conflicts = tuple(full)
    sync = cluster.fork_cycles + cluster.barrier_cycles if cores > 1 else 0
    one = sync + max(cc + cf for cc, cf in zip(core_cycles, conflicts, strict=True))
    inner = _find_probe_loop(program)
    return KernelResult(
        name=name,
        kernel=spec.name,
        dtype=dtype,
        n=n,
        k=k,
        m=m,
        groups=groups,
        cores=cores,
        trans_b=trans_b,
        cycles=one * sequential,
        macs=groups * n * k * m,
        core_cycles=core_cycles,
        contention=conflicts,
        sync_cycles=sync * sequential,
        instructions=stats.instructions * sequential,
        stalls={c: v * sequential for c, v in stats.stalls.items()},
        inner_loop=tuple(render(inner.body)) if inner is not None else (),
        inner_cycles=stats.probe.period if stats.probe is not None else 0,
        inner_macs=spec.macs_per_iteration() if inner is not None else 0,
        registers=spec.registers(trans_b),
        contention_model=model,
    )


EXACT_LIMIT = 100_000
"""Dynamic instructions (all cores together) up to which :func:`kernel_cycles` simulates the cores
jointly and exactly (:mod:`.cluster_sim`, about 0.15 s at the limit); above, the main inner loop's
bank conflicts are extrapolated (:mod:`.tcdm`)."""


def _exact_run(
    name: str,
    n: int,
    k: int,
    m: int,
    groups: int,
    dtype: str,
    cores: int,
    trans_b: bool,
    cluster: ClusterConfig,
) -> Any:
    """The exact joint run of the lowered program, or ``None`` when it cannot be lowered."""
    from trainforge.dataflow.mcu.cluster_sim import simulate_image
    from trainforge.dataflow.mcu.program import LoweringError, kernel_image

    try:
        image = kernel_image(
            name, n=n, k=k, m=m, trans_b=trans_b, dtype=dtype, cores=cores, cluster=cluster, groups=groups
        )
    except LoweringError:
        return None
    return simulate_image(image, cluster)


def _align(nbytes: int) -> int:
    return -(-nbytes // 4) * 4


def _find_probe_loop(program: Sequence[Node]) -> Loop | None:
    for node in program:
        if isinstance(node, Loop):
            if node.probe:
                return node
            found = _find_probe_loop(node.body)
            if found is not None:
                return found
    return None


@dataclasses.dataclass(frozen=True)
class ProgramParts:
    """Everything the lowering needs to print one kernel's cluster program.

    Attributes
    ----------
    spec : KernelSpec
        The kernel that runs (after any fallback).
    preamble : list of Instr
        The common preamble, up to the dispatch branches.
    full, partial : list of Node or None
        The code of a full share and of the share cut short by the end of the parallel dimension
        (``None`` when no core has one); both end with ``ret``.
    programs : list of list of Node
        The program each core issues (what :func:`kernel_program` returns), for timing.
    args : tuple of int
        The argument structure's words without the three addresses (``P``, ``sA``, ``sB``, ``sC``).
    active : int
        Cores with work.
    """

    spec: KernelSpec
    preamble: list[Instr]
    full: list[Node] | None
    partial: list[Node] | None
    programs: list[list[Node]]
    args: tuple[int, ...]
    active: int


def program_parts(
    name: str, *, n: int, k: int, m: int, groups: int = 1, trans_b: bool = False, dtype: str = "fp16", cores: int = 1
) -> ProgramParts:
    """The pieces of a kernel's one cluster program (see :class:`ProgramParts`)."""
    spec, _ = _resolve(name, n=n, k=k, m=m, groups=groups, trans_b=trans_b, dtype=dtype, cores=cores)
    if spec.parallel != "G" and groups != 1:
        raise UsageError(f"kernel {spec.name!r} computes one product per call; groups must be 1, not {groups}")
    e = dtype_bytes(dtype)
    g = _Geometry(k=k, m=m, e=e, trans_b=trans_b)
    total = _parallel_extent(spec, n=n, m=m, groups=groups)
    block = -(-total // cores)
    works = [_work(spec, n=n, m=m, groups=groups, cores=cores, core=c) for c in range(cores)]
    programs = [_core_program(spec, w, g, cores=cores, block=block)[0] for w in works]
    full = _variant(spec, works[0], g)[0]
    partial = None
    for w in works:
        size = {"N": w.rows, "M": w.cols, "G": w.groups}[spec.parallel]
        if 0 < size < block:
            partial = _variant(spec, w, g)[0]
    strides = {
        "N": (k * e, 0, m),
        "M": (0, k * e if trans_b else e, 1),
        "G": (n * k * e, k * m * e, n * m),
    }[spec.parallel]
    active = sum(1 for w in works if w.groups and w.rows and w.cols)
    return ProgramParts(
        spec=spec,
        preamble=_preamble(cores, block),
        full=full,
        partial=partial,
        programs=programs,
        args=(total, *strides),
        active=active,
    )
