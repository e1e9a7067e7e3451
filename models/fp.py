"""Exact floating-point golden model (oracle) of the RISC-V FP units: results and fflags, bit for bit.

Every operand and result is a NumPy array of bit patterns (any integer dtype on input, ``uint64``
on output); formats are named as in :data:`trainforge.hw.fp.formats.FORMATS` (``"fp16"``,
``"bf16"``, ``"fp32"``, ``"fp8e5m2"``). Each operation returns ``(result, flags)`` where ``flags``
is a ``uint8`` array of RISC-V ``fflags`` bits (:data:`FLAG_NX` ... :data:`FLAG_NV`).

Semantics (RISC-V F extension 2.2, IEEE 754-2008):

* five rounding modes, :data:`ROUNDING_MODES`, in RISC-V ``frm`` order (an ``int`` 0-4 is accepted
  as well as the name);
* full subnormal support (unless ``ftz=True``, see below);
* every NaN result is the canonical NaN of the format (``0x7E00``, ``0x7FC0``, ``0x7FC00000``),
  whatever the NaN operands were;
* NV for a signalling NaN operand, for ``inf * 0`` in a multiplication or FMA (even when the addend is
  a quiet NaN) and for the effective subtraction of two infinities (including an infinite product
  against an infinite addend of the opposite sign);
* OF is always accompanied by NX; the overflowed result is infinity or the largest finite value,
  as the rounding mode dictates;
* tininess is detected **after** rounding (as RISC-V and TestFloat ``-tininessafter``): a result is
  tiny when, rounded to the format's precision with an unbounded exponent range, its magnitude is
  below the smallest normal number; UF is raised only when the result is tiny *and* inexact;
* an exact zero sum ``x + y`` (with ``x``, ``y`` the product and the addend of an FMA) is ``+0``
  when its terms have opposite signs or cancel, ``-0`` in ``rdn``; two zeros of the same sign give
  that sign. ``fnmadd``/``fnmsub``/``fmsub`` negate the product and/or addend *before* that rule
  applies, as Berkeley SoftFloat does.

How it is exact and fast (Boldo & Melquiond, IEEE TC 2008, "Emulation of FMA and correctly rounded
sums: proved algorithms using rounding to odd"): products of two operands of at most 24 bits of
precision are exact in float64; the exact sum of two float64 values is ``s + e`` (TwoSum);
rounding it to odd in float64 and then once to the target precision ``p`` (``53 >= p + 2``) gives
the correctly rounded result, in every rounding mode and for subnormal results too. The last
rounding, the flags and the special cases are integer operations on the float64 bit patterns,
vectorised with NumPy. See ``docs/fp-oracle.md``.

``ftz=True`` (arithmetic ops and :func:`convert`; not RISC-V, offered for non-IEEE units):
subnormal *operands* are read as zeros of the same sign before anything else (so
``inf * subnormal`` is invalid and a subnormal never raises a flag by itself); a *result* that
after normal rounding is subnormal (exponent field 0, mantissa non-zero) is replaced by the zero of
the same sign and raises UF and NX. A result that rounds up to the smallest normal number is kept.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import cache

import numpy as np

from trainforge.errors import UsageError
from trainforge.hw.fp.formats import FORMATS, FloatFormat

__all__ = [
    "FLAG_DZ",
    "FLAG_NV",
    "FLAG_NX",
    "FLAG_OF",
    "FLAG_UF",
    "FMA_OPS",
    "GENERATOR_OPS",
    "ROUNDING_MODES",
    "add",
    "canonical_nan",
    "classify",
    "compare",
    "convert",
    "corner_values",
    "corner_vectors",
    "flag_names",
    "fma",
    "from_float",
    "min_max",
    "mul",
    "random_operands",
    "random_vectors",
    "to_float",
]

ROUNDING_MODES = ("rne", "rtz", "rdn", "rup", "rmm")
"""Rounding mode names in RISC-V ``frm`` order: the index of a name is its ``frm`` encoding."""

FMA_OPS = ("fmadd", "fmsub", "fnmsub", "fnmadd")
"""``a*b+c``, ``a*b-c``, ``-(a*b)+c``, ``-(a*b)-c``."""

FLAG_NX = 1
"""Inexact."""
FLAG_UF = 2
"""Underflow (tiny after rounding and inexact)."""
FLAG_OF = 4
"""Overflow (always with NX)."""
FLAG_DZ = 8
"""Divide by zero (TestFloat's "infinite"); never raised by the operations modelled here."""
FLAG_NV = 16
"""Invalid operation."""

_FLAG_ORDER = ((FLAG_NV, "NV"), (FLAG_DZ, "DZ"), (FLAG_OF, "OF"), (FLAG_UF, "UF"), (FLAG_NX, "NX"))

GENERATOR_OPS = {"fma": 3, "add": 2, "mul": 2, "convert": 1, "min_max": 2, "compare": 2, "classify": 1}
"""Operation families of :func:`corner_vectors` / :func:`random_operands` and their operand counts."""

_MIN_MAX_OPS = ("min", "max")
_COMPARE_OPS = ("eq", "lt", "le")
_CHUNK = 1 << 15  # elements per block: keeps the ~40 temporaries of the FMA kernel in L2 cache
_F64_FRAC = (1 << 52) - 1
_F64_MAG = (1 << 63) - 1
_F64_NEG_ZERO = np.int64(-(1 << 63))


# --------------------------------------------------------------------------------------------
# formats, argument checking
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class _Spec:
    """Derived constants and decode tables of one format."""

    fmt: FloatFormat

    def __post_init__(self) -> None:
        f = self.fmt
        m, e = f.man_bits, f.exp_bits
        s = object.__setattr__
        s(self, "m", m)
        s(self, "p", m + 1)
        s(self, "bias", f.bias)
        s(self, "emin", 1 - f.bias)
        s(self, "emax", f.bias)
        s(self, "width", f.width)
        s(self, "sign_bit", 1 << (f.width - 1))
        s(self, "man_mask", (1 << m) - 1)
        s(self, "exp_max", (1 << e) - 1)
        s(self, "inf", ((1 << e) - 1) << m)
        s(self, "quiet_bit", 1 << (m - 1))
        s(self, "cnan", (((1 << e) - 1) << m) | (1 << (m - 1)))
        s(self, "min_normal", 1 << m)
        # Decode tables indexed by the sign and exponent fields (bits >> m): the hidden bit, and the
        # signed weight of one mantissa unit. Infinity and NaN decode to +-0 (handled by masks).
        top = np.arange(1 << (e + 1), dtype=np.int64)
        field, neg = top & ((1 << e) - 1), top >> e
        hidden = np.where(field == 0, 0, 1 << m).astype(np.int64)
        weight = np.ldexp(1.0, (np.maximum(field, 1) - f.bias - m).astype(np.int32))
        weight = np.where(field == (1 << e) - 1, 0.0, weight)
        weight = np.where(neg == 1, -weight, weight)
        s(self, "hidden", hidden)
        s(self, "weight", weight)
        s(self, "weight_ftz", np.where(field == 0, np.where(neg == 1, -0.0, 0.0), weight))

    @property
    def name(self) -> str:
        return self.fmt.name


@cache
def _spec(name: str) -> _Spec:
    fmt = FORMATS[name]
    if fmt.man_bits > 23 or fmt.exp_bits > 8 or fmt.man_bits < 1:
        raise UsageError(
            f"format {name!r} ({fmt.exp_bits} exponent, {fmt.man_bits} mantissa bits) is outside what the "
            "float64-based oracle handles exactly: 1-23 mantissa bits and at most 8 exponent bits"
        )
    return _Spec(fmt)


def _format(name: object, arg: str) -> _Spec:
    if not isinstance(name, str) or name not in FORMATS:
        valid = ", ".join(repr(n) for n in FORMATS)
        raise UsageError(f"{arg} must be one of {valid}, not {name!r}")
    return _spec(name)


def _rounding(rounding: object) -> str:
    if isinstance(rounding, str) and rounding in ROUNDING_MODES:
        return rounding
    if isinstance(rounding, int | np.integer) and not isinstance(rounding, bool) and 0 <= rounding < 5:
        return ROUNDING_MODES[int(rounding)]
    valid = ", ".join(repr(r) for r in ROUNDING_MODES)
    raise UsageError(f"rounding must be one of {valid} (or the RISC-V frm 0-4), not {rounding!r}")


def _choice(value: object, valid: tuple[str, ...], arg: str) -> str:
    if isinstance(value, str) and value in valid:
        return value
    raise UsageError(f"{arg} must be one of {', '.join(repr(v) for v in valid)}, not {value!r}")


def _bits(x: object, spec: _Spec, arg: str) -> np.ndarray:
    """Operand ``x`` as an int64 array of ``spec`` bit patterns, checked."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "iu":
        raise UsageError(
            f"{arg} must hold {spec.name} bit patterns in an integer array, not dtype {arr.dtype} "
            "(use from_float() to encode float values)"
        )
    if arr.size:
        bad = arr >= (1 << spec.width)
        if arr.dtype.kind == "i":
            bad |= arr < 0
        if bad.any():
            idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), arr.shape))
            value = int(arr[idx])
            raise UsageError(
                f"{arg}[{', '.join(map(str, idx))}] is {value:#x}, "
                f"which is not a {spec.width}-bit {spec.name} bit pattern "
                f"(valid: 0 to {(1 << spec.width) - 1:#x})"
            )
    return arr.astype(np.int64, copy=False)


def _run(kernel: Callable[..., tuple[np.ndarray, np.ndarray]], operands: list[np.ndarray]):
    """Broadcast the operands, run ``kernel`` on cache-sized blocks, return (uint64, uint8) arrays."""
    operands = np.broadcast_arrays(*operands)
    shape = operands[0].shape
    flat = [np.ascontiguousarray(x).reshape(-1) for x in operands]
    n = flat[0].size
    result = np.empty(n, dtype=np.uint64)
    flags = np.empty(n, dtype=np.uint8)
    for lo in range(0, n, _CHUNK):
        hi = min(n, lo + _CHUNK)
        r, f = kernel(*(x[lo:hi] for x in flat))
        result[lo:hi] = r
        flags[lo:hi] = f
    return result.reshape(shape), flags.reshape(shape)


# --------------------------------------------------------------------------------------------
# the exact core: decode, round-to-odd sum, final rounding
# --------------------------------------------------------------------------------------------


def _decode(x: np.ndarray, spec: _Spec, ftz: bool) -> np.ndarray:
    """Exact float64 value of every pattern; infinities and NaNs decode to +-0."""
    top = x >> spec.m
    sig = (x & spec.man_mask) | spec.hidden[top]
    return sig.astype(np.float64) * (spec.weight_ftz if ftz else spec.weight)[top]


@dataclasses.dataclass
class _Class:
    """Per-element classification masks of one operand."""

    sign: np.ndarray
    nan: np.ndarray
    snan: np.ndarray
    inf: np.ndarray
    zero: np.ndarray


def _classes(x: np.ndarray, spec: _Spec, ftz: bool = False) -> _Class:
    mag = x & (spec.sign_bit - 1)
    nan = mag > spec.inf
    return _Class(
        sign=x >= spec.sign_bit,
        nan=nan,
        snan=nan & ((x & spec.quiet_bit) == 0),
        inf=mag == spec.inf,
        zero=(mag < spec.min_normal) if ftz else (mag == 0),
    )


def _increment(mode: str, q: np.ndarray, rem: np.ndarray, half: np.ndarray | int, neg: np.ndarray):
    """Whether to add one unit to the truncated magnitude ``q`` given the discarded ``rem``."""
    if mode == "rne":
        return (rem > half) | ((rem == half) & ((q & 1) == 1))
    if mode == "rtz":
        return np.zeros(q.shape, dtype=bool)
    if mode == "rdn":
        return (rem != 0) & neg
    if mode == "rup":
        return (rem != 0) & ~neg
    return rem >= half  # rmm


def _round(sb: np.ndarray, spec: _Spec, mode: str, ftz: bool) -> tuple[np.ndarray, np.ndarray]:
    """Round float64 values (given as int64 bit patterns, finite) once to ``spec``: (bits, flags).

    The float64 value must be the exact result or its round-to-odd image with at least two more
    bits than ``spec``'s precision: then the bits discarded here are non-zero exactly when the
    operation is inexact, and rounding them gives the correctly rounded result.
    """
    p, m = spec.p, spec.m
    neg = sb < 0
    mag = sb & _F64_MAG
    e64 = mag >> 52
    man = (mag & _F64_FRAC) | ((e64 != 0).astype(np.int64) << 52)
    k = np.maximum(e64, 1) - 1023  # value = man * 2^(k - 52)
    kk = np.maximum(k, spec.emin)  # exponent of the result's binade (emin for subnormals)
    # Bits to discard: 53 - p for a normal result, more for a subnormal one. Beyond 55 every bit of
    # `man` lies below a quarter of the result's unit: capping at 60 keeps the shift in range and
    # the rounding decision (round bit 0, sticky 1) unchanged.
    shift = np.minimum(kk - k + (53 - p), 60)
    one = np.left_shift(np.int64(1), shift)
    q = man >> shift
    rem = man & (one - 1)
    inc = _increment(mode, q, rem, one >> 1, neg)
    # Result bits without the sign: the exponent field of the binade, plus the rounded significand
    # (its hidden bit carries into the exponent field, as does a carry out of rounding).
    out = ((kk + (spec.bias - 1)) << m) + q + inc
    inexact = rem != 0
    overflow = out >= spec.inf
    # Tininess after rounding: below the smallest normal unless the value lies in the binade just
    # below it and rounds up to it at full precision p with an unbounded exponent range.
    tiny = k < spec.emin
    near = k == spec.emin - 1
    if near.any():
        sh = 53 - p
        q2 = man >> sh
        inc2 = _increment(mode, q2, man & ((1 << sh) - 1), 1 << (sh - 1), neg)
        tiny &= ~(near & (((q2 + inc2) >> p) != 0))
    underflow = tiny & inexact
    if overflow.any():
        big = {"rne": spec.inf, "rmm": spec.inf, "rtz": spec.inf - 1}.get(mode)
        if big is None:  # directed: infinity towards the rounding direction, else the largest finite
            big = np.where(neg == (mode == "rdn"), spec.inf, spec.inf - 1)
        out = np.where(overflow, big, out)
    flags = inexact.astype(np.uint8) | (overflow.astype(np.uint8) * (FLAG_OF | FLAG_NX))
    flags |= underflow.astype(np.uint8) * FLAG_UF
    if ftz:
        flushed = (out < spec.min_normal) & (out != 0)
        out = np.where(flushed, 0, out)
        flags |= flushed.astype(np.uint8) * (FLAG_UF | FLAG_NX)
    return out | (neg.astype(np.int64) << (spec.width - 1)), flags


def _round_sum(x: np.ndarray, y: np.ndarray, spec: _Spec, mode: str, ftz: bool):
    """Correctly round the exact sum of two float64 values to ``spec``: (bits, flags)."""
    s = x + y
    # TwoSum (Knuth): s + err == x + y exactly, whatever the magnitudes.
    yy = s - x
    err = (x - (s - yy)) + (y - yy)
    sb = s.view(np.int64)
    # Round to odd: an inexact s with an even last bit moves one unit towards err; the two float64
    # neighbours bracketing x + y are s and that neighbour, and exactly one of them is odd.
    fix = (err != 0) & ((sb & 1) == 0)
    if fix.any():
        toward_zero = np.signbit(err) != np.signbit(s)
        sb = sb + fix * (1 - 2 * toward_zero.astype(np.int64))
    if mode == "rdn":
        # float64 addition rounds to nearest: an exact zero is +0 unless both terms are -0; in rdn
        # it must be -0 unless both terms are +0.
        neg_zero = (s == 0) & (np.signbit(x) | np.signbit(y) | (y != 0))
        if neg_zero.any():
            sb = np.where(neg_zero, _F64_NEG_ZERO, sb)
    return _round(sb, spec, mode, ftz)


def _finish(out, flags, spec: _Spec, nan_out, invalid, inf_out, inf_neg):
    """Overwrite special lanes: canonical NaN (NV when invalid) and exact infinities (no flag)."""
    if inf_out.any():
        out = np.where(inf_out, spec.inf | (inf_neg.astype(np.int64) << (spec.width - 1)), out)
        flags = np.where(inf_out, np.uint8(0), flags)
    if nan_out.any():
        out = np.where(nan_out, spec.cnan, out)
        flags = np.where(nan_out, invalid.astype(np.uint8) * np.uint8(FLAG_NV), flags)
    return out, flags


# --------------------------------------------------------------------------------------------
# arithmetic operations
# --------------------------------------------------------------------------------------------


def fma(a, b, c, *, fmt: str, rounding: str | int, op: str = "fmadd", src_fmt: str | None = None, ftz: bool = False):
    """Fused multiply-add with one rounding: ``a*b+c`` and its negated variants.

    Parameters
    ----------
    a, b : array_like of int
        Bit patterns of the factors, in ``src_fmt`` (or ``fmt`` when ``src_fmt`` is None).
    c : array_like of int
        Bit patterns of the addend, in ``fmt``. ``a``, ``b``, ``c`` are broadcast together.
    fmt : str
        Format of the addend and of the result.
    rounding : str or int
        One of :data:`ROUNDING_MODES` or the RISC-V ``frm`` encoding 0-4.
    op : {"fmadd", "fmsub", "fnmsub", "fnmadd"}
        ``a*b+c``, ``a*b-c``, ``-(a*b)+c``, ``-(a*b)-c`` (RISC-V ``FMADD``, ``FMSUB``, ``FNMSUB``,
        ``FNMADD``); the negations are exact and precede the addition.
    src_fmt : str, optional
        Format of the factors for a mixed-format FMA (FPnew's multi-format FMA, e.g. fp16 factors
        accumulated in fp32): the product is exact and the only rounding is into ``fmt``.
    ftz : bool
        Flush subnormal operands and results to zero (not RISC-V; see the module docstring).

    Returns
    -------
    result : numpy.ndarray of uint64
        Bit patterns of the correctly rounded results in ``fmt``.
    flags : numpy.ndarray of uint8
        RISC-V fflags of each element (NX, UF, OF, NV).

    Raises
    ------
    trainforge.errors.UsageError
        An unknown format, rounding mode or op, or an operand that is not a bit pattern of its format.
    """
    spec = _format(fmt, "fmt")
    sspec = spec if src_fmt is None else _format(src_fmt, "src_fmt")
    mode = _rounding(rounding)
    op = _choice(op, FMA_OPS, "op")
    neg_p = op in ("fnmsub", "fnmadd")
    neg_c = op in ("fmsub", "fnmadd")
    ops = [_bits(a, sspec, "a"), _bits(b, sspec, "b"), _bits(c, spec, "c")]

    def kernel(a, b, c):
        prod = _decode(a, sspec, ftz) * _decode(b, sspec, ftz)  # exact: at most 48 significant bits
        vc = _decode(c, spec, ftz)
        out, flags = _round_sum(-prod if neg_p else prod, -vc if neg_c else vc, spec, mode, ftz)
        special = ((a & sspec.inf) == sspec.inf) | ((b & sspec.inf) == sspec.inf) | ((c & spec.inf) == spec.inf)
        if not special.any():
            return out, flags
        ca, cb, cc = _classes(a, sspec, ftz), _classes(b, sspec, ftz), _classes(c, spec, ftz)
        inf_times_zero = (ca.inf & cb.zero) | (ca.zero & cb.inf)
        prod_inf = (ca.inf & ~cb.nan & ~cb.zero) | (cb.inf & ~ca.nan & ~ca.zero)
        prod_neg = ca.sign ^ cb.sign ^ neg_p
        c_neg = cc.sign ^ neg_c
        invalid = ca.snan | cb.snan | cc.snan | inf_times_zero | (prod_inf & cc.inf & (prod_neg != c_neg))
        nan_out = ca.nan | cb.nan | cc.nan | invalid
        inf_out = (prod_inf | cc.inf) & ~nan_out
        return _finish(out, flags, spec, nan_out, invalid, inf_out, np.where(prod_inf, prod_neg, c_neg))

    return _run(kernel, ops)


def add(a, b, *, fmt: str, rounding: str | int, subtract: bool = False, ftz: bool = False):
    """Correctly rounded ``a + b`` (or ``a - b`` with ``subtract=True``).

    Parameters
    ----------
    a, b : array_like of int
        Bit patterns in ``fmt``, broadcast together.
    fmt : str
        Format of the operands and the result.
    rounding : str or int
        One of :data:`ROUNDING_MODES` or the RISC-V ``frm`` encoding 0-4.
    subtract : bool
        Compute ``a - b`` (``b``'s sign is flipped exactly before the addition).
    ftz : bool
        Flush subnormal operands and results to zero (not RISC-V; see the module docstring).

    Returns
    -------
    result : numpy.ndarray of uint64
    flags : numpy.ndarray of uint8
    """
    spec = _format(fmt, "fmt")
    mode = _rounding(rounding)
    ops = [_bits(a, spec, "a"), _bits(b, spec, "b")]

    def kernel(a, b):
        va, vb = _decode(a, spec, ftz), _decode(b, spec, ftz)
        out, flags = _round_sum(va, -vb if subtract else vb, spec, mode, ftz)
        special = ((a & spec.inf) == spec.inf) | ((b & spec.inf) == spec.inf)
        if not special.any():
            return out, flags
        ca, cb = _classes(a, spec), _classes(b, spec)
        b_neg = cb.sign ^ subtract
        invalid = ca.snan | cb.snan | (ca.inf & cb.inf & (ca.sign != b_neg))
        nan_out = ca.nan | cb.nan | invalid
        inf_out = (ca.inf | cb.inf) & ~nan_out
        return _finish(out, flags, spec, nan_out, invalid, inf_out, np.where(ca.inf, ca.sign, b_neg))

    return _run(kernel, ops)


def mul(a, b, *, fmt: str, rounding: str | int, ftz: bool = False):
    """Correctly rounded ``a * b``.

    Parameters
    ----------
    a, b : array_like of int
        Bit patterns in ``fmt``, broadcast together.
    fmt : str
        Format of the operands and the result.
    rounding : str or int
        One of :data:`ROUNDING_MODES` or the RISC-V ``frm`` encoding 0-4.
    ftz : bool
        Flush subnormal operands and results to zero (not RISC-V; see the module docstring).

    Returns
    -------
    result : numpy.ndarray of uint64
    flags : numpy.ndarray of uint8
    """
    spec = _format(fmt, "fmt")
    mode = _rounding(rounding)
    ops = [_bits(a, spec, "a"), _bits(b, spec, "b")]

    def kernel(a, b):
        prod = _decode(a, spec, ftz) * _decode(b, spec, ftz)  # exact, sign of zero included
        out, flags = _round(prod.view(np.int64), spec, mode, ftz)
        special = ((a & spec.inf) == spec.inf) | ((b & spec.inf) == spec.inf)
        if not special.any():
            return out, flags
        ca, cb = _classes(a, spec, ftz), _classes(b, spec, ftz)
        invalid = ca.snan | cb.snan | (ca.inf & cb.zero) | (ca.zero & cb.inf)
        nan_out = ca.nan | cb.nan | invalid
        inf_out = (ca.inf | cb.inf) & ~nan_out
        return _finish(out, flags, spec, nan_out, invalid, inf_out, ca.sign ^ cb.sign)

    return _run(kernel, ops)


def convert(a, *, src_fmt: str, dst_fmt: str, rounding: str | int, ftz: bool = False):
    """Convert between two floating-point formats, correctly rounded.

    Parameters
    ----------
    a : array_like of int
        Bit patterns in ``src_fmt``.
    src_fmt, dst_fmt : str
        Source and destination formats (any pair, including the same format, which only
        canonicalises NaNs).
    rounding : str or int
        One of :data:`ROUNDING_MODES` or the RISC-V ``frm`` encoding 0-4.
    ftz : bool
        Flush subnormal operands and results to zero (not RISC-V; see the module docstring).

    Returns
    -------
    result : numpy.ndarray of uint64
        Bit patterns in ``dst_fmt``; a NaN becomes the canonical NaN (NV if it was signalling).
    flags : numpy.ndarray of uint8
    """
    src = _format(src_fmt, "src_fmt")
    dst = _format(dst_fmt, "dst_fmt")
    mode = _rounding(rounding)
    ops = [_bits(a, src, "a")]

    def kernel(a):
        out, flags = _round(_decode(a, src, ftz).view(np.int64), dst, mode, ftz)
        ca = _classes(a, src)
        return _finish(out, flags, dst, ca.nan, ca.snan, ca.inf, ca.sign)

    return _run(kernel, ops)


# --------------------------------------------------------------------------------------------
# non-arithmetic operations
# --------------------------------------------------------------------------------------------


def min_max(a, b, *, fmt: str, op: str):
    """RISC-V ``FMIN``/``FMAX`` (F extension 2.2, IEEE 754-2019 minimumNumber/maximumNumber).

    ``-0`` is less than ``+0``; when one operand is NaN the result is the other operand (its bits
    unchanged); when both are NaN the result is the canonical NaN; NV is raised iff an operand is a
    signalling NaN.

    Parameters
    ----------
    a, b : array_like of int
        Bit patterns in ``fmt``, broadcast together.
    fmt : str
        Format of the operands.
    op : {"min", "max"}

    Returns
    -------
    result : numpy.ndarray of uint64
    flags : numpy.ndarray of uint8
    """
    spec = _format(fmt, "fmt")
    op = _choice(op, _MIN_MAX_OPS, "op")
    ops = [_bits(a, spec, "a"), _bits(b, spec, "b")]

    def kernel(a, b):
        ca, cb = _classes(a, spec), _classes(b, spec)
        ka, kb = _order_key(a, spec, zeros_equal=False), _order_key(b, spec, zeros_equal=False)
        out = np.where((ka < kb) if op == "min" else (ka > kb), a, b)
        out = np.where(ca.nan, b, out)
        out = np.where(cb.nan, a, out)
        out = np.where(ca.nan & cb.nan, spec.cnan, out)
        return out, (ca.snan | cb.snan).astype(np.uint8) * np.uint8(FLAG_NV)

    return _run(kernel, ops)


def compare(a, b, *, fmt: str, op: str):
    """RISC-V ``FEQ`` / ``FLT`` / ``FLE``: 1 when the relation holds, else 0.

    ``eq`` is a quiet comparison (NV only for a signalling NaN operand); ``lt`` and ``le`` are
    signalling (NV for any NaN operand). Any comparison with a NaN is false; ``-0 == +0``.

    Parameters
    ----------
    a, b : array_like of int
        Bit patterns in ``fmt``, broadcast together.
    fmt : str
        Format of the operands.
    op : {"eq", "lt", "le"}

    Returns
    -------
    result : numpy.ndarray of uint64
        0 or 1.
    flags : numpy.ndarray of uint8
    """
    spec = _format(fmt, "fmt")
    op = _choice(op, _COMPARE_OPS, "op")
    ops = [_bits(a, spec, "a"), _bits(b, spec, "b")]

    def kernel(a, b):
        ca, cb = _classes(a, spec), _classes(b, spec)
        ka, kb = _order_key(a, spec, zeros_equal=True), _order_key(b, spec, zeros_equal=True)
        holds = {"eq": ka == kb, "lt": ka < kb, "le": ka <= kb}[op]
        any_nan = ca.nan | cb.nan
        invalid = (ca.snan | cb.snan) if op == "eq" else any_nan
        return (holds & ~any_nan).astype(np.int64), invalid.astype(np.uint8) * np.uint8(FLAG_NV)

    return _run(kernel, ops)


def _order_key(x: np.ndarray, spec: _Spec, *, zeros_equal: bool) -> np.ndarray:
    """An int64 key whose order is the numeric order of non-NaN values (-0 below +0 unless equal)."""
    mag = x & (spec.sign_bit - 1)
    return np.where(x >= spec.sign_bit, -mag - (0 if zeros_equal else 1), mag)


def classify(a, *, fmt: str) -> np.ndarray:
    """RISC-V ``FCLASS``: a 10-bit one-hot mask per element.

    Bit 0 -inf, 1 negative normal, 2 negative subnormal, 3 -0, 4 +0, 5 positive subnormal,
    6 positive normal, 7 +inf, 8 signalling NaN, 9 quiet NaN.

    Parameters
    ----------
    a : array_like of int
        Bit patterns in ``fmt``.
    fmt : str

    Returns
    -------
    numpy.ndarray of uint64
    """
    spec = _format(fmt, "fmt")
    x = _bits(a, spec, "a")
    mag = x & (spec.sign_bit - 1)
    pos = 4 + (mag != 0) + (mag >= spec.min_normal) + (mag == spec.inf)
    idx = np.where(x >= spec.sign_bit, 7 - pos, pos)
    idx = np.where(mag > spec.inf, 8 + ((x & spec.quiet_bit) != 0), idx)
    return np.left_shift(np.uint64(1), idx.astype(np.uint64))


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def canonical_nan(fmt: str) -> int:
    """The canonical NaN bit pattern of ``fmt`` (RISC-V: positive, quiet, payload zero)."""
    return _format(fmt, "fmt").cnan


def flag_names(flags: int) -> str:
    """Readable flags: ``flag_names(0x05)`` is ``"OF|NX"``; ``"-"`` for none."""
    names = [name for bit, name in _FLAG_ORDER if int(flags) & bit]
    return "|".join(names) or "-"


def to_float(bits, fmt: str) -> np.ndarray:
    """Decode bit patterns to float64 values (exact; NaNs become float64 NaN, sign kept).

    Parameters
    ----------
    bits : array_like of int
        Bit patterns in ``fmt``.
    fmt : str

    Returns
    -------
    numpy.ndarray of float64
    """
    spec = _format(fmt, "fmt")
    x = _bits(bits, spec, "bits")
    v = _decode(x, spec, False)
    mag = x & (spec.sign_bit - 1)
    v = np.where(mag == spec.inf, np.inf, v)
    v = np.where(mag > spec.inf, np.nan, v)
    return np.where(x >= spec.sign_bit, -np.abs(v), np.abs(v))


def from_float(x, fmt: str, rounding: str | int = "rne") -> np.ndarray:
    """Encode float values (float64 or narrower) in ``fmt``, correctly rounded once.

    NaN becomes the canonical NaN; values beyond the range overflow as the rounding mode says.
    Flags are not returned; use :func:`convert` for those.

    Parameters
    ----------
    x : array_like of float
    fmt : str
    rounding : str or int
        One of :data:`ROUNDING_MODES` or the RISC-V ``frm`` encoding 0-4.

    Returns
    -------
    numpy.ndarray of uint64
    """
    spec = _format(fmt, "fmt")
    mode = _rounding(rounding)
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise UsageError(f"x must hold real numbers, not dtype {arr.dtype}")
    v = arr.astype(np.float64).reshape(-1)  # a contiguous copy: widening float16/32 is exact
    out, _ = _round(np.where(np.isfinite(v), v, 0.0).view(np.int64), spec, mode, False)
    out = np.where(np.isinf(v), spec.inf | (np.signbit(v).astype(np.int64) << (spec.width - 1)), out)
    out = np.where(np.isnan(v), spec.cnan, out)
    return out.astype(np.uint64).reshape(arr.shape)


# --------------------------------------------------------------------------------------------
# stimulus: corner cases and biased random operands (shared with the RTL testbenches)
# --------------------------------------------------------------------------------------------


def corner_values(fmt: str) -> np.ndarray:
    """Distinct special and boundary bit patterns of ``fmt`` (both signs), sorted.

    Zeros, the smallest, second-smallest and largest subnormals, the smallest normal and its
    neighbour, 0.5, 1 and its neighbours, 1.5, 2, 3, the largest finite value and its neighbour,
    infinities, quiet NaNs (canonical and with a payload) and signalling NaNs (smallest and largest
    payload).

    Returns
    -------
    numpy.ndarray of uint64
    """
    spec = _format(fmt, "fmt")
    one = spec.bias << spec.m
    mags = [
        0,
        1,
        2,
        spec.man_mask >> 1,
        spec.man_mask,
        spec.min_normal,
        spec.min_normal + 1,
        one - (1 << spec.m),  # 0.5
        one - 1,
        one,
        one + 1,
        one | spec.quiet_bit,  # 1.5
        one + (1 << spec.m),  # 2
        one + (1 << spec.m) + spec.quiet_bit,  # 3
        spec.inf - 2,
        spec.inf - 1,
        spec.inf,
        spec.cnan,
        spec.cnan | 1,
        spec.inf | 1,
        spec.inf | spec.man_mask >> 1,
    ]
    vals = np.array(mags, dtype=np.int64)
    vals = np.concatenate([vals, vals | spec.sign_bit])
    return np.unique(vals).astype(np.uint64)


def random_vectors(n: int, fmt: str, seed: int) -> np.ndarray:
    """``n`` random bit patterns of ``fmt``, biased towards the interesting parts of the format.

    A quarter are uniform bit patterns; the rest have exponents near 1.0, near the subnormal
    boundary or near overflow, mantissas that are uniform, sparse (few ones: exact ties) or dense
    (many ones: carries), random signs, and about 10 % zeros, infinities and NaNs.

    Parameters
    ----------
    n : int
        Number of patterns (>= 0).
    fmt : str
    seed : int
        Seed of :func:`numpy.random.default_rng`; the same seed gives the same patterns.

    Returns
    -------
    numpy.ndarray of uint64
    """
    spec = _format(fmt, "fmt")
    _check_count(n, "n")
    return _random_bits(np.random.default_rng(seed), n, spec).astype(np.uint64)


def _check_count(n: object, arg: str) -> None:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise UsageError(f"{arg} must be a non-negative integer, not {n!r}")


def _random_bits(rng: np.random.Generator, n: int, spec: _Spec) -> np.ndarray:
    m, emax_field = spec.m, spec.exp_max
    kind = rng.choice(5, size=n, p=[0.25, 0.35, 0.15, 0.15, 0.10])
    uniform = rng.integers(0, 1 << spec.width, size=n, dtype=np.int64)
    r1, r2, r3 = (rng.integers(0, 1 << m, size=n, dtype=np.int64) for _ in range(3))
    style = rng.integers(0, 5, size=n)
    man = np.select([style == 0, style == 1], [r1 & r2 & r3, r1 | r2 | r3], r1)
    near_one = spec.bias + rng.integers(-(spec.p + 2), spec.p + 3, size=n)
    near_bottom = rng.integers(0, min(spec.p + 2, emax_field - 1), size=n)
    near_top = emax_field - 1 - rng.integers(0, min(spec.p + 2, emax_field - 1), size=n)
    field = np.select([kind == 1, kind == 2], [near_one, near_bottom], near_top)
    field = np.clip(field, 0, emax_field - 1)
    finite = (field << m) | man
    special_kind = rng.integers(0, 4, size=n)
    nan_payload = r1 & (spec.quiet_bit - 1)
    special = np.select(
        [special_kind == 0, special_kind == 1, special_kind == 2],
        [np.zeros(n, dtype=np.int64), np.full(n, spec.inf), spec.cnan | nan_payload],
        spec.inf | np.maximum(nan_payload, 1),  # signalling
    )
    sign = rng.integers(0, 2, size=n, dtype=np.int64) << (spec.width - 1)
    return np.select([kind == 0, kind == 4], [uniform, special | sign], finite | sign)


def _exp_of(v: np.ndarray) -> np.ndarray:
    """floor(log2|v|) of non-zero finite float64 values."""
    return np.frexp(v)[1].astype(np.int64) - 1


def _near_target(rng, n: int, spec: _Spec, sspec: _Spec, targets: np.ndarray, *, with_c: bool):
    """Operands whose exact product (plus an addend) lands within a few units of ``targets``.

    ``a`` is a random significand scaled so that ``b = (t - c) / a`` is inside ``sspec``'s range;
    ``b`` is rounded both ways and moved by -2..2 units so that the exact result falls just below,
    on and just above the target. Returns (a, b, c) bit arrays; lanes that cannot be built are
    filled with random patterns.
    """
    t = rng.choice(targets, size=n) * np.where(rng.random(n) < 0.5, -1.0, 1.0)
    if with_c:
        c_kind = rng.integers(0, 4, size=n)
        c_small = np.ldexp(rng.integers(1, 1 << spec.m, size=n).astype(np.float64), spec.emin - spec.m)
        c_val = np.select([c_kind == 0, c_kind == 1], [np.zeros(n), c_small], -np.copysign(c_small, t))
        c_val = np.where(c_kind == 3, -t * 0.5, c_val)
        c = from_float(c_val, spec.name, "rtz").astype(np.int64)
        c_val = to_float(c, spec.name)
    else:
        c, c_val = np.zeros(n, dtype=np.int64), np.zeros(n)
    rest = t - c_val
    # exponent of a: a normal, and b = rest / a between the smallest subnormal and the largest binade
    er = _exp_of(np.where(rest == 0, 1.0, rest))
    lo = np.maximum(er - sspec.emax + 1, sspec.emin)
    hi = np.minimum(er - (sspec.emin - sspec.m) - 1, sspec.emax - 1)
    ea = lo + np.floor(rng.random(n) * (np.maximum(hi - lo, 0) + 1)).astype(np.int64)
    a_sig = 1.0 + rng.integers(0, 1 << sspec.m, size=n) / float(1 << sspec.m)
    a_val = np.ldexp(a_sig, ea.astype(np.int32))
    a = from_float(a_val, sspec.name, "rne").astype(np.int64)
    b_val = rest / to_float(a, sspec.name)
    b = np.where(rng.random(n) < 0.5, from_float(b_val, sspec.name, "rtz"), from_float(b_val, sspec.name, "rup"))
    b = b.astype(np.int64) + rng.integers(-2, 3, size=n)
    ok = np.isfinite(b_val) & (lo <= hi) & (b >= 0) & (b < (1 << sspec.width))
    b = np.where(ok, b, _random_bits(rng, n, sspec))
    return a, b, c


def _cancel(rng, n: int, spec: _Spec, sspec: _Spec):
    """FMA operands with ``c`` within a few units of ``-(a*b)``: massive cancellation."""
    a, b = _random_bits(rng, n, sspec), _random_bits(rng, n, sspec)
    with np.errstate(all="ignore"):
        prod = to_float(a, sspec.name) * to_float(b, sspec.name)
        c = from_float(-prod, spec.name, rng.choice(ROUNDING_MODES)).astype(np.int64)
    c = c + rng.integers(-2, 3, size=n) * (rng.random(n) < 0.7)
    ok = np.isfinite(prod) & (c >= 0) & (c < (1 << spec.width))
    return a, b, np.where(ok, c, _random_bits(rng, n, spec))


def _ties(rng, n: int, spec: _Spec, sspec: _Spec):
    """(a, b, c) with a*b a multiple (1, 3 or a near neighbour) of half an ulp of c: exact ties."""
    c = _random_bits(rng, n, spec)
    c = (c & ~(spec.exp_max << spec.m)) | (np.clip((c >> spec.m) & spec.exp_max, 1, spec.exp_max - 1) << spec.m)
    c_val = to_float(c, spec.name)
    half_ulp = np.ldexp(1.0, (_exp_of(c_val) - spec.p).astype(np.int32))
    mult = rng.choice(np.array([1.0, 3.0, -1.0, -3.0, 1.0 + 2.0**-10, 1.0 - 2.0**-10, 2.0**-5]), size=n)
    j = rng.integers(-3, 4, size=n)
    a_val = np.ldexp(1.0, j.astype(np.int32)) * np.where(rng.random(n) < 0.5, -1.0, 1.0)
    b_val = half_ulp * mult / a_val
    a = from_float(a_val, sspec.name)
    b = from_float(b_val, sspec.name)
    exact = (to_float(a, sspec.name) == a_val) & (to_float(b, sspec.name) == b_val)
    a = np.where(exact, a, from_float(np.ones(n), sspec.name))
    b = np.where(exact, b, _random_bits(rng, n, sspec))
    return a.astype(np.int64), b.astype(np.int64), c


def _specials_fma(spec: _Spec, sspec: _Spec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zero-sign, inf*0 and inf-inf combinations, every sign."""
    sz, szero, sone, sinf = sspec.sign_bit, 0, sspec.bias << sspec.m, sspec.inf
    cz, cone, cinf = spec.sign_bit, spec.bias << spec.m, spec.inf
    ab = [szero, sone, sinf, sspec.cnan, sspec.inf | 1, 1]
    cs = [0, cone, cinf, spec.cnan, spec.inf | 1, 1]
    a = np.array([x | s for x in ab for s in (0, sz)], dtype=np.int64)
    c = np.array([x | s for x in cs for s in (0, cz)], dtype=np.int64)
    grid = np.meshgrid(a, a, c, indexing="ij")
    return tuple(g.reshape(-1) for g in grid)


def _cross(*values: np.ndarray) -> tuple[np.ndarray, ...]:
    grid = np.meshgrid(*values, indexing="ij")
    return tuple(g.reshape(-1) for g in grid)


def _min_normal_targets(spec: _Spec) -> np.ndarray:
    mn = 2.0**spec.emin
    ulp = 2.0 ** (spec.emin - spec.m)
    return np.array([mn, mn - ulp / 2, mn - ulp / 4, mn - ulp, mn + ulp / 2, ulp / 2, ulp, 1.5 * ulp])


def _overflow_targets(spec: _Spec) -> np.ndarray:
    top = 2.0 ** (spec.emax + 1)
    ulp = 2.0 ** (spec.emax - spec.m)
    return np.array([top - ulp, top - ulp / 2, top - ulp / 4, top, top - 1.5 * ulp])


def corner_vectors(op: str, fmt: str, *, src_fmt: str | None = None, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Operand tuples that hit the corners of ``op``: cross products of :func:`corner_values` plus
    targeted families.

    The targeted families are exact ties, massive cancellation (``a*b ~ -c``, ``a ~ -b``), results
    within a few units of the smallest normal number (rounding up from subnormal to normal: the
    CVFPU underflow-flag bug class), results at the overflow boundary, and every sign of zero,
    infinity and NaN combination of an FMA.

    Parameters
    ----------
    op : {"fma", "add", "mul", "convert", "min_max", "compare", "classify"}
        The operation family (:data:`GENERATOR_OPS`); FMA variants and add/subtract share operands.
    fmt : str
        Format of the result (of ``c`` for ``fma``); for ``convert`` the destination format.
    src_fmt : str, optional
        Format of the factors of a mixed-format ``fma`` or of the source of ``convert``; defaults
        to ``fmt``.
    seed : int
        Seed of the random parts; the same seed gives the same vectors.

    Returns
    -------
    tuple of numpy.ndarray of uint64
        One array per operand (:data:`GENERATOR_OPS` gives how many), all the same length.
    """
    op = _choice(op, tuple(GENERATOR_OPS), "op")
    spec = _format(fmt, "fmt")
    sspec = spec if src_fmt is None else _format(src_fmt, "src_fmt")
    rng = np.random.default_rng(seed)
    cv = corner_values(spec.name).astype(np.int64)
    scv = corner_values(sspec.name).astype(np.int64)
    if op == "classify":
        parts = [(cv,), (np.arange(min(1 << spec.width, 1 << 12), dtype=np.int64) << max(0, spec.width - 12),)]
    elif op == "convert":
        parts = [(scv,), (_convert_boundaries(rng, spec, sspec),)]
    elif op in ("min_max", "compare"):
        r = _random_bits(rng, 256, spec)
        parts = [_cross(cv, cv), (r, r), (r, r ^ spec.sign_bit), (r, np.clip(r + 1, 0, (1 << spec.width) - 1))]
    elif op == "add":
        a, b, c = _ties(rng, 512, spec, spec)
        c_like = _cancel(rng, 512, spec, spec)
        a2, b2, c2 = _near_target(rng, 512, spec, spec, _min_normal_targets(spec), with_c=True)
        a3, b3, c3 = _near_target(rng, 256, spec, spec, _overflow_targets(spec), with_c=True)
        # ties: c + half-ulp multiples; cancellation: fl(a*b) + c; boundaries: c + fl(a*b)
        prod_ties = from_float(to_float(a, spec.name) * to_float(b, spec.name), spec.name).astype(np.int64)
        with np.errstate(all="ignore"):
            p1 = from_float(to_float(c_like[0], spec.name) * to_float(c_like[1], spec.name), spec.name)
            p2 = from_float(to_float(a2, spec.name) * to_float(b2, spec.name), spec.name)
            p3 = from_float(to_float(a3, spec.name) * to_float(b3, spec.name), spec.name)
        parts = [
            _cross(cv, cv),
            (c, prod_ties),
            (p1.astype(np.int64), c_like[2]),
            (p2.astype(np.int64), c2),
            (p3.astype(np.int64), c3),
        ]
    elif op == "mul":
        a2, b2, _ = _near_target(rng, 1024, spec, spec, _min_normal_targets(spec), with_c=False)
        a3, b3, _ = _near_target(rng, 512, spec, spec, _overflow_targets(spec), with_c=False)
        dense = _random_bits(rng, 512, spec)
        parts = [_cross(cv, cv), (a2, b2), (a3, b3), (dense, _random_bits(rng, 512, spec))]
    else:  # fma
        pick = np.array([0, 1, spec.man_mask, spec.min_normal, spec.bias << spec.m, spec.inf - 1, spec.inf, spec.cnan])
        spick = np.array(
            [0, 1, sspec.man_mask, sspec.min_normal, sspec.bias << sspec.m, sspec.inf - 1, sspec.inf, sspec.inf | 1]
        )
        sv = np.concatenate([spick, spick | sspec.sign_bit])
        parts = [
            _cross(sv, sv, np.concatenate([pick, pick | spec.sign_bit])),
            _cross(scv, scv, np.array([0, spec.sign_bit, spec.cnan])),
            _specials_fma(spec, sspec),
            _ties(rng, 1024, spec, sspec),
            _cancel(rng, 1024, spec, sspec),
            _near_target(rng, 1024, spec, sspec, _min_normal_targets(spec), with_c=True),
            _near_target(rng, 1024, spec, sspec, _min_normal_targets(spec), with_c=False),
            _near_target(rng, 512, spec, sspec, _overflow_targets(spec), with_c=True),
        ]
    n_ops = GENERATOR_OPS[op]
    return tuple(np.concatenate([part[i] for part in parts]).astype(np.uint64) for i in range(n_ops))


def _convert_boundaries(rng, spec: _Spec, sspec: _Spec) -> np.ndarray:
    """Source patterns next to the destination's rounding boundaries (ties, min normal, overflow)."""
    n = 1024
    d = _random_bits(rng, n, spec)
    d = np.where(((d >> spec.m) & spec.exp_max) == spec.exp_max, d & ~spec.inf, d)  # finite only
    d_val = to_float(d, spec.name)
    ulp = np.ldexp(1.0, (np.maximum(_exp_of(np.where(d_val == 0, 1.0, d_val)), spec.emin) - spec.m).astype(np.int32))
    mid = d_val + np.copysign(ulp / 2, d_val)
    specials = np.concatenate([_min_normal_targets(spec), _overflow_targets(spec), [2.0 ** (spec.emin - spec.m - 1)]])
    vals = np.concatenate([mid, specials, -specials])
    centre = np.concatenate([from_float(vals, sspec.name, mode) for mode in ("rtz", "rup")]).astype(np.int64)
    around = (centre[:, None] + np.arange(-2, 3)[None, :]).reshape(-1)
    around = around[(around >= 0) & (around < (1 << sspec.width))]
    return np.unique(around)


def random_operands(op: str, n: int, *, fmt: str, seed: int, src_fmt: str | None = None) -> tuple[np.ndarray, ...]:
    """``n`` random operand tuples for ``op``, mixing :func:`random_vectors` with the targeted families.

    For ``fma`` about 60 % are independent random operands, 15 % massive cancellation, 15 % results
    near the smallest normal number and 10 % exact ties or overflow; for ``add`` 75 % independent
    and 25 % cancellation; for ``mul`` 85 % independent and 15 % near the smallest normal or
    overflow. The other families are independent :func:`random_vectors` draws.

    Parameters
    ----------
    op : {"fma", "add", "mul", "convert", "min_max", "compare", "classify"}
    n : int
    fmt : str
        Result format (the destination of ``convert``).
    seed : int
    src_fmt : str, optional
        Format of the factors of ``fma`` or of the source of ``convert``; defaults to ``fmt``.

    Returns
    -------
    tuple of numpy.ndarray of uint64
    """
    op = _choice(op, tuple(GENERATOR_OPS), "op")
    _check_count(n, "n")
    spec = _format(fmt, "fmt")
    sspec = spec if src_fmt is None else _format(src_fmt, "src_fmt")
    rng = np.random.default_rng(seed)
    if op == "fma":
        k = [int(n * 0.15), int(n * 0.15), int(n * 0.05), int(n * 0.05)]
        parts = [
            _cancel(rng, k[0], spec, sspec),
            _near_target(rng, k[1], spec, sspec, _min_normal_targets(spec), with_c=True),
            _ties(rng, k[2], spec, sspec),
            _near_target(rng, k[3], spec, sspec, _overflow_targets(spec), with_c=True),
        ]
        rest = n - sum(k)
        parts.append((_random_bits(rng, rest, sspec), _random_bits(rng, rest, sspec), _random_bits(rng, rest, spec)))
    elif op == "add":
        k = n // 4
        a, b, c = _cancel(rng, k, spec, spec)
        with np.errstate(all="ignore"):
            prod = from_float(to_float(a, spec.name) * to_float(b, spec.name), spec.name).astype(np.int64)
        parts = [(prod, c), (_random_bits(rng, n - k, spec), _random_bits(rng, n - k, spec))]
    elif op == "mul":
        k = n // 10
        a2, b2, _ = _near_target(rng, k, spec, spec, _min_normal_targets(spec), with_c=False)
        a3, b3, _ = _near_target(rng, n // 20, spec, spec, _overflow_targets(spec), with_c=False)
        rest = n - k - n // 20
        parts = [(a2, b2), (a3, b3), (_random_bits(rng, rest, spec), _random_bits(rng, rest, spec))]
    elif op == "convert":
        parts = [(_random_bits(rng, n, sspec),)]
    else:
        parts = [tuple(_random_bits(rng, n, spec) for _ in range(GENERATOR_OPS[op]))]
    count = GENERATOR_OPS[op]
    out = tuple(np.concatenate([part[i] for part in parts]) for i in range(count))
    order = rng.permutation(n)
    return tuple(x[order].astype(np.uint64) for x in out)
