"""FPnew's ``NONCOMP`` group: minimum/maximum, comparisons and classification, RISC-V F 2.2 semantics.

One unit, the operation chosen per request by :class:`NonCompOp`:

=========  ===================================================================================
``MIN``    ``fmin``: the smaller operand, ``-0 < +0``; one NaN operand gives the other operand
``MAX``    (its bits unchanged), two give the canonical NaN; NV iff an operand is signalling
``FEQ``    ``a == b`` (``-0 == +0``), quiet: NV only for a signalling NaN operand
``FLT``    ``a < b``, signalling: NV for any NaN operand
``FLE``    ``a <= b``, signalling: NV for any NaN operand
``CLASS``  ``fclass`` of ``a``: the 10-bit one-hot mask (bit 0 -inf ... bit 9 quiet NaN); no flags
=========  ===================================================================================

Response layout
---------------
``result`` is ``max(width, 10)`` bits wide, so one layout fits every operation: MIN/MAX put a
float of ``fmt`` in the low ``width`` bits, comparisons put 0 or 1 (false for any NaN) in bit 0
and CLASS puts the mask in bits 0-9; every other bit is zero. The two unused op codes (6, 7) give
a zero result and no flags.

Datapath: sign, magnitude compare (``|a| < |b|``) and the fields' classification, then one
result multiplexer. Pipelining: ``pipeline_stages`` registers (0 to 2), at the output and after
the comparison; one operation per cycle, the whole pipeline stalls when its output is not taken.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from trainforge.config import GeneratorConfig
from trainforge.errors import ConfigError
from trainforge.hw.fp.datapath import StallPipeline
from trainforge.hw.fp.formats import FloatFormat, float_format
from trainforge.hw.fp.ieee import Flags

__all__ = [
    "CLASS_BITS",
    "NonComp",
    "NonCompConfig",
    "NonCompOp",
    "noncomp_request_layout",
    "noncomp_response_layout",
]

FormatName = Literal["fp16", "bf16", "fp32", "fp8e5m2"]
MAX_STAGES = 2
CLASS_BITS = 10  #: width of the RISC-V ``fclass`` mask


class NonCompOp(enum.Enum, shape=3):
    """Operations of the non-computational unit (RISC-V ``fmin``/``fmax``/``feq``/``flt``/``fle``/``fclass``)."""

    MIN = 0  #: minimumNumber, -0 < +0
    MAX = 1  #: maximumNumber, -0 < +0
    FEQ = 2  #: a == b, quiet
    FLT = 3  #: a < b, signalling
    FLE = 4  #: a <= b, signalling
    CLASS = 5  #: fclass of a (b ignored)


@dataclasses.dataclass(frozen=True, kw_only=True)
class NonCompConfig(GeneratorConfig):
    """Parameters of the ``fp-cmp`` generator.

    Parameters
    ----------
    fmt : {"fp16", "bf16", "fp32", "fp8e5m2"}
        Format of both operands and of the MIN/MAX result.
    pipeline_stages : int
        Register stages, 0 (combinational) to 2; the latency in cycles.
    """

    fmt: FormatName = "fp16"
    pipeline_stages: int = 1

    def validate(self) -> None:
        float_format(self.fmt)
        if not 0 <= self.pipeline_stages <= MAX_STAGES:
            raise ConfigError(f"pipeline_stages must be in 0..{MAX_STAGES}, not {self.pipeline_stages}")

    @property
    def format(self) -> FloatFormat:
        return float_format(self.fmt)

    @property
    def result_width(self) -> int:
        """Width of the response's ``result``: a float of ``fmt`` or a class mask, whichever is wider."""
        return max(self.format.width, CLASS_BITS)


def noncomp_request_layout(config: NonCompConfig) -> data.StructLayout:
    """Payload of the request stream: two operands and the operation."""
    return data.StructLayout({"a": config.format.width, "b": config.format.width, "op": NonCompOp})


