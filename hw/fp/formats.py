"""Table-driven floating-point formats, shared by the RTL, the golden models and the testbenches.

A format is its exponent and mantissa widths, as in FPnew's ``fp_format_e``; everything else
(bias, width, the Amaranth ``data.Struct`` layout of its fields, the matching PyTorch dtype)
is derived from them.
"""

from __future__ import annotations

import dataclasses
from functools import cached_property

from amaranth.lib import data

from trainforge.errors import ConfigError

__all__ = ["FORMATS", "FloatFormat", "float_format"]


@dataclasses.dataclass(frozen=True)
class FloatFormat:
    """An IEEE-754-style binary floating-point format.

    Parameters
    ----------
    name : str
        Short name used in configurations (``"fp16"``).
    exp_bits, man_bits : int
        Widths of the biased exponent and of the stored mantissa (without the hidden bit).
    torch_name : str or None
        Name of the PyTorch dtype with the same encoding, where one exists.
    """

    name: str
    exp_bits: int
    man_bits: int
    torch_name: str | None = None

    @property
    def torch_dtype(self):
        """The PyTorch dtype with this encoding, or None (torch is imported only when asked)."""
        if self.torch_name is None:
            return None
        import torch

        return getattr(torch, self.torch_name)

    @property
    def width(self) -> int:
        """Total width in bits: sign, exponent and mantissa."""
        return 1 + self.exp_bits + self.man_bits

    @property
    def bias(self) -> int:
        return (1 << (self.exp_bits - 1)) - 1

    @cached_property
    def layout(self) -> data.StructLayout:
        """Field layout, LSB first: ``mantissa``, ``exponent``, ``sign``."""
        return data.StructLayout({"mantissa": self.man_bits, "exponent": self.exp_bits, "sign": 1})


FORMATS: dict[str, FloatFormat] = {
    f.name: f
    for f in (
        FloatFormat("fp16", 5, 10, "float16"),
        FloatFormat("bf16", 8, 7, "bfloat16"),
        FloatFormat("fp32", 8, 23, "float32"),
        FloatFormat("fp8e5m2", 5, 2),
    )
}


def float_format(name: str) -> FloatFormat:
    """Look a format up by name; an unknown name is a :class:`ConfigError` listing the valid ones."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ConfigError(f"unknown float format {name!r}; valid: {', '.join(FORMATS)}") from None
