"""The one configuration object of the SAT accelerator, its presets and its derived line formats.

:class:`SatConfig` is read alike by the RTL generator (``hw/sat``), the golden program executor
(``models/sat_golden.py``), the testbench and its DRAM model (``sim/``) and the scheduler
(``dataflow/``), so the hardware and its models cannot disagree about a parameter.

Everything the accelerator moves between memory and its buffers is a *line* (docs/sat-architecture.md,
"Memory and line formats"): a fixed-width record padded to whole memory words.

========== =========================================== =============================================
line       content                                     used for
========== =========================================== =============================================
a-line     ``rows`` activation groups of ``m_max``     GEMM operand A (OS: one group step of the
           FP16/BF16 values                            tile's rows; WS: one A row's groups)
b-line     ``cols`` weights: value and in-group index  GEMM operand B (one reduction step), the
                                                       output of PRUNE
acc-line   ``cols`` FP32 values                        GEMM results, gradients, FP32 master weights
                                                       and momentum (UPDATE)
w-line     ``cols`` FP16/BF16 values                   dense working weights (UPDATE out, PRUNE in)
mask-line  ``cols`` bits                               the FF keep mask (PRUNE out, UPDATE in)
========== =========================================== =============================================
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Literal, Self

from trainforge.config import GeneratorConfig
from trainforge.errors import ConfigError
from trainforge.hw.fp.formats import float_format

__all__ = ["PRESETS", "SatConfig"]

#: Named starting points; ``preset=NAME`` plus other keys overrides single fields.
PRESETS: dict[str, dict[str, Any]] = {
    # Small enough that every test builds in seconds; every n:m up to 8 at run time.
    "tiny": dict(rows=4, cols=4, m_max=8, a_lines=32, b_lines=32, acc_lines=32, mem_bits=128),
    "default": dict(rows=16, cols=16, m_max=8, a_lines=256, b_lines=256, acc_lines=256, mem_bits=256),
    # Closest to the SAT paper: FP16 x FP16 + FP32, 2:8 capable, 32 pruning lanes (one per column).
    "paper": dict(rows=32, cols=32, m_max=8, a_lines=512, b_lines=512, acc_lines=1024, mem_bits=512),
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class SatConfig(GeneratorConfig):
    """Parameters of the ``sat`` accelerator.

    Parameters
    ----------
    preset : {"tiny", "default", "paper", "custom"}
        Name of the preset the other fields came from (``custom`` once any field differs).
    rows, cols : int
        PE array size (1 to 64 each). ``cols`` is also the number of pruning lanes and of
        weight-update lanes.
    m_max : int
        Largest N:M group (power of two, 2 to 16); at run time the array runs every ``n:m`` with
        ``n <= m`` and ``m`` dividing ``m_max`` (dense is ``n == m``), see :meth:`supports`.
    in_fmt : {"fp16", "bf16"}
        GEMM operand and working-weight format; accumulation and master weights are FP32.
    a_lines, b_lines : int
        Depth of each of the two halves of the A and B operand buffers, in lines.
    acc_lines : int
        Depth of the accumulator buffer, in acc-lines.
    mem_bits : int
        Width of the external memory interface (a power of two, 32 to 1024).
    mem_latency : int
        DRAM model: cycles from a request being accepted to its read data being presented.
    mem_interval : int
        DRAM model: cycles between accepted requests (1 = one word per cycle).
    clock_mhz : float
        Clock frequency the scheduler converts cycles to seconds with.
    clock_gating : bool
        Stop the line streamer's clock (prune and update engines) while it is idle: a latch-based
        clock gate, cycle-identical either way (``hw/sat/accelerator.py``). It spares the clock
        power and lets Verilator skip those engines during GEMMs; ``false`` gives one clock
        for flows that want no logic on clock nets.
    """

    preset: Literal["tiny", "default", "paper", "custom"] = "tiny"
    rows: int = 4
    cols: int = 4
    m_max: int = 8
    in_fmt: Literal["fp16", "bf16"] = "fp16"
    a_lines: int = 32
    b_lines: int = 32
    acc_lines: int = 32
    mem_bits: int = 128
    mem_latency: int = 8
    mem_interval: int = 1
    clock_mhz: float = 200.0
    clock_gating: bool = True

    def validate(self) -> None:
        for name in ("rows", "cols"):
            value = getattr(self, name)
            if not 1 <= value <= 64:
                raise ConfigError(f"{name} must be in 1..64, not {value}")
        if self.m_max not in (2, 4, 8, 16):
            raise ConfigError(f"m_max must be a power of two in 2..16, not {self.m_max}")
        for name in ("a_lines", "b_lines", "acc_lines"):
            value = getattr(self, name)
            if not 2 <= value <= 65536 or value & (value - 1):
                raise ConfigError(f"{name} must be a power of two in 2..65536, not {value}")
        if self.b_lines < self.rows:
            raise ConfigError(f"b_lines must hold a weight-stationary tile (rows={self.rows}), not {self.b_lines}")
        if self.acc_lines < self.rows:
            raise ConfigError(f"acc_lines must hold at least one tile (rows={self.rows}), not {self.acc_lines}")
        if self.mem_bits not in (32, 64, 128, 256, 512, 1024):
            raise ConfigError(f"mem_bits must be a power of two in 32..1024, not {self.mem_bits}")
        if not 0 <= self.mem_latency <= 1000:
            raise ConfigError(f"mem_latency must be in 0..1000 cycles, not {self.mem_latency}")
        if not 1 <= self.mem_interval <= 64:
            raise ConfigError(f"mem_interval must be in 1..64 cycles, not {self.mem_interval}")
        if not 0 < self.clock_mhz <= 10_000:
            raise ConfigError(f"clock_mhz must be in (0, 10000], not {self.clock_mhz}")
        float_format(self.in_fmt)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Self:
        """Like :meth:`GeneratorConfig.from_mapping`, with ``preset=NAME`` expanding to its fields first.

        Fields given beside the preset override it; the result is named ``custom`` when any
        field then differs from the preset.
        """
        values = dict(values)
        name = values.get("preset")
        if name is None or name == "custom":
            return super().from_mapping(values)
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}, custom")
        pure = super().from_mapping({**PRESETS[name], "preset": name})
        merged = super().from_mapping({**PRESETS[name], **values})
        return merged if merged == pure else dataclasses.replace(merged, preset="custom")

    @classmethod
    def preset_named(cls, name: str) -> Self:
        """The configuration of preset ``name``."""
        return cls.from_mapping({"preset": name})

    def replace(self, **changes: Any) -> Self:
        """A validated copy with ``changes`` applied, named ``custom`` (unless ``preset`` is given)."""
        if "preset" in changes:
            return type(self).from_mapping(changes)
        return super().from_mapping({**self.to_dict(), **changes, "preset": "custom"})

    # ---- run-time patterns --------------------------------------------------------------------

    def supports(self, n: int, m: int) -> bool:
        """Whether the array runs ``n:m`` (dense is ``n == m``): ``1 <= n <= m``, ``m`` divides ``m_max``."""
        return 1 <= n <= m <= self.m_max and self.m_max % m == 0

    @property
    def index_bits(self) -> int:
        """Width of an in-group index: ``log2(m_max)``."""
        return max(1, int(math.log2(self.m_max)))

    @property
    def in_bits(self) -> int:
        return float_format(self.in_fmt).width

    # ---- line formats (bits, and memory words per line) ----------------------------------------

    @property
    def a_line_bits(self) -> int:
        return self.rows * self.m_max * self.in_bits

    @property
    def b_line_bits(self) -> int:
        return self.cols * (self.in_bits + self.index_bits)

    @property
    def acc_line_bits(self) -> int:
        return self.cols * 32

    @property
    def w_line_bits(self) -> int:
        return self.cols * self.in_bits

    @property
    def mask_line_bits(self) -> int:
        return self.cols

    def words(self, line_bits: int) -> int:
        """Memory words one line of ``line_bits`` occupies (lines start on a word boundary)."""
        return -(-line_bits // self.mem_bits)

    @property
    def a_words(self) -> int:
        return self.words(self.a_line_bits)

    @property
    def b_words(self) -> int:
        return self.words(self.b_line_bits)

    @property
    def acc_words(self) -> int:
        return self.words(self.acc_line_bits)

    @property
    def w_words(self) -> int:
        return self.words(self.w_line_bits)

    @property
    def mask_words(self) -> int:
        return self.words(self.mask_line_bits)

    @property
    def pe_count(self) -> int:
        return self.rows * self.cols
