"""RISC-V floating-point conventions shared by every FP unit: rounding modes, flags, operations.

The encodings are the RISC-V ones (``frm`` for rounding modes, ``fflags`` bit order for flags), so
a result captured from the RTL can be compared field for field with the golden model
(:mod:`trainforge.models.fp`) and with Berkeley TestFloat, whose flag order is the same.
"""

# No `from __future__ import annotations` here: data.Struct reads its annotations as shapes.
from amaranth.lib import data, enum

__all__ = ["ROUNDING_MODE_NAMES", "FMAOp", "Flags", "RoundingMode"]


class RoundingMode(enum.Enum, shape=3):
    """RISC-V ``frm`` encodings."""

    RNE = 0  #: round to nearest, ties to even
    RTZ = 1  #: round towards zero
    RDN = 2  #: round down (towards -inf)
    RUP = 3  #: round up (towards +inf)
    RMM = 4  #: round to nearest, ties away from zero (max magnitude)


#: Lower-case names as used by the CLI, the golden model and TestFloat file names.
ROUNDING_MODE_NAMES: dict[str, RoundingMode] = {mode.name.lower(): mode for mode in RoundingMode}


class FMAOp(enum.Enum, shape=3):
    """Operations of the fused multiply-add unit (a, b, c are its operand ports)."""

    FMADD = 0  #: a*b + c
    FMSUB = 1  #: a*b - c
    FNMSUB = 2  #: -(a*b) + c
    FNMADD = 3  #: -(a*b) - c
    ADD = 4  #: a + c (b ignored)
    SUB = 5  #: a - c (b ignored)
    MUL = 6  #: a*b (c ignored)


class Flags(data.Struct):
    """IEEE exception flags in RISC-V ``fflags`` order (bit 0 first), as Berkeley TestFloat prints them."""

    nx: 1  #: inexact
    uf: 1  #: underflow (tiny after rounding and inexact)
    of: 1  #: overflow
    dz: 1  #: divide by zero
    nv: 1  #: invalid operation
