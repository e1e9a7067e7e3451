"""Training masks for N:M sparse weights: forward, backward and transposable.

The three GEMMs of a linear layer (``W`` is ``C_out x C_in``; conv after im2col) reduce over
different dimensions, and hardware can only skip pruned weights when the groups of ``m`` lie
along the reduction dimension:

* forward (FF) ``Y = X W^T`` reduces over ``C_in``: :func:`forward_mask` groups along ``C_in``
  (dim 1), for a conv weight ``(C_out, C_in, kh, kw)`` at every kernel position;
* backward (BP) ``dX = dY W`` reduces over ``C_out``: :func:`backward_mask` groups along
  ``C_out`` (dim 0), from the dense weight or from the forward-pruned one (Bi-Mask style);
* :func:`transposable_mask` is one mask that is N:M along both, inside every ``m x m`` block
  of dims (0, 1), so the same pruned weight serves both GEMMs.

Every mask ranks elements by :func:`~trainforge.models.nm.magnitude_key` (NaN above inf, ties
to the lower index), so the masks match the ``nm-prune`` RTL bit for bit.
"""

from __future__ import annotations

import itertools
from functools import cache
from typing import Literal

import torch

from trainforge.errors import UsageError
from trainforge.models.nm import _check_float, _check_nm, magnitude_key, nm_mask, zero_pad_to_multiple

__all__ = [
    "EXACT_MAX_M",
    "backward_mask",
    "forward_mask",
    "transposable_mask",
    "transposable_patterns",
]

MaskSource = Literal["dense", "forward"]
TransposableMethod = Literal["auto", "exact", "greedy"]

#: Largest ``m`` for which :func:`transposable_mask` can enumerate every valid block
#: (2:4 has 90 patterns, 1:4 and 3:4 have 24 each); larger blocks use the greedy method.
EXACT_MAX_M = 4

_SOURCES = ("dense", "forward")
_METHODS = ("auto", "exact", "greedy")


def _check_weight(weight: torch.Tensor, what: str) -> None:
    _check_float(weight)
    if weight.dim() < 2:
        raise UsageError(
            f"{what} needs a weight of at least 2 dimensions (C_out, C_in, ...), not shape {tuple(weight.shape)}"
        )


def forward_mask(weight: torch.Tensor, n: int, m: int, *, pad: bool = False) -> torch.Tensor:
    """Mask of the forward GEMM: N:M in groups of ``m`` along ``C_in`` (dim 1).

    Parameters
    ----------
    weight : torch.Tensor
        A Linear ``(C_out, C_in)`` or conv ``(C_out, C_in, kh, kw)`` weight, floating point.
    n, m : int
        Keep ``n`` of every ``m``, ``1 <= n < m``.
    pad : bool
        Zero-pad a ``C_in`` that is not a multiple of ``m`` (see :func:`~trainforge.models.nm.nm_mask`)
        instead of raising.

    Returns
    -------
    torch.Tensor
        Bool mask of ``weight``'s shape; exactly ``n`` kept per group (at most ``n`` in a padded tail).

    Raises
    ------
    TypeError
        ``weight`` is not a floating-point tensor.
    trainforge.errors.UsageError
        Invalid ``n``/``m``, fewer than 2 dimensions, or ``C_in`` not a multiple of ``m`` without ``pad``.
    """
    _check_weight(weight, "forward_mask")
    return nm_mask(weight, n, m, dim=1, pad=pad)


def backward_mask(
    weight: torch.Tensor,
    n: int,
    m: int,
    *,
    source: MaskSource = "dense",
    forward: torch.Tensor | None = None,
    pad: bool = False,
) -> torch.Tensor:
    """Mask of the backward (input-gradient) GEMM: N:M in groups of ``m`` along ``C_out`` (dim 0).

    Parameters
    ----------
    weight : torch.Tensor
        A Linear ``(C_out, C_in)`` or conv ``(C_out, C_in, kh, kw)`` weight, floating point.
    n, m : int
        Keep ``n`` of every ``m``, ``1 <= n < m``.
    source : {"dense", "forward"}
        ``"dense"``: rank the dense weight, independently of the forward mask, so exactly ``n``
        are kept per group. ``"forward"`` (Bi-Mask): rank the forward-pruned weight (pruned
        positions read as zero) and intersect with the forward mask, so the backward GEMM only
        uses weights the forward GEMM also uses; a group may then keep fewer than ``n``. (An
        N:M pruning unit fed the forward-pruned weight returns ``n`` per group, some of them
        zeros; ANDed with the forward mask that is this mask.)
    forward : torch.Tensor, optional
        The forward mask, when ``source="forward"`` and it is already at hand; computed with
        :func:`forward_mask` otherwise.
    pad : bool
        Zero-pad ``C_out`` (and ``C_in`` for the forward mask) to a multiple of ``m``.

    Returns
    -------
    torch.Tensor
        Bool mask of ``weight``'s shape.

    Raises
    ------
    TypeError
        ``weight`` is not a floating-point tensor.
    trainforge.errors.UsageError
        Invalid ``n``/``m``/``source``, a ``forward`` mask of the wrong shape or dtype, or a grouped
        dimension that is not a multiple of ``m`` without ``pad``.
    """
    _check_weight(weight, "backward_mask")
    if source not in _SOURCES:
        raise UsageError(f"source must be one of {', '.join(map(repr, _SOURCES))}, not {source!r}")
    if source == "dense":
        if forward is not None:
            raise UsageError("forward= is only used with source='forward'")
        return nm_mask(weight, n, m, dim=0, pad=pad)
    if forward is None:
        forward = forward_mask(weight, n, m, pad=pad)
    elif forward.dtype != torch.bool or forward.shape != weight.shape:
        raise UsageError(
            f"forward must be a bool mask of shape {tuple(weight.shape)}, not {forward.dtype} {tuple(forward.shape)}"
        )
    # where(), not multiply: a pruned inf or NaN times 0 would be NaN and outrank everything.
    pruned = torch.where(forward, weight, torch.zeros((), dtype=weight.dtype, device=weight.device))
    return nm_mask(pruned, n, m, dim=0, pad=pad) & forward


