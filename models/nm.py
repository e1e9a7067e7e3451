"""N:M structured sparsity: masks and the compressed values-and-indices format.

These are the golden models of the online pruning unit (``nm-prune``) and of every later
block that consumes compressed N:M weights. They are vectorised PyTorch and work along any
dimension of a tensor of any rank.

Ranking rule (shared with the RTL, which compares raw bit patterns):

* elements are ranked by magnitude, the bit pattern with the sign bit cleared read as an
  unsigned integer; for every non-NaN value that order is exactly the order of ``|x|``, so
  ``-0 == +0``, subnormals rank above zero and below normals, and infinities rank above every
  finite value;
* NaN ranks above infinity (its exponent field is all ones and its mantissa non-zero), so a
  NaN weight is always kept and a diverged layer stays visible instead of being pruned into
  silence; two NaNs rank by payload;
* ties are broken towards the lower index inside the group.

Compressed format: a group of ``m`` consecutive elements along ``dim`` becomes ``n`` values,
in ascending index order, and ``n`` indices in ``[0, m)``: the position of each kept value
inside its group.
"""

from __future__ import annotations

import torch

from trainforge.errors import UsageError

__all__ = ["magnitude_key", "nm_compress", "nm_decompress", "nm_mask", "zero_pad_to_multiple"]

_KEY_VIEW = {
    torch.float16: (torch.int16, 0x7FFF),
    torch.bfloat16: (torch.int16, 0x7FFF),
    torch.float32: (torch.int32, 0x7FFF_FFFF),
    torch.float64: (torch.int64, 0x7FFF_FFFF_FFFF_FFFF),
}


def magnitude_key(w: torch.Tensor) -> torch.Tensor:
    """Return the ranking key of every element: its bits with the sign cleared, as int64.

    Parameters
    ----------
    w : torch.Tensor
        A float16, bfloat16, float32 or float64 tensor.

    Returns
    -------
    torch.Tensor
        An int64 tensor of the same shape; larger key means larger magnitude (NaN largest).
    """
    _check_float(w)
    int_dtype, sign_clear = _KEY_VIEW[w.dtype]
    return (w.contiguous().view(int_dtype).to(torch.int64)) & sign_clear


def _check_float(w: torch.Tensor) -> None:
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, not {type(w).__name__}")
    if w.dtype not in _KEY_VIEW:
        valid = ", ".join(str(d).removeprefix("torch.") for d in _KEY_VIEW)
        raise TypeError(f"N:M pruning needs a floating-point tensor ({valid}), not {w.dtype}")


