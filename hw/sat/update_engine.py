"""The SAT update engine: C FP32 lanes of SGD with momentum and the SR-STE decay.

One acc-line of master weights ``w``, momentum ``v`` and gradient ``g`` (plus the line's FF keep
bits) goes in per beat; the updated ``w'``, ``v'`` and the working copy ``w16`` come out,
element by element as the UPDATE descriptor of docs/sat-architecture.md states, every operation
one FP32 rounding (RNE)::

    d  = (use_mask and not keep) ? fl(decay * w) : +0
    g' = fl(g + d)
    v' = fl(fl(momentum * v) + g')
    w' = fl(w - fl(lr * v'))
    w16 = round_to_in_fmt(w')                  # RNE

Datapath
--------
Each lane is six FP32 operations of the FP library's FMA, instantiated combinational
(``pipeline_stages=0``) and restricted to multiply (``ops="mul"``) or add/subtract (``ops="add"``),
so that synthesis keeps only what each needs, plus one FP32 -> ``in_fmt`` :class:`Convert`. No
operation is fused: each is correctly rounded on its own, as the reference
(:func:`trainforge.models.weight_update.sgd_srste_update`) computes it. The dependency chain is five
operations deep (the two independent products ``decay * w`` and ``momentum * v`` share the first
level) and one register stage follows each level; the conversion shares the last level with the
subtraction::

    stage 1: decay*w, momentum*v, select d | stage 2: g + d | stage 3: mv + g' | stage 4: lr*v'
    | stage 5: w - lr*v', convert -> response register

The stages form one :class:`~trainforge.hw.fp.datapath.StallPipeline`: a beat per cycle, a fixed
latency of :attr:`UpdateEngine.latency` (5) cycles, and the whole pipeline holds while the
response is not taken. Every NaN result is the canonical NaN (FP32 ``0x7FC00000``, FP16 ``0x7E00``,
BF16 ``0x7FC0``), as the FP library produces it.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from trainforge.hw.fp.convert import Convert, ConvertConfig
from trainforge.hw.fp.datapath import StallPipeline
from trainforge.hw.fp.fma import FMA, FMAConfig
from trainforge.hw.fp.ieee import FMAOp, RoundingMode
from trainforge.hw.sat.config import SatConfig

__all__ = ["UpdateEngine", "update_params_layout", "update_request_layout", "update_response_layout"]

_MUL = FMAConfig(fmt="fp32", pipeline_stages=0, ops="mul")
_ADD = FMAConfig(fmt="fp32", pipeline_stages=0, ops="add")
_STAGES = ("products", "gradient", "momentum", "step", "result")


def update_params_layout() -> data.StructLayout:
    """The UPDATE hyper-parameters: FP32 ``lr``, ``momentum``, ``decay`` bit patterns and ``use_mask``."""
    return data.StructLayout({"lr": 32, "momentum": 32, "decay": 32, "use_mask": 1})


def update_request_layout(config: SatConfig) -> data.StructLayout:
    """One beat in: an acc-line each of ``w``, ``v``, ``g`` (FP32), the line's ``keep`` bits and ``last``."""
    line = data.ArrayLayout(32, config.cols)
    return data.StructLayout({"w": line, "v": line, "g": line, "keep": config.cols, "last": 1})


def update_response_layout(config: SatConfig) -> data.StructLayout:
    """One beat out: ``w'``, ``v'`` (FP32 acc-lines), the working copy ``w16`` (a w-line) and ``last``."""
    line = data.ArrayLayout(32, config.cols)
    return data.StructLayout({"w": line, "v": line, "w16": data.ArrayLayout(config.in_bits, config.cols), "last": 1})


