"""Floating-point formats and arithmetic units (installed as ``trainforge.hw.fp``)."""

from trainforge.hw.fp.formats import FORMATS, FloatFormat, float_format

__all__ = ["FORMATS", "FloatFormat", "float_format"]
