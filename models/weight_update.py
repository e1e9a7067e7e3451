"""PyTorch reference of the SAT update engine: SGD with momentum and the SR-STE decay, one rounding per op.

The UPDATE descriptor of docs/sat-architecture.md, element by element, every operation one float32
rounding (round to nearest, ties to even)::

    d  = (use_mask and not keep) ? fl(decay * w) : +0      # SR-STE: decay pruned weights only
    g' = fl(g + d)
    v' = fl(fl(momentum * v) + g')
    w' = fl(w - fl(lr * v'))
    w16 = round_to_in_fmt(w')

Each line is a separate PyTorch elementwise op on float32 tensors (never a fused multiply-add), so
the result is the IEEE float32 result of each step: it equals the exact oracle
(:mod:`trainforge.models.fp`) bit for bit on every non-NaN value, subnormals included (PyTorch does
not flush denormals unless ``torch.set_flush_denormal(True)`` was called). NaN *patterns* are the
CPU's, not RISC-V's canonical NaN: the oracle and the RTL return ``0x7FC00000`` (FP16 ``0x7E00``,
BF16 ``0x7FC0``) for every NaN result, whereas x86 returns ``0xFFC00000`` for an invalid operation
and propagates a NaN operand's payload; compare NaN results as "both NaN".
"""

from __future__ import annotations

import numbers

import torch

from trainforge.errors import UsageError

__all__ = ["IN_DTYPES", "sgd_srste_update"]

#: Working-copy formats (``SatConfig.in_fmt``) and their PyTorch dtypes.
IN_DTYPES: dict[str, torch.dtype] = {"fp16": torch.float16, "bf16": torch.bfloat16}


def _f32(name: str, value: float) -> torch.Tensor:
    """``value`` (any real scalar, NumPy included) rounded (RNE) to float32, as a 0-d tensor."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UsageError(f"{name} must be a real number, not {value!r}")
    return torch.tensor(float(value), dtype=torch.float32)


def sgd_srste_update(
    w: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    keep: torch.Tensor,
    *,
    lr: float,
    momentum: float,
    decay: float,
    use_mask: bool,
    in_fmt: str = "fp16",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One UPDATE step of the SAT update engine on float32 tensors.

    Parameters
    ----------
    w, v, g : torch.Tensor of float32
        FP32 master weights, momentum and gradient, all the same shape.
    keep : torch.Tensor of bool
        The FF keep mask (True: the weight is kept by N:M pruning), same shape.
    lr, momentum, decay : float
        Hyper-parameters; each is first rounded (RNE) to float32, as the hardware holds them.
    use_mask : bool
        Apply the SR-STE decay ``decay * w`` to the pruned weights (``keep`` False); when False,
        ``d`` is +0 everywhere and the step is plain SGD with momentum.
    in_fmt : {"fp16", "bf16"}
        Format of the working copy.

    Returns
    -------
    w_new, v_new : torch.Tensor of float32
        ``w'`` and ``v'``.
    w_work : torch.Tensor of float16 or bfloat16
        ``w'`` rounded to ``in_fmt`` (RNE).

    Raises
    ------
    trainforge.errors.UsageError
        A tensor of the wrong dtype or shape, an unknown ``in_fmt`` or a non-numeric hyper-parameter.
    """
    if in_fmt not in IN_DTYPES:
        raise UsageError(f"in_fmt must be one of {', '.join(map(repr, IN_DTYPES))}, not {in_fmt!r}")
    for name, t in (("w", w), ("v", v), ("g", g)):
        if not isinstance(t, torch.Tensor) or t.dtype != torch.float32:
            raise UsageError(f"{name} must be a float32 tensor, not {getattr(t, 'dtype', type(t).__name__)}")
    if not isinstance(keep, torch.Tensor) or keep.dtype != torch.bool:
        raise UsageError(f"keep must be a bool tensor, not {getattr(keep, 'dtype', type(keep).__name__)}")
    for name, t in (("v", v), ("g", g), ("keep", keep)):
        if t.shape != w.shape:
            raise UsageError(f"{name} has shape {tuple(t.shape)}, w has {tuple(w.shape)}; they must match")
    lr32, momentum32, decay32 = _f32("lr", lr), _f32("momentum", momentum), _f32("decay", decay)

    # One elementwise op per line: each result is one float32 rounding.
    dw = torch.mul(w, decay32)
    pruned = ~keep if use_mask else torch.zeros_like(keep)
    d = torch.where(pruned, dw, torch.zeros_like(w))  # +0, not -0: the hardware's choice
    g2 = torch.add(g, d)
    mv = torch.mul(v, momentum32)
    v2 = torch.add(mv, g2)
    step = torch.mul(v2, lr32)
    w2 = torch.sub(w, step)
    return w2, v2, w2.to(IN_DTYPES[in_fmt])
