"""The systolic PE array of the SAT GEMM engine, output-stationary, dense and N:M sparse.

``rows x cols`` processing elements compute one output tile ``C[rows x cols] = A[rows x K] . B[K x cols]``
with FP16 (or BF16) operands and FP32 accumulators. Each PE multiplies with the FP library's
multiply-accumulate unit :class:`~trainforge.hw.fp.mac.MacUnit` (``src_fmt`` x ``src_fmt`` + FP32 ->
FP32, exact product, one rounding per step).

Streams and the reduction step
------------------------------
The reduction over K runs as *steps*, one request beat each. A step carries, for every row, an
activation *group* (``m_max`` values) and, for every column, one weight element: its value and its
index inside the group. The PE multiplies the weight by the activation the index selects (an
``m_max``:1 multiplexer), so:

* **N:M sparse**: B is compressed along K (:func:`trainforge.models.nm_compress`); group ``g`` of
  ``m`` activations is presented for the ``n`` steps of its ``n`` kept weights. The reduction takes
  ``K / m * n`` steps: ``m / n`` times fewer than dense.
* **dense**: every step is a group of one (``index = 0``); the reduction takes ``K`` steps.

Accumulation order: steps in order, i.e. groups in K order and kept elements in ascending index order
inside each group: exactly :func:`trainforge.models.golden`'s sequential (sparse) order. The first
step of a tile replaces the accumulator by ``0 + a*b`` (an FMA with a +0 addend).

Systolic timing
---------------
Activations move right one PE per cycle, weights (with the step's valid/first/last marks) move down
one PE per cycle; row ``i`` enters ``i`` cycles late and column ``j`` enters ``j`` cycles late, so PE
``(i, j)`` processes the step accepted at cycle ``t`` during cycle ``t + 1 + i + j``. When a PE
processes the tile's last step, its result moves to an output register, freeing the accumulator for
the next tile, which can stream in back to back. The output registers drain one row per cycle on the
``response`` stream, from cycle ``t_last + rows + cols`` on. A tile's last step is accepted only when
the previous tile has drained, so results are never overwritten.

Cycles of a tile, from its first step accepted to its last row presented, with no back-pressure:
``steps + rows + cols - 1 + rows``; a stream of tiles overlaps each fill and drain with the next
tile's steps. :func:`tile_cycles` states it in code for the scheduler.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from trainforge.config import GeneratorConfig
from trainforge.errors import ConfigError
from trainforge.hw.fp.formats import float_format
from trainforge.hw.fp.mac import MacUnit

__all__ = ["GemmArray", "GemmArrayConfig", "gemm_request_layout", "gemm_response_layout", "tile_cycles"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class GemmArrayConfig(GeneratorConfig):
    """Parameters of the ``sat-gemm`` array.

    Parameters
    ----------
    rows, cols : int
        PE array size (1 to 32 each).
    m_max : int
        Largest N:M group the PEs select from (power of two, 1 to 16); 1 gives a dense-only array.
    in_fmt : {"fp16", "bf16"}
        Format of A and B; products accumulate in FP32.
    """

    rows: int = 4
    cols: int = 4
    m_max: int = 8
    in_fmt: Literal["fp16", "bf16"] = "fp16"

    def validate(self) -> None:
        for name in ("rows", "cols"):
            value = getattr(self, name)
            if not 1 <= value <= 32:
                raise ConfigError(f"{name} must be in 1..32, not {value}")
        if self.m_max not in (1, 2, 4, 8, 16):
            raise ConfigError(f"m_max must be a power of two in 1..16, not {self.m_max}")

    @property
    def index_bits(self) -> int:
        return max(1, ceil_log2(self.m_max))


def gemm_request_layout(config: GemmArrayConfig) -> data.StructLayout:
    """One reduction step: an activation group per row, a weight element per column, the tile's last mark."""
    width = float_format(config.in_fmt).width
    weight = data.StructLayout({"value": width, "index": config.index_bits})
    return data.StructLayout(
        {
            "a": data.ArrayLayout(data.ArrayLayout(width, config.m_max), config.rows),
            "w": data.ArrayLayout(weight, config.cols),
            "last": 1,
        }
    )


def gemm_response_layout(config: GemmArrayConfig) -> data.StructLayout:
    """One output row: ``cols`` FP32 results."""
    return data.StructLayout({"row": data.ArrayLayout(32, config.cols)})


def tile_cycles(config: GemmArrayConfig, steps: int) -> int:
    """Cycles from accepting a lone tile's first step to presenting its last output row (no stalls)."""
    return steps + config.rows + config.cols - 1 + config.rows


