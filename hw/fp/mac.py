"""A lean, combinational multiply-accumulate for the PEs: ``RNE(a * b + c)``, FP16 x FP16 + FP32 -> FP32.

Bit-exact with ``trainforge.models.fp.fma(a, b, c, src_fmt="fp16", fmt="fp32", rounding="rne")``
(the generic :class:`~trainforge.hw.fp.fma.FMA` computes the same), but built for simulation speed
and area: no stream handshake, no flags, no rounding-mode or op inputs, and every step is a
word-level operation on at most 64 bits (one C++ operation each in Verilator's model) instead of
the generic unit's bit-level shifter stages on a 3x-wide window.

FP16 datapath
-------------
* The product ``sig_a * sig_b`` (22 bits, one multiplier) is exact and is *not* normalised: it is
  kept as a 24-bit FP32-style significand ``sig_p << 2`` with the exponent
  ``Ep = max(ea, 1) + max(eb, 1) + 98`` (FP32 bias), so that ``value = sig * 2**(Ep - 150)`` as
  for the FP32 addend. Its magnitude lies in ``[2**-48, 2**32)``.
* Swap by exponent: the operand with the larger exponent, ``X``, sits at bit 39 of a 64-bit window
  (top bit 62, bit 63 takes the carry); the other, ``Y``, is shifted right by the exponent
  difference and the bits shifted out are OR-ed into bit 0 (sticky). Bits are lost only when the
  difference exceeds 39; then ``Y`` lies below bit 23 and ``X`` at bit 41 or above, so nothing
  cancels, the sticky bit lies below every rounding position and a borrow from it changes bit 0
  alone. It still decides ties: FP32's midpoints around the product of two small subnormals lie
  as low as bit 17.
* ``X +/- Y`` in 64 bits, its magnitude (a subtraction may go negative when the exponents are close
  and the product is not normalised) and the result sign.
* Normalisation: a 6-step leading-zero shift (32, 16, 8, 4, 2, 1) whose steps form the count.
* Rounding to nearest, ties to even, on the packed ``exponent << 23 | fraction`` word: a mantissa
  carry moves into the exponent, and a packed value at or above ``0x7F800000`` is infinity.

No FP32 subnormal result can arise from a nonzero product: the product is a multiple of
``2**-48`` and an addend that can cancel it (``|c| > 2**-49``) a multiple of ``2**-72``, so a
nonzero sum is at least ``2**-72``.
A zero product returns ``c`` itself (zeros: ``-0`` only for ``-0 + -0``); exact cancellation gives
``+0``. Infinities and NaNs bypass the datapath; every NaN result is the canonical ``0x7FC00000``
(invalid: ``0 * inf``, ``inf - inf``, a signalling NaN).

Measured on Verilator 5.048 (``-O3``, g++ ``-O2``), valgrind instruction counts with the cost of
an empty model's ``eval()`` (about 230 instructions) subtracted: about 240 x86 instructions per
evaluation, against about 1,700 for the generic combinational FMA (FP16 x FP16 + FP32).

BF16
----
A BF16 product (16 significant bits, exponents from about ``2**-266`` to ``2**256``) can fall
below FP32's subnormal range or overflow it, so the datapath above would need a signed exponent,
subnormal results and a right-shifting denormalisation. ``src_fmt="bf16"`` therefore instantiates
the generic combinational :class:`~trainforge.hw.fp.fma.FMA` behind the same ports: same results,
the generic unit's speed.
"""

from __future__ import annotations

from typing import Literal

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from trainforge.errors import ConfigError
from trainforge.hw.fp.fma import FMA, FMAConfig
from trainforge.hw.fp.formats import float_format
from trainforge.hw.fp.ieee import FMAOp, RoundingMode
from trainforge.hw.fp.leaves import leaf_stub

__all__ = ["MAC_SOURCE_FORMATS", "MacUnit"]

#: Source formats :class:`MacUnit` accepts.
MAC_SOURCE_FORMATS: tuple[str, ...] = ("fp16", "bf16")

_FP32_INF = 0x7F80_0000
_FP32_NAN = 0x7FC0_0000
_FP16_INF = 0x7C00
_WINDOW = 64  #: adder window: X's significand at bits 39..62, carry at 63
_X_LSB = 39  #: window position of X's significand LSB
_GUARD = _WINDOW - 1 - 24  #: guard-bit position after normalisation (hidden bit at 63)


