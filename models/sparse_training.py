"""N:M sparse training of PyTorch models: SR-STE, BDWP, transposable masks and PGF schedules.

:func:`sparsify` turns every ``nn.Linear`` and ``nn.Conv2d`` of a model into a layer whose
forward and backward GEMMs really use N:M sparse weights, through custom autograd functions:

=============  ==========================  ===============================  =====================
method         FF  ``Y = X W_ff^T``        BP  ``dX = dY W_bp``             WU  ``dW``
=============  ==========================  ===============================  =====================
dense          ``W``                       ``W``                            ``dY^T X``
srste          ``W * fwd`` (along C_in)    ``W * fwd``                      ``dY^T X + λ(1-fwd)W``
bdwp           ``W * fwd`` (along C_in)    ``W * bwd`` (along C_out)        ``dY^T X + λ(1-fwd)W``
transposable   ``W * T`` (both)            ``W * T``                        ``dY^T X + λ(1-T)W``
=============  ==========================  ===============================  =====================

The weight gradient is the straight-through estimate ``dY^T X`` (dense: the WU GEMM is never
sparse) plus the SR-STE decay of the pruned weights. The weight parameter stays dense; masks are
recomputed from it on every forward call, so the state dict is that of the dense model.

Progressive Gradient Flow (PGF) is a :class:`Schedule` object passed to :func:`sparsify` and
advanced by the training loop with ``schedule.step()``: :class:`MaskDecay` (MDGF) scales the
pruned weights by ``alpha(t)`` instead of zeroing them, :class:`StructureDecay` (SDGF) tightens
the N:M pattern in phases.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn import functional

from trainforge.errors import UsageError
from trainforge.models.masks import backward_mask, forward_mask, transposable_mask

__all__ = [
    "DEFAULT_DECAY",
    "METHODS",
    "LayerMasks",
    "MaskDecay",
    "Schedule",
    "SparseConv2d",
    "SparseLinear",
    "SparsityConfig",
    "StructureDecay",
    "densify",
    "sparse_conv2d",
    "sparse_linear",
    "sparse_masks",
    "sparsify",
]

Method = Literal["dense", "srste", "bdwp", "transposable"]
Pattern = tuple[int, int]

#: Training methods understood by :func:`sparsify`.
METHODS: tuple[str, ...] = ("dense", "srste", "bdwp", "transposable")
#: SR-STE's lambda in the reference code (aojunzz/NM-sparsity).
DEFAULT_DECAY = 2e-4

_SOURCES = ("dense", "forward")
_TRANSPOSABLE_METHODS = ("auto", "exact", "greedy")
_INCOMPATIBLE = ("error", "dense", "pad")
_DECAY_KINDS = ("linear", "exponential", "step")
# Weight dims whose groups of m each method needs: FF groups along C_in (1), BP along C_out (0).
_GROUPED_DIMS = {"dense": (), "srste": (1,), "bdwp": (1, 0), "transposable": (0, 1)}


def _check_pattern(n: Any, m: Any, what: str = "N:M") -> Pattern:
    for name, value in (("n", n), ("m", m)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{what}: {name} must be an integer, not {value!r}")
    if not 1 <= n < m:
        raise UsageError(f"{what} needs 1 <= n < m, not n={n}, m={m}")
    return (n, m)


def _check_step(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UsageError(f"{name} must be a non-negative integer, not {value!r}")
    return value


# --------------------------------------------------------------------------------------------
# Progressive Gradient Flow schedules


class Schedule:
    """A step counter shared by the layers of a model; base of the PGF schedules.

    The training loop calls :meth:`step` once per optimizer step; every sparse layer reads the
    schedule at its next forward call. One schedule object may be shared by several models.

    Attributes
    ----------
    t : int
        Steps taken so far (starts at 0).
    """

    def __init__(self) -> None:
        self._t = 0

    @property
    def t(self) -> int:
        return self._t

    def step(self, count: int = 1) -> None:
        """Advance the counter by ``count`` steps (a non-negative integer)."""
        self._t += _check_step(count, "count")

    def state_dict(self) -> dict[str, int]:
        """The counter, for checkpoints."""
        return {"t": self._t}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore the counter saved by :meth:`state_dict`."""
        self._t = _check_step(state.get("t"), "state['t']")

    def _at(self, t: int | None) -> int:
        return self._t if t is None else _check_step(t, "t")