@cache
def _patterns_cpu(n: int, m: int) -> torch.Tensor:
    """Every m x m 0/1 matrix with n ones in each row and column, as (count, m, m) bool.

    Rows are filled top to bottom, each from ``itertools.combinations(range(m), n)`` in order,
    so the patterns come in lexicographic order of their rows' column sets.
    """
    rows = list(itertools.combinations(range(m), n))
    found: list[tuple[tuple[int, ...], ...]] = []

    def extend(prefix: list[tuple[int, ...]], col_count: list[int]) -> None:
        left = m - len(prefix)
        if left == 0:
            found.append(tuple(prefix))
            return
        for cols in rows:
            if any(col_count[c] == n for c in cols):
                continue
            new_count = col_count.copy()
            for c in cols:
                new_count[c] += 1
            # every column must still be able to reach n with the rows that are left
            if all(n - cnt <= left - 1 for cnt in new_count):
                extend([*prefix, cols], new_count)

    extend([], [0] * m)
    out = torch.zeros(len(found), m, m, dtype=torch.bool)
    for p, pattern in enumerate(found):
        for r, cols in enumerate(pattern):
            out[p, r, list(cols)] = True
    return out


def transposable_patterns(n: int, m: int) -> torch.Tensor:
    """All transposable N:M patterns of one ``m x m`` block, for ``m <= EXACT_MAX_M``.

    Parameters
    ----------
    n, m : int
        ``1 <= n < m <= EXACT_MAX_M``.

    Returns
    -------
    torch.Tensor
        Bool tensor ``(count, m, m)``, ``n`` True per row and per column; 90 patterns for 2:4.
        The order (rows' kept-column sets in lexicographic order, row 0 first) is the
        tie-break of the exact method: the first best-scoring pattern wins.
    """
    _check_nm(n, m)
    if m > EXACT_MAX_M:
        raise UsageError(f"exact transposable patterns are enumerated for m <= {EXACT_MAX_M}, not m={m}")
    return _patterns_cpu(n, m).clone()


