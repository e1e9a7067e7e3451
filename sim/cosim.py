"""Training steps of a small network with every GEMM, PRUNE and UPDATE on the SAT accelerator.

:func:`train_steps` runs ``steps`` SGD iterations of a tiny network on scikit-learn's digits
(``load_digits``, shipped with the package) where the accelerator executes all the work on weights:
the forward (FF), input-gradient (BP) and weight-gradient (WU) GEMMs, the N:M pruning of the working
weights (PRUNE, both copies) and the optimizer step (UPDATE: FP32 master weights, momentum, SR-STE
decay, FP16 working copy). The host does only elementwise glue and layout: ReLU and its derivative,
softmax + cross-entropy and its gradient, FP32 -> FP16 conversion of activations and gradients,
im2col (CNN), and laying activations / gradients out as GEMM operands between programs.

Each program goes through a *runner* (``await runner.run(descriptors, image, label=...)``): the
:class:`GoldenRunner` wraps the bit-exact golden executor (:func:`trainforge.models.sat_golden.execute`),
the cocotb module ``trainforge.sim.testbenches.tb_cosim`` drives the same loop on the Verilator model
(:func:`run_rtl`). With identical host glue, the two runs must leave identical master weights and
losses, bit for bit. :func:`torch_steps` is the same training in plain PyTorch float32
(:func:`trainforge.models.sparse_training.sparse_linear` with explicit N:M masks, autograd, and
``torch.optim.SGD``), the numerical reference; it ranks weights for its masks after rounding them
to FP16, as the accelerator prunes its FP16 working copy (:func:`torch_steps`).

Networks (no biases: the accelerator has no bias path)
    ``mlp``: 64 -> 32 (ReLU) -> 10. ``cnn``: conv 1 -> 8 channels, 3x3, padding 1, stride 2 on the
    8x8 image (im2col by the host, K = 9 ordered (kh, kw, C_in)), ReLU, then a linear 4*4*8 -> 10
    (input ordered (h, w, c)). N:M groups lie along the GEMM's K: with one input channel the conv's
    FF groups therefore span kernel positions (with ``C_in`` a multiple of ``m`` they would be the
    per-position groups along ``C_in`` of :func:`trainforge.models.masks.forward_mask`). The initial
    FP16 working copy is the host's RNE conversion of the initial FP32 weights; the first layer has
    no BP GEMM (nothing below it needs ``dX``).
Padding
    Every weight is a ``C_out x K`` matrix; both dimensions are zero-padded to a multiple of
    ``lcm(cols, m)`` (``cols`` the array's columns, the PRUNE lane count): ``C_in`` so each FF group
    of ``m`` and each panel of ``cols`` columns is whole, ``C_out`` so each BP group and each FF band
    of ``cols`` rows is whole. E.g. the classifier's ``C_out = 10`` becomes 12 for 2:4 and 16 for
    2:8 on the tiny preset, the conv's ``K = 9`` becomes 12 or 16. Padded weights start at zero and
    stay exactly zero: their gradient is zero (padded input columns and padded output gradients are
    zero), and so is their SR-STE decay. The PyTorch reference trains the same padded matrices, so
    both group the same elements.
Methods
    ``dense``: no PRUNE; the host re-formats the accelerator's FP16 w-lines as dense b-lines
    (``m_max:m_max``, index ``k mod m_max``): layout glue, not pruning. UPDATE without mask or decay.
    ``srste``: FF sparse (the FF copy: PRUNE ``transpose=1``, groups along C_in, which also writes
    the keep mask); BP dense on ``W * fwd`` (SR-STE's ``dX = dY W~``, as
    :mod:`trainforge.models.sparse_training`): the host re-formats the w-lines as dense b-lines and
    zeroes the positions the accelerator's FF mask-lines mark pruned (a select, the decision is the
    accelerator's). ``bdwp``: FF sparse as ``srste``; BP sparse on the BP copy (PRUNE
    ``transpose=0``, groups along C_out, ranked on the dense working weights independently of the
    FF mask: :func:`trainforge.models.masks.backward_mask` with ``source="dense"``). Both sparse
    methods UPDATE with the FF mask (SR-STE decay ``2e-4`` on the pruned weights).
Programs per iteration
    (first iteration, sparse methods: PRUNE of the initial weights), then one FF program per layer,
    one BP program per layer but the first (last layer first), then per layer one program of its WU
    GEMM tiles, its UPDATE and the PRUNEs of the new working weights for the next iteration
    ("pre-generation"). GEMM tiles in flight do not see each other's stores, so a GEMM reading what
    another wrote is always in a later program; PRUNE and UPDATE wait for the stores before them.
    Every GEMM is output-stationary.
Memory
    Per layer, in the panel layout (``panel_stride = C_out``): FP32 master weights and momentum
    (acc-lines), the FP16 working copy (w-lines), the FF keep mask (mask-lines); the FF copy (one run
    of b-lines per band of ``cols`` output rows: exactly the B operand of the FF GEMM's column tile)
    and the BP copy (one run per panel: the B operand of the BP GEMM's column tile). Operands and
    results of one program live in a scratch area after these, discarded after the program.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.nn import functional

from trainforge.errors import SimulationError, UsageError
from trainforge.hw.sat import isa, lines
from trainforge.hw.sat.config import SatConfig
from trainforge.hw.sat.isa import Dataflow, Prune, Tag, Update
from trainforge.models.nm import nm_mask
from trainforge.models.weight_update import IN_DTYPES

__all__ = [
    "COSIM_ENV",
    "COSIM_OUT_ENV",
    "COUNTED_OPS",
    "DECAY",
    "DEFAULT_LR",
    "METHODS",
    "MODELS",
    "MOMENTUM",
    "CosimResult",
    "GoldenRunner",
    "LayerSpec",
    "ProgramRun",
    "Runner",
    "TorchResult",
    "check_arguments",
    "golden_steps",
    "network",
    "report",
    "run_rtl",
    "torch_steps",
    "train_steps",
]

MODELS = ("mlp", "cnn")
METHODS = ("dense", "srste", "bdwp")
#: SGD hyper-parameters of every run (momentum as in SAT; decay is SR-STE's lambda).
DEFAULT_LR = 0.1
MOMENTUM = 0.9
DECAY = 2e-4
CLASSES = 10
#: The accelerator's cycle counters reported per operation kind.
COUNTED_OPS = ("ff", "bp", "wu", "prune", "update")
#: Environment of the cocotb module: the run's parameters (JSON) and where it writes its result.
COSIM_ENV, COSIM_OUT_ENV = "TRAINFORGE_COSIM", "TRAINFORGE_COSIM_OUT"

_CNN_STRIDE = 2


# --------------------------------------------------------------------------------------------
# network, data and initial weights
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """One layer as the GEMM ``Y = X W^T`` with ``W`` of ``c_out x c_in`` (conv: after im2col).

    Attributes
    ----------
    name : str
    c_out, c_in : int
        Real sizes (``c_in`` of a conv is ``C_in * kh * kw``).
    out_p, in_p : int
        The padded sizes the accelerator and the reference train.
    rows_per_sample : int
        Rows of ``X`` per input sample (conv: output positions; linear: 1).
    """

    name: str
    c_out: int
    c_in: int
    out_p: int
    in_p: int
    rows_per_sample: int = 1


def _round_up(value: int, unit: int) -> int:
    return -(-value // unit) * unit


def network(model: str, config: SatConfig, m: int) -> list[LayerSpec]:
    """The layers of ``model`` (``"mlp"`` or ``"cnn"``) padded for ``config`` and groups of ``m``."""
    unit = math.lcm(config.cols, m)
    if model == "mlp":
        shapes = [("fc1", 32, 64, 1), ("fc2", CLASSES, 32, 1)]
    elif model == "cnn":
        side = 8 // _CNN_STRIDE
        shapes = [("conv", 8, 9, side * side), ("fc", CLASSES, 8 * side * side, 1)]
    else:
        raise UsageError(f"unknown model {model!r}; valid: {', '.join(MODELS)}")
    return [LayerSpec(name, o, k, _round_up(o, unit), _round_up(k, unit), r) for name, o, k, r in shapes]


def check_arguments(
    config: SatConfig, *, model: str, method: str, n: int, m: int, steps: int, batch: int, lr: float = DEFAULT_LR
) -> None:
    """Raise :class:`~trainforge.errors.UsageError` for arguments :func:`train_steps` cannot run."""
    if model not in MODELS:
        raise UsageError(f"unknown model {model!r}; valid: {', '.join(MODELS)}")
    if method not in METHODS:
        raise UsageError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    if not 1 <= n < m:
        raise UsageError(f"--nm {n}:{m}: need 1 <= n < m")
    if not config.supports(n, m):
        raise UsageError(f"--nm {n}:{m}: m must divide m_max = {config.m_max} of the {config.preset} preset")
    if steps < 1:
        raise UsageError(f"--steps must be >= 1, not {steps}")
    if not 1 <= batch <= 256:
        raise UsageError(f"--batch must be in 1..256, not {batch}")
    if not 0 < lr < 10:
        raise UsageError(f"--lr must be in (0, 10), not {lr}")


def _digits_batches(seed: int, steps: int, batch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``steps`` batches of digits: pixels / 16 as float32 ``(batch, 64)``, labels ``(batch,)``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.from_numpy(digits.data.astype(np.float32) / 16.0)
    y = torch.from_numpy(digits.target.astype(np.int64))
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    picks = [order[(t * batch + torch.arange(batch)) % len(y)] for t in range(steps)]
    return [(x[p], y[p]) for p in picks]


def _initial_weights(layers: Sequence[LayerSpec], seed: int) -> list[torch.Tensor]:
    """``nn.Linear``'s default init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), zero-padded; float32."""
    gen = torch.Generator().manual_seed(seed + 1)
    out = []
    for spec in layers:
        w = torch.zeros(spec.out_p, spec.in_p)
        bound = 1.0 / math.sqrt(spec.c_in)
        w[: spec.c_out, : spec.c_in] = (torch.rand(spec.c_out, spec.c_in, generator=gen) * 2 - 1) * bound
        out.append(w)
    return out