class MaskDecay(Schedule):
    """MDGF: the forward weight is ``W * (mask + (1 - mask) * alpha(t))``.

    Pruned weights fade out instead of being cut, so their gradient signal (and the
    layer's output) changes gradually; once ``alpha`` reaches 0 this is plain hard pruning.
    The same ``alpha`` scales the pruned weights of the backward GEMM of ``bdwp``, which is
    therefore exactly BDWP once ``alpha`` is 0. PGF uses the straight-through gradient without
    the SR-STE term, so :func:`sparsify` defaults ``decay`` to 0 with this schedule.

    Parameters
    ----------
    kind : {"linear", "exponential", "step"}
        ``alpha(t) = max(0, 1 - rate * t)``, ``exp(-rate * t)``, or 0 (plain binary mask).
    rate : float
        The decay constant ``k`` (PGF's example: 0.0008 per step, linear); positive and finite.
        Required except for ``"step"``.
    """

    def __init__(self, *, kind: Literal["linear", "exponential", "step"] = "linear", rate: float | None = None) -> None:
        super().__init__()
        if kind not in _DECAY_KINDS:
            raise UsageError(f"MaskDecay kind must be one of {', '.join(map(repr, _DECAY_KINDS))}, not {kind!r}")
        if kind != "step" and (isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate < math.inf):
            raise UsageError(f"MaskDecay(kind={kind!r}) needs a positive finite rate, not {rate!r}")
        self.kind = kind
        self.rate = 0.0 if rate is None else float(rate)

    def alpha(self, t: int | None = None) -> float:
        """Scale of the pruned weights at step ``t`` (default: the current step)."""
        t = self._at(t)
        if self.kind == "linear":
            return max(0.0, 1.0 - self.rate * t)
        if self.kind == "exponential":
            return math.exp(-self.rate * t)
        return 0.0

    def __repr__(self) -> str:
        return f"MaskDecay(kind={self.kind!r}, rate={self.rate}, t={self.t})"