class GemmArray(wiring.Component):
    """Output-stationary systolic PE array, dense and N:M sparse (see the module docstring).

    Members
    -------
    request : In(stream.Signature(gemm_request_layout))
    response : Out(stream.Signature(gemm_response_layout))
        One row of FP32 results per transfer, rows in order, ``rows`` transfers per tile.
    """

    def __init__(self, *, config: GemmArrayConfig) -> None:
        if not isinstance(config, GemmArrayConfig):
            raise TypeError(f"config must be a GemmArrayConfig, not {config!r}")
        self._config = config
        super().__init__(
            {
                "request": In(stream.Signature(gemm_request_layout(config))),
                "response": Out(stream.Signature(gemm_response_layout(config))),
            }
        )

    @property
    def config(self) -> GemmArrayConfig:
        return self._config

    def elaborate(self, platform) -> Module:
        cfg = self._config
        rows, cols = cfg.rows, cfg.cols
        width = float_format(cfg.in_fmt).width
        m = Module()
        req = self.request.payload
        accept = Signal()
        pending = Signal()  # a tile's last step was accepted and its rows are not all out yet
        m.d.comb += [
            self.request.ready.eq(~(req.last & pending)),
            accept.eq(self.request.valid & self.request.ready),
        ]

        # Marks travel with the weights: valid, first step of a tile, last step of a tile.
        mark = data.StructLayout({"valid": 1, "first": 1, "last": 1})
        starting = Signal(init=1)  # the next accepted step is a tile's first
        with m.If(accept):
            m.d.sync += starting.eq(req.last)

        act_layout = data.ArrayLayout(width, cfg.m_max)
        weight_layout = gemm_request_layout(cfg)["w"].shape.elem_shape

        # Edge skew: row i enters i cycles late, column j enters j cycles late.
        def delayed(value, layout, cycles: int, name: str):
            current = value
            for k in range(cycles):
                reg = Signal(layout, name=f"{name}_d{k}")
                m.d.sync += reg.eq(current)
                current = reg
            return current

        step_mark = Signal(mark)
        m.d.comb += [step_mark.valid.eq(accept), step_mark.first.eq(starting), step_mark.last.eq(req.last)]
        row_in = [delayed(req.a[i], act_layout, i, f"row{i}") for i in range(rows)]
        col_in = [delayed(req.w[j], weight_layout, j, f"col{j}") for j in range(cols)]
        mark_in = [delayed(step_mark, mark, j, f"mark{j}") for j in range(cols)]

        acts = [[Signal(act_layout, name=f"pe{i}_{j}_act") for j in range(cols)] for i in range(rows)]
        weights = [[Signal(weight_layout, name=f"pe{i}_{j}_w") for j in range(cols)] for i in range(rows)]
        marks = [[Signal(mark, name=f"pe{i}_{j}_mark") for j in range(cols)] for i in range(rows)]
        results = [[Signal(32, name=f"pe{i}_{j}_out") for j in range(cols)] for i in range(rows)]
        for i in range(rows):
            for j in range(cols):
                m.d.sync += [
                    acts[i][j].eq(row_in[i] if j == 0 else acts[i][j - 1]),
                    weights[i][j].eq(col_in[j] if i == 0 else weights[i - 1][j]),
                    marks[i][j].eq(mark_in[j] if i == 0 else marks[i - 1][j]),
                ]
                pe = MacUnit(src_fmt=cfg.in_fmt)
                m.submodules[f"pe{i}_{j}"] = pe
                acc = Signal(32, name=f"pe{i}_{j}_acc")
                w, k = weights[i][j], marks[i][j]
                m.d.comb += [
                    pe.a.eq(acts[i][j][w.index] if cfg.m_max > 1 else acts[i][j][0]),
                    pe.b.eq(w.value),
                    pe.c.eq(0),
                ]
                with m.If(~k.first):
                    m.d.comb += pe.c.eq(acc)
                with m.If(k.valid):
                    m.d.sync += acc.eq(pe.result)
                    with m.If(k.last):
                        m.d.sync += results[i][j].eq(pe.result)

        # Drain: the bottom-right PE finishing the last step starts `rows` output transfers.
        corner = marks[rows - 1][cols - 1]
        draining = Signal()
        row_index = Signal(range(max(2, rows)))
        with m.If(accept & req.last):
            m.d.sync += pending.eq(1)
        with m.If(corner.valid & corner.last):
            m.d.sync += [draining.eq(1), row_index.eq(0)]
        m.d.comb += self.response.valid.eq(draining)
        with m.Switch(row_index):
            for i in range(rows):
                with m.Case(i):
                    m.d.comb += [self.response.payload.row[j].eq(results[i][j]) for j in range(cols)]
        with m.If(self.response.valid & self.response.ready):
            with m.If(row_index == rows - 1):
                m.d.sync += [draining.eq(0), pending.eq(0)]
            with m.Else():
                m.d.sync += row_index.eq(row_index + 1)
        return m