def noncomp_response_layout(config: NonCompConfig) -> data.StructLayout:
    """Payload of the response stream: the result (see the module docstring) and the flags."""
    return data.StructLayout({"result": config.result_width, "flags": Flags})


def _flags_value(**raised) -> Value:
    """The :class:`Flags` bits as one value: the named flags from ``raised``, the others zero.

    Built in one piece because a flag left at its reset value becomes a constant ``always`` block
    in the generated Verilog, which ``verilator -Wall`` reports as UNDRIVEN.
    """
    fields = sorted(data.Layout.cast(Flags), key=lambda item: item[1].offset)
    return Cat(*(raised.get(name, Const(0, 1)) for name, _ in fields))


class _Fields:
    """Sign, magnitude and class of one operand (combinational)."""

    def __init__(self, m: Module, fmt: FloatFormat, bits, name: str) -> None:
        exp_field = bits[fmt.man_bits : fmt.man_bits + fmt.exp_bits]
        man_field = bits[: fmt.man_bits]
        exp_ones = exp_field == (1 << fmt.exp_bits) - 1
        self.sign = bits[-1]
        self.magnitude = bits[:-1]
        self.is_zero = Signal(name=f"{name}_zero")
        self.is_subnormal = Signal(name=f"{name}_subnormal")
        self.is_normal = Signal(name=f"{name}_normal")
        self.is_inf = Signal(name=f"{name}_inf")
        self.is_nan = Signal(name=f"{name}_nan")
        self.is_snan = Signal(name=f"{name}_snan")
        m.d.comb += [
            self.is_zero.eq((exp_field == 0) & (man_field == 0)),
            self.is_subnormal.eq((exp_field == 0) & (man_field != 0)),
            self.is_normal.eq((exp_field != 0) & ~exp_ones),
            self.is_inf.eq(exp_ones & (man_field == 0)),
            self.is_nan.eq(exp_ones & (man_field != 0)),
            # The quiet bit is the mantissa's MSB (IEEE 754-2008, RISC-V).
            self.is_snan.eq(exp_ones & (man_field != 0) & ~man_field[-1]),
        ]

    def class_mask(self) -> list:
        """The ``fclass`` bits, bit 0 first."""
        neg, pos = self.sign, ~self.sign
        quiet = self.is_nan & ~self.is_snan
        return [
            neg & self.is_inf,
            neg & self.is_normal,
            neg & self.is_subnormal,
            neg & self.is_zero,
            pos & self.is_zero,
            pos & self.is_subnormal,
            pos & self.is_normal,
            pos & self.is_inf,
            self.is_snan,
            quiet,
        ]


