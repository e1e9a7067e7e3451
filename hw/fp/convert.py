"""Float-to-float conversion between any two formats of :data:`~trainforge.hw.fp.formats.FORMATS`.

FPnew's ``CONV`` group for floating-point operands (FP16 <-> FP32, BF16 <-> FP32, FP16 <-> BF16,
FP8 <-> any), one source and one destination format per instance, with RISC-V rounding and flags.

Datapath
--------
* **Unpack and normalise.** The source significand (hidden bit included) and the exponent of its
  hidden bit. When the destination reaches lower exponents than the source (``emin_d < emin_s``,
  e.g. FP16 -> FP32) a subnormal source may become a normal result, so it is normalised by a
  leading-zero count and a left shift; otherwise (FP32 -> FP16, BF16 -> FP32) a subnormal source is
  kept as it is, which is exact: it lies below the destination's smallest normal anyway.
* **Denormalise.** The significand sits at the top of a window of ``max(p_s, p_d) + 2`` bits. A
  value below the destination's smallest normal is shifted right by the distance (saturating, the
  bits shifted out collected as sticky), so the window's top bit always weighs
  ``2^max(e, emin_d)``. Only built when the source can reach below ``emin_d``.
* **Round** to ``p_d`` bits from the window (guard bit, second guard bit, sticky) in the five
  RISC-V modes; a carry out of the significand moves one binade up, which also turns the largest
  subnormal into the smallest normal and the largest binade into overflow. Tininess is detected
  after rounding, as in :mod:`trainforge.hw.fp.fma`; UF only with NX. Overflow gives infinity or
  the largest finite number as the mode says, with OF and NX.
* **Specials** bypass the datapath: infinity keeps its sign; every NaN becomes the destination's
  canonical NaN, with NV when it was signalling. Zeros keep their sign.

A *widening* conversion (no fewer exponent and mantissa bits, e.g. FP16 -> FP32, BF16 -> FP32,
FP8 -> FP16) is exact: the generator leaves out the rounding and overflow logic and the rounding
mode is ignored.

Pipelining: ``pipeline_stages`` registers (0 to 3), placed at the output, after the unpacking and
after the denormalising shift; one conversion per cycle, the whole pipeline stalls when its output
is not taken.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed
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
from trainforge.hw.fp.formats import FORMATS, FloatFormat, float_format
from trainforge.hw.fp.ieee import Flags, RoundingMode
from trainforge.hw.fp.leaves import leaf_stub

__all__ = ["Convert", "ConvertConfig", "convert_request_layout", "convert_response_layout"]

FormatName = Literal["fp16", "bf16", "fp32", "fp8e5m2"]
MAX_STAGES = 3


@dataclasses.dataclass(frozen=True, kw_only=True)
class ConvertConfig(GeneratorConfig):
    """Parameters of the ``fp-conv`` generator.

    Parameters
    ----------
    src_fmt : {"fp16", "bf16", "fp32", "fp8e5m2"}
        Format of the operand ``a``.
    dst_fmt : {"fp16", "bf16", "fp32", "fp8e5m2"}
        Format of the result; must differ from ``src_fmt``.
    pipeline_stages : int
        Register stages, 0 (combinational) to 3; the latency in cycles.
    """

    src_fmt: FormatName = "fp32"
    dst_fmt: FormatName = "fp16"
    pipeline_stages: int = 1

    def validate(self) -> None:
        float_format(self.src_fmt)
        float_format(self.dst_fmt)
        if self.src_fmt == self.dst_fmt:
            others = ", ".join(name for name in FORMATS if name != self.src_fmt)
            raise ConfigError(f"dst_fmt={self.dst_fmt} must differ from src_fmt={self.src_fmt}; valid: {others}")
        if not 0 <= self.pipeline_stages <= MAX_STAGES:
            raise ConfigError(f"pipeline_stages must be in 0..{MAX_STAGES}, not {self.pipeline_stages}")

    @property
    def src(self) -> FloatFormat:
        return float_format(self.src_fmt)

    @property
    def dst(self) -> FloatFormat:
        return float_format(self.dst_fmt)

    @property
    def exact(self) -> bool:
        """Whether every source value is representable in the destination (a widening conversion)."""
        return self.dst.exp_bits >= self.src.exp_bits and self.dst.man_bits >= self.src.man_bits


def convert_request_layout(config: ConvertConfig) -> data.StructLayout:
    """Payload of the request stream: the operand and the rounding mode."""
    return data.StructLayout({"a": config.src.width, "rm": RoundingMode})


def convert_response_layout(config: ConvertConfig) -> data.StructLayout:
    """Payload of the response stream: the result and its exception flags."""
    return data.StructLayout({"result": config.dst.width, "flags": Flags})


def _flags_value(**raised) -> Value:
    """The :class:`Flags` bits as one value: the named flags from ``raised``, the others zero.

    Built in one piece because a flag left at its reset value becomes a constant ``always`` block
    in the generated Verilog, which ``verilator -Wall`` reports as UNDRIVEN.
    """
    fields = sorted(data.Layout.cast(Flags), key=lambda item: item[1].offset)
    return Cat(*(raised.get(name, Const(0, 1)) for name, _ in fields))


class Convert(wiring.Component):
    """Floating-point format conversion with valid/ready streams.

    Parameters
    ----------
    config : ConvertConfig

    Members
    -------
    request : In(stream.Signature(convert_request_layout))
        ``a`` (source format) and ``rm`` (:class:`RoundingMode`, ignored by a widening conversion).
    response : Out(stream.Signature(convert_response_layout))
        ``result`` (destination format) and ``flags``, ``pipeline_stages`` cycles after the request
        is taken.

    Raises
    ------
    TypeError
        ``config`` is not a :class:`ConvertConfig`.
    """

    def __init__(self, *, config: ConvertConfig) -> None:
        if not isinstance(config, ConvertConfig):
            raise TypeError(f"config must be a ConvertConfig, not {config!r}")
        self._config = config
        super().__init__(
            {
                "request": In(stream.Signature(convert_request_layout(config))),
                "response": Out(stream.Signature(convert_response_layout(config))),
            }
        )

    @property
    def config(self) -> ConvertConfig:
        return self._config

    @property
    def latency(self) -> int:
        """Cycles from taking a request to presenting its response."""
        return self._config.pipeline_stages

    def elaborate(self, platform) -> Module:
        cfg = self._config
        # A black box only inside trainforge.hw.fp.leaves.blackbox_leaves() (hierarchical synthesis).
        stub = leaf_stub(self, "convert", cfg.to_dict(), lambda: Convert(config=cfg), sync=cfg.pipeline_stages > 0)
        if stub is not None:
            return stub
        src, dst = cfg.src, cfg.dst
        p_s, p_d = src.man_bits + 1, dst.man_bits + 1
        emin_s, emin_d = 1 - src.bias, 1 - dst.bias
        # A subnormal source can be a normal result only when the destination reaches lower.
        normalise = emin_s > emin_d
        lowest = emin_s - (p_s - 1) if normalise else emin_s  # lowest exponent of the hidden bit
        denormalise = lowest < emin_d
        width = max(p_s, p_d) + 2  # result bits, guard, and at least one more below it
        top = width - 1
        exp_shape = signed(12)  # holds every exponent of two 8-bit-exponent formats, biased or not
        m = Module()

        # Pipeline control, as in the FMA: every register stage advances together.
        cut_after = {1: {"round"}, 2: {"unpack", "round"}, 3: {"unpack", "align", "round"}}.get(
            cfg.pipeline_stages, set()
        )
        pipeline = StallPipeline(m, self.request, self.response, cut_after)
        cut = pipeline.cut

        # ---- stage 1: unpack, special cases, normalise a subnormal source ----
        req = self.request.payload
        a = Unpacked(m, src, req.a, "a", exp_shape)
        canonical_nan = ((1 << dst.exp_bits) - 1) << dst.man_bits | (1 << (dst.man_bits - 1))
        inf_bits = ((1 << dst.exp_bits) - 1) << dst.man_bits
        special = Signal()
        special_bits = Signal(dst.width)
        invalid = Signal()
        with m.If(a.is_nan):
            m.d.comb += [special.eq(1), special_bits.eq(canonical_nan), invalid.eq(a.is_snan)]
        with m.Elif(a.is_inf):
            m.d.comb += [special.eq(1), special_bits.eq(Cat(Const(inf_bits, dst.width - 1), a.sign))]

        significand = Signal(p_s)
        exponent = Signal(exp_shape)  # of the significand's top bit
        if normalise:
            zeros = leading_zeros(m, a.significand, "lzc")  # p_s for a zero: the shift clears it
            m.d.comb += [
                significand.eq(shift_left(m, a.significand, zeros, "norm")),
                exponent.eq(a.exp - zeros),
            ]
        else:
            m.d.comb += [significand.eq(a.significand), exponent.eq(a.exp)]

        s1, v1 = cut(
            "unpack",
            {
                "significand": significand,
                "exponent": exponent,
                "sign": a.sign,
                "rm": req.rm,
                "special": special,
                "special_bits": special_bits,
                "invalid": invalid,
            },
            self.request.valid,
        )

        # ---- stage 2: place in the window; below the smallest normal, shift right with sticky ----
        window = Signal(width)
        m.d.comb += window.eq(s1["significand"] << (width - p_s))
        exp_top = Signal(exp_shape)  # exponent of window bit `top` after the shift
        if denormalise:
            distance = Signal(exp_shape)
            m.d.comb += distance.eq(emin_d - s1["exponent"])
            amount = Signal(range(width + 2))
            m.d.comb += amount.eq(Mux(distance <= 0, 0, Mux(distance > width, width + 1, distance)))
            shifted, shift_sticky = shift_right_sticky(m, window, amount, "denorm")
            m.d.comb += exp_top.eq(Mux(distance > 0, emin_d, s1["exponent"]))
        else:
            shifted, shift_sticky = window, Const(0, 1)
            m.d.comb += exp_top.eq(s1["exponent"])

        s2, v2 = cut(
            "align",
            {
                "window": shifted,
                "sticky": shift_sticky,
                "exp_top": exp_top,
                "sign": s1["sign"],
                "rm": s1["rm"],
                "special": s1["special"],
                "special_bits": s1["special_bits"],
                "invalid": s1["invalid"],
            },
            v1,
        )

        # ---- stage 3: round, flags, pack ----
        win, rm, sign = s2["window"], s2["rm"], s2["sign"]
        mantissa = win[top - p_d + 1 :]
        biased = Signal(exp_shape)
        m.d.comb += biased.eq(s2["exp_top"] + dst.bias)
        exp_field = Signal(exp_shape)
        man_field = Signal(dst.man_bits)
        result = Signal(dst.width)
        nx, uf, of, nv = (Signal(name=name) for name in ("nx", "uf", "of", "nv"))
        if cfg.exact:
            # Every source value is representable: nothing to round, nothing can overflow.
            with m.If(mantissa[-1]):
                m.d.comb += [exp_field.eq(biased), man_field.eq(mantissa[:-1])]
            with m.Else():  # subnormal (or zero) result
                m.d.comb += [exp_field.eq(0), man_field.eq(mantissa[:-1])]
            with m.If(s2["special"]):
                m.d.comb += [result.eq(s2["special_bits"]), nv.eq(s2["invalid"])]
            with m.Else():
                m.d.comb += result.eq(Cat(man_field, exp_field[: dst.exp_bits], sign))
        else:
            guard = win[top - p_d]
            guard2 = win[top - p_d - 1]
            sticky = Signal()
            rest = win[: top - p_d - 1]
            m.d.comb += sticky.eq(((rest != 0) if len(rest) else 0) | s2["sticky"])
            increment = round_increment(rm, sign, mantissa[0], guard, guard2 | sticky)
            rounded = Signal(p_d + 1)
            m.d.comb += rounded.eq(mantissa + increment)
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
            # Tininess after rounding: below 2^emin, and not rounded up to 2^emin when rounded to
            # p_d bits with an unbounded exponent (only possible from the binade just below).
            unbounded_up = round_increment(rm, sign, guard, guard2, sticky)
            reaches_min_normal = (win[top - p_d : top] == (1 << p_d) - 1) & unbounded_up
            tiny = Signal()
            m.d.comb += tiny.eq(~win[top] & ~(win[top - 1] & reaches_min_normal))
            max_finite = Const((exp_max_field - 1) << dst.man_bits | ((1 << dst.man_bits) - 1), dst.width - 1)
            overflow_to_inf = (
                (rm == RoundingMode.RNE)
                | (rm == RoundingMode.RMM)
                | ((rm == RoundingMode.RDN) & sign)
                | ((rm == RoundingMode.RUP) & ~sign)
            )
            with m.If(s2["special"]):
                m.d.comb += [result.eq(s2["special_bits"]), nv.eq(s2["invalid"])]
            with m.Elif(overflow):
                m.d.comb += [
                    result.eq(Cat(Mux(overflow_to_inf, Const(inf_bits, dst.width - 1), max_finite), sign)),
                    of.eq(1),
                    nx.eq(1),
                ]
            with m.Else():
                m.d.comb += [
                    result.eq(Cat(man_field, exp_field[: dst.exp_bits], sign)),
                    nx.eq(inexact),
                    uf.eq(tiny & inexact),
                ]

        s3, v3 = cut("round", {"result": result, "flags": _flags_value(nx=nx, uf=uf, of=of, nv=nv)}, v2)
        m.d.comb += [
            self.response.valid.eq(v3),
            self.response.payload.result.eq(s3["result"]),
            self.response.payload.flags.eq(s3["flags"]),
        ]
        return m