class MacUnit(wiring.Component):
    """Combinational ``result = RNE(a * b + c)``: exact product of two ``src_fmt`` values, FP32 addend and result.

    Parameters
    ----------
    src_fmt : {"fp16", "bf16"}
        Format of ``a`` and ``b``. FP16 uses the lean datapath of the module docstring; BF16 the
        generic combinational FMA (same results).

    Members
    -------
    a, b : In(16)
        Factors, bit patterns of ``src_fmt``.
    c : In(32)
        Addend, FP32 bit pattern.
    result : Out(32)
        ``a * b + c`` rounded once to nearest-even in FP32; NaN results are ``0x7FC00000``.

    Raises
    ------
    ConfigError
        ``src_fmt`` is not one of :data:`MAC_SOURCE_FORMATS`.
    """

    def __init__(self, *, src_fmt: Literal["fp16", "bf16"]) -> None:
        if src_fmt not in MAC_SOURCE_FORMATS:
            raise ConfigError(f"src_fmt must be one of {', '.join(MAC_SOURCE_FORMATS)}, not {src_fmt!r}")
        self._src_fmt = src_fmt
        width = float_format(src_fmt).width
        super().__init__({"a": In(width), "b": In(width), "c": In(32), "result": Out(32)})

    @property
    def src_fmt(self) -> str:
        return self._src_fmt

    def elaborate(self, platform) -> Module:
        # A black box only inside trainforge.hw.fp.leaves.blackbox_leaves() (hierarchical synthesis).
        stub = leaf_stub(self, "mac", {"src_fmt": self._src_fmt}, lambda: MacUnit(src_fmt=self._src_fmt))
        if stub is not None:
            return stub
        m = Module()
        if self._src_fmt == "bf16":
            self._generic(m)
        else:
            self._fp16(m)
        return m

    def _generic(self, m: Module) -> None:
        fma = m.submodules.fma = FMA(config=FMAConfig(fmt="fp32", src_fmt=self._src_fmt, pipeline_stages=0))
        m.d.comb += [
            fma.request.valid.eq(1),
            fma.response.ready.eq(1),
            fma.request.payload.a.eq(self.a),
            fma.request.payload.b.eq(self.b),
            fma.request.payload.c.eq(self.c),
            fma.request.payload.op.eq(FMAOp.FMADD),
            fma.request.payload.rm.eq(RoundingMode.RNE),
            self.result.eq(fma.response.payload.result),
        ]

    def _fp16(self, m: Module) -> None:
        a, b, c = self.a, self.b, self.c

        # ---- operands: magnitudes as integers classify them in one comparison each ----
        a_mag, b_mag, c_mag = Signal(15), Signal(15), Signal(31)
        m.d.comb += [a_mag.eq(a[:15]), b_mag.eq(b[:15]), c_mag.eq(c[:31])]
        sign_p, sign_c = Signal(), Signal()
        m.d.comb += [sign_p.eq(a[15] ^ b[15]), sign_c.eq(c[31])]
        ea, eb, ec = a[10:15], b[10:15], c[23:31]

        # ---- exact product, unnormalised: value = sig_p * 2**(ep - 150), sig_p = sig_a * sig_b << 2 ----
        sig_p = Signal(24)
        ep = Signal(9)  # 100 .. 158
        m.d.comb += [
            sig_p.eq((Cat(a[:10], ea != 0) * Cat(b[:10], eb != 0)) << 2),
            ep.eq((ea | (ea == 0)) + (eb | (eb == 0)) + 98),
        ]
        # FP32 addend: value = sig_c * 2**(ec_eff - 150), subnormals at ec_eff = 1
        sig_c = Signal(24)
        ec_eff = Signal(8)
        m.d.comb += [sig_c.eq(Cat(c[:23], ec != 0)), ec_eff.eq(ec | (ec == 0))]

        # ---- swap by exponent: X has the larger exponent, Y moves right by the difference ----
        p_big = Signal()
        ex = Signal(9)
        sig_x, sig_y = Signal(24), Signal(24)
        diff = Signal(9)
        m.d.comb += [
            p_big.eq(ep >= ec_eff),
            ex.eq(Mux(p_big, ep, ec_eff)),
            sig_x.eq(Mux(p_big, sig_p, sig_c)),
            sig_y.eq(Mux(p_big, sig_c, sig_p)),
            diff.eq(Mux(p_big, ep - ec_eff, ec_eff - ep)),
        ]
        # Clamp the shift to 63: Y's window (bits 39..62) is then entirely shifted out. The window
        # words are 63 bits so that their sum, 64 bits, stays one machine word in Verilator's model.
        shift = Signal(6)
        m.d.comb += shift.eq(Mux(diff > 63, 63, diff))
        x_full = Signal(_WINDOW - 1)
        y_full = Signal(_WINDOW - 1)
        y_aligned = Signal(_WINDOW - 1)
        lost_mask = Signal(_WINDOW - 1)
        keep = Signal(6)  # 63 - shift: an empty mask for no shift
        y_jammed = Signal(_WINDOW - 1)
        m.d.comb += [
            x_full.eq(Cat(Const(0, _X_LSB), sig_x)),
            y_full.eq(Cat(Const(0, _X_LSB), sig_y)),
            y_aligned.eq(y_full >> shift),
            keep.eq(63 - shift),
            # the low `shift` bits, by a right shift (a left shift would widen the value)
            lost_mask.eq(Const((1 << (_WINDOW - 1)) - 1, _WINDOW - 1) >> keep),
            y_jammed.eq(y_aligned | ((y_full & lost_mask) != 0)),
        ]

        # ---- add or subtract, magnitude and sign ----
        subtract = Signal()
        total = Signal(_WINDOW)
        negative = Signal()
        sign = Signal()
        m.d.comb += [
            subtract.eq(sign_p ^ sign_c),
            negative.eq(subtract & (y_jammed > x_full)),
            # (a difference is a signed value in Amaranth: its 64 low bits are the magnitude)
            total.eq(
                Mux(
                    subtract,
                    Mux(negative, (y_jammed - x_full)[:_WINDOW], (x_full - y_jammed)[:_WINDOW]),
                    x_full + y_jammed,
                )
            ),
            sign.eq(Mux(p_big, sign_p, sign_c) ^ negative),
        ]

        # ---- normalise: hidden bit to bit 63 in six steps, which spell the leading-zero count ----
        current = total
        zeros = []
        for step in (32, 16, 8, 4, 2, 1):
            empty = Signal(name=f"lz{step}")
            shifted = Signal(_WINDOW, name=f"norm{step}")
            m.d.comb += [
                empty.eq(current[_WINDOW - step :] == 0),
                shifted.eq(Mux(empty, Cat(Const(0, step), current[: _WINDOW - step]), current)),
            ]
            zeros.insert(0, empty)
            current = shifted
        norm = current

        # ---- round to nearest even on the packed word; >= 0x7F800000 is an overflow to infinity ----
        # The hidden bit (norm[63]) adds 1 to the exponent field: biased exponent = ex + 1 - lz.
        exp_less_one = Signal(8)  # >= 54: the sum is at least 2**-72
        round_up = Signal()
        packed = Signal(32)
        m.d.comb += [
            exp_less_one.eq(ex - Cat(*zeros)),
            round_up.eq(norm[_GUARD] & (norm[_GUARD + 1] | (norm[:_GUARD] != 0))),
            packed.eq(Cat(Const(0, 23), exp_less_one) + norm[_GUARD + 1 :] + round_up),
        ]
        finite = Signal(32)
        m.d.comb += finite.eq(
            Mux(norm[-1], Cat(Mux(packed >= _FP32_INF, _FP32_INF, packed)[:31], sign), 0)  # 0: cancellation
        )

        # ---- special cases ----
        a_zero, b_zero = a_mag == 0, b_mag == 0
        a_inf, b_inf = a_mag == _FP16_INF, b_mag == _FP16_INF
        c_inf = c_mag == _FP32_INF
        product_zero = Signal()
        product_inf = Signal()
        nan = Signal()
        m.d.comb += [
            product_zero.eq(a_zero | b_zero),
            product_inf.eq(a_inf | b_inf),
            nan.eq(
                (a_mag > _FP16_INF)
                | (b_mag > _FP16_INF)
                | (c_mag > _FP32_INF)
                | (product_inf & (product_zero | (c_inf & subtract)))
            ),
        ]
        with m.If(nan):
            m.d.comb += self.result.eq(_FP32_NAN)
        with m.Elif(product_inf):
            m.d.comb += self.result.eq(Cat(Const(_FP32_INF, 31), sign_p))
        with m.Elif(product_zero):
            # c itself; a zero addend takes the sign of the exact zero sum (-0 only for -0 + -0)
            m.d.comb += self.result.eq(Mux(c_mag == 0, Cat(Const(0, 31), sign_p & sign_c), c))
        with m.Else():
            # an infinite c with a finite product is c (it passes the datapath as a huge value, so bypass it)
            m.d.comb += self.result.eq(Mux(c_inf, c, finite))
