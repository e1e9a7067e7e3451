"""Building blocks shared by the floating-point units: operand unpacking, shifters, rounding.

Used by :mod:`trainforge.hw.fp.fma` and :mod:`trainforge.hw.fp.convert`; each helper adds
combinational logic to a module and returns the signals it made.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.utils import bits_for

from trainforge.hw.fp.formats import FloatFormat
from trainforge.hw.fp.ieee import RoundingMode

__all__ = ["StallPipeline", "Unpacked", "leading_zeros", "round_increment", "shift_left", "shift_right_sticky"]


class Unpacked:
    """Fields and classification of one floating-point operand (combinational).

    Attributes: ``sign``, ``is_zero``, ``is_inf``, ``is_nan``, ``is_snan``, ``significand`` (hidden
    bit included), ``exp`` (unbiased exponent of the hidden-bit position; emin for subnormals).
    """

    def __init__(self, m: Module, fmt: FloatFormat, bits, name: str, exp_shape) -> None:
        self.sign = Signal(name=f"{name}_sign")
        exp_field = bits[fmt.man_bits : fmt.man_bits + fmt.exp_bits]
        man_field = bits[: fmt.man_bits]
        exp_all_ones = (1 << fmt.exp_bits) - 1
        self.is_zero = Signal(name=f"{name}_zero")
        self.is_inf = Signal(name=f"{name}_inf")
        self.is_nan = Signal(name=f"{name}_nan")
        self.is_snan = Signal(name=f"{name}_snan")
        self.significand = Signal(fmt.man_bits + 1, name=f"{name}_sig")
        # Unbiased exponent of the significand's hidden-bit position (emin for subnormals).
        self.exp = Signal(exp_shape, name=f"{name}_exp")
        m.d.comb += [
            self.sign.eq(bits[-1]),
            self.is_zero.eq((exp_field == 0) & (man_field == 0)),
            self.is_inf.eq((exp_field == exp_all_ones) & (man_field == 0)),
            self.is_nan.eq((exp_field == exp_all_ones) & (man_field != 0)),
            self.is_snan.eq((exp_field == exp_all_ones) & (man_field != 0) & ~man_field[-1]),
            self.significand.eq(Cat(man_field, exp_field != 0)),
            self.exp.eq(Mux(exp_field == 0, 1, exp_field) - fmt.bias),
        ]


def shift_right_sticky(m: Module, value, amount, name: str):
    """``value >> amount`` (amount unsigned, saturating) and the OR of the bits shifted out."""
    width = len(value)
    stages = bits_for(width)
    saturated = Signal(range(width + 1), name=f"{name}_amt")
    m.d.comb += saturated.eq(Mux(amount > width, width, amount))
    sticky = Const(0, 1)
    current = value
    for k in range(stages):
        step = 1 << k
        shifted = Signal(width, name=f"{name}_s{k}")
        lost = Signal(name=f"{name}_l{k}")
        lost_bits = current[: min(step, width)]
        m.d.comb += [
            shifted.eq(Mux(saturated[k], current >> step, current)),
            lost.eq(saturated[k] & (lost_bits != 0)),
        ]
        sticky = sticky | lost
        current = shifted
    out_sticky = Signal(name=f"{name}_sticky")
    m.d.comb += out_sticky.eq(sticky)
    return current, out_sticky


def shift_left(m: Module, value, amount, name: str):
    """``value << amount`` truncated to ``len(value)`` bits (amount unsigned, saturating)."""
    width = len(value)
    current = value
    for k in range(bits_for(width)):
        step = 1 << k
        shifted = Signal(width, name=f"{name}_s{k}")
        m.d.comb += shifted.eq(Mux(amount[k] if k < len(amount) else 0, (current << step)[:width], current))
        current = shifted
    result = Signal(width, name=f"{name}_out")
    m.d.comb += result.eq(Mux(amount >= width, 0, current))
    return result


def leading_zeros(m: Module, value, name: str):
    """Number of leading zeros of ``value`` (``len(value)`` when it is zero)."""
    width = len(value)
    count = Signal(range(width + 1), name=name)
    m.d.comb += count.eq(width)
    for i in range(width):  # later assignments take priority: the highest set bit wins
        with m.If(value[i]):
            m.d.comb += count.eq(width - 1 - i)
    return count


def round_increment(rm, sign, lsb, round_bit, sticky):
    """Whether rounding adds one unit in the last place, per RISC-V rounding mode."""
    return Mux(
        rm == RoundingMode.RNE,
        round_bit & (sticky | lsb),
        Mux(
            rm == RoundingMode.RDN,
            (round_bit | sticky) & sign,
            Mux(rm == RoundingMode.RUP, (round_bit | sticky) & ~sign, Mux(rm == RoundingMode.RMM, round_bit, 0)),
        ),
    )


class StallPipeline:
    """Register stages between a unit's request and response streams that advance together.

    Every stage moves when the output register is empty or being read; otherwise the whole
    pipeline holds (a global stall: one result per cycle at full rate, no skid buffers). With no
    stage, the unit is combinational and ``request.ready`` follows ``response.ready``.

    Parameters
    ----------
    m : Module
    request, response : stream interfaces of the unit.
    stages : set of str
        Names of the cut points that get registers (the others pass signals through).
    """

    def __init__(self, m: Module, request, response, stages: set[str]) -> None:
        self._m = m
        self._stages = set(stages)
        self.advance = Signal(name="pipeline_advance")
        m.d.comb += [
            self.advance.eq(~response.valid | response.ready),
            request.ready.eq(self.advance if self._stages else response.ready),
        ]

    def cut(self, stage: str, signals: dict, valid):
        """Registered copies of ``signals`` and ``valid`` if ``stage`` is a cut point, else the same."""
        if stage not in self._stages:
            return signals, valid
        m = self._m
        registered = {}
        for key, sig in signals.items():
            reg = Signal.like(sig, name=f"{stage}_{key}")
            with m.If(self.advance):
                m.d.sync += reg.eq(sig)
            registered[key] = reg
        valid_reg = Signal(name=f"{stage}_valid")
        with m.If(self.advance):
            m.d.sync += valid_reg.eq(valid)
        return registered, valid_reg