def _im2col(x: torch.Tensor) -> torch.Tensor:
    """``(batch, 64)`` images to ``(batch * positions, 9)`` patches (3x3, padding 1, stride 2)."""
    # By slicing: the same as functional.unfold (positions row-major, K as (kh, kw)), much cheaper.
    padded = functional.pad(x.reshape(-1, 8, 8), (1, 1, 1, 1))
    s = _CNN_STRIDE
    taps = [padded[:, i : i + 8 : s, j : j + 8 : s] for i in range(3) for j in range(3)]
    return torch.stack(taps, dim=-1).reshape(-1, 9)


def _first_input(model: str, x: torch.Tensor) -> torch.Tensor:
    return _im2col(x) if model == "cnn" else x


def _pad_cols(x: torch.Tensor, width: int) -> torch.Tensor:
    return functional.pad(x, (0, width - x.shape[1]))


def _loss_and_grad(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Mean cross-entropy of float32 ``logits`` and its gradient ``(softmax - onehot) / batch``."""
    loss = functional.cross_entropy(logits, labels)
    grad = torch.softmax(logits, dim=1)
    grad[torch.arange(len(labels)), labels] -= 1.0
    return float(loss), grad / len(labels)


# --------------------------------------------------------------------------------------------
# runners
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ProgramRun:
    """What a runner returns for one program: the final image, and the RTL's cycles and counters."""

    image: np.ndarray
    cycles: int | None = None
    counters: Mapping[str, int] | None = None


class Runner(Protocol):
    """Executes one program: ``await run(descriptors, image, label=...)`` -> :class:`ProgramRun`."""

    async def run(self, descriptors: Sequence[isa.Descriptor], image: np.ndarray, *, label: str) -> ProgramRun: ...


class GoldenRunner:
    """Runs programs on the bit-exact golden executor (:func:`trainforge.models.sat_golden.execute`)."""

    def __init__(self, config: SatConfig) -> None:
        self.config = config

    async def run(self, descriptors: Sequence[isa.Descriptor], image: np.ndarray, *, label: str) -> ProgramRun:
        from trainforge.models.sat_golden import execute

        result = execute(self.config, descriptors, image)
        if result.error_code != isa.ErrorCode.NONE:
            raise SimulationError(f"{label}: descriptor {result.executed} failed with {result.error_code.name}")
        return ProgramRun(image=result.image)


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class CosimResult:
    """The outcome of :func:`train_steps`.

    Attributes
    ----------
    losses : list of float
        Mean cross-entropy of each step's batch (float32 values), before that step's update.
    weights : list of list of numpy.ndarray
        FP32 master weights after every step: ``weights[t][l]`` is layer ``l``'s padded
        ``(out_p, in_p)`` float32 matrix, read back from the accelerator's memory.
    cycles : int or None
        Total accelerator cycles over all programs (RTL runs only).
    cycles_by_op : dict or None
        The accelerator's ``ff``, ``bp``, ``wu``, ``prune``, ``update`` cycle counters, summed.
    programs, descriptors : int
        Programs run and descriptors they held.
    initial : list of numpy.ndarray
        The FP32 master weights before the first step (padded, float32).
    """

    losses: list[float]
    weights: list[list[np.ndarray]]
    initial: list[np.ndarray] = dataclasses.field(default_factory=list)
    cycles: int | None = None
    cycles_by_op: dict[str, int] | None = None
    programs: int = 0
    descriptors: int = 0

    def save(self, path: str | os.PathLike) -> None:
        """Write the result to an ``.npz`` file (bit patterns kept exactly)."""
        arrays = {"losses": np.asarray(self.losses, dtype=np.float32)}
        for layer in range(len(self.weights[0]) if self.weights else 0):
            arrays[f"w{layer}"] = np.stack([step[layer] for step in self.weights])
        for layer, w in enumerate(self.initial):
            arrays[f"i{layer}"] = w
        meta = {
            "cycles": self.cycles,
            "cycles_by_op": self.cycles_by_op,
            "programs": self.programs,
            "descriptors": self.descriptors,
        }
        with open(path, "wb") as handle:
            np.savez(handle, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> CosimResult:
        """Inverse of :meth:`save`."""
        with np.load(path) as data:
            meta = json.loads(data["meta"].tobytes().decode())
            layers = sorted((k for k in data.files if k.startswith("w")), key=lambda k: int(k[1:]))
            stacked = [data[k] for k in layers]
            initial = [data[f"i{k[1:]}"] for k in layers if f"i{k[1:]}" in data.files]
            losses = data["losses"].tolist()
        weights = [[w[t] for w in stacked] for t in range(len(losses))]
        return cls(losses=losses, weights=weights, initial=initial, **meta)


@dataclasses.dataclass
class TorchResult:
    """The plain PyTorch float32 run: losses per step and the padded master weights after every step."""

    losses: list[float]
    weights: list[list[np.ndarray]]


# --------------------------------------------------------------------------------------------
# the accelerator's memory for one network
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _LayerMemory:
    spec: LayerSpec
    panels: int
    w32: int
    v32: int
    w16: int
    mask: int
    ff_b: dict[int, int]  # FF copy: band of `cols` output rows -> its b-lines
    bp_b: dict[int, int]  # BP copy: panel -> its b-lines

    @property
    def lines(self) -> int:
        return self.panels * self.spec.out_p


def _layout(config: SatConfig, layers: Sequence[LayerSpec], weights: Sequence[torch.Tensor], n: int, m: int):
    """Place every layer's persistent state; returns the image and the per-layer addresses."""
    image = lines.MemoryImage(config)
    out = []
    for spec, w in zip(layers, weights, strict=True):
        stride = spec.out_p
        w32 = image.place("acc", lines.panel_lines(w.numpy().view(np.uint32), config, panel_stride=stride))
        v32 = image.place("acc", lines.panel_lines(np.zeros(w.shape, np.uint32), config, panel_stride=stride))
        w16_bits = w.to(torch.float16).view(torch.int16).numpy().view(np.uint16)  # host FP32 -> FP16 (RNE)
        w16 = image.place("w", lines.panel_lines(w16_bits, config, panel_stride=stride))
        panels = spec.in_p // config.cols
        mask = image.place("mask", np.zeros((panels * stride, config.cols), dtype=bool))
        ff_steps, bp_steps = spec.in_p // m * n, spec.out_p // m * n
        ff_b = {band: image.alloc_lines("b", ff_steps) for band in range(spec.out_p // config.cols)}
        bp_b = {p: image.alloc_lines("b", bp_steps) for p in range(panels)}
        out.append(_LayerMemory(spec, panels, w32, v32, w16, mask, ff_b, bp_b))
    return image, out


def _prunes(config: SatConfig, mem: _LayerMemory, method: str, n: int, m: int) -> list[Prune]:
    """PRUNE of a layer's working weights: the FF copy and mask (every band), the BP copy (bdwp)."""
    c = config
    out = [
        Prune(
            n=n,
            m=m,
            lines=mem.panels,
            src_addr=mem.w16 + band * c.cols * c.w_words,
            dst_addr=addr,
            mask_addr=mem.mask + band * c.cols * c.mask_words,
            transpose=True,
            write_mask=True,
            panel_stride=mem.spec.out_p,
        )
        for band, addr in mem.ff_b.items()
    ]
    if method == "bdwp":
        out += [
            Prune(n=n, m=m, lines=mem.spec.out_p, src_addr=mem.w16 + p * mem.spec.out_p * c.w_words, dst_addr=addr)
            for p, addr in mem.bp_b.items()
        ]
    return out


def _read_panel(image: np.ndarray, config: SatConfig, kind: str, addr: int, mem: _LayerMemory) -> np.ndarray:
    step = lines.line_words(config, kind)
    raw = lines.read_lines_at(image, config, kind, addr + step * np.arange(mem.lines))
    return lines.panel_matrix(raw, mem.spec.out_p, mem.spec.in_p, config)


def _f16_bits(x: torch.Tensor) -> np.ndarray:
    """Host conversion FP32 -> FP16 (round to nearest even), as bit patterns."""
    return x.to(torch.float16).view(torch.int16).numpy().view(np.uint16)


def _as_f32(bits: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(bits, dtype=np.uint32).view(np.float32).copy())


class _Session:
    """Runs programs against the persistent image: a scratch area per program, counters summed."""

    def __init__(self, config: SatConfig, image: lines.MemoryImage, runner: Runner) -> None:
        self.config, self.runner = config, runner
        self.state = image.words
        self.cycles: int | None = None
        self.by_op: dict[str, int] | None = None
        self.programs = self.descriptors = 0

    def scratch(self) -> lines.MemoryImage:
        return lines.MemoryImage.from_array(self.config, self.state)

    async def run(self, image: lines.MemoryImage, descriptors: list, label: str) -> np.ndarray:
        result = await self.runner.run(descriptors, image.words, label=label)
        if result.image.shape != image.words.shape:
            raise SimulationError(f"{label}: the runner returned an image of shape {result.image.shape}")
        self.state = np.array(result.image[: self.state.shape[0]], dtype=np.uint32)
        self.programs += 1
        self.descriptors += len(descriptors)
        if result.cycles is not None:
            self.cycles = (self.cycles or 0) + result.cycles
        if result.counters is not None:
            self.by_op = self.by_op or dict.fromkeys(COUNTED_OPS, 0)
            for op in COUNTED_OPS:
                self.by_op[op] += int(result.counters[op])
        return result.image

    async def gemm(self, label: str, a: np.ndarray, b: np.ndarray | None, n: int, m: int, tag: Tag, **placed):
        """Run one GEMM ``a . b`` (or pre-placed B lines) as its own program; the FP32 result."""
        image = self.scratch()
        prog = lines.gemm_program(self.config, a, b, n, m, dataflow=Dataflow.OS, image=image, tag=tag, **placed)
        out = await self.run(image, prog.descriptors, label)
        return _as_f32(prog.result_bits(out))


# --------------------------------------------------------------------------------------------
# the training loop on the accelerator (RTL or golden)
# --------------------------------------------------------------------------------------------


async def train_steps(
    config: SatConfig,
    *,
    model: str,
    method: str,
    n: int,
    m: int,
    steps: int,
    seed: int = 0,
    batch: int = 16,
    lr: float = DEFAULT_LR,
    runner: Runner,
) -> CosimResult:
    """Run ``steps`` training iterations with every GEMM, PRUNE and UPDATE executed by ``runner``.

    Parameters
    ----------
    config : SatConfig
        The accelerator.
    model : {"mlp", "cnn"}
    method : {"dense", "srste", "bdwp"}
    n, m : int
        The N:M pattern (``1 <= n < m``, ``m`` dividing ``config.m_max``); with ``dense`` it still
        sets the padding.
    steps : int
        Iterations (at least 1).
    seed : int
        Chooses the batches and the initial weights.
    batch : int
        Samples per iteration.
    lr : float
        SGD learning rate (momentum :data:`MOMENTUM`, SR-STE decay :data:`DECAY` for sparse methods).
    runner : Runner
        Executes each program (:class:`GoldenRunner`, or the RTL runner of ``tb_cosim``).

    Returns
    -------
    CosimResult
    """
    check_arguments(config, model=model, method=method, n=n, m=m, steps=steps, batch=batch, lr=lr)
    c = config
    dense_pattern = (c.m_max, c.m_max)
    layers = network(model, c, m)
    initial = _initial_weights(layers, seed)
    image, mems = _layout(c, layers, initial, n, m)
    session = _Session(c, image, runner)
    sparse = method != "dense"
    losses: list[float] = []
    weights: list[list[np.ndarray]] = []

    if sparse:  # the first iteration's compressed copies, from the initial working weights
        prunes = [p for mem in mems for p in _prunes(c, mem, method, n, m)]
        await session.run(session.scratch(), prunes, "prune initial weights")

    for t, (x, labels) in enumerate(_digits_batches(seed, steps, batch)):
        # ---- FF -------------------------------------------------------------------------------
        inputs, pre = [], []  # FP16 operand X of each layer, FP32 pre-activation Y of each layer
        h = _first_input(model, x)
        for li, mem in enumerate(mems):
            spec = mem.spec
            xb = _f16_bits(_pad_cols(h, spec.in_p))
            inputs.append(xb)
            label = f"step {t} FF {spec.name}"
            if sparse:
                y = await session.gemm(label, xb, None, n, m, Tag.FF, b_addrs=mem.ff_b, b_cols=spec.out_p)
            else:  # dense b-lines re-formatted from the accelerator's w-lines (layout glue)
                w16 = _read_panel(session.state, c, "w", mem.w16, mem)
                y = await session.gemm(label, xb, w16.T, *dense_pattern, Tag.FF)
            pre.append(y)
            if li + 1 < len(mems):
                h = torch.relu(y[:, : spec.c_out]).reshape(batch, -1)
        loss, grad = _loss_and_grad(pre[-1][:, :CLASSES], labels)
        losses.append(loss)

        # ---- BP -------------------------------------------------------------------------------
        grads: list[np.ndarray | None] = [None] * len(mems)  # FP16 dY of each layer
        dy = grad
        for li in range(len(mems) - 1, -1, -1):
            mem = mems[li]
            spec = mem.spec
            dyb = _f16_bits(_pad_cols(dy.reshape(-1, spec.c_out), spec.out_p))
            grads[li] = dyb
            if li == 0:
                break
            label = f"step {t} BP {spec.name}"
            if method == "bdwp":
                dx = await session.gemm(label, dyb, None, n, m, Tag.BP, b_addrs=mem.bp_b, b_cols=spec.in_p)
            else:  # dense BP: W (dense) or W * fwd (srste, the accelerator's FF mask), re-formatted
                w16 = _read_panel(session.state, c, "w", mem.w16, mem)
                if method == "srste":
                    w16 = np.where(_read_panel(session.state, c, "mask", mem.mask, mem), w16, np.uint16(0))
                dx = await session.gemm(label, dyb, w16, *dense_pattern, Tag.BP)
            below = mems[li - 1].spec
            dh = dx[:, : spec.c_in].reshape(-1, below.c_out)
            dy = torch.where(pre[li - 1][:, : below.c_out] > 0, dh, torch.zeros(()))

        # ---- WU, UPDATE, PRUNE for the next iteration ----------------------------------------
        for li, mem in enumerate(mems):
            spec = mem.spec
            scratch = session.scratch()
            wu = lines.gemm_program(
                c, grads[li].T, inputs[li], *dense_pattern, dataflow=Dataflow.OS, image=scratch, tag=Tag.WU
            )
            update = Update(
                lines=mem.lines,
                w_addr=mem.w32,
                v_addr=mem.v32,
                g_addr=wu.c_addr,
                mask_addr=mem.mask,
                w16_addr=mem.w16,
                use_mask=sparse,
                lr=lr,
                momentum=MOMENTUM,
                decay=DECAY if sparse else 0.0,
            )
            program = [*wu.descriptors, update, *(_prunes(c, mem, method, n, m) if sparse else [])]
            await session.run(scratch, program, f"step {t} WU+UPDATE {spec.name}")
        weights.append([_as_f32(_read_panel(session.state, c, "acc", mem.w32, mem)).numpy() for mem in mems])

    return CosimResult(
        losses=losses,
        weights=weights,
        initial=[w.numpy() for w in initial],
        cycles=session.cycles,
        cycles_by_op=session.by_op,
        programs=session.programs,
        descriptors=session.descriptors,
    )


def golden_steps(config: SatConfig, **kwargs: Any) -> CosimResult:
    """:func:`train_steps` on the golden executor (the hardware-exact golden run), synchronously."""
    import asyncio

    return asyncio.run(train_steps(config, runner=GoldenRunner(config), **kwargs))


# --------------------------------------------------------------------------------------------
# plain PyTorch float32 reference
# --------------------------------------------------------------------------------------------


def torch_steps(
    config: SatConfig,
    *,
    model: str,
    method: str,
    n: int,
    m: int,
    steps: int,
    seed: int = 0,
    batch: int = 16,
    lr: float = DEFAULT_LR,
) -> TorchResult:
    """The same iterations in plain PyTorch float32 (autograd, ``torch.optim.SGD``).

    Each layer is :func:`~trainforge.models.sparse_training.sparse_linear` on its padded weight
    with the masks of the method, recomputed every step: FF ``nm_mask(W, dim=1)`` (groups along
    C_in), BP the FF mask (``srste``) or ``nm_mask(W, dim=0)`` (``bdwp``, groups along C_out,
    independent of the FF mask), SR-STE decay on the FF-pruned weights. All arithmetic is float32;
    only the *ranking* for the masks looks at ``W`` rounded to ``config.in_fmt``, because the
    accelerator prunes its FP16 working copy: ranking the FP32 values instead flips the mask wherever
    two weights of a group round to one FP16 value (ties keep the lower index) or swap order, which
    on the MLP already changes 2 of 2048 FF positions after one step and then dominates the
    difference. ``config`` also sets the padding (the same matrices as the accelerator run).
    """
    from trainforge.models.sparse_training import sparse_linear

    check_arguments(config, model=model, method=method, n=n, m=m, steps=steps, batch=batch, lr=lr)
    layers = network(model, config, m)
    work_dtype = IN_DTYPES[config.in_fmt]
    params = [torch.nn.Parameter(w) for w in _initial_weights(layers, seed)]
    opt = torch.optim.SGD(params, lr=lr, momentum=MOMENTUM)
    losses, weights = [], []
    for x, labels in _digits_batches(seed, steps, batch):
        h = _first_input(model, x)
        for li, (spec, w) in enumerate(zip(layers, params, strict=True)):
            fwd = bwd = None
            if method != "dense":  # ranked as the accelerator ranks: on the working copy's values
                ranked = w.detach().to(work_dtype)
                fwd = nm_mask(ranked, n, m, dim=1)
                bwd = fwd if method == "srste" else nm_mask(ranked, n, m, dim=0)
            y = sparse_linear(
                _pad_cols(h, spec.in_p), w, mask_fwd=fwd, mask_bwd=bwd, decay=DECAY if method != "dense" else 0.0
            )
            h = torch.relu(y[:, : spec.c_out]).reshape(batch, -1) if li + 1 < len(layers) else y[:, :CLASSES]
        loss = functional.cross_entropy(h, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        weights.append([w.detach().numpy().copy() for w in params])
    return TorchResult(losses=losses, weights=weights)


# --------------------------------------------------------------------------------------------
# the RTL run and the report
# --------------------------------------------------------------------------------------------


def run_rtl(
    config: SatConfig,
    *,
    model: str,
    method: str,
    n: int,
    m: int,
    steps: int,
    seed: int = 0,
    batch: int = 16,
    lr: float = DEFAULT_LR,
    waves: bool = False,
    timeout: float = 3600,
):
    """:func:`train_steps` on the Verilator model of ``sat`` (one cocotb test, one simulator process).

    Returns
    -------
    result : CosimResult
    sim : trainforge.sim.harness.SimResult
        The harness's record of the run (``waves`` holds the FST path when requested).
    """
    from trainforge.sim import verilator
    from trainforge.sim.harness import simulate

    check_arguments(config, model=model, method=method, n=n, m=m, steps=steps, batch=batch, lr=lr)
    root = verilator.cache_dir() / "runs"
    root.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=f"cosim-{time.strftime('%Y%m%d-%H%M%S')}-", dir=root))
    out = run_dir / "cosim.npz"
    params = dict(model=model, method=method, n=n, m=m, steps=steps, seed=seed, batch=batch, lr=lr)
    sim = simulate(
        "sat",
        config,
        waves=waves,
        run_dir=run_dir,
        timeout=timeout,
        test_module="trainforge.sim.testbenches.tb_cosim",
        extra_env={COSIM_ENV: json.dumps(params), COSIM_OUT_ENV: str(out)},
    )
    if not out.exists():
        raise SimulationError(f"the co-simulation wrote no result; log: {sim.log}")
    return CosimResult.load(out), sim


def _bits(values: Sequence[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float32).view(np.uint32)


def report(rtl: CosimResult, golden: CosimResult, reference: TorchResult) -> dict[str, Any]:
    """The comparison the CLI prints: bit-exactness RTL vs golden, distance to PyTorch, cycles.

    ``bit_exact``: every step's loss and the FP32 master weights after every step are equal bit for
    bit between ``rtl`` and ``golden``. ``max_abs_weight_diff``: final master weights of ``rtl``
    against ``reference``, the largest absolute difference over all layers;
    ``max_abs_weight_change``: the same against the initial weights (how far training moved them,
    the scale the difference is to be judged on).
    """
    same = len(rtl.losses) == len(golden.losses) and np.array_equal(_bits(rtl.losses), _bits(golden.losses))
    same = same and all(
        np.array_equal(a.view(np.uint32), b.view(np.uint32))
        for ra, ga in zip(rtl.weights, golden.weights, strict=True)
        for a, b in zip(ra, ga, strict=True)
    )
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(rtl.weights[-1], reference.weights[-1], strict=True))
    change = max(float(np.max(np.abs(a - b))) for a, b in zip(rtl.weights[-1], rtl.initial, strict=True))
    return {
        "steps": len(rtl.losses),
        "bit_exact": bool(same),
        "max_abs_weight_diff": diff,
        "max_abs_weight_change": change,
        "loss_rtl": [float(v) for v in rtl.losses],
        "loss_golden": [float(v) for v in golden.losses],
        "loss_torch": [float(v) for v in reference.losses],
        "cycles": rtl.cycles,
        "cycles_by_op": rtl.cycles_by_op,
        "programs": rtl.programs,
        "descriptors": rtl.descriptors,
    }
