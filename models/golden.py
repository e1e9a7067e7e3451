"""Bit-exact golden model of the GEMM engine: ``out = A . B`` computed as the PE datapath computes it.

The GEMM engine's processing element (PE) multiplies two FP16 (or BF16) operands and accumulates in
FP32. One PE step is the expanding fused multiply-add of the FP library,

    acc = round_acc(acc + a * b)          (the product exact, one rounding; RNE by default)

that is :func:`trainforge.models.fp.fma` with ``src_fmt=fmt, fmt=acc_fmt``. What differs between
hardware organisations is only *which* partial sums are rounded, i.e. the order of the reduction,
chosen by ``order`` (:data:`ORDERS`; ``docs/golden-gemm.md`` has pictures and the mapping to
dataflows):

``"sequential"``
    One accumulator per output, initialised with ``init`` (default ``+0``), takes the products
    ``k = 0, 1, ..., K-1`` one fused step each. Output-stationary arrays and single MAC units.
``"systolic"``
    Weight-stationary array of ``chunk`` rows whose columns take, at the top, the running partial
    sum left by the previous tile of ``chunk`` reduction positions; the products of a tile are added
    going down the column, one fused step per PE. The chain of roundings is exactly that of
    ``"sequential"``, so the result is bit-identical for every ``chunk``: it is a separate name
    only so that a testbench can say which dataflow it models.
``"chunked"``
    Weight-stationary array of ``chunk`` rows whose columns start every tile from ``+0``: a tile of
    ``chunk`` consecutive products is accumulated (fused steps, in order) from ``+0``, and the
    column output is added to the output's accumulator (initialised with ``init``) in one rounded
    addition, tile after tile (the accumulator memory of a TPU- or Gemmini-style array). The last
    tile holds the ``K mod chunk`` remaining products when ``chunk`` does not divide ``K``.
``"tree"``
    An adder tree after the multipliers: each product is rounded to ``acc_fmt`` (exact for FP16
    operands and FP32 accumulation; for BF16 only an underflow or overflow of the product rounds),
    then the list of products is reduced level by level, adding *adjacent pairs* ``(0, 1), (2, 3),
    ...`` with one rounded addition each; an odd element at the end of a level is carried unchanged
    to the next level. The tree's root is added to the accumulator (initialised with ``init``) in
    one rounded addition. With ``chunk`` the products are cut into tiles of ``chunk`` (a dot-product
    unit of width ``chunk``), one tree per tile, and the roots are added to the accumulator tile
    after tile; without it there is one tree over all ``K`` products.

Every step rounds with the same ``rounding`` mode. Every NaN result is the canonical NaN
(``0x7FC00000`` in FP32), as in the FP oracle. With no products at all (``K == 0``) the result is
``init`` itself.

Speed. For ``rounding="rne"`` and FP32 accumulation the model runs in NumPy float32 arithmetic,
vectorised over the ``M x N`` outputs (one multiply and one add per reduction step). That is exact:
an FP16 x FP16 product (22 significant bits, magnitude ``2^-48`` to ``2^32``) is representable in
FP32, so IEEE float32 addition of the product *is* the fused step, and IEEE float32 multiplication
of the widened operands *is* the rounded product of the tree. A BF16 x BF16 product can underflow
or overflow FP32; every reduction step whose operands can produce such a product (decided from
the exponents of the column of ``A`` and row of ``B`` it uses) goes through the exact oracle
instead. The float32 path also needs the FPU in IEEE mode: when it flushes subnormals
(``torch.set_flush_denormal(True)``), the model notices and uses the oracle throughout. Other
rounding modes, other accumulation formats and ``flags=True`` run the oracle vectorised over
``M x N`` per step (about 15 M steps/s). See ``docs/golden-gemm.md`` for measured times.

N:M sparse weights (:func:`sparse_gemm`): ``B`` is stored compressed along ``K`` (values and
in-group indices, as :func:`trainforge.models.nm.nm_compress` returns them with ``dim=0``). The
sparse PE selects the activation of each kept weight by its index and accumulates only the kept
products: in ascending index order within a group, groups in ``K`` order. A pruned position
contributes nothing, not even a signed zero or the NaN of ``inf * 0``. The orders above apply to
that sequence of kept products (``chunk`` counts kept products, i.e. PE rows of the array).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from trainforge.errors import UsageError
from trainforge.hw.fp.formats import FORMATS
from trainforge.models import fp

__all__ = ["ACC_FORMATS", "OPERAND_FORMATS", "ORDERS", "gemm", "reference_gemm", "sparse_gemm"]

OPERAND_FORMATS = ("fp16", "bf16")
"""Formats of the multiplicands (``fmt``)."""

ACC_FORMATS = ("fp32", "fp16", "bf16")
"""Formats of the accumulator (``acc_fmt``); the PE of the SAT engine accumulates in ``"fp32"``."""

ORDERS = ("sequential", "systolic", "chunked", "tree")
"""Reduction orders; see the module docstring."""

_UINT = {16: np.uint16, 32: np.uint32}
_SINT = {16: np.int16, 32: np.int32}
_TORCH_SINT = {16: torch.int16, 32: torch.int32}
_TORCH_BITS = {16: (torch.int16, torch.uint16), 32: (torch.int32, torch.uint32)}
_NP_FLOAT = {"fp16": np.float16, "fp32": np.float32}
_FP32_CNAN = np.uint32(0x7FC0_0000)
_TREE_BLOCK = 1 << 21  # leaves per block of rows in the tree order (8 MB of float32)


# --------------------------------------------------------------------------------------------
# argument checking and operand conversion
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Config:
    fmt: str
    acc_fmt: str
    order: str
    rounding: str
    chunk: int | None
    flags: bool


def _choice(value: object, valid: tuple[str, ...], arg: str) -> str:
    if isinstance(value, str) and value in valid:
        return value
    raise UsageError(f"{arg} must be one of {', '.join(repr(v) for v in valid)}, not {value!r}")


def _config(fmt, acc_fmt, order, rounding, chunk, flags) -> _Config:
    fmt = _choice(fmt, OPERAND_FORMATS, "fmt")
    acc_fmt = _choice(acc_fmt, ACC_FORMATS, "acc_fmt")
    order = _choice(order, ORDERS, "order")
    if isinstance(rounding, int | np.integer) and not isinstance(rounding, bool) and 0 <= rounding < 5:
        rounding = fp.ROUNDING_MODES[int(rounding)]
    if not (isinstance(rounding, str) and rounding in fp.ROUNDING_MODES):
        valid = ", ".join(repr(r) for r in fp.ROUNDING_MODES)
        raise UsageError(f"rounding must be one of {valid} (or the RISC-V frm 0-4), not {rounding!r}")
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int | np.integer) or chunk < 1):
        raise UsageError(f"chunk must be a positive integer (the number of PE rows), not {chunk!r}")
    if order in ("systolic", "chunked") and chunk is None:
        raise UsageError(f"order={order!r} needs chunk, the number of PE rows (products per tile)")
    if order == "sequential" and chunk is not None:
        raise UsageError(
            f"order='sequential' has no tiles, so chunk must be None, not {chunk!r} "
            "(use order='systolic', 'chunked' or 'tree' for a tiled reduction)"
        )
    if not isinstance(flags, bool):
        raise UsageError(f"flags must be True or False, not {flags!r}")
    return _Config(fmt, acc_fmt, order, rounding, None if chunk is None else int(chunk), flags)


def _as_bits(x: object, fmt: str, arg: str) -> np.ndarray:
    """``x`` as an array of ``fmt`` bit patterns (uint16 or uint32), checked.

    Accepts a tensor or array of ``fmt``'s own dtype (torch.float16 / bfloat16 / float32, NumPy
    float16 / float32), integers of the format's width (reinterpreted, as ``tensor.view(torch.int16)``
    gives them) or any other integer array whose values are valid bit patterns.
    """
    f = FORMATS[fmt]
    width = f.width
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
        if t.dtype == f.torch_dtype or t.dtype in _TORCH_BITS[width]:
            return t.contiguous().view(_TORCH_SINT[width]).numpy().view(_UINT[width])
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise UsageError(
                f"{arg} is a {t.dtype} tensor, but fmt {fmt!r} needs {f.torch_dtype} values or integer bit "
                f"patterns; convert it first (for example .to({f.torch_dtype}), which rounds)"
            )
        arr = t.to(torch.int64).numpy()
    else:
        arr = np.asarray(x)
        if (fmt in _NP_FLOAT and arr.dtype == _NP_FLOAT[fmt]) or arr.dtype in (_UINT[width], _SINT[width]):
            return (arr if arr.flags.c_contiguous else arr.copy()).view(_UINT[width])
        if arr.dtype.kind not in "iu":
            want = f"NumPy {_NP_FLOAT[fmt].__name__} values or " if fmt in _NP_FLOAT else ""
            raise UsageError(
                f"{arg} has dtype {arr.dtype}, but fmt {fmt!r} needs {want}{f.torch_dtype} tensors or "
                f"integer bit patterns (trainforge.models.fp.from_float encodes float values)"
            )
    if arr.size:
        bad = (arr < 0) | (arr >= (1 << width))
        if bad.any():
            idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), arr.shape))
            raise UsageError(
                f"{arg}[{', '.join(map(str, idx))}] is {int(arr[idx])}, which is not a {width}-bit {fmt} bit "
                f"pattern (valid: 0 to {(1 << width) - 1:#x})"
            )
    return arr.astype(_UINT[width])


def _matrix(x: object, fmt: str, arg: str) -> np.ndarray:
    bits = _as_bits(x, fmt, arg)
    if bits.ndim != 2:
        raise UsageError(f"{arg} must be a 2-d matrix, not an array of shape {tuple(bits.shape)}")
    return bits


def _init_bits(init: object, acc_fmt: str, shape: tuple[int, int]) -> np.ndarray:
    if init is None:
        return np.zeros(shape, dtype=np.int64)
    bits = _as_bits(init, acc_fmt, "init")
    try:
        return np.broadcast_to(bits, shape).astype(np.int64)
    except ValueError:
        raise UsageError(
            f"init has shape {tuple(bits.shape)}, which does not broadcast to the output's {shape}"
        ) from None


def _widen(bits: np.ndarray, fmt: str) -> np.ndarray:
    """Exact float32 values of fp16 / bf16 bit patterns (NaN payloads kept)."""
    if fmt == "fp16":
        return bits.view(np.float16).astype(np.float32)
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _float32_is_ieee() -> bool:
    """Whether NumPy float32 arithmetic keeps subnormal operands and results (no FTZ / DAZ)."""
    # Built from bit patterns: a conversion from float64 would itself be flushed in FTZ mode.
    x = np.array([0x0000_0001, 0x0080_0000], dtype=np.uint32).view(np.float32)  # 2^-149, 2^-126
    half = np.array([0x3F00_0000], dtype=np.uint32).view(np.float32)
    got = np.concatenate([x + x, x[1:] * half]).view(np.uint32)
    return got.tolist() == [0x0000_0002, 0x0100_0000, 0x0040_0000]  # 2^-148, 2^-125, 2^-127


# --------------------------------------------------------------------------------------------
# the product sequence
# --------------------------------------------------------------------------------------------


class _Products:
    """The reduction sequence of every output: step ``t`` multiplies ``x_t[i, j]`` by ``y_t[j]``.

    Dense: ``x_t[i, j] = a[i, t]`` and ``y_t = b[t]``. Sparse: ``y_t = values[t]`` and
    ``x_t[i, j] = a[i, cols[t, j]]``, the activation each kept weight selects.
    """

    def __init__(self, a: np.ndarray, b: np.ndarray, cols: np.ndarray | None, fmt: str) -> None:
        self.fmt = fmt
        self.a, self.b, self.cols = a.astype(np.int64), b.astype(np.int64), cols
        self.a32, self.b32 = _widen(a, fmt), _widen(b, fmt)
        self.aT32 = np.ascontiguousarray(self.a32.T)
        self.aT = np.ascontiguousarray(self.a.T)
        self.length = b.shape[0]

    def get(self, lo: int, hi: int, rows: slice, exact: bool) -> tuple[np.ndarray, np.ndarray]:
        """Operands of steps ``lo:hi`` for ``rows``: ``x`` (steps, rows, 1 or N), ``y`` (steps, 1, N)."""
        b = self.b if exact else self.b32
        y = b[lo:hi, None, :]
        if self.cols is None:
            x = (self.aT if exact else self.aT32)[lo:hi, rows, None]
        else:
            a = (self.a if exact else self.a32)[rows]
            x = np.moveaxis(a[:, self.cols[lo:hi]], 1, 0)
        return x, y

    def fast_safe(self) -> np.ndarray:
        """Per step: are all its products representable in float32 (so float32 ops are exact)?

        A product of two finite non-zero values is a multiple of the product of their mantissa
        units and at most 22 (fp16) / 16 (bf16) bits wide: it is an FP32 number when that unit
        product is at least ``2^-149`` and the product's magnitude below ``2^128``. Zeros,
        infinities and NaNs are exact under IEEE float32 arithmetic.
        """
        spec = FORMATS[self.fmt]
        m, bias, e_all = spec.man_bits, spec.bias, (1 << spec.exp_bits) - 1

        def bounds(bits: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
            field = (bits >> m) & e_all
            live = (field != e_all) & ((bits & ((1 << (spec.width - 1)) - 1)) != 0)
            e = np.maximum(field, 1) - bias
            unit = np.where(live, e - m, 1 << 20).min(axis=axis, initial=1 << 20)  # log2 of mantissa unit
            top = np.where(live, e + 1, -(1 << 20)).max(axis=axis, initial=-(1 << 20))  # |x| < 2^top
            return unit, top

        ua, ta = bounds(self.a, 0)  # per column of a
        ub, tb = bounds(self.b, 1)  # per step
        if self.cols is not None:
            ua = ua[self.cols].min(axis=1, initial=1 << 20)
            ta = ta[self.cols].max(axis=1, initial=-(1 << 20))
        return (ua + ub >= -149) & (ta + tb <= 128)


# --------------------------------------------------------------------------------------------
# arithmetic engines: float32 (RNE, fast) and the exact oracle (any mode, flags)
# --------------------------------------------------------------------------------------------


class _Exact:
    """PE arithmetic on bit patterns through the FP oracle; ORs every step's flags per output."""

    def __init__(self, prods: _Products, cfg: _Config, rows: slice, shape: tuple[int, int]) -> None:
        self.prods, self.cfg, self.rows = prods, cfg, rows
        self.flags = np.zeros(shape, dtype=np.uint8)
        # The addend that leaves a product unchanged, its zero sign included: -0 + x == x except in
        # rdn, where +0 + x == x.
        self.zero_addend = 0 if cfg.rounding == "rdn" else 1 << (FORMATS[cfg.acc_fmt].width - 1)

    def _note(self, flags: np.ndarray) -> None:
        self.flags |= np.bitwise_or.reduce(flags.reshape(-1, *self.flags.shape), axis=0)

    def load(self, bits: np.ndarray) -> np.ndarray:
        return bits

    def store(self, acc: np.ndarray) -> np.ndarray:
        return acc.astype(_UINT[FORMATS[self.cfg.acc_fmt].width])

    def zero(self) -> np.ndarray:
        return np.zeros(self.flags.shape, dtype=np.int64)

    def fma(self, acc: np.ndarray, t: int) -> np.ndarray:
        x, y = self.prods.get(t, t + 1, self.rows, exact=True)
        c = self.cfg
        out, flags = fp.fma(x[0], y[0], acc, fmt=c.acc_fmt, src_fmt=c.fmt, rounding=c.rounding)
        self._note(flags)
        return out.astype(np.int64)

    def products(self, lo: int, hi: int) -> np.ndarray:
        x, y = self.prods.get(lo, hi, self.rows, exact=True)
        c = self.cfg
        out, flags = fp.fma(x, y, self.zero_addend, fmt=c.acc_fmt, src_fmt=c.fmt, rounding=c.rounding)
        self._note(flags)
        return out.astype(np.int64)

    def add(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        out, flags = fp.add(u, v, fmt=self.cfg.acc_fmt, rounding=self.cfg.rounding)
        self._note(flags)
        return out.astype(np.int64)


class _Fast:
    """PE arithmetic in IEEE float32 (RNE, FP32 accumulation), exact where :meth:`_Products.fast_safe`."""

    def __init__(self, prods: _Products, cfg: _Config, rows: slice, shape: tuple[int, int]) -> None:
        self.prods, self.cfg, self.rows, self.shape = prods, cfg, rows, shape
        self.safe = prods.fast_safe()
        self.tmp = np.empty(shape, dtype=np.float32)
        self.exact = _Exact(prods, cfg, rows, shape)

    def load(self, bits: np.ndarray) -> np.ndarray:
        return bits.astype(np.uint32).view(np.float32)

    def store(self, acc: np.ndarray) -> np.ndarray:
        bits = np.ascontiguousarray(acc).view(np.uint32)
        return np.where(np.isnan(acc), _FP32_CNAN, bits)

    def zero(self) -> np.ndarray:
        return np.zeros(self.shape, dtype=np.float32)

    def fma(self, acc: np.ndarray, t: int) -> np.ndarray:
        if not self.safe[t]:
            bits = self.exact.fma(acc.view(np.uint32).astype(np.int64), t)
            return bits.astype(np.uint32).view(np.float32)
        x, y = self.prods.get(t, t + 1, self.rows, exact=False)
        np.multiply(x[0], y[0], out=self.tmp)  # exact (fast_safe)
        return np.add(acc, self.tmp, out=acc)  # one IEEE RNE rounding: the fused step

    def products(self, lo: int, hi: int) -> np.ndarray:
        x, y = self.prods.get(lo, hi, self.rows, exact=False)
        return x * y  # the correctly rounded (RNE) FP32 product, also for BF16 out of range

    def add(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return u + v


# --------------------------------------------------------------------------------------------
# the orders
# --------------------------------------------------------------------------------------------


def _reduce(engine: _Exact | _Fast, acc: np.ndarray, length: int, cfg: _Config) -> np.ndarray:
    """Run the reduction of ``length`` products into ``acc`` in ``cfg.order``."""
    if cfg.order in ("sequential", "systolic"):
        # systolic: tile after tile, the partial sum leaving a column's bottom re-enters its top, so
        # the chain of fused steps is k = 0 .. K-1 whatever the tile size.
        for t in range(length):
            acc = engine.fma(acc, t)
        return acc
    if cfg.order == "chunked":
        for lo in range(0, length, cfg.chunk):
            psum = engine.zero()
            for t in range(lo, min(length, lo + cfg.chunk)):
                psum = engine.fma(psum, t)
            acc = engine.add(acc, psum)
        return acc
    size = length if cfg.chunk is None else cfg.chunk
    for lo in range(0, length, max(size, 1)):
        level = engine.products(lo, min(length, lo + size))  # (leaves, rows, N)
        while level.shape[0] > 1:
            half = level.shape[0] // 2
            pairs = engine.add(level[0 : 2 * half : 2], level[1 : 2 * half : 2])
            level = np.concatenate([pairs, level[2 * half :]]) if level.shape[0] % 2 else pairs
        acc = engine.add(acc, level[0])
    return acc


def _run(prods: _Products, cfg: _Config, init: object, shape: tuple[int, int]):
    """Evaluate every output; returns bits or (bits, flags)."""
    m_rows, n_cols = shape
    init_bits = _init_bits(init, cfg.acc_fmt, shape)
    width = FORMATS[cfg.acc_fmt].width
    out = np.empty(shape, dtype=_UINT[width])
    flags = np.zeros(shape, dtype=np.uint8)
    fast = cfg.rounding == "rne" and cfg.acc_fmt == "fp32" and not cfg.flags and _float32_is_ieee()
    step = m_rows
    if cfg.order == "tree":
        leaves = max(1, min(prods.length, cfg.chunk or prods.length)) * max(1, n_cols)
        step = max(1, _TREE_BLOCK // leaves)
    with np.errstate(all="ignore"):
        for lo in range(0, m_rows, max(step, 1)):
            rows = slice(lo, min(m_rows, lo + step))
            block = (rows.stop - rows.start, n_cols)
            engine = (_Fast if fast else _Exact)(prods, cfg, rows, block)
            acc = _reduce(engine, engine.load(init_bits[rows].copy()), prods.length, cfg)
            out[rows] = engine.store(acc)
            if not fast:
                flags[rows] = engine.flags
    return (out, flags) if cfg.flags else out


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def gemm(
    a,
    b,
    *,
    fmt: str = "fp16",
    acc_fmt: str = "fp32",
    order: str = "sequential",
    rounding: str | int = "rne",
    init=None,
    chunk: int | None = None,
    flags: bool = False,
):
    """``out[M x N] = A[M x K] . B[K x N]`` bit for bit as the PE array computes it.

    Parameters
    ----------
    a : torch.Tensor or array_like
        ``M x K`` activations in ``fmt``: a ``torch.float16`` / ``torch.bfloat16`` tensor (matching
        ``fmt``), a NumPy ``float16`` array (``fmt="fp16"``), or raw bit patterns (``uint16`` /
        ``int16`` reinterpreted, or any integer array with values in ``[0, 0xFFFF]``).
    b : torch.Tensor or array_like
        ``K x N`` weights in ``fmt``, same forms.
    fmt : {"fp16", "bf16"}
        Format of the multiplicands.
    acc_fmt : {"fp32", "fp16", "bf16"}
        Format of the accumulator and of the result (the SAT PE accumulates in ``"fp32"``).
    order : {"sequential", "systolic", "chunked", "tree"}
        Reduction order (module docstring, ``docs/golden-gemm.md``).
    rounding : str or int
        Rounding mode of every step: ``"rne"``, ``"rtz"``, ``"rdn"``, ``"rup"``, ``"rmm"`` or the
        RISC-V ``frm`` 0-4.
    init : torch.Tensor or array_like, optional
        Initial accumulator value in ``acc_fmt`` (a ``C`` for ``C + A . B``, or a partial sum from an
        earlier pass), broadcast to ``M x N``: a tensor / array of ``acc_fmt``'s dtype or bit
        patterns. Default: ``+0`` everywhere.
    chunk : int, optional
        PE rows, i.e. products per tile: required by ``"systolic"`` and ``"chunked"``, optional for
        ``"tree"`` (default: one tree over all ``K``), not allowed for ``"sequential"``.
    flags : bool
        Also return the RISC-V ``fflags`` of each output, the OR over all of its rounding steps
        (always computed with the exact oracle, so slower).

    Returns
    -------
    numpy.ndarray
        ``M x N`` bit patterns of the result in ``acc_fmt``: ``uint32`` for FP32 (``.view(np.float32)``
        gives the values), ``uint16`` for FP16 / BF16. Every NaN is the canonical NaN.
    numpy.ndarray of uint8
        Only with ``flags=True``: ``(bits, flags)``.

    Raises
    ------
    trainforge.errors.UsageError
        An unknown format, order or rounding mode, a bad ``chunk``, operands that are not 2-d
        matrices of ``fmt`` with matching inner dimensions, or an ``init`` that does not broadcast.
    """
    cfg = _config(fmt, acc_fmt, order, rounding, chunk, flags)
    a_bits, b_bits = _matrix(a, cfg.fmt, "a"), _matrix(b, cfg.fmt, "b")
    if a_bits.shape[1] != b_bits.shape[0]:
        raise UsageError(
            f"a is {a_bits.shape[0]} x {a_bits.shape[1]} and b is {b_bits.shape[0]} x {b_bits.shape[1]}: "
            f"a's columns must equal b's rows (out = a . b)"
        )
    prods = _Products(a_bits, b_bits, None, cfg.fmt)
    return _run(prods, cfg, init, (a_bits.shape[0], b_bits.shape[1]))


def sparse_gemm(
    a,
    values,
    indices,
    *,
    n: int,
    m: int,
    fmt: str = "fp16",
    acc_fmt: str = "fp32",
    order: str = "sequential",
    rounding: str | int = "rne",
    init=None,
    chunk: int | None = None,
    flags: bool = False,
):
    """``A . B`` with ``B`` N:M compressed along ``K``, bit for bit as the sparse PE computes it.

    Row ``t`` of ``values`` / ``indices`` is the ``t``-th kept weight of each column of ``B``: it
    belongs to group ``g = t // n`` and sits at ``k = g * m + indices[t, j]``. The PE multiplies it
    by ``a[i, k]`` and accumulates the kept products in the order ``t = 0, 1, ...`` (ascending index
    within a group, groups in ``K`` order) with the chosen ``order``; pruned positions contribute
    nothing. ``chunk`` counts kept products (PE rows of the array).

    Parameters
    ----------
    a : torch.Tensor or array_like
        ``M x K`` activations in ``fmt`` (forms as in :func:`gemm`).
    values : torch.Tensor or array_like
        ``(K / m * n) x N`` kept weights in ``fmt``, as ``nm_compress(b, n, m, dim=0)`` returns them
        for a ``K x N`` weight ``b`` (for a layer weight ``W`` of shape ``N x K`` compressed along
        its dim 1, pass ``values.T`` and ``indices.T``).
    indices : torch.Tensor or array_like
        Integers of the same shape: position of each kept weight in its group, in ``[0, m)``,
        strictly ascending within every group.
    n, m : int
        The pattern: ``n`` kept of every ``m``, ``1 <= n < m``.
    fmt, acc_fmt, order, rounding, init, chunk, flags
        As in :func:`gemm`.

    Returns
    -------
    numpy.ndarray
        As :func:`gemm`.

    Raises
    ------
    trainforge.errors.UsageError
        As :func:`gemm`, and for a bad ``n``/``m``, shapes that do not match the pattern, or indices
        out of range or not ascending within a group.
    """
    cfg = _config(fmt, acc_fmt, order, rounding, chunk, flags)
    for name, value in (("n", n), ("m", m)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise UsageError(f"{name} must be an integer, not {value!r}")
    if not 1 <= n < m:
        raise UsageError(f"N:M needs 1 <= n < m, not n={n}, m={m}")
    n, m = int(n), int(m)
    a_bits, v_bits = _matrix(a, cfg.fmt, "a"), _matrix(values, cfg.fmt, "values")
    if isinstance(indices, torch.Tensor):
        indices = indices.detach().cpu().numpy()
    idx = np.asarray(indices)
    if idx.dtype.kind not in "iu":
        raise UsageError(f"indices must be an integer array, not dtype {idx.dtype}")
    if idx.shape != v_bits.shape:
        raise UsageError(f"values {tuple(v_bits.shape)} and indices {tuple(idx.shape)} must have the same shape")
    rows, k = v_bits.shape[0], a_bits.shape[1]
    if rows % n:
        raise UsageError(f"values has {rows} rows, which is not a multiple of n={n} (n kept weights per group)")
    if rows // n * m != k:
        raise UsageError(
            f"values has {rows} rows = {rows // n} groups of {n}:{m}, covering K = {rows // n * m}, "
            f"but a has K = {k} columns"
        )
    idx = idx.astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= m):
        raise UsageError(f"indices must lie in [0, {m}), found [{int(idx.min())}, {int(idx.max())}]")
    groups = idx.reshape(rows // n, n, idx.shape[1])
    if n > 1 and idx.size and not (np.diff(groups, axis=1) > 0).all():
        g, _, j = (int(i[0]) for i in np.nonzero(np.diff(groups, axis=1) <= 0))
        raise UsageError(
            f"indices of group {g} in column {j} are {groups[g, :, j].tolist()}: they must be strictly "
            "ascending within a group (as nm_compress stores them)"
        )
    cols = (np.arange(rows, dtype=np.int64) // n * m)[:, None] + idx
    prods = _Products(a_bits, v_bits, cols, cfg.fmt)
    return _run(prods, cfg, init, (a_bits.shape[0], v_bits.shape[1]))


def reference_gemm(a, b, *, fmt: str = "fp16") -> np.ndarray:
    """The plain PyTorch float32 matmul of the same operands, for tolerance checks.

    The operands are widened exactly to float32 and multiplied with ``torch.matmul``, whose
    summation order and fused operations are the BLAS library's, not the PE's: it agrees with
    :func:`gemm` only to within rounding error.

    Parameters
    ----------
    a, b : torch.Tensor or array_like
        ``M x K`` and ``K x N`` operands in ``fmt`` (forms as in :func:`gemm`).
    fmt : {"fp16", "bf16"}

    Returns
    -------
    numpy.ndarray of float32
        ``M x N`` values (not bit patterns).
    """
    fmt = _choice(fmt, OPERAND_FORMATS, "fmt")
    a_bits, b_bits = _matrix(a, fmt, "a"), _matrix(b, fmt, "b")
    if a_bits.shape[1] != b_bits.shape[0]:
        raise UsageError(
            f"a is {a_bits.shape[0]} x {a_bits.shape[1]} and b is {b_bits.shape[0]} x {b_bits.shape[1]}: "
            f"a's columns must equal b's rows (out = a . b)"
        )
    at, bt = torch.from_numpy(_widen(a_bits, fmt)), torch.from_numpy(_widen(b_bits, fmt))
    return torch.matmul(at, bt).numpy()