class NonComp(wiring.Component):
    """MIN/MAX, FEQ/FLT/FLE and CLASS with valid/ready streams.

    Parameters
    ----------
    config : NonCompConfig

    Members
    -------
    request : In(stream.Signature(noncomp_request_layout))
        ``a``, ``b`` (``fmt``) and ``op`` (:class:`NonCompOp`).
    response : Out(stream.Signature(noncomp_response_layout))
        ``result`` (``max(width, 10)`` bits, see the module docstring) and ``flags``,
        ``pipeline_stages`` cycles after the request is taken.

    Raises
    ------
    TypeError
        ``config`` is not a :class:`NonCompConfig`.
    """

    def __init__(self, *, config: NonCompConfig) -> None:
        if not isinstance(config, NonCompConfig):
            raise TypeError(f"config must be a NonCompConfig, not {config!r}")
        self._config = config
        super().__init__(
            {
                "request": In(stream.Signature(noncomp_request_layout(config))),
                "response": Out(stream.Signature(noncomp_response_layout(config))),
            }
        )

    @property
    def config(self) -> NonCompConfig:
        return self._config

    @property
    def latency(self) -> int:
        """Cycles from taking a request to presenting its response."""
        return self._config.pipeline_stages

    def elaborate(self, platform) -> Module:
        cfg = self._config
        fmt = cfg.format
        m = Module()

        # Pipeline control, as in the FMA: every register stage advances together.
        cut_after = {1: {"result"}, 2: {"compare", "result"}}.get(cfg.pipeline_stages, set())
        pipeline = StallPipeline(m, self.request, self.response, cut_after)
        cut = pipeline.cut

        # ---- stage 1: classify both operands, compare magnitudes ----
        req = self.request.payload
        a = _Fields(m, fmt, req.a, "a")
        b = _Fields(m, fmt, req.b, "b")
        mag_less = Signal()
        m.d.comb += mag_less.eq(a.magnitude < b.magnitude)
        mag_greater = Signal()
        m.d.comb += mag_greater.eq(b.magnitude < a.magnitude)
        # Total order of the non-NaN values with -0 < +0 (for MIN/MAX): sign first, then magnitude.
        below = Signal()
        m.d.comb += below.eq(Mux(a.sign != b.sign, a.sign, Mux(a.sign, mag_greater, mag_less)))
        both_zero = a.is_zero & b.is_zero
        less = Signal()  # IEEE a < b for non-NaN operands: -0 == +0
        equal = Signal()
        m.d.comb += [less.eq(below & ~both_zero), equal.eq((req.a == req.b) | both_zero)]
        class_a = Signal(CLASS_BITS)
        m.d.comb += class_a.eq(Cat(*a.class_mask()))

        s1, v1 = cut(
            "compare",
            {
                "op": req.op,
                "a": req.a,
                "b": req.b,
                "a_nan": a.is_nan,
                "b_nan": b.is_nan,
                "any_snan": a.is_snan | b.is_snan,
                "below": below,
                "less": less,
                "equal": equal,
                "class_a": class_a,
            },
            self.request.valid,
        )

        # ---- stage 2: select the result and flags by operation ----
        canonical_nan = ((1 << fmt.exp_bits) - 1) << fmt.man_bits | (1 << (fmt.man_bits - 1))
        any_nan = s1["a_nan"] | s1["b_nan"]
        result = Signal(cfg.result_width)
        nv = Signal()  # the only flag these operations raise
        with m.Switch(s1["op"]):
            with m.Case(NonCompOp.MIN, NonCompOp.MAX):
                # MIN takes a when a is below b; MAX takes a when it is not (equal bits: either).
                take_a = s1["below"] ^ (s1["op"] == NonCompOp.MAX)
                with m.If(s1["a_nan"] & s1["b_nan"]):
                    m.d.comb += result.eq(canonical_nan)
                with m.Elif(s1["a_nan"]):
                    m.d.comb += result.eq(s1["b"])
                with m.Elif(s1["b_nan"] | take_a):
                    m.d.comb += result.eq(s1["a"])
                with m.Else():
                    m.d.comb += result.eq(s1["b"])
                m.d.comb += nv.eq(s1["any_snan"])
            with m.Case(NonCompOp.FEQ):
                m.d.comb += [result.eq(s1["equal"] & ~any_nan), nv.eq(s1["any_snan"])]
            with m.Case(NonCompOp.FLT):
                m.d.comb += [result.eq(s1["less"] & ~any_nan), nv.eq(any_nan)]
            with m.Case(NonCompOp.FLE):
                m.d.comb += [result.eq((s1["less"] | s1["equal"]) & ~any_nan), nv.eq(any_nan)]
            with m.Case(NonCompOp.CLASS):
                m.d.comb += result.eq(s1["class_a"])

        s2, v2 = cut("result", {"result": result, "flags": _flags_value(nv=nv)}, v1)
        m.d.comb += [
            self.response.valid.eq(v2),
            self.response.payload.result.eq(s2["result"]),
            self.response.payload.flags.eq(s2["flags"]),
        ]
        return m