def _check_nm(n: int, m: int) -> None:
    for name, value in (("n", n), ("m", m)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{name} must be an integer, not {value!r}")
    if not 1 <= n < m:
        raise UsageError(f"N:M needs 1 <= n < m, not n={n}, m={m}")


def _check_dim(w: torch.Tensor, dim: int) -> int:
    """Validate ``dim`` for ``w`` and return it as a non-negative index."""
    if w.dim() == 0:
        raise UsageError("N:M pruning needs a tensor with at least one dimension")
    if not -w.dim() <= dim < w.dim():
        raise UsageError(f"dim must be in [{-w.dim()}, {w.dim() - 1}] for a {w.dim()}-d tensor, not {dim}")
    return dim % w.dim()


def _grouped(w: torch.Tensor, m: int, dim: int) -> tuple[torch.Tensor, int]:
    """Move ``dim`` last and split it into groups of ``m``: shape (..., groups, m)."""
    dim = _check_dim(w, dim)
    size = w.shape[dim]
    if size % m:
        raise UsageError(
            f"dimension {dim} has size {size}, which is not a multiple of m={m}; "
            f"pad it to {-(-size // m) * m} or choose m dividing {size}"
        )
    moved = w.movedim(dim, -1)
    return moved.reshape(*moved.shape[:-1], size // m, m), dim


def _ungrouped(g: torch.Tensor, dim: int) -> torch.Tensor:
    """Inverse of :func:`_grouped` for a (..., groups, k) tensor."""
    flat = g.reshape(*g.shape[:-2], g.shape[-2] * g.shape[-1])
    return flat.movedim(-1, dim)


def _kept_positions(w: torch.Tensor, n: int, m: int, dim: int) -> tuple[torch.Tensor, int]:
    """Indices (..., groups, n) of the kept elements, ascending inside each group."""
    _check_float(w)
    _check_nm(n, m)
    groups, dim = _grouped(magnitude_key(w), m, dim)
    # Stable descending sort: among equal keys the lower index comes first.
    order = torch.sort(groups, dim=-1, descending=True, stable=True).indices
    kept = torch.sort(order[..., :n], dim=-1).values
    return kept, dim


def zero_pad_to_multiple(w: torch.Tensor, m: int, dim: int) -> torch.Tensor:
    """Append zeros along ``dim`` until its size is a multiple of ``m`` (``w`` itself if it already is).

    This is the padding policy of ``pad=True``: a short tail group is completed with ``+0.0``
    elements placed after the real ones, so they lose every tie against a real element.

    Parameters
    ----------
    w : torch.Tensor
        Any tensor of at least one dimension.
    m : int
        The group size, a positive integer.
    dim : int
        The dimension to pad.

    Returns
    -------
    torch.Tensor
        ``w`` with ``dim`` grown to the next multiple of ``m``.
    """
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise UsageError(f"m must be a positive integer, not {m!r}")
    dim = _check_dim(w, dim)
    extra = -w.shape[dim] % m
    if not extra:
        return w
    shape = list(w.shape)
    shape[dim] = extra
    return torch.cat([w, w.new_zeros(shape)], dim=dim)


def nm_mask(w: torch.Tensor, n: int, m: int, dim: int = -1, *, pad: bool = False) -> torch.Tensor:
    """Boolean mask keeping the ``n`` largest magnitudes in every group of ``m`` along ``dim``.

    Parameters
    ----------
    w : torch.Tensor
        Floating-point weights (float16, bfloat16, float32, float64).
    n, m : int
        Keep ``n`` of every ``m`` consecutive elements, ``1 <= n < m``.
    dim : int
        The dimension along which groups are formed; its size must be a multiple of ``m``
        unless ``pad`` is true.
    pad : bool
        Padding policy for a size that is not a multiple of ``m`` (default off: an error).
        When true the last group is zero-padded to ``m`` elements (:func:`zero_pad_to_multiple`),
        pruned as usual and the padding cut off again, so a tail group of ``k`` real elements
        keeps ``min(n, k)`` of them: a real element, even a zero, always beats a padding zero.

    Returns
    -------
    torch.Tensor
        A bool tensor of ``w``'s shape with exactly ``n`` True values per group (at most ``n``
        in a padded tail group).

    Raises
    ------
    TypeError
        ``w`` is not a floating-point tensor.
    trainforge.errors.UsageError
        ``n``, ``m`` or ``dim`` are invalid for ``w``.
    """
    if pad:
        _check_float(w)
        _check_nm(n, m)
        size = w.shape[_check_dim(w, dim)]
        padded = zero_pad_to_multiple(w, m, dim)
        if padded is not w:
            return nm_mask(padded, n, m, dim).narrow(dim, 0, size)
    kept, dim = _kept_positions(w, n, m, dim)
    grouped_shape = (*kept.shape[:-1], m)
    mask = torch.zeros(grouped_shape, dtype=torch.bool, device=w.device)
    mask.scatter_(-1, kept, True)
    return _ungrouped(mask, dim)


def nm_compress(w: torch.Tensor, n: int, m: int, dim: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """Compress ``w`` to the N:M values-and-indices format along ``dim``.

    Returns
    -------
    values : torch.Tensor
        ``w``'s dtype; ``dim`` shrinks from ``size`` to ``size // m * n``. Each group's kept
        values appear in ascending index order.
    indices : torch.Tensor
        uint8 tensor of the same shape: the position of each value inside its group of ``m``.
    """
    kept, dim = _kept_positions(w, n, m, dim)
    # Gather bit patterns, not floats: arithmetic paths may quiet a signalling NaN.
    int_dtype = _KEY_VIEW[w.dtype][0]
    values = torch.gather(_grouped(w.contiguous().view(int_dtype), m, dim)[0], -1, kept)
    return _ungrouped(values, dim).view(w.dtype), _ungrouped(kept.to(torch.uint8), dim)


def nm_decompress(values: torch.Tensor, indices: torch.Tensor, n: int, m: int, dim: int = -1) -> torch.Tensor:
    """Expand the compressed format back to a dense tensor with zeros at pruned positions.

    Parameters
    ----------
    values, indices : torch.Tensor
        As returned by :func:`nm_compress`; same shape.
    n, m : int
        The N:M pattern they were compressed with.
    dim : int
        The grouped dimension.

    Returns
    -------
    torch.Tensor
        Dense tensor of ``values``' dtype; ``dim`` grows from ``k * n`` to ``k * m``.
    """
    _check_nm(n, m)
    if values.shape != indices.shape:
        raise UsageError(f"values {tuple(values.shape)} and indices {tuple(indices.shape)} must have the same shape")
    idx = indices.to(torch.int64)
    if idx.numel() and (idx.min() < 0 or idx.max() >= m):
        raise UsageError(f"indices must lie in [0, {m}), found [{int(idx.min())}, {int(idx.max())}]")
    _check_float(values)
    int_dtype = _KEY_VIEW[values.dtype][0]
    v_groups, dim = _grouped(values.contiguous().view(int_dtype), n, dim)
    i_groups, _ = _grouped(idx, n, dim)
    dense = torch.zeros((*v_groups.shape[:-1], m), dtype=int_dtype, device=values.device)
    dense.scatter_(-1, i_groups, v_groups)
    return _ungrouped(dense, dim).view(values.dtype)