class StructureDecay(Schedule):
    """SDGF: tighten the N:M pattern in equal phases, e.g. Dense -> 7:8 -> 4:8 -> 2:8 -> 1:8.

    Parameters
    ----------
    patterns : sequence of (n, m) or None
        The pattern of each phase, ``None`` for a dense phase; the last one must be a pattern
        and equal the ``(n, m)`` given to :func:`sparsify`.
    total_steps : int
        Steps over which the phases are spread equally: step ``t`` is in phase
        ``min(len(patterns) - 1, t * len(patterns) // total_steps)``, and the last pattern
        stays after ``total_steps``. Dense-first and fine-tune fractions of PGF follow from
        the choice of ``patterns`` and ``total_steps``.
    """

    def __init__(self, patterns: Sequence[Pattern | None], *, total_steps: int) -> None:
        super().__init__()
        if isinstance(patterns, str | bytes) or not isinstance(patterns, Sequence) or not patterns:
            raise UsageError(f"StructureDecay patterns must be a non-empty sequence, not {patterns!r}")
        checked: list[Pattern | None] = []
        for p in patterns:
            if p is None:
                checked.append(None)
            elif isinstance(p, tuple | list) and len(p) == 2:
                checked.append(_check_pattern(p[0], p[1], f"StructureDecay pattern {tuple(p)!r}"))
            else:
                raise UsageError(f"StructureDecay patterns must be (n, m) pairs or None, not {p!r}")
        if checked[-1] is None:
            raise UsageError("StructureDecay: the last pattern must be an (n, m) pair, not None")
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise UsageError(f"StructureDecay total_steps must be a positive integer, not {total_steps!r}")
        self.patterns: tuple[Pattern | None, ...] = tuple(checked)
        self.total_steps = total_steps

    @classmethod
    def tightening(cls, n: int, m: int, *, total_steps: int) -> StructureDecay:
        """Dense -> (m-1):m -> m/2:m -> ... -> n:m, halving n (PGF's Dense -> 7:8 -> 4:8 -> 2:8 -> 1:8).

        Parameters
        ----------
        n, m : int
            The final pattern.
        total_steps : int
            See the class.
        """
        _check_pattern(n, m)
        steps: list[Pattern | None] = [None]
        k = m - 1
        while k > n:
            steps.append((k, m))
            k = min(k - 1, m // 2) if k == m - 1 else k // 2
        steps.append((n, m))
        return cls(steps, total_steps=total_steps)

    @property
    def final(self) -> Pattern:
        """The pattern of the last phase."""
        final = self.patterns[-1]
        assert final is not None  # checked in __init__
        return final

    def pattern(self, t: int | None = None) -> Pattern | None:
        """The pattern at step ``t`` (default: the current step); ``None`` means dense."""
        phases = len(self.patterns)
        return self.patterns[min(phases - 1, self._at(t) * phases // self.total_steps)]

    def __repr__(self) -> str:
        names = ["dense" if p is None else f"{p[0]}:{p[1]}" for p in self.patterns]
        return f"StructureDecay({' -> '.join(names)}, total_steps={self.total_steps}, t={self.t})"


# --------------------------------------------------------------------------------------------
# Configuration and masks


@dataclass(frozen=True, kw_only=True)
class SparsityConfig:
    """How one layer is trained; built and validated by :func:`sparsify`.

    Parameters
    ----------
    method : {"dense", "srste", "bdwp", "transposable"}
        See the module documentation.
    n, m : int
        The N:M pattern, ``1 <= n < m`` (the final one under :class:`StructureDecay`).
    decay : float, optional
        SR-STE lambda, ``>= 0``: ``lambda * (1 - mask) * W`` is added to the weight gradient.
        Default ``DEFAULT_DECAY`` (2e-4) for the sparse methods, 0 for ``dense`` and with a
        :class:`MaskDecay` schedule (PGF uses the plain straight-through gradient).
    bwd_mask_source : {"dense", "forward"}, optional
        ``bdwp`` only (default ``"dense"``): the backward mask ranks the dense weight
        (independent masks) or the forward-pruned weight, intersected with the forward mask
        (Bi-Mask); see :func:`~trainforge.models.masks.backward_mask`.
    transposable_method : {"auto", "exact", "greedy"}, optional
        ``transposable`` only (default ``"auto"``); see
        :func:`~trainforge.models.masks.transposable_mask`.
    schedule : Schedule or None
        A PGF schedule (:class:`MaskDecay` or :class:`StructureDecay`), not for ``dense``.
    incompatible : {"error", "dense", "pad"}
        A layer whose grouped dimension is not a multiple of ``m``: raise, leave the layer
        dense, or zero-pad the tail group (it keeps ``min(n, k)`` of its ``k`` weights).
    """

    method: Method
    n: int = 2
    m: int = 4
    decay: float | None = None
    bwd_mask_source: Literal["dense", "forward"] | None = None
    transposable_method: Literal["auto", "exact", "greedy"] | None = None
    schedule: Schedule | None = None
    incompatible: Literal["error", "dense", "pad"] = "error"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UsageError(f"method must be one of {', '.join(map(repr, METHODS))}, not {self.method!r}")
        _check_pattern(self.n, self.m)
        # Fill the method-dependent defaults (frozen dataclass, hence object.__setattr__).
        if self.decay is None:
            sparse = self.method != "dense" and not isinstance(self.schedule, MaskDecay)
            object.__setattr__(self, "decay", DEFAULT_DECAY if sparse else 0.0)
        if self.method == "bdwp" and self.bwd_mask_source is None:
            object.__setattr__(self, "bwd_mask_source", "dense")
        if self.method == "transposable" and self.transposable_method is None:
            object.__setattr__(self, "transposable_method", "auto")
        decay = self.decay
        if isinstance(decay, bool) or not isinstance(decay, int | float) or not 0 <= decay < math.inf:
            raise UsageError(f"decay must be a finite number >= 0, not {decay!r}")
        if self.method == "dense" and decay:
            raise UsageError(f"decay applies to the sparse methods, not to 'dense' (got decay={decay!r})")
        if self.method == "bdwp":
            if self.bwd_mask_source not in _SOURCES:
                valid = ", ".join(map(repr, _SOURCES))
                raise UsageError(f"bwd_mask_source must be one of {valid}, not {self.bwd_mask_source!r}")
        elif self.bwd_mask_source is not None:
            raise UsageError(f"bwd_mask_source applies only to method 'bdwp', not {self.method!r}")
        if self.method == "transposable":
            if self.transposable_method not in _TRANSPOSABLE_METHODS:
                valid = ", ".join(map(repr, _TRANSPOSABLE_METHODS))
                raise UsageError(f"transposable_method must be one of {valid}, not {self.transposable_method!r}")
        elif self.transposable_method is not None:
            raise UsageError(f"transposable_method applies only to method 'transposable', not {self.method!r}")
        if self.schedule is not None:
            if not isinstance(self.schedule, MaskDecay | StructureDecay):
                raise UsageError(f"schedule must be a MaskDecay or StructureDecay, not {self.schedule!r}")
            if self.method == "dense":
                raise UsageError(f"a schedule needs a sparse method, not 'dense' (got {self.schedule!r})")
            if isinstance(self.schedule, StructureDecay) and self.schedule.final != (self.n, self.m):
                final = f"{self.schedule.final[0]}:{self.schedule.final[1]}"
                raise UsageError(f"the StructureDecay ends at {final} but n:m is {self.n}:{self.m}; make them equal")
        if self.incompatible not in _INCOMPATIBLE:
            valid = ", ".join(map(repr, _INCOMPATIBLE))
            raise UsageError(f"incompatible must be one of {valid}, not {self.incompatible!r}")

    def patterns(self) -> tuple[Pattern, ...]:
        """Every N:M pattern a layer may be pruned with over the training."""
        if self.method == "dense":
            return ()
        if isinstance(self.schedule, StructureDecay):
            return tuple(p for p in self.schedule.patterns if p is not None)
        return ((self.n, self.m),)

    def pattern(self) -> Pattern | None:
        """The pattern in force now; ``None`` means dense."""
        if self.method == "dense":
            return None
        if isinstance(self.schedule, StructureDecay):
            return self.schedule.pattern()
        return (self.n, self.m)

    def alpha(self) -> float:
        """Scale of the pruned weights now: 0 except under :class:`MaskDecay`."""
        return self.schedule.alpha() if isinstance(self.schedule, MaskDecay) else 0.0


@dataclass(frozen=True)
class LayerMasks:
    """The masks a sparse layer applies to its weight in the two sparse GEMMs.

    Attributes
    ----------
    forward : torch.Tensor or None
        Bool mask, weight's shape, of the forward GEMM; ``None`` when the layer is dense now.
    backward : torch.Tensor or None
        Bool mask of the input-gradient GEMM (the forward mask itself for ``srste``).
    pattern : (n, m) or None
        The N:M pattern in force.
    alpha : float
        Scale of the pruned weights (MDGF); 0 for hard pruning.
    """

    forward: torch.Tensor | None
    backward: torch.Tensor | None
    pattern: Pattern | None
    alpha: float = 0.0


def _compute_masks(weight: torch.Tensor, config: SparsityConfig) -> LayerMasks:
    pattern = config.pattern()
    if pattern is None:
        return LayerMasks(None, None, None, 0.0)
    n, m = pattern
    pad = config.incompatible == "pad"
    with torch.no_grad():
        w = weight.detach()
        if config.method == "transposable":
            assert config.transposable_method is not None
            fwd = bwd = transposable_mask(w, n, m, method=config.transposable_method, pad=pad)
        else:
            fwd = forward_mask(w, n, m, pad=pad)
            if config.method == "bdwp":
                if config.bwd_mask_source == "forward":
                    bwd = backward_mask(w, n, m, source="forward", forward=fwd, pad=pad)
                else:
                    bwd = backward_mask(w, n, m, pad=pad)
            else:
                bwd = fwd
    return LayerMasks(fwd, bwd, pattern, config.alpha())


# --------------------------------------------------------------------------------------------
# Autograd functions


def _masked(weight: torch.Tensor, mask: torch.Tensor | None, alpha: float) -> torch.Tensor:
    if mask is None:
        return weight
    # where(), not multiply: a pruned inf or NaN must not turn into NaN.
    pruned = weight * alpha if alpha else torch.zeros((), dtype=weight.dtype, device=weight.device)
    return torch.where(mask, weight, pruned)


def _decay_term(weight: torch.Tensor, mask: torch.Tensor | None, decay: float) -> torch.Tensor | None:
    if mask is None or not decay:
        return None
    return decay * torch.where(mask, torch.zeros((), dtype=weight.dtype, device=weight.device), weight)


class _SparseLinearFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, mask_fwd, mask_bwd, alpha, decay):
        ctx.save_for_backward(x, weight, mask_fwd, mask_bwd)
        ctx.alpha, ctx.decay, ctx.has_bias = alpha, decay, bias is not None
        return functional.linear(x, _masked(weight, mask_fwd, alpha), bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        x, weight, mask_fwd, mask_bwd = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = grad_y @ _masked(weight, mask_bwd, ctx.alpha)  # BP GEMM, reduces over C_out
        gy = grad_y.reshape(-1, grad_y.shape[-1])
        if ctx.needs_input_grad[1]:
            grad_w = gy.T @ x.reshape(-1, x.shape[-1])  # WU GEMM, dense
            decay = _decay_term(weight, mask_fwd, ctx.decay)
            if decay is not None:
                grad_w = grad_w + decay
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = gy.sum(dim=0)
        return grad_x, grad_w, grad_b, None, None, None, None


class _SparseConv2dFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, mask_fwd, mask_bwd, alpha, decay, stride, padding, dilation, groups):
        ctx.save_for_backward(x, weight, mask_fwd, mask_bwd)
        ctx.alpha, ctx.decay, ctx.has_bias = alpha, decay, bias is not None
        ctx.conv = (stride, padding, dilation, groups)
        return functional.conv2d(x, _masked(weight, mask_fwd, alpha), bias, stride, padding, dilation, groups)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        x, weight, mask_fwd, mask_bwd = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            w_bp = _masked(weight, mask_bwd, ctx.alpha)
            grad_x = torch.nn.grad.conv2d_input(x.shape, w_bp, grad_y, *ctx.conv)
        if ctx.needs_input_grad[1]:
            grad_w = torch.nn.grad.conv2d_weight(x, weight.shape, grad_y, *ctx.conv)
            decay = _decay_term(weight, mask_fwd, ctx.decay)
            if decay is not None:
                grad_w = grad_w + decay
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_y.sum(dim=(0, 2, 3))
        return grad_x, grad_w, grad_b, *([None] * 8)


def _check_masks(weight: torch.Tensor, *masks: torch.Tensor | None) -> None:
    for mask in masks:
        if mask is not None and (mask.dtype != torch.bool or mask.shape != weight.shape):
            raise UsageError(
                f"masks must be bool tensors of the weight's shape {tuple(weight.shape)}, "
                f"not {mask.dtype} {tuple(mask.shape)}"
            )


def sparse_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    mask_fwd: torch.Tensor | None = None,
    mask_bwd: torch.Tensor | None = None,
    alpha: float = 0.0,
    decay: float = 0.0,
) -> torch.Tensor:
    """``F.linear`` with explicit masks in the forward and the input-gradient GEMM.

    Forward ``y = x (W * mask_fwd)^T + b``; backward ``dx = dy (W * mask_bwd)``,
    ``dW = dy^T x + decay * (1 - mask_fwd) * W`` (straight-through, dense), ``db = sum dy``.
    A pruned weight counts as ``alpha * W`` rather than 0 when ``alpha`` is not 0 (MDGF).

    Parameters
    ----------
    x : torch.Tensor
        Input ``(..., C_in)``.
    weight : torch.Tensor
        Dense weight ``(C_out, C_in)``.
    bias : torch.Tensor, optional
        ``(C_out,)``.
    mask_fwd, mask_bwd : torch.Tensor, optional
        Bool masks of the weight's shape; ``None`` uses the dense weight in that GEMM.
    alpha : float
        Scale of the pruned weights, 0 (hard pruning) by default.
    decay : float
        SR-STE lambda on the positions pruned by ``mask_fwd``.

    Returns
    -------
    torch.Tensor
        ``(..., C_out)``.
    """
    _check_masks(weight, mask_fwd, mask_bwd)
    return _SparseLinearFunction.apply(x, weight, bias, mask_fwd, mask_bwd, float(alpha), float(decay))


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def sparse_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    *,
    mask_fwd: torch.Tensor | None = None,
    mask_bwd: torch.Tensor | None = None,
    alpha: float = 0.0,
    decay: float = 0.0,
) -> torch.Tensor:
    """``F.conv2d`` with explicit masks in the forward and the input-gradient GEMM.

    The same rules as :func:`sparse_linear`: the forward convolution uses ``W * mask_fwd``,
    the input gradient is the transposed convolution of ``dy`` with ``W * mask_bwd``, and the
    weight gradient is the dense correlation of ``x`` and ``dy`` plus the decay term.

    Parameters
    ----------
    x : torch.Tensor
        Input ``(B, C_in, H, W)``; an unbatched ``(C_in, H, W)`` input is accepted too.
    weight : torch.Tensor
        Dense weight ``(C_out, C_in / groups, kh, kw)``.
    bias, stride, padding, dilation, groups
        As for ``F.conv2d``; ``padding`` must be numeric (pad explicitly for string modes).
    mask_fwd, mask_bwd, alpha, decay
        As for :func:`sparse_linear`.

    Returns
    -------
    torch.Tensor
        The convolution output.
    """
    _check_masks(weight, mask_fwd, mask_bwd)
    if isinstance(padding, str):
        raise UsageError(f"sparse_conv2d needs numeric padding, not {padding!r}; pad the input first")
    unbatched = x.dim() == 3
    if unbatched:
        x = x.unsqueeze(0)
    y = _SparseConv2dFunction.apply(
        x, weight, bias, mask_fwd, mask_bwd, float(alpha), float(decay),
        _pair(stride), _pair(padding), _pair(dilation), groups,
    )  # fmt: skip
    return y.squeeze(0) if unbatched else y