def _blocks(w: torch.Tensor, m: int) -> tuple[torch.Tensor, tuple[int, ...]]:
    """(R, C, *rest) -> (blocks, m*m) in row-major order inside each block, plus the permuted shape."""
    rest = tuple(range(2, w.dim()))
    moved = w.permute(*rest, 0, 1)  # (*rest, R, C)
    lead = moved.shape[:-2]
    rows, cols = moved.shape[-2:]
    b = moved.reshape(*lead, rows // m, m, cols // m, m).transpose(-3, -2)
    return b.reshape(-1, m * m), tuple(moved.shape)


def _unblocks(blocks: torch.Tensor, moved_shape: tuple[int, ...], m: int) -> torch.Tensor:
    """Inverse of :func:`_blocks`."""
    *lead, rows, cols = moved_shape
    b = blocks.reshape(*lead, rows // m, cols // m, m, m).transpose(-3, -2).reshape(moved_shape)
    k = len(lead)
    # (*rest, R, C) -> (R, C, *rest)
    return b.permute(k, k + 1, *range(k))


def _exact_blocks(w_blocks: torch.Tensor, n: int, m: int) -> torch.Tensor:
    patterns = _patterns_cpu(n, m).to(w_blocks.device).reshape(-1, m * m).to(torch.float64).T  # (m*m, K)
    wb = w_blocks.to(torch.float64)
    # Lexicographic score, consistent with the ranking rule: most NaNs kept, then most infs,
    # then the largest sum of the finite magnitudes.
    nan_count = torch.isnan(wb).to(torch.float64) @ patterns
    ok = nan_count == nan_count.amax(dim=-1, keepdim=True)
    inf_count = torch.where(ok, torch.isinf(wb).to(torch.float64) @ patterns, -1.0)
    ok &= inf_count == inf_count.amax(dim=-1, keepdim=True)
    finite = torch.where(torch.isfinite(wb), wb.abs(), 0.0) @ patterns
    best = torch.where(ok, finite, -torch.inf).argmax(dim=-1)  # first maximum: documented tie-break
    return _patterns_cpu(n, m).to(w_blocks.device).reshape(-1, m * m)[best]


def _greedy_blocks(w_blocks: torch.Tensor, n: int, m: int) -> torch.Tensor:
    keys = magnitude_key(w_blocks)
    # Stable descending sort: equal magnitudes are visited in row-major order.
    order = torch.sort(keys, dim=-1, descending=True, stable=True).indices
    count = w_blocks.shape[0]
    mask = torch.zeros(count, m * m, dtype=torch.bool, device=w_blocks.device)
    row_used = torch.zeros(count, m, dtype=torch.int64, device=w_blocks.device)
    col_used = torch.zeros_like(row_used)
    every = torch.arange(count, device=w_blocks.device)
    for j in range(m * m):
        pos = order[:, j]
        r, c = pos // m, pos % m
        accept = (row_used[every, r] < n) & (col_used[every, c] < n)
        mask[every, pos] = accept
        row_used[every, r] += accept
        col_used[every, c] += accept
    return mask


def transposable_mask(
    weight: torch.Tensor,
    n: int,
    m: int,
    *,
    method: TransposableMethod = "auto",
    pad: bool = False,
) -> torch.Tensor:
    """One mask that is N:M along dim 1 and along dim 0 inside every ``m x m`` block.

    For a Linear weight ``(C_out, C_in)`` the blocks tile the matrix. For a conv weight
    ``(C_out, C_in, kh, kw)`` the blocks tile the ``(C_out, C_in)`` matrix at every kernel
    position separately, so the row groups are exactly those of :func:`forward_mask` (along
    ``C_in``) and the column groups exactly those of :func:`backward_mask` (along ``C_out``):
    one pruned weight serves the forward and the backward GEMM, each N:M along its reduction
    dimension. (Flattening to ``(C_out, C_in*kh*kw)`` instead would make the row groups mix
    kernel positions and differ from the forward mask.)

    Parameters
    ----------
    weight : torch.Tensor
        Floating-point tensor of at least 2 dimensions.
    n, m : int
        ``1 <= n < m``.
    method : {"auto", "exact", "greedy"}
        ``"exact"`` scores every valid block pattern (:func:`transposable_patterns`; 90 for
        2:4) by the sum of kept magnitudes and takes the best, so exactly ``n`` are kept in
        every row and column of a block; it needs ``m <= EXACT_MAX_M``. ``"greedy"`` visits
        the block's ``m*m`` elements by decreasing magnitude and keeps one while its row and
        its column have fewer than ``n`` kept (a 2-approximation of the exact score). Greedy
        can end with a row or column holding **fewer** than ``n`` (at most ``n`` is
        guaranteed); the hardware then stores zeros in the empty slots. ``"auto"`` is exact for
        ``m <= EXACT_MAX_M`` and greedy above.
    pad : bool
        Zero-pad dims 0 and 1 to multiples of ``m`` (padding never beats a real element in
        greedy, scores zero in exact) and cut the mask back; default: an error.

    Returns
    -------
    torch.Tensor
        Bool mask of ``weight``'s shape.

    Raises
    ------
    TypeError
        ``weight`` is not a floating-point tensor.
    trainforge.errors.UsageError
        Invalid ``n``/``m``/``method``, fewer than 2 dimensions, ``"exact"`` with
        ``m > EXACT_MAX_M``, or dims 0/1 not multiples of ``m`` without ``pad``.
    """
    _check_weight(weight, "transposable_mask")
    _check_nm(n, m)
    if method not in _METHODS:
        raise UsageError(f"method must be one of {', '.join(map(repr, _METHODS))}, not {method!r}")
    if method == "exact" and m > EXACT_MAX_M:
        raise UsageError(f"method='exact' enumerates blocks for m <= {EXACT_MAX_M}, not m={m}; use 'greedy'")
    rows, cols = weight.shape[:2]
    if not pad:
        for dim, size in ((0, rows), (1, cols)):
            if size % m:
                raise UsageError(
                    f"dimension {dim} has size {size}, which is not a multiple of m={m}; "
                    f"pad it to {-(-size // m) * m}, pass pad=True, or choose m dividing {size}"
                )
    padded = zero_pad_to_multiple(zero_pad_to_multiple(weight, m, 0), m, 1)
    blocks, moved_shape = _blocks(padded, m)
    exact = method == "exact" or (method == "auto" and m <= EXACT_MAX_M)
    chosen = _exact_blocks(blocks, n, m) if exact else _greedy_blocks(blocks, n, m)
    return _unblocks(chosen, moved_shape, m)[:rows, :cols].contiguous()
