"""Bit-exact references for the MCU cluster's matmul kernels, in each kernel's accumulation order.

The cluster's kernels (:mod:`trainforge.dataflow.mcu.kernels`) compute every output of
``C = A . B`` as one of three dot products, decided by the kernel's inner loop:

``sequential``
    ``c = +0; c = fma(a[k], b[k], c)`` for ``k = 0 .. K-1`` in the element format (``fmadd.h`` /
    ``fmadd.s``; also the FP16 SIMD kernels with B not transposed, whose two lanes are two columns).
``lanes``
    The FP16 SIMD dot product with two lanes along ``k``: lane 0 accumulates the even ``k``, lane 1
    the odd ones (``vfmac.h``, one rounding per lane and step); an odd ``K``'s last element is
    loaded zero-extended, so lane 1 takes one more ``fma(+0, +0, lane1)``; the result is
    ``fadd.h(lane0, lane1)``.
``dotpex``
    FP32 accumulation of FP16 products (``vfdotpex.s.h``): per pair, ``t = fma32(a[k], b[k], c)``
    then ``c = fma32(a[k+1], b[k+1], t)`` (the datapath's two roundings in lane order, see
    :mod:`trainforge.hw.mcu.fp_simd`); an odd ``K`` ends with ``a[K-1]`` paired with +0; the result
    is ``fcvt.h.s(c)``.

Every operation is :mod:`trainforge.models.fp`'s correctly rounded one (round to nearest even),
vectorised over all outputs at once; operands and results are bit patterns.
"""

from __future__ import annotations

import numpy as np

from trainforge.errors import UsageError
from trainforge.models import fp

__all__ = ["ACCUMULATIONS", "dot"]

ACCUMULATIONS = ("sequential", "lanes", "dotpex")
"""The kernels' dot-product orders (see the module docstring)."""

_RNE = "rne"


def dot(a: np.ndarray, b: np.ndarray, *, fmt: str, accumulation: str) -> np.ndarray:
    """Dot products of the rows of ``a`` and ``b`` (bit patterns, shape ``(outputs, K)``).

    Parameters
    ----------
    a, b : numpy.ndarray
        Bit patterns in ``fmt``, the same shape ``(outputs, K)``.
    fmt : {"fp16", "fp32", "bf16"}
        Element format (``lanes`` and ``dotpex`` need a 16-bit format).
    accumulation : {"sequential", "lanes", "dotpex"}
        The kernel's order (module docstring).

    Returns
    -------
    numpy.ndarray of uint64
        One result per row, in ``fmt``.
    """
    if accumulation not in ACCUMULATIONS:
        raise UsageError(f"accumulation must be one of {', '.join(ACCUMULATIONS)}, not {accumulation!r}")
    a = np.asarray(a, dtype=np.uint64)
    b = np.asarray(b, dtype=np.uint64)
    if a.shape != b.shape or a.ndim != 2:
        raise UsageError(f"a and b must have the same 2-D shape (outputs, K), not {a.shape} and {b.shape}")
    outputs, k = a.shape
    if accumulation == "sequential":
        c = np.zeros(outputs, dtype=np.uint64)
        for kk in range(k):
            c, _ = fp.fma(a[:, kk], b[:, kk], c, fmt=fmt, rounding=_RNE)
        return c
    if fmt == "fp32":
        raise UsageError(f"{accumulation} accumulation needs a 16-bit format, not {fmt!r}")
    if k % 2:  # the zero-extended last load: the upper lane sees +0 x +0
        zero = np.zeros((outputs, 1), dtype=np.uint64)
        a, b = np.hstack([a, zero]), np.hstack([b, zero])
    if accumulation == "lanes":
        lane0 = np.zeros(outputs, dtype=np.uint64)
        lane1 = np.zeros(outputs, dtype=np.uint64)
        for kk in range(0, a.shape[1], 2):
            lane0, _ = fp.fma(a[:, kk], b[:, kk], lane0, fmt=fmt, rounding=_RNE)
            lane1, _ = fp.fma(a[:, kk + 1], b[:, kk + 1], lane1, fmt=fmt, rounding=_RNE)
        return fp.add(lane0, lane1, fmt=fmt, rounding=_RNE)[0]
    c = np.zeros(outputs, dtype=np.uint64)
    for kk in range(0, a.shape[1], 2):
        t, _ = fp.fma(a[:, kk], b[:, kk], c, fmt="fp32", src_fmt=fmt, rounding=_RNE)
        c, _ = fp.fma(a[:, kk + 1], b[:, kk + 1], t, fmt="fp32", src_fmt=fmt, rounding=_RNE)
    return fp.convert(c, src_fmt="fp32", dst_fmt=fmt, rounding=_RNE)[0]