# --------------------------------------------------------------------------------------------
# Layers


class _SparseLayer:
    """Sparse-training state shared by :class:`SparseLinear` and :class:`SparseConv2d`."""

    weight: torch.Tensor
    sparsity: SparsityConfig
    masks: LayerMasks | None

    def compute_masks(self) -> LayerMasks:
        """The masks the next forward call will use, from the current weight and schedule."""
        return _compute_masks(self.weight, self.sparsity)

    def extra_repr(self) -> str:
        c = self.sparsity
        text = super().extra_repr() + f", method={c.method!r}"
        if c.method != "dense":
            text += f", n={c.n}, m={c.m}, decay={c.decay:g}"
        if c.bwd_mask_source is not None:
            text += f", bwd_mask_source={c.bwd_mask_source!r}"
        if c.transposable_method is not None:
            text += f", transposable_method={c.transposable_method!r}"
        if c.schedule is not None:
            text += f", schedule={c.schedule!r}"
        return text


class SparseLinear(_SparseLayer, nn.Linear):
    """An ``nn.Linear`` trained N:M sparse; made by :func:`sparsify` or constructed directly.

    Parameters
    ----------
    *args, **kwargs
        Those of ``nn.Linear``.
    sparsity : SparsityConfig
        The training method.

    Attributes
    ----------
    sparsity : SparsityConfig
        The training method.
    masks : LayerMasks or None
        The masks used by the most recent forward call (``None`` before the first one).
    """

    def __init__(self, *args: Any, sparsity: SparsityConfig, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sparsity = sparsity
        self.masks = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        masks = self.masks = self.compute_masks()
        if masks.forward is None:
            return functional.linear(x, self.weight, self.bias)
        return sparse_linear(
            x, self.weight, self.bias,
            mask_fwd=masks.forward, mask_bwd=masks.backward, alpha=masks.alpha, decay=self.sparsity.decay,
        )  # fmt: skip


class SparseConv2d(_SparseLayer, nn.Conv2d):
    """An ``nn.Conv2d`` trained N:M sparse; made by :func:`sparsify` or constructed directly.

    Every padding mode and string padding of ``nn.Conv2d`` works: the input is padded
    explicitly first, as ``nn.Conv2d`` does for non-zero modes. ``groups`` must be 1.

    Parameters
    ----------
    *args, **kwargs
        Those of ``nn.Conv2d``.
    sparsity : SparsityConfig
        The training method.

    Attributes
    ----------
    sparsity : SparsityConfig
        The training method.
    masks : LayerMasks or None
        The masks used by the most recent forward call (``None`` before the first one).
    """

    def __init__(self, *args: Any, sparsity: SparsityConfig, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.groups != 1 and sparsity.method != "dense":
            raise UsageError(f"N:M sparse training needs groups=1 convolutions, not groups={self.groups}")
        self.sparsity = sparsity
        self.masks = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        masks = self.masks = self.compute_masks()
        if masks.forward is None:
            return self._conv_forward(x, self.weight, self.bias)
        padding: Any = self.padding
        if self.padding_mode != "zeros" or isinstance(padding, str):
            mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
            x = functional.pad(x, self._reversed_padding_repeated_twice, mode=mode)
            padding = 0
        return sparse_conv2d(
            x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups,
            mask_fwd=masks.forward, mask_bwd=masks.backward, alpha=masks.alpha, decay=self.sparsity.decay,
        )  # fmt: skip


_SPARSE_CLASS: dict[type[nn.Module], type[nn.Module]] = {nn.Linear: SparseLinear, nn.Conv2d: SparseConv2d}
_DENSE_CLASS: dict[type[nn.Module], type[nn.Module]] = {v: k for k, v in _SPARSE_CLASS.items()}


def _incompatibility(module: nn.Module, config: SparsityConfig) -> str | None:
    """Why ``module`` cannot be pruned with ``config`` as it stands, or None."""
    if isinstance(module, nn.Conv2d) and module.groups != 1 and config.method != "dense":
        return f"is a grouped convolution (groups={module.groups}), which N:M sparse training does not support"
    if config.incompatible == "pad":
        return None
    names = {0: "C_out", 1: "C_in"}
    for n, m in config.patterns():
        for dim in _GROUPED_DIMS[config.method]:
            size = module.weight.shape[dim]
            if size % m:
                return f"has {names[dim]}={size} (weight dim {dim}), not a multiple of m={m} for {n}:{m}"
    return None


def sparsify(
    model: nn.Module,
    method: Method,
    n: int = 2,
    m: int = 4,
    *,
    decay: float | None = None,
    bwd_mask_source: Literal["dense", "forward"] | None = None,
    transposable_method: Literal["auto", "exact", "greedy"] | None = None,
    schedule: Schedule | None = None,
    incompatible: Literal["error", "dense", "pad"] = "error",
    exclude: Iterable[str] = (),
) -> nn.Module:
    """Train every ``nn.Linear`` and ``nn.Conv2d`` of ``model`` with an N:M sparse method, in place.

    The layer objects stay the same objects (their class becomes :class:`SparseLinear` or
    :class:`SparseConv2d`, subclasses of the originals), so optimizers, hooks and references
    keep working; parameters stay dense and the state dict is unchanged. Only layers whose type
    is exactly ``nn.Linear``/``nn.Conv2d`` (or already sparse, which are reconfigured) change.

    Parameters
    ----------
    model : nn.Module
        The model, or a single layer.
    method : {"dense", "srste", "bdwp", "transposable"}
        ``dense``: ordinary layers (a baseline with the same bookkeeping). ``srste``: forward
        N:M along C_in, refined STE. ``bdwp``: forward N:M along C_in, input gradient N:M along
        C_out, dense weight gradient, SR-STE decay. ``transposable``: one transposable mask in
        both GEMMs.
    n, m : int
        Keep ``n`` of every ``m``, ``1 <= n < m``.
    decay : float, optional
        SR-STE lambda (>= 0) on the forward-pruned weights; default ``DEFAULT_DECAY`` (2e-4),
        or 0 with a :class:`MaskDecay` schedule (PGF uses no SR-STE term). Not for ``dense``.
    bwd_mask_source : {"dense", "forward"}, optional
        ``bdwp`` only, default ``"dense"``; see :func:`~trainforge.models.masks.backward_mask`.
    transposable_method : {"auto", "exact", "greedy"}, optional
        ``transposable`` only, default ``"auto"``.
    schedule : MaskDecay or StructureDecay, optional
        A PGF schedule; the training loop calls ``schedule.step()`` after every optimizer step.
    incompatible : {"error", "dense", "pad"}
        For a layer whose grouped dimension is not a multiple of ``m`` (e.g. a first conv with
        C_in=3, a classifier with 10 outputs), or a grouped convolution: raise (default), leave
        it dense, or zero-pad the tail group (grouped convolutions still raise).
    exclude : iterable of str
        Names (as in ``model.named_modules()``) of layers to leave dense, e.g. the first and last.

    Returns
    -------
    nn.Module
        ``model`` itself.

    Raises
    ------
    trainforge.errors.UsageError
        An invalid option (the message names it and the valid values), an unknown name in
        ``exclude``, or an incompatible layer with ``incompatible="error"``.
    """
    if not isinstance(model, nn.Module):
        raise UsageError(f"sparsify needs an nn.Module, not {type(model).__name__}")
    config = SparsityConfig(
        method=method,
        n=n,
        m=m,
        decay=decay,
        bwd_mask_source=bwd_mask_source,
        transposable_method=transposable_method,
        schedule=schedule,
        incompatible=incompatible,
    )
    if isinstance(exclude, str):
        raise UsageError(f"exclude must be a collection of layer names, not the string {exclude!r}")
    excluded = set(exclude)
    modules = dict(model.named_modules())
    unknown = sorted(excluded - modules.keys())
    if unknown:
        raise UsageError(f"exclude names no layer of the model: {', '.join(map(repr, unknown))}")
    for name, module in modules.items():
        if name in excluded or (type(module) not in _SPARSE_CLASS and type(module) not in _DENSE_CLASS):
            continue
        reason = _incompatibility(module, config)
        if reason is not None:
            grouped = reason.startswith("is a grouped")
            if config.incompatible == "error" or (grouped and config.incompatible == "pad"):
                hint = "incompatible='dense' or " if grouped else "incompatible='pad' or 'dense', or "
                raise UsageError(f"layer {name or '<model>'!r} {reason}; use {hint}exclude=[{name!r}]")
            _make_dense(module)  # incompatible="dense"
            continue
        module.__class__ = _SPARSE_CLASS.get(type(module), type(module))
        module.sparsity = config
        module.masks = None
    return model


def densify(model: nn.Module) -> nn.Module:
    """Undo :func:`sparsify` in place: sparse layers become ordinary ``nn.Linear``/``nn.Conv2d`` again.

    The weights are unchanged (still dense); prune them yourself with the masks of
    :func:`sparse_masks` if the deployed model should be sparse.
    """
    for module in model.modules():
        _make_dense(module)
    return model


def _make_dense(module: nn.Module) -> None:
    base = _DENSE_CLASS.get(type(module))
    if base is not None:
        del module.sparsity, module.masks
        module.__class__ = base


def sparse_masks(model: nn.Module) -> dict[str, LayerMasks]:
    """The masks every sparse layer of ``model`` would use now, by layer name.

    Computed from the current weights and schedules (what the next forward call uses); the
    masks of the last forward call are each layer's ``masks`` attribute.
    """
    return {name: module.compute_masks() for name, module in model.named_modules() if isinstance(module, _SparseLayer)}
