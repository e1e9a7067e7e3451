"""Fused multiply-add with a single rounding, format-generic, with RISC-V rounding modes and flags.

One datapath serves FMADD/FMSUB/FNMSUB/FNMADD, ADD/SUB (``a + c``: the product is ``a * 1``) and MUL
(the addend is a zero of the product's sign), in one format or mixed (``a``, ``b`` in a source
format such as FP16 or BF16; ``c`` and the result in a wider destination format such as FP32; the
product is exact and the sum is rounded once).

Datapath
--------
Every value is placed, exactly, in one fixed-point window of ``W = 2 p_s + 2 p_d + 7`` bits, where
``p_s`` and ``p_d`` are the source and destination precisions (hidden bit included)::

    | carry | addend may sit here when it dominates | 2 p_s product bits | p_d + 3 | s |
    W-1                                        q + 2 p_s                  q        1   0

* The product ``sig_a * sig_b`` sits at bit ``q = p_d + 4``. The addend is shifted to its place
  relative to the product by the exponent difference. When it is so large that the product lies
  entirely below its guard bits it is clamped just above the product (the product then acts as a
  sticky bit, which is all that rounding needs); when it is so small that bits fall below bit 1,
  they are OR-ed into bit 0, which takes part in the subtraction so that a borrow from the lost
  bits is still exact.
* Sum (or difference, by effective operation) in two's complement, then magnitude and sign.
* Normalisation shifts left by the leading-zero count, but never below the destination's minimum
  exponent (subnormal results) and shifts right, collecting sticky bits, when even the top of the
  window lies below it.
* Rounding from ``p_d`` bits, a guard bit, a second guard bit and sticky, in the five RISC-V modes.
  Tininess is detected after rounding (the value rounded with an unbounded exponent range is
  below the smallest normal); UF is raised only when the result is also inexact.
* Special cases (NaN in, invalid operations, infinities) bypass the datapath. Every NaN result is
  the canonical NaN; NV for signalling NaNs, ``inf * 0`` (even with a quiet-NaN addend) and
  ``inf - inf``.

Pipelining: ``pipeline_stages`` registers (0 to 3) are placed after the alignment, after the
add/leading-zero count and at the output; the unit accepts one operation per cycle and stalls as a
whole when its output is not taken.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from trainforge.config import GeneratorConfig
from trainforge.errors import ConfigError
from trainforge.hw.fp.datapath import (
    StallPipeline,
    Unpacked,
    leading_zeros,
    round_increment,
    shift_left,
    shift_right_sticky,
)
from trainforge.hw.fp.formats import FloatFormat, float_format
from trainforge.hw.fp.ieee import Flags, FMAOp, RoundingMode
from trainforge.hw.fp.leaves import leaf_stub

__all__ = ["FMA", "FMAConfig", "fma_request_layout", "fma_response_layout"]

FormatName = Literal["fp8e5m2", "fp16", "bf16", "fp32"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class FMAConfig(GeneratorConfig):
    """Parameters of the ``fp-fma`` generator.

    Parameters
    ----------
    fmt : {"fp8e5m2", "fp16", "bf16", "fp32"}
        Format of the addend ``c`` and of the result.
    src_fmt : {"fp8e5m2", "fp16", "bf16", "fp32"} or None
        Format of the multiplicands ``a`` and ``b``; ``None`` means ``fmt``. A narrower source than
        destination makes a mixed-format (expanding) FMA, e.g. FP16 x FP16 + FP32 -> FP32.
    pipeline_stages : int
        Register stages, 0 (combinational) to 3; the latency in cycles.
    ops : {"all", "add", "mul"}
        Operations the unit performs: every :class:`FMAOp`; only ADD/SUB (the ``fp-add`` design:
        any other op code acts as ADD); or only MUL (``fp-mul``). Synthesis removes what is unused.
        A mixed-format unit (``src_fmt`` narrower than ``fmt``) is verified for the four FMA
        operations.
    """

    fmt: FormatName = "fp16"
    src_fmt: FormatName | None = None
    pipeline_stages: int = 2
    ops: Literal["all", "add", "mul"] = "all"

    def validate(self) -> None:
        float_format(self.fmt)
        if self.src_fmt is not None:
            src, dst = float_format(self.src_fmt), float_format(self.fmt)
            if src.man_bits > dst.man_bits or src.exp_bits > dst.exp_bits:
                raise ConfigError(
                    f"src_fmt={self.src_fmt} must not be wider than fmt={self.fmt} in exponent or mantissa"
                )
        if not 0 <= self.pipeline_stages <= 3:
            raise ConfigError(f"pipeline_stages must be in 0..3, not {self.pipeline_stages}")

    @property
    def dst(self) -> FloatFormat:
        return float_format(self.fmt)

    @property
    def src(self) -> FloatFormat:
        return float_format(self.src_fmt or self.fmt)


def fma_request_layout(config: FMAConfig) -> data.StructLayout:
    """Payload of the request stream: operands, operation and rounding mode."""
    return data.StructLayout(
        {
            "a": config.src.width,
            "b": config.src.width,
            "c": config.dst.width,
            "op": FMAOp,
            "rm": RoundingMode,
        }
    )


def fma_response_layout(config: FMAConfig) -> data.StructLayout:
    """Payload of the response stream: the result and its exception flags."""
    return data.StructLayout({"result": config.dst.width, "flags": Flags})


class FMA(wiring.Component):
    """Fused multiply-add unit with valid/ready streams.

    Parameters
    ----------
    config : FMAConfig

    Members
    -------
    request : In(stream.Signature(fma_request_layout))
        ``a``, ``b`` (source format), ``c`` (destination format), ``op`` (:class:`FMAOp`),
        ``rm`` (:class:`RoundingMode`).
    response : Out(stream.Signature(fma_response_layout))
        ``result`` and ``flags``, ``pipeline_stages`` cycles after the request is taken.
    """

    def __init__(self, *, config: FMAConfig) -> None:
        if not isinstance(config, FMAConfig):
            raise TypeError(f"config must be an FMAConfig, not {config!r}")
        self._config = config
        super().__init__(
            {
                "request": In(stream.Signature(fma_request_layout(config))),
                "response": Out(stream.Signature(fma_response_layout(config))),
            }
        )

    @property
    def config(self) -> FMAConfig:
        return self._config

    @property
    def latency(self) -> int:
        """Cycles from taking a request to presenting its response."""
        return self._config.pipeline_stages

    def elaborate(self, platform) -> Module:
        cfg = self._config
        # A black box only inside trainforge.hw.fp.leaves.blackbox_leaves() (hierarchical synthesis).
        stub = leaf_stub(self, "fma", cfg.to_dict(), lambda: FMA(config=cfg), sync=cfg.pipeline_stages > 0)
        if stub is not None:
            return stub
        src, dst = cfg.src, cfg.dst
        p_s, p_d = src.man_bits + 1, dst.man_bits + 1
        emin_d = 1 - dst.bias
        q = p_d + 4  # window position of the product's LSB
        r_max = q + 2 * p_s + 2  # highest useful position of the addend's LSB
        width = q + 2 * p_s + p_d + 3  # window width, including the carry bit
        top = width - 1
        exp_shape = signed(16)
        m = Module()

        # Pipeline control: every register stage advances together when the output can move.
        cut_after = {1: {"round"}, 2: {"align", "round"}, 3: {"align", "add", "round"}}.get(cfg.pipeline_stages, set())
        pipeline = StallPipeline(m, self.request, self.response, cut_after)
        cut = pipeline.cut
        valid = self.request.valid

        # ---- stage 1: unpack, multiply, special cases, align the addend ----
        req = self.request.payload
        rm = req.rm
        op = Signal(FMAOp)
        if cfg.ops == "add":
            m.d.comb += op.eq(Mux(req.op == FMAOp.SUB, FMAOp.SUB, FMAOp.ADD))
        elif cfg.ops == "mul":
            m.d.comb += op.eq(FMAOp.MUL)
        else:
            m.d.comb += op.eq(req.op)
        is_mul = op == FMAOp.MUL
        is_add = (op == FMAOp.ADD) | (op == FMAOp.SUB)
        one_src = Const(src.bias << src.man_bits, src.width)
        b_bits = Signal(src.width)
        c_bits = Signal(dst.width)
        m.d.comb += [b_bits.eq(Mux(is_add, one_src, req.b)), c_bits.eq(Mux(is_mul, 0, req.c))]
        a = Unpacked(m, src, req.a, "a", exp_shape)
        b = Unpacked(m, src, b_bits, "b", exp_shape)
        c = Unpacked(m, dst, c_bits, "c", exp_shape)

        negate_product = (op == FMAOp.FNMSUB) | (op == FMAOp.FNMADD)
        negate_addend = (op == FMAOp.FMSUB) | (op == FMAOp.FNMADD) | (op == FMAOp.SUB)
        sign_p = Signal()
        sign_c = Signal()
        m.d.comb += [
            sign_p.eq(a.sign ^ b.sign ^ negate_product),
            # MUL: the addend is a zero of the product's sign, so an exact zero keeps that sign.
            sign_c.eq(Mux(is_mul, sign_p, c.sign ^ negate_addend)),
        ]
        product_zero = a.is_zero | b.is_zero
        product_inf = a.is_inf | b.is_inf
        any_nan = a.is_nan | b.is_nan | c.is_nan
        invalid = Signal()
        m.d.comb += invalid.eq(
            a.is_snan
            | b.is_snan
            | c.is_snan
            | (a.is_inf & b.is_zero)
            | (a.is_zero & b.is_inf)
            | (product_inf & ~any_nan & c.is_inf & (sign_p != sign_c))
        )
        special = Signal()
        special_bits = Signal(dst.width)
        canonical_nan = ((1 << dst.exp_bits) - 1) << dst.man_bits | (1 << (dst.man_bits - 1))
        inf_bits = ((1 << dst.exp_bits) - 1) << dst.man_bits
        with m.If(any_nan | invalid):
            m.d.comb += [special.eq(1), special_bits.eq(canonical_nan)]
        with m.Elif(product_inf):
            m.d.comb += [special.eq(1), special_bits.eq(Cat(Const(inf_bits, dst.width - 1), sign_p))]
        with m.Elif(c.is_inf):
            m.d.comb += [special.eq(1), special_bits.eq(Cat(Const(inf_bits, dst.width - 1), sign_c))]

        product = Signal(2 * p_s)
        m.d.comb += product.eq(a.significand * b.significand)
        # Exponents of the LSBs of product and addend.
        lsb_p = Signal(exp_shape)
        lsb_c = Signal(exp_shape)
        m.d.comb += [lsb_p.eq(a.exp + b.exp - 2 * (p_s - 1)), lsb_c.eq(c.exp - (p_d - 1))]
        # Right shift of the addend from position r_max; a zero product keeps the addend exact.
        shift = Signal(exp_shape)
        m.d.comb += shift.eq(Mux(product_zero, r_max - q, r_max - q - (lsb_c - lsb_p)))
        # Exponent of window bit q: the product's LSB, unless the addend's placement was forced
        # (zero product: addend at q; dominant addend: addend at r_max, product only sticky).
        lsb_ref = Signal(exp_shape)
        m.d.comb += lsb_ref.eq(Mux(product_zero, lsb_c, Mux(shift < 0, lsb_c - (r_max - q), lsb_p)))
        shift_amount = Signal(range(width + p_d + 2))
        m.d.comb += shift_amount.eq(Mux(shift < 0, 0, Mux(shift > width + p_d, width + p_d + 1, shift)))
        addend_wide = Signal(r_max - 1 + p_d)
        m.d.comb += addend_wide.eq(Mux(c.is_zero, 0, c.significand) << (r_max - 1))
        addend_shifted, addend_sticky = shift_right_sticky(m, addend_wide, shift_amount, "align")
        addend_window = Signal(width)
        m.d.comb += addend_window.eq(Cat(addend_sticky, addend_shifted))
        product_window = Signal(width)
        m.d.comb += product_window.eq(product << q)

        s1, v1 = cut(
            "align",
            {
                "product": product_window,
                "addend": addend_window,
                "subtract": sign_p ^ sign_c,
                "sign_p": sign_p,
                "sign_c": sign_c,
                "lsb_ref": lsb_ref,
                "rm": rm,
                "special": special,
                "special_bits": special_bits,
                "invalid": invalid,
            },
            valid,
        )

        # ---- stage 2: add, sign/magnitude, leading zeros ----
        total = Signal(signed(width + 2))
        m.d.comb += total.eq(Mux(s1["subtract"], s1["product"] - s1["addend"], s1["product"] + s1["addend"]))
        negative = total < 0
        magnitude = Signal(width)
        m.d.comb += magnitude.eq(Mux(negative, -total, total))
        sign_r = Signal()
        m.d.comb += sign_r.eq(Mux(negative, ~s1["sign_p"], s1["sign_p"]))
        zeros = leading_zeros(m, magnitude, "lzc")

        s2, v2 = cut(
            "add",
            {
                "magnitude": magnitude,
                "zeros": zeros,
                "sign_r": sign_r,
                "sign_p": s1["sign_p"],
                "sign_c": s1["sign_c"],
                "lsb_ref": s1["lsb_ref"],
                "rm": s1["rm"],
                "special": s1["special"],
                "special_bits": s1["special_bits"],
                "invalid": s1["invalid"],
            },
            v1,
        )

        # ---- stage 3: normalise (bounded by emin), round, flags, pack ----
        exp_top = Signal(exp_shape)  # exponent of window bit `top` before normalisation
        m.d.comb += exp_top.eq(s2["lsb_ref"] - q + top)
        limit = Signal(exp_shape)
        m.d.comb += limit.eq(exp_top - emin_d)
        norm_shift = Signal(exp_shape)
        m.d.comb += norm_shift.eq(Mux(limit < s2["zeros"], limit, s2["zeros"]))
        right_amount = Signal(range(width + 2))
        m.d.comb += right_amount.eq(Mux(norm_shift < -(width + 1), width + 1, Mux(norm_shift < 0, -norm_shift, 0)))
        left_amount = Signal(range(width + 1))
        m.d.comb += left_amount.eq(Mux(norm_shift > 0, norm_shift, 0))
        shifted_left = shift_left(m, s2["magnitude"], left_amount, "norm_l")
        shifted_right, norm_sticky = shift_right_sticky(m, s2["magnitude"], right_amount, "norm_r")
        normalised = Signal(width)
        m.d.comb += normalised.eq(Mux(norm_shift < 0, shifted_right, shifted_left))
        exp_r = Signal(exp_shape)  # exponent of bit `top` after normalisation
        m.d.comb += exp_r.eq(exp_top - norm_shift)

        mantissa = normalised[top - p_d + 1 :]
        guard = normalised[top - p_d]
        guard2 = normalised[top - p_d - 1]
        sticky = Signal()
        m.d.comb += sticky.eq((normalised[: top - p_d - 1] != 0) | norm_sticky)
        rm2, sign = s2["rm"], s2["sign_r"]
        increment = round_increment(rm2, sign, mantissa[0], guard, guard2 | sticky)
        rounded = Signal(p_d + 1)
        m.d.comb += rounded.eq(mantissa + increment)
        biased = Signal(exp_shape)
        m.d.comb += biased.eq(exp_r + dst.bias)
        exp_field = Signal(exp_shape)
        man_field = Signal(dst.man_bits)
        with m.If(rounded[p_d]):  # carried out of the significand: 1.000... one binade up
            m.d.comb += [exp_field.eq(biased + 1), man_field.eq(0)]
        with m.Elif(rounded[p_d - 1]):
            m.d.comb += [exp_field.eq(biased), man_field.eq(rounded[: p_d - 1])]
        with m.Else():  # subnormal (or zero) result
            m.d.comb += [exp_field.eq(0), man_field.eq(rounded[: p_d - 1])]

        inexact = Signal()
        m.d.comb += inexact.eq(guard | guard2 | sticky)
        exp_max_field = (1 << dst.exp_bits) - 1
        overflow = Signal()
        m.d.comb += overflow.eq(exp_field >= exp_max_field)
        # Tininess after rounding: below 2^emin before rounding, and not rounded up to 2^emin
        # when rounded to p_d bits with an unbounded exponent range (only possible one binade below).
        unbounded_up = round_increment(rm2, sign, guard, guard2, sticky)
        reaches_min_normal = (normalised[top - p_d : top] == (1 << p_d) - 1) & unbounded_up
        tiny = Signal()
        m.d.comb += tiny.eq(~normalised[top] & ~(normalised[top - 1] & reaches_min_normal))
        exact_zero = s2["magnitude"] == 0
        zero_sign = Mux(s2["sign_p"] == s2["sign_c"], s2["sign_p"], rm2 == RoundingMode.RDN)
        max_finite = Const((exp_max_field - 1) << dst.man_bits | ((1 << dst.man_bits) - 1), dst.width - 1)
        overflow_to_inf = (
            (rm2 == RoundingMode.RNE)
            | (rm2 == RoundingMode.RMM)
            | ((rm2 == RoundingMode.RDN) & sign)
            | ((rm2 == RoundingMode.RUP) & ~sign)
        )

        result = Signal(dst.width)
        flags = Signal(Flags)
        m.d.comb += flags.eq(0)  # every bit driven (DZ is never raised by an FMA)
        with m.If(s2["special"]):
            m.d.comb += [result.eq(s2["special_bits"]), flags.nv.eq(s2["invalid"])]
        with m.Elif(exact_zero):
            m.d.comb += result.eq(Cat(Const(0, dst.width - 1), zero_sign))
        with m.Elif(overflow):
            m.d.comb += [
                result.eq(Cat(Mux(overflow_to_inf, Const(inf_bits, dst.width - 1), max_finite), sign)),
                flags.of.eq(1),
                flags.nx.eq(1),
            ]
        with m.Else():
            m.d.comb += [
                result.eq(Cat(man_field, exp_field[: dst.exp_bits], sign)),
                flags.nx.eq(inexact),
                flags.uf.eq(tiny & inexact),
            ]

        s3, v3 = cut("round", {"result": result, "flags": flags.as_value()}, v2)
        m.d.comb += [
            self.response.valid.eq(v3),
            self.response.payload.result.eq(s3["result"]),
            self.response.payload.flags.eq(s3["flags"]),
        ]
        return m
