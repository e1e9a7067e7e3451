"""Bit-exact golden executor of SAT accelerator programs (docs/sat-architecture.md).

:func:`execute` runs a list of descriptors (:class:`~trainforge.hw.sat.isa.Gemm`,
:class:`~trainforge.hw.sat.isa.Prune`, :class:`~trainforge.hw.sat.isa.Update`) on a copy of a
memory image (:mod:`trainforge.hw.sat.lines` has the formats and layouts) and returns the image and
the accumulator buffer the accelerator must leave, bit for bit.

Machine state it models:

* two A halves of ``a_lines`` a-lines and two B halves of ``b_lines`` b-lines (at least ``rows``, a
  WS tile's steps), all zero at reset. A GEMM with ``load_a`` switches to the other A half and
  writes its a-lines there from line 0 on; without it the tile reads the half the last load filled
  (lines past what that load wrote keep older contents). B the same.
* the accumulator buffer: ``acc_lines`` acc-lines of FP32, ``+0`` at reset.

Arithmetic: every PE step is the expanding FMA (``in_fmt x in_fmt + FP32``, one RNE rounding)
through :func:`trainforge.models.golden.sparse_gemm` (each step its own group of ``m_max`` slots,
so any index pattern the hardware may be given is modelled); OS accumulation is one FP32 addition
through :func:`trainforge.models.fp.add`; UPDATE is
:func:`trainforge.models.weight_update.sgd_srste_update`; PRUNE is
:func:`trainforge.models.nm.nm_compress` / :func:`~trainforge.models.nm.nm_mask`. Every NaN the
accelerator writes is the canonical NaN of its format (FP32 ``0x7FC00000``, FP16 ``0x7E00``, BF16
``0x7FC0``), as the FP library's units produce it.

Descriptors run one after another, each completely (the hardware's overlap of loads, compute and
stores must not be observable). A descriptor that fails :func:`trainforge.hw.sat.isa.check` stops the
program there: nothing of it is executed and its error code is recorded.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from trainforge.errors import UsageError
from trainforge.hw.fp.formats import FORMATS
from trainforge.hw.sat import lines
from trainforge.hw.sat.config import SatConfig
from trainforge.hw.sat.isa import Dataflow, ErrorCode, Gemm, Prune, Update, check, float_bits
from trainforge.models import fp
from trainforge.models.golden import sparse_gemm
from trainforge.models.nm import nm_compress, nm_mask
from trainforge.models.weight_update import sgd_srste_update

__all__ = ["GoldenRun", "execute"]


@dataclasses.dataclass
class GoldenRun:
    """What a program leaves behind.

    Attributes
    ----------
    image : numpy.ndarray of uint32
        The memory image after the program, ``(n_words, mem_bits // 32)``.
    acc : numpy.ndarray of uint32
        The accumulator buffer, ``(acc_lines, cols)`` FP32 bit patterns.
    error_code : ErrorCode
        ``ErrorCode.NONE``, or why the program stopped.
    executed : int
        Descriptors executed (the index of the failing one when ``error_code`` is set).
    """

    image: np.ndarray
    acc: np.ndarray
    error_code: ErrorCode
    executed: int


class _Machine:
    """Buffers and accumulator of one run."""

    def __init__(self, config: SatConfig, image: np.ndarray) -> None:
        c = config
        self.config, self.image = c, image
        self.acc = np.zeros((c.acc_lines, c.cols), dtype=np.uint32)
        self.a = np.zeros((2, c.a_lines, c.rows, c.m_max), dtype=np.uint16)
        b_depth = max(c.b_lines, c.rows)
        self.b_val = np.zeros((2, b_depth, c.cols), dtype=np.uint16)
        self.b_idx = np.zeros((2, b_depth, c.cols), dtype=np.uint8)
        self.a_half = self.b_half = 1  # the first load fills half 0

    # ---- memory ------------------------------------------------------------------------------

    def read(self, kind: str, addr: int, count: int, stride: int | None = None):
        step = lines.line_words(self.config, kind) if stride is None else stride
        return lines.read_lines_at(self.image, self.config, kind, addr + step * np.arange(count))

    def write(self, kind: str, addrs: np.ndarray, *data) -> None:
        lines.write_lines_at(self.image, self.config, kind, addrs, *data)

    def consecutive(self, kind: str, addr: int, count: int) -> np.ndarray:
        return addr + lines.line_words(self.config, kind) * np.arange(count)

    # ---- GEMM ---------------------------------------------------------------------------------

    def gemm(self, d: Gemm) -> None:
        c = self.config
        if d.load_a:
            self.a_half ^= 1
            self.a[self.a_half, : d.a_lines()] = self.read("a", d.a_addr, d.a_lines())
        if d.load_b:
            self.b_half ^= 1
            values, indices = self.read("b", d.b_addr, d.steps)
            self.b_val[self.b_half, : d.steps], self.b_idx[self.b_half, : d.steps] = values, indices
        a = self.a[self.a_half]
        values = self.b_val[self.b_half, : d.steps, : d.cols]
        indices = self.b_idx[self.b_half, : d.steps, : d.cols]
        out = self.acc[d.acc_addr : d.acc_addr + d.rows]
        # Operand A of step t as a row of its own group of m_max slots: sparse_gemm with 1:m_max
        # then selects a[.., slot index] for every step and column, whatever the indices are.
        if d.dataflow == Dataflow.OS:
            groups = np.arange(d.steps) // d.n
            a_steps = a[groups, : d.rows].transpose(1, 0, 2)  # (rows, steps, m_max)
            init = None
        else:
            a_steps = a[: d.rows, : d.steps]  # a-line r, array row i
            init = out[:, : d.cols] if d.accumulate else None
        t = sparse_gemm(
            a_steps.reshape(d.rows, d.steps * c.m_max),
            values,
            indices,
            n=1,
            m=c.m_max,
            fmt=c.in_fmt,
            order="sequential",
            init=init,
        )
        if d.dataflow == Dataflow.OS and d.accumulate:
            t = fp.add(out[:, : d.cols], t, fmt="fp32", rounding="rne")[0].astype(np.uint32)
        out[:, : d.cols] = t
        out[:, d.cols :] = 0
        if d.store:
            self.write("acc", self.consecutive("acc", d.c_addr, d.rows), out)

    # ---- PRUNE -------------------------------------------------------------------------------

    def prune(self, d: Prune) -> None:
        c = self.config
        dtype = FORMATS[c.in_fmt].torch_dtype
        if d.transpose:
            line = (np.arange(d.lines)[:, None] * d.panel_stride + np.arange(c.cols)).reshape(-1)
            w = lines.read_lines_at(self.image, c, "w", d.src_addr + line * c.w_words)
            lanes = w.reshape(d.lines, c.cols, c.cols).transpose(1, 0, 2).reshape(c.cols, -1)  # lane i: row i
        else:
            lanes = self.read("w", d.src_addr, d.lines).T  # lane j: column j down the lines
        t = torch.from_numpy(np.ascontiguousarray(lanes).view(np.int16)).view(dtype)
        values, indices = nm_compress(t, d.n, d.m, dim=1)
        bits = values.view(torch.int16).numpy().view(np.uint16)
        self.write("b", self.consecutive("b", d.dst_addr, bits.shape[1]), bits.T, indices.numpy().T)
        if d.write_mask:
            keep = nm_mask(t, d.n, d.m, dim=1).numpy()
            if d.transpose:  # back to the panel layout: mask-line (p, i) holds lane i's bits p*C ..
                panel = keep.reshape(c.cols, d.lines, c.cols).transpose(1, 0, 2).reshape(-1, c.cols)
                self.write("mask", d.mask_addr + line * c.mask_words, panel)
            else:
                self.write("mask", self.consecutive("mask", d.mask_addr, d.lines), keep.T)

    # ---- UPDATE ------------------------------------------------------------------------------

    def update(self, d: Update) -> None:
        c = self.config

        def f32(kind: str, addr: int) -> torch.Tensor:
            return torch.from_numpy(self.read(kind, addr, d.lines).view(np.float32))

        keep = (
            torch.from_numpy(self.read("mask", d.mask_addr, d.lines))
            if d.use_mask
            else torch.ones(d.lines, c.cols, dtype=torch.bool)
        )
        w, v, w16 = sgd_srste_update(
            f32("acc", d.w_addr),
            f32("acc", d.v_addr),
            f32("acc", d.g_addr),
            keep,
            lr=_fp32(d.lr),
            momentum=_fp32(d.momentum),
            decay=_fp32(d.decay),
            use_mask=d.use_mask,
            in_fmt=c.in_fmt,
        )
        cnan16 = fp.canonical_nan(c.in_fmt)
        w16_bits = np.where(torch.isnan(w16).numpy(), cnan16, w16.view(torch.int16).numpy().view(np.uint16))
        self.write("acc", self.consecutive("acc", d.w_addr, d.lines), _canonical32(w.numpy()))
        self.write("acc", self.consecutive("acc", d.v_addr, d.lines), _canonical32(v.numpy()))
        self.write("w", self.consecutive("w", d.w16_addr, d.lines), w16_bits.astype(np.uint16))


def _fp32(value: float) -> float:
    """The FP32 value the descriptor carries (its field holds ``float_bits(value)``)."""
    return float(np.array([float_bits(value)], dtype=np.uint32).view(np.float32)[0])


def _canonical32(x: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(x), np.uint32(fp.canonical_nan("fp32")), x.view(np.uint32)).astype(np.uint32)


def execute(config: SatConfig, program, image) -> GoldenRun:
    """Run ``program`` on a copy of ``image`` as the accelerator does, bit for bit.

    Parameters
    ----------
    config : SatConfig
    program : iterable of Gemm, Prune or Update
        The descriptors, in order.
    image : numpy.ndarray or trainforge.hw.sat.lines.MemoryImage
        The memory before the program, ``(n_words, mem_bits // 32)`` uint32 (not modified).

    Returns
    -------
    GoldenRun

    Raises
    ------
    trainforge.errors.UsageError
        The image has the wrong shape, or a descriptor reads or writes a line outside it.
    """
    words = image.words if isinstance(image, lines.MemoryImage) else image
    mem = np.array(words, dtype=np.uint32)
    if mem.ndim != 2 or mem.shape[1] != config.mem_bits // 32:
        raise UsageError(f"image must be (n_words, {config.mem_bits // 32}) uint32, not {mem.shape}")
    machine = _Machine(config, mem)
    executed, error = 0, ErrorCode.NONE
    with np.errstate(all="ignore"):
        for desc in program:
            error = check(config, desc)
            if error != ErrorCode.NONE:
                break
            if isinstance(desc, Gemm):
                machine.gemm(desc)
            elif isinstance(desc, Prune):
                machine.prune(desc)
            else:
                machine.update(desc)
            executed += 1
    return GoldenRun(image=machine.image, acc=machine.acc, error_code=error, executed=executed)