class UpdateEngine(wiring.Component):
    """SGD with momentum and SR-STE decay over ``config.cols`` FP32 lanes, one line per cycle.

    Parameters
    ----------
    config : SatConfig
        ``cols`` gives the lanes, ``in_fmt`` the working-copy format.

    Members
    -------
    params : In(update_params_layout())
        ``lr``, ``momentum``, ``decay`` (FP32 bit patterns) and ``use_mask``. Read combinationally
        at several stages, not registered: the controller holds them from the first beat of an
        UPDATE until its last response has been taken.
    request : In(stream.Signature(update_request_layout(config)))
        Lane ``j`` of ``w``, ``v``, ``g`` and ``keep[j]`` is one element; ``last`` marks the
        op's last line and is passed through.
    response : Out(stream.Signature(update_response_layout(config)))
        ``w`` = ``w'``, ``v`` = ``v'``, ``w16`` = ``w'`` in ``in_fmt``, and ``last``, in request
        order, :attr:`latency` cycles after the beat was taken when the response is not stalled.

    Raises
    ------
    TypeError
        ``config`` is not a :class:`SatConfig`.
    """

    def __init__(self, *, config: SatConfig) -> None:
        if not isinstance(config, SatConfig):
            raise TypeError(f"config must be a SatConfig, not {config!r}")
        self._config = config
        super().__init__(
            {
                "params": In(update_params_layout()),
                "request": In(stream.Signature(update_request_layout(config))),
                "response": Out(stream.Signature(update_response_layout(config))),
            }
        )

    @property
    def config(self) -> SatConfig:
        return self._config

    @property
    def cols(self) -> int:
        """Number of lanes (``config.cols``)."""
        return self._config.cols

    @property
    def latency(self) -> int:
        """Cycles from taking a request to presenting its response (one per dependent operation)."""
        return len(_STAGES)

    def elaborate(self, platform) -> Module:
        cfg = self._config
        m = Module()
        cut = StallPipeline(m, self.request, self.response, set(_STAGES)).cut
        params = self.params
        req = self.request.payload

        def fp32(name: str, op: FMAOp, a, b):
            """Result of one combinational FP32 operation ``a op b`` (MUL, ADD or SUB), rounded RNE."""
            unit = FMA(config=_MUL if op == FMAOp.MUL else _ADD)
            m.submodules[name] = unit
            operands = unit.request.payload
            m.d.comb += [
                unit.request.valid.eq(1),
                unit.response.ready.eq(1),
                operands.a.eq(a),
                # MUL multiplies a by b; ADD/SUB add or subtract c (the FMA reads b as 1.0).
                (operands.b if op == FMAOp.MUL else operands.c).eq(b),
                operands.op.eq(op),
                operands.rm.eq(RoundingMode.RNE),
            ]
            return unit.response.payload.result

        lanes = range(cfg.cols)
        # ---- stage 1: both products; d is +0 unless the weight is pruned and the mask is used ----
        s1 = {}
        for j in lanes:
            decayed = fp32(f"decay{j}", FMAOp.MUL, req.w[j], params.decay)
            s1[f"mv{j}"] = fp32(f"mom{j}", FMAOp.MUL, req.v[j], params.momentum)
            s1[f"d{j}"] = Mux(params.use_mask & ~req.keep[j], decayed, 0)
            s1[f"w{j}"], s1[f"g{j}"] = req.w[j], req.g[j]
        s1, v1 = cut("products", {**s1, "last": req.last}, self.request.valid)

        # ---- stage 2: g' = g + d ----
        s2 = {"last": s1["last"]}
        for j in lanes:
            s2[f"g{j}"] = fp32(f"grad{j}", FMAOp.ADD, s1[f"g{j}"], s1[f"d{j}"])
            s2[f"mv{j}"], s2[f"w{j}"] = s1[f"mv{j}"], s1[f"w{j}"]
        s2, v2 = cut("gradient", s2, v1)

        # ---- stage 3: v' = mv + g' ----
        s3 = {"last": s2["last"]}
        for j in lanes:
            s3[f"v{j}"] = fp32(f"vel{j}", FMAOp.ADD, s2[f"mv{j}"], s2[f"g{j}"])
            s3[f"w{j}"] = s2[f"w{j}"]
        s3, v3 = cut("momentum", s3, v2)

        # ---- stage 4: the step lr * v' ----
        s4 = {"last": s3["last"]}
        for j in lanes:
            s4[f"p{j}"] = fp32(f"step{j}", FMAOp.MUL, s3[f"v{j}"], params.lr)
            s4[f"v{j}"], s4[f"w{j}"] = s3[f"v{j}"], s3[f"w{j}"]
        s4, v4 = cut("step", s4, v3)

        # ---- stage 5: w' = w - lr * v' and its working copy ----
        s5 = {"last": s4["last"]}
        for j in lanes:
            w_new = fp32(f"upd{j}", FMAOp.SUB, s4[f"w{j}"], s4[f"p{j}"])
            conv = Convert(config=ConvertConfig(src_fmt="fp32", dst_fmt=cfg.in_fmt, pipeline_stages=0))
            m.submodules[f"conv{j}"] = conv
            m.d.comb += [
                conv.request.valid.eq(1),
                conv.response.ready.eq(1),
                conv.request.payload.a.eq(w_new),
                conv.request.payload.rm.eq(RoundingMode.RNE),
            ]
            s5[f"w{j}"], s5[f"v{j}"], s5[f"h{j}"] = w_new, s4[f"v{j}"], conv.response.payload.result
        s5, v5 = cut("result", s5, v4)

        out = self.response.payload
        m.d.comb += [self.response.valid.eq(v5), out.last.eq(s5["last"])]
        for j in lanes:
            m.d.comb += [out.w[j].eq(s5[f"w{j}"]), out.v[j].eq(s5[f"v{j}"]), out.w16[j].eq(s5[f"h{j}"])]
        return m
