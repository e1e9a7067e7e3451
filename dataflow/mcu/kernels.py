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
                        (rows k and k+1), ``2U`` lane broadcasts (``pv.shuffle2.h``),
                        ``U*V`` ``vfmac.h``; transposed: ``U+V`` vector loads,
                        ``U*V`` ``vfmac.h`` (each accumulator holds two partial sums)
simd_pack     2         ``U`` A-vector loads, ``2V`` halfword B loads, ``V`` ``pv.pack.h``,  ``2*U*V``
                        ``U*V`` ``vfmac.h`` (the tutorial's ``vm_SIMD_naive``)
dotpex        2         transposed: ``U+V`` vector loads, ``U*V`` ``vfdotpex.s.h`` into      ``2*U*V``
                        FP32 accumulators; not transposed: ``U`` + ``V`` vector loads,
                        ``V`` ``pv.shuffle2.h`` pairing rows k and k+1, ``U*V`` ``vfdotpex``
dw_bitcast    2         the library's SIMD depthwise kernel: ``U`` A-vector loads, per       ``2*U*V``
                        column a B-vector load and per output ``vfmul.h``, two ``and``,
                        ``add``, ``fcvt.s.wu``, ``fcvt.h.s``, ``fadd.h``
============  ========  ==============================================================  ============

Loads use post-increment addressing; the loads come first in the body (for scalar kernels the
smaller operand group first), then the shuffles/packs, then the FMAs, so a load-use stall remains
only where the body is too short to hide it (the naive kernels, ``vm_T_SIMD``). The full accounting,
with the preamble, epilogues and remainders, is in ``docs/mcu.md``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

from trainforge.dataflow.mcu.cluster import ClusterConfig, dtype_bytes
from trainforge.dataflow.mcu.core import CoreSim, CoreStats, Instr, Loop, Node, Timing, render
from trainforge.dataflow.mcu.tcdm import Contention, contention
from trainforge.errors import UsageError

__all__ = [
    "KERNELS",
    "KernelResult",
    "KernelSpec",
    "core_timing",
    "kernel_cycles",
    "kernel_names",
    "kernel_program",
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


def core_timing(cluster: ClusterConfig, active_cores: int) -> Timing:
    """The :class:`~.core.Timing` of a core when ``active_cores`` cores run at once."""
    return Timing(
        load_latency=cluster.load_latency,
        fpu_latency=cluster.fpu_latency,
        branch_penalty=cluster.branch_penalty,
        fpu_interval=cluster.fpu_share(min(active_cores, cluster.cores)),
    )


# ---------------------------------------------------------------------------------------------
# program builders


def _ops(fmt: str) -> dict[str, str]:
    if fmt == "fp32":
        return {"ld": "p.lw", "st": "p.sw", "fma": "fmadd.s"}
    return {"ld": "p.lh", "st": "p.sh", "fma": "fmadd.h"}


def _ld(op: str, dst: str, ptr: str, stream: str, offset: int, inc: bool) -> Instr:
    return Instr(op, dst=dst, src=(ptr,), unit="load", inc=ptr if inc else None, stream=stream, offset=offset)


def _mark_increments(loads: list[Instr]) -> list[Instr]:
    """Post-increment each pointer on its first load of the iteration (the one at offset 0).

    Xpulp's ``p.lw rd, imm(rs1!)`` reads ``mem[rs1]`` and then adds ``imm`` to ``rs1``; the later
    loads from the same pointer use the immediate ``offset - stride`` from the incremented pointer.
    Listings show every offset from the pointer at the start of the iteration.
    """
    first: dict[str, int] = {}
    for i, ins in enumerate(loads):
        first.setdefault(ins.src[0], i)
    return [dataclasses.replace(ins, inc=ins.src[0]) if first[ins.src[0]] == i else ins for i, ins in enumerate(loads)]


@dataclasses.dataclass(frozen=True)
class _Geometry:
    k: int  # reduction length
    m: int  # row length of B (not transposed) and of C
    e: int  # bytes per element
    trans_b: bool


def _inner_body(spec: KernelSpec, u_rows: int, v_cols: int, g: _Geometry) -> tuple[list[Instr], dict[str, int]]:
    """Inner-loop body for a ``u_rows x v_cols`` block and the per-iteration stream strides."""
    e, k, m, tb = g.e, g.k, g.m, g.trans_b
    ops = _ops(spec.fmt)
    ku = spec.kunroll
    body: list[Instr] = []
    if spec.mode == "scalar":
        a_loads = [
            _ld(ops["ld"], f"a{kk}_{u}", "pa", "A", (u * k + kk) * e, False) for kk in range(ku) for u in range(u_rows)
        ]
        b_off = (lambda kk, v: (v * k + kk) * e) if tb else (lambda kk, v: (kk * m + v) * e)
        b_loads = [
            _ld(ops["ld"], f"b{kk}_{v}", "pb", "B", b_off(kk, v), False) for kk in range(ku) for v in range(v_cols)
        ]
        loads = (b_loads + a_loads) if v_cols < u_rows else (a_loads + b_loads)
        body += _mark_increments(loads)
        for kk in range(ku):
            pairs = (
                [(u, v) for v in range(v_cols) for u in range(u_rows)]
                if v_cols < u_rows
                else [(u, v) for u in range(u_rows) for v in range(v_cols)]
            )
            for u, v in pairs:
                acc = f"c{u}_{v}"
                body.append(Instr(ops["fma"], dst=acc, src=(acc, f"a{kk}_{u}", f"b{kk}_{v}"), unit="fpu"))
        strides = {"A": ku * e, "B": ku * e if tb else ku * m * e}
        return body, strides
    # the 16-bit SIMD modes: k steps by 2, vectors are 32-bit words
    a_loads = [_ld("p.lw", f"a{u}", "pa", "A", u * k * e, False) for u in range(u_rows)]
    strides = {"A": 2 * e, "B": 2 * e if tb else 2 * m * e}
    if spec.mode == "dw_bitcast":  # res += (float)((p & 0xffff) + (p & 0xffff0000 >> 16)), p = a * b
        body += _mark_increments(a_loads)
        for v in range(v_cols):
            body.append(_ld("p.lw", f"b{v}", "pb", "B", v * k * e, v == 0))
            for u in range(u_rows):
                t = f"{u}_{v}"
                body += [
                    Instr("vfmul.h", dst=f"p{t}", src=(f"a{u}", f"b{v}"), unit="fpu"),
                    Instr("and", dst=f"x{t}", src=(f"p{t}",)),
                    Instr("and", dst=f"y{t}", src=(f"p{t}",)),
                    Instr("add", dst=f"s{t}", src=(f"x{t}", f"y{t}")),
                    Instr("fcvt.s.wu", dst=f"f{t}", src=(f"s{t}",), unit="fpu"),
                    Instr("fcvt.h.s", dst=f"h{t}", src=(f"f{t}",), unit="fpu"),
                    Instr("fadd.h", dst=f"c{t}", src=(f"c{t}", f"h{t}"), unit="fpu"),
                ]
        return body, strides
    if spec.mode == "simd_pack":
        b_loads = []
        for v in range(v_cols):
            b_loads.append(_ld("p.lh", f"bl{v}", "pb", "B", v * e, False))
            b_loads.append(_ld("p.lh", f"bh{v}", "pb", "B", (m + v) * e, False))
        body += _mark_increments(b_loads + a_loads)
        body += [Instr("pv.pack.h", dst=f"b{v}", src=(f"bl{v}", f"bh{v}")) for v in range(v_cols)]
        body += [
            Instr("vfmac.h", dst=f"c{u}_{v}", src=(f"c{u}_{v}", f"a{u}", f"b{v}"), unit="fpu")
            for u in range(u_rows)
            for v in range(v_cols)
        ]
        return body, strides
    if tb:  # simd or dotpex with B transposed: one vector per row of B^T
        b_loads = [_ld("p.lw", f"b{v}", "pb", "B", v * k * e, False) for v in range(v_cols)]
        body += _mark_increments(a_loads + b_loads)
        op = "vfmac.h" if spec.mode == "simd" else "vfdotpex.s.h"
        body += [
            Instr(op, dst=f"c{u}_{v}", src=(f"c{u}_{v}", f"a{u}", f"b{v}"), unit="fpu")
            for u in range(u_rows)
            for v in range(v_cols)
        ]
        return body, strides
    # not transposed: rows k and k+1 of B, v_cols // 2 vectors each
    words = max(1, v_cols // 2)
    b_loads = [_ld("p.lw", f"b{r}_{w}", "pb", "B", (r * m + 2 * w) * e, False) for r in range(2) for w in range(words)]
    body += _mark_increments(a_loads + b_loads)
    if spec.mode == "simd":
        for u in range(u_rows):
            body.append(Instr("pv.shuffle2.h", dst=f"s{u}_0", src=(f"a{u}",)))
            body.append(Instr("pv.shuffle2.h", dst=f"s{u}_1", src=(f"a{u}",)))
        for r in range(2):
            for u in range(u_rows):
                for w in range(words):
                    acc = f"c{u}_{w}"
                    body.append(Instr("vfmac.h", dst=acc, src=(acc, f"s{u}_{r}", f"b{r}_{w}"), unit="fpu"))
        return body, strides
    # dotpex, not transposed: pair rows k and k+1 column by column
    for w in range(words):
        body.append(Instr("pv.shuffle2.h", dst=f"p{2 * w}", src=(f"b0_{w}", f"b1_{w}")))
        body.append(Instr("pv.shuffle2.h", dst=f"p{2 * w + 1}", src=(f"b0_{w}", f"b1_{w}")))
    body += [
        Instr("vfdotpex.s.h", dst=f"c{u}_{v}", src=(f"c{u}_{v}", f"a{u}", f"p{v}"), unit="fpu")
        for u in range(u_rows)
        for v in range(v_cols)
    ]
    return body, strides


def _accumulators(spec: KernelSpec, u_rows: int, v_cols: int, trans_b: bool) -> list[str]:
    if spec.mode == "simd" and not trans_b:
        return [f"c{u}_{w}" for u in range(u_rows) for w in range(max(1, v_cols // 2))]
    return [f"c{u}_{v}" for u in range(u_rows) for v in range(v_cols)]


def _k_tail(spec: KernelSpec, u_rows: int, v_cols: int, g: _Geometry) -> list[Instr]:
    """The leftover k (``K % kunroll``) of one output block, after the inner loop."""
    if g.k % spec.kunroll == 0:
        return []
    e, k, tb = g.e, g.k, g.trans_b
    ops = _ops(spec.fmt)
    if spec.mode in ("scalar", "dw_bitcast"):  # K odd: one more plain step
        loads = [_ld(ops["ld"], f"ta{u}", "pa", "A", u * k * e, False) for u in range(u_rows)]
        loads += [_ld(ops["ld"], f"tb{v}", "pb", "B", (v * k if tb else v) * e, False) for v in range(v_cols)]
        fmas = [
            Instr(ops["fma"], dst=f"c{u}_{v}", src=(f"c{u}_{v}", f"ta{u}", f"tb{v}"), unit="fpu")
            for u in range(u_rows)
            for v in range(v_cols)
        ]
        return loads + fmas
    if spec.mode == "simd" and not tb:  # broadcast the last A element, multiply the last B row
        out: list[Instr] = []
        for u in range(u_rows):
            out.append(_ld("p.lh", f"ta{u}", "pa", "A", u * k * e, False))
        for u in range(u_rows):
            out.append(Instr("pv.pack.h", dst=f"tA{u}", src=(f"ta{u}", f"ta{u}")))
        words = max(1, v_cols // 2)
        out += [_ld("p.lw", f"tb{w}", "pb", "B", 2 * w * e, False) for w in range(words)]
        out += [
            Instr("vfmac.h", dst=f"c{u}_{w}", src=(f"c{u}_{w}", f"tA{u}", f"tb{w}"), unit="fpu")
            for u in range(u_rows)
            for w in range(words)
        ]
        return out
    # transposed, packed or dotpex: halfword loads zero the upper lane, one more vfmac/vfdotpex
    op = "vfdotpex.s.h" if spec.mode == "dotpex" else "vfmac.h"
    loads = [_ld("p.lh", f"ta{u}", "pa", "A", u * k * e, False) for u in range(u_rows)]
    loads += [_ld("p.lh", f"tb{v}", "pb", "B", (v * k if tb else v) * e, False) for v in range(v_cols)]
    return loads + [
        Instr(op, dst=f"c{u}_{v}", src=(f"c{u}_{v}", f"ta{u}", f"tb{v}"), unit="fpu")
        for u in range(u_rows)
        for v in range(v_cols)
    ]


def _epilogue(spec: KernelSpec, u_rows: int, v_cols: int, g: _Geometry) -> list[Instr]:
    """Store one output block (reducing the two SIMD lanes first where they hold partial sums).

    As the library's C indexes ``C[(i + u) * M + j]``, each block row's address is computed from
    the indices (``p.mac``, ``slli``, ``add``); the stores of that row use immediate offsets.
    """
    e, tb = g.e, g.trans_b
    ops = _ops(spec.fmt)
    out: list[Instr] = []
    results: dict[int, list[tuple[int, str, str]]] = {u: [] for u in range(u_rows)}  # (column, reg, store)
    if spec.mode in ("scalar", "dw_bitcast"):
        for u in range(u_rows):
            results[u] = [(v, f"c{u}_{v}", ops["st"]) for v in range(v_cols)]
    elif spec.mode == "simd" and not tb:
        for u in range(u_rows):
            results[u] = [(2 * w, f"c{u}_{w}", "p.sw") for w in range(max(1, v_cols // 2))]
    else:
        for u in range(u_rows):
            for v in range(v_cols):
                acc, r = f"c{u}_{v}", f"r{u}_{v}"
                if spec.mode == "dotpex":
                    out.append(Instr("fcvt.h.s", dst=r, src=(acc,), unit="fpu"))
                else:
                    out.append(Instr("srli", dst=f"h{u}_{v}", src=(acc,)))
                    out.append(Instr("fadd.h", dst=r, src=(acc, f"h{u}_{v}"), unit="fpu"))
            row: list[tuple[int, str, str]] = []
            for v in range(0, v_cols - 1, 2):
                out.append(Instr("pv.pack.h", dst=f"w{u}_{v}", src=(f"r{u}_{v}", f"r{u}_{v + 1}")))
                row.append((v, f"w{u}_{v}", "p.sw"))
            if v_cols % 2:
                row.append((v_cols - 1, f"r{u}_{v_cols - 1}", "p.sh"))
            results[u] = row
    for u in range(u_rows):
        out += [
            Instr("p.mac", dst=f"ix{u}", src=("i", "M", "j")),
            Instr("slli", dst=f"ix{u}", src=(f"ix{u}",)),
            Instr("add", dst=f"pc{u}", src=(f"ix{u}", "C")),
        ]
        out += [
            Instr(op, src=(reg, f"pc{u}"), unit="store", stream="C", offset=(u * g.m + v) * e)
            for v, reg, op in results[u]
        ]
    return out


def _block(spec: KernelSpec, u_rows: int, v_cols: int, g: _Geometry, *, probe: bool) -> tuple[list[Node], dict]:
    """One output block: accumulator init, pointer setup, inner loop, k tail, epilogue."""
    body, strides = _inner_body(spec, u_rows, v_cols, g)
    if u_rows == spec.rows and v_cols == spec.cols and spec.spills(g.trans_b):
        spilled = _accumulators(spec, u_rows, v_cols, g.trans_b)[-spec.spills(g.trans_b) :]
        reloads = [Instr("lw", dst=acc, src=("sp",), unit="load") for acc in spilled]
        stores = [Instr("sw", src=(acc, "sp"), unit="store") for acc in spilled]
        body = reloads + body + stores
    nodes: list[Node] = [Instr("mv", dst=acc, src=("zero",)) for acc in _accumulators(spec, u_rows, v_cols, g.trans_b)]
    nodes += [
        Instr("mv", dst="pa", src=("pa_row",)),
        Instr("mv", dst="pb", src=("pbj",)),
        Instr("addi", dst="pbj", src=("pbj",)),
    ]
    nodes.append(Loop(g.k // spec.kunroll, tuple(body), hw=True, label="k", probe=probe))
    nodes += _k_tail(spec, u_rows, v_cols, g)
    nodes += _epilogue(spec, u_rows, v_cols, g)
    return nodes, strides


def _naive_column(fmt: str, u_rows: int, g: _Geometry) -> list[Node]:
    """One leftover column for ``u_rows`` rows: a naive dot product per row (as the library does)."""
    ops = _ops(fmt)
    nodes: list[Node] = []
    for u in range(u_rows):
        nodes += [
            Instr("mv", dst="c", src=("zero",)),
            Instr("addi", dst="pa", src=("pa_row",)),
            Instr("mv", dst="pb", src=("pbj",)),
            Loop(
                g.k,
                (
                    _ld(ops["ld"], "a", "pa", "A", 0, True),
                    _ld(ops["ld"], "b", "pb", "B", 0, True),
                    Instr(ops["fma"], dst="c", src=("c", "a", "b"), unit="fpu"),
                ),
                hw=True,
                label="k",
            ),
            Instr("p.mac", dst="ix", src=("i", "M", "j")),
            Instr("slli", dst="ix", src=("ix",)),
            Instr("add", dst="pcx", src=("ix", "C")),
            Instr(ops["st"], src=("c", "pcx"), unit="store", stream="C", offset=u * g.m * g.e),
        ]
    nodes.append(Instr("addi", dst="pbj", src=("pbj",)))
    return nodes


def _rows(spec: KernelSpec, rows: int, cols: int, g: _Geometry, *, probe: bool) -> tuple[list[Node], dict, int]:
    """Rows ``rows`` x columns ``cols`` of C: full blocks, leftover columns, leftover rows."""
    u, v = spec.rows, spec.cols
    strides: dict = {}
    main_iterations = 0
    nodes: list[Node] = []
    for u_rows, count, first in ((u, rows // u, True), (1, rows % u if u > 1 else 0, False)):
        if count == 0:
            continue
        main = first or rows // u == 0
        block, s = _block(spec, u_rows, v, g, probe=probe and main)
        if main:
            strides = s
            main_iterations = count * (cols // v) * (g.k // spec.kunroll)
        row_setup: list[Node] = [
            Instr("addi", dst="pa_row", src=("pa_row",)),
            Instr("mv", dst="pbj", src=("pb0",)),
            Instr("addi", dst="pc", src=("pc",)),
        ]
        body = (
            *row_setup,
            Loop(cols // v, tuple(block), hw=True, label="cols"),
            Loop(cols % v, tuple(_naive_column(spec.fmt, u_rows, g)), hw=True, label="cols left"),
        )
        nodes.append(Loop(count, body, hw=False, label="rows" if first else "rows left"))
    return nodes, strides, main_iterations


def _preamble() -> list[Node]:
    """Argument loads, core id, this core's share, shape checks (PULP-TrainLib's kernel prologue)."""
    loads = [Instr("lw", dst=r, src=("args",), unit="load") for r in ("A", "B", "C", "N", "M", "K", "tr")]
    return [
        *loads,
        Instr("csrr", dst="id"),
        Instr("addi", dst="bs", src=("N",)),
        Instr("srli", dst="bs", src=("bs",)),
        Instr("mul", dst="start", src=("id", "bs")),
        Instr("add", dst="stop", src=("start", "bs")),
        Instr("p.minu", dst="stop", src=("stop", "N")),
        Instr("bltu", src=("M",), unit="ctrl"),
        Instr("bltu", src=("K",), unit="ctrl"),
        Instr("bnez", src=("tr",), unit="ctrl"),
        Instr("mul", dst="pa_row", src=("start", "K")),
        Instr("add", dst="pa_row", src=("pa_row", "A")),
        Instr("mul", dst="pc", src=("start", "M")),
        Instr("add", dst="pc", src=("pc", "C")),
        Instr("mv", dst="pb0", src=("B",)),
    ]


_RET = Instr("ret", unit="ctrl", jump=True)


@dataclasses.dataclass(frozen=True)
class _CoreWork:
    groups: int
    rows: int
    cols: int
    row0: int
    col0: int
    group0: int


def _core_program(spec: KernelSpec, work: _CoreWork, g: _Geometry) -> tuple[list[Node], dict, int]:
    if work.groups == 0 or work.rows == 0 or work.cols == 0:
        return [*_preamble(), _RET], {}, 0
    rows_nodes, strides, iterations = _rows(spec, work.rows, work.cols, g, probe=True)
    if spec.parallel == "G":
        group_setup = [
            Instr("addi", dst="pa_row", src=("pa_row",)),
            Instr("addi", dst="pb0", src=("pb0",)),
            Instr("addi", dst="pc", src=("pc",)),
        ]
        nodes: list[Node] = [Loop(work.groups, (*group_setup, *rows_nodes), hw=False, label="groups")]
        iterations *= work.groups
    else:
        nodes = rows_nodes
    return [*_preamble(), *nodes, _RET], strides, iterations


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

    Parameters are those of :func:`kernel_cycles`.
    """
    spec, _ = _resolve(name, n=n, k=k, m=m, groups=groups, trans_b=trans_b, dtype=dtype, cores=cores)
    g = _Geometry(k=k, m=m, e=dtype_bytes(dtype), trans_b=trans_b)
    work = _work(spec, n=n, m=m, groups=groups, cores=cores, core=core)
    return _core_program(spec, work, g)[0]


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
    active = [c for c, w in enumerate(works) if w.groups and w.rows and w.cols]
    timing = core_timing(cluster, max(1, len(active)))

    stats_by_shape: dict[tuple[int, int, int], tuple[CoreStats, dict, int, list[Node]]] = {}
    per_core: list[CoreStats] = []
    for w in works:
        key = (w.groups, w.rows, w.cols)
        if key not in stats_by_shape:
            program, strides, iterations = _core_program(spec, w, g)
            stats_by_shape[key] = (CoreSim(timing).run(program), strides, iterations, program)
        per_core.append(stats_by_shape[key][0])
    core_cycles = tuple(s.cycles for s in per_core)
    slowest = max(range(cores), key=lambda c: core_cycles[c])
    stats, strides, iterations, program = stats_by_shape[
        (works[slowest].groups, works[slowest].rows, works[slowest].cols)
    ]

    conflicts: tuple[int, ...] = (0,) * cores
    if bank_conflicts and len(active) > 1 and stats.probe is not None and stats.probe.accesses:
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
    )


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
