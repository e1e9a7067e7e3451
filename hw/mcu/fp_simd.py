"""The FP16 SIMD datapath of a PULP-style MCU core: two FP16 lanes in a 32-bit register, plus FP32.

Operations (smallFloat Xf16/Xfvec/Xfaux names), on 32-bit operands ``rs1``, ``rs2`` and ``rs3``
(``rs3`` carries ``rd``'s old value for the accumulating forms):

=================  ================================================================================
``VFADD_H``        per lane ``rs1[i] + rs2[i]``
``VFSUB_H``        per lane ``rs1[i] - rs2[i]``
``VFMUL_H``        per lane ``rs1[i] * rs2[i]``
``VFMAC_H``        per lane ``rs1[i] * rs2[i] + rd[i]``, one rounding per lane (fused)
``VFDOTPEX_S_H``   ``rs1[0]*rs2[0] + rs1[1]*rs2[1] + rd`` with FP32 ``rd`` and result; see below
``FMADD_S``        scalar FP32 ``rs1 * rs2 + rs3``, the baseline the SIMD forms are compared with
=================  ================================================================================

Where ``vfdotpex.s.h`` rounds: twice, in lane order. ``t = round32(rs1[0]*rs2[0] + rd)`` and then
``result = round32(rs1[1]*rs2[1] + t)``, each an expanding fused multiply-add (the FP16 product is
exact in FP32's precision, one rounding per step). Flags are the OR of both steps. A single-rounding
three-term adder (as in the ExSdotp unit) is a possible refinement; the golden model states the
order exactly, so the RTL and the model cannot drift apart.

Per-lane exception flags are OR-ed into one set, as RISC-V's ``fflags`` accumulate them. All units
share one rounding mode per operation. The datapath is combinational FMA units (from
:mod:`trainforge.hw.fp.fma`) followed by ``pipeline_stages`` output registers with a global stall.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from trainforge.config import GeneratorConfig
from trainforge.errors import ConfigError
from trainforge.hw.fp.datapath import StallPipeline
from trainforge.hw.fp.fma import FMA, FMAConfig
from trainforge.hw.fp.ieee import Flags, FMAOp, RoundingMode

__all__ = ["FPSimd", "FPSimdConfig", "SimdOp", "simd_request_layout", "simd_response_layout"]


class SimdOp(enum.Enum, shape=3):
    """Operations of the SIMD datapath."""

    VFADD_H = 0
    VFSUB_H = 1
    VFMUL_H = 2
    VFMAC_H = 3
    VFDOTPEX_S_H = 4
    FMADD_S = 5


@dataclasses.dataclass(frozen=True, kw_only=True)
class FPSimdConfig(GeneratorConfig):
    """Parameters of the ``fp-simd`` generator.

    Parameters
    ----------
    lane_fmt : {"fp16", "bf16"}
        Format of the two 16-bit lanes (IEEE binary16 in the paper; bfloat16 in later PULP-TrainLib).
    pipeline_stages : int
        Output register stages, 0 to 3 (the latency in cycles).
    """

    lane_fmt: Literal["fp16", "bf16"] = "fp16"
    pipeline_stages: int = 1

    def validate(self) -> None:
        if not 0 <= self.pipeline_stages <= 3:
            raise ConfigError(f"pipeline_stages must be in 0..3, not {self.pipeline_stages}")


def simd_request_layout() -> data.StructLayout:
    return data.StructLayout({"rs1": 32, "rs2": 32, "rs3": 32, "op": SimdOp, "rm": RoundingMode})


def simd_response_layout() -> data.StructLayout:
    return data.StructLayout({"result": 32, "flags": Flags})


class FPSimd(wiring.Component):
    """FP16 SIMD + FP32 datapath with valid/ready streams.

    Members
    -------
    request : In(stream.Signature(simd_request_layout()))
    response : Out(stream.Signature(simd_response_layout()))
    """

    def __init__(self, *, config: FPSimdConfig) -> None:
        if not isinstance(config, FPSimdConfig):
            raise TypeError(f"config must be an FPSimdConfig, not {config!r}")
        self._config = config
        super().__init__(
            {
                "request": In(stream.Signature(simd_request_layout())),
                "response": Out(stream.Signature(simd_response_layout())),
            }
        )

    @property
    def config(self) -> FPSimdConfig:
        return self._config

    @property
    def latency(self) -> int:
        return self._config.pipeline_stages

    def elaborate(self, platform) -> Module:
        cfg = self._config
        m = Module()
        req = self.request.payload
        lane_cfg = FMAConfig(fmt=cfg.lane_fmt, pipeline_stages=0)
        expand_cfg = FMAConfig(fmt="fp32", src_fmt=cfg.lane_fmt, pipeline_stages=0)
        lanes = [FMA(config=lane_cfg) for _ in range(2)]
        dot = [FMA(config=expand_cfg) for _ in range(2)]
        scalar = FMA(config=FMAConfig(fmt="fp32", pipeline_stages=0))
        for i, unit in enumerate(lanes):
            m.submodules[f"lane{i}"] = unit
        m.submodules.dot0, m.submodules.dot1, m.submodules.scalar = dot[0], dot[1], scalar

        lane_op = Signal(FMAOp)
        with m.Switch(req.op):
            with m.Case(SimdOp.VFADD_H):
                m.d.comb += lane_op.eq(FMAOp.ADD)
            with m.Case(SimdOp.VFSUB_H):
                m.d.comb += lane_op.eq(FMAOp.SUB)
            with m.Case(SimdOp.VFMUL_H):
                m.d.comb += lane_op.eq(FMAOp.MUL)
            with m.Default():
                m.d.comb += lane_op.eq(FMAOp.FMADD)
        is_add = (req.op == SimdOp.VFADD_H) | (req.op == SimdOp.VFSUB_H)
        for i, unit in enumerate(lanes):
            lo, hi = 16 * i, 16 * (i + 1)
            m.d.comb += [
                unit.request.payload.a.eq(req.rs1[lo:hi]),
                unit.request.payload.b.eq(req.rs2[lo:hi]),
                unit.request.payload.op.eq(lane_op),
                unit.request.payload.rm.eq(req.rm),
            ]
            with m.If(is_add):  # ADD/SUB take their second operand on port c
                m.d.comb += unit.request.payload.c.eq(req.rs2[lo:hi])
            with m.Else():
                m.d.comb += unit.request.payload.c.eq(req.rs3[lo:hi])
        # vfdotpex.s.h: lane 0's product into rd, then lane 1's product into that sum.
        m.d.comb += [
            dot[0].request.payload.a.eq(req.rs1[0:16]),
            dot[0].request.payload.b.eq(req.rs2[0:16]),
            dot[0].request.payload.c.eq(req.rs3),
            dot[1].request.payload.a.eq(req.rs1[16:32]),
            dot[1].request.payload.b.eq(req.rs2[16:32]),
            dot[1].request.payload.c.eq(dot[0].response.payload.result),
            scalar.request.payload.a.eq(req.rs1),
            scalar.request.payload.b.eq(req.rs2),
            scalar.request.payload.c.eq(req.rs3),
        ]
        for unit in (*dot, scalar):
            m.d.comb += [unit.request.payload.op.eq(FMAOp.FMADD), unit.request.payload.rm.eq(req.rm)]

        result = Signal(32)
        flags = Signal(5)
        with m.Switch(req.op):
            with m.Case(SimdOp.VFDOTPEX_S_H):
                m.d.comb += [
                    result.eq(dot[1].response.payload.result),
                    flags.eq(dot[0].response.payload.flags.as_value() | dot[1].response.payload.flags.as_value()),
                ]
            with m.Case(SimdOp.FMADD_S):
                m.d.comb += [result.eq(scalar.response.payload.result), flags.eq(scalar.response.payload.flags)]
            with m.Default():
                m.d.comb += [
                    result.eq(Cat(lanes[0].response.payload.result, lanes[1].response.payload.result)),
                    flags.eq(lanes[0].response.payload.flags.as_value() | lanes[1].response.payload.flags.as_value()),
                ]

        # Output pipeline: `pipeline_stages` registers, all advancing together unless stalled.
        pipeline = StallPipeline(m, self.request, self.response, {f"s{k}" for k in range(cfg.pipeline_stages)})
        signals, valid = {"result": result, "flags": flags}, self.request.valid
        for k in range(cfg.pipeline_stages):
            signals, valid = pipeline.cut(f"s{k}", signals, valid)
        m.d.comb += [
            self.response.valid.eq(valid),
            self.response.payload.result.eq(signals["result"]),
            self.response.payload.flags.eq(signals["flags"]),
        ]
        return m
