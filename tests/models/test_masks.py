"""Training masks: forward/backward N:M masks, transposable masks and the zero-padding policy.

The expected values are computed independently of ``trainforge.models.masks``: the 2:4
transposable patterns by brute force over all 2^16 4x4 0/1 matrices, the greedy method by a
plain-Python loop, the per-group counts by explicit reshapes.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from trainforge.errors import UsageError
from trainforge.models.masks import backward_mask, forward_mask, transposable_mask, transposable_patterns
from trainforge.models.nm import nm_mask


def all_binary_matrices(m: int) -> torch.Tensor:
    """Every m x m 0/1 matrix, (2^(m*m), m, m) bool, by counting in binary."""
    codes = torch.arange(2 ** (m * m))
    bits = (codes.unsqueeze(1) >> torch.arange(m * m)) & 1
    return bits.bool().reshape(-1, m, m)


def brute_force_patterns(n: int, m: int) -> torch.Tensor:
    every = all_binary_matrices(m)
    valid = (every.sum(dim=2) == n).all(dim=1) & (every.sum(dim=1) == n).all(dim=1)
    return every[valid]


def blocks_of(mask: torch.Tensor, m: int) -> torch.Tensor:
    """(R, C) -> (R/m * C/m, m, m) blocks in row-major block order."""
    rows, cols = mask.shape
    return mask.reshape(rows // m, m, cols // m, m).permute(0, 2, 1, 3).reshape(-1, m, m)


def greedy_reference(block: list[list[float]], n: int) -> set[tuple[int, int]]:
    """The greedy rule in plain Python: by |x| descending, row-major order among ties."""
    m = len(block)
    cells = sorted(((r, c) for r in range(m) for c in range(m)), key=lambda rc: -abs(block[rc[0]][rc[1]]))
    rows, cols, kept = [0] * m, [0] * m, set()
    for r, c in cells:
        if rows[r] < n and cols[c] < n:
            kept.add((r, c))
            rows[r] += 1
            cols[c] += 1
    return kept


# ---------------------------------------------------------------- forward and backward masks


def test_forward_and_backward_masks_group_along_c_in_and_c_out():
    w = torch.randn(8, 16, 3, 3, generator=torch.Generator().manual_seed(0))
    fwd, bwd = forward_mask(w, 2, 4), backward_mask(w, 2, 4)
    assert torch.equal(fwd, nm_mask(w, 2, 4, dim=1))
    assert torch.equal(bwd, nm_mask(w, 2, 4, dim=0))
    assert (fwd.reshape(8, 4, 4, 3, 3).sum(dim=2) == 2).all()
    assert (bwd.reshape(2, 4, 16, 3, 3).sum(dim=1) == 2).all()


def test_backward_mask_from_the_forward_pruned_weight_is_bi_mask():
    w = torch.randn(16, 8, generator=torch.Generator().manual_seed(1))
    fwd = forward_mask(w, 2, 4)
    got = backward_mask(w, 2, 4, source="forward")
    # Independently: per group of 4 along C_out, keep the 2 largest |w| among forward-kept
    # entries (pruned ones count as 0), then drop what the forward mask pruned.
    pruned = (w * fwd).abs()
    expected = torch.zeros_like(fwd)
    for c in range(8):
        for g in range(4):
            column = pruned[4 * g : 4 * g + 4, c].tolist()
            for r in sorted(range(4), key=lambda i: (-column[i], i))[:2]:
                expected[4 * g + r, c] = bool(fwd[4 * g + r, c])
    assert torch.equal(got, expected)
    assert not (got & ~fwd).any()
    assert (got.reshape(4, 4, 8).sum(dim=1) <= 2).all()
    assert torch.equal(backward_mask(w, 2, 4, source="forward", forward=fwd), got)


def test_backward_mask_from_forward_ignores_a_pruned_inf():
    # Multiplying by the forward mask would turn the pruned inf into NaN, which outranks every
    # kept weight of its C_out group, so the intersected group would come out empty.
    w = torch.arange(1.0, 17.0).reshape(4, 4)
    w[0, 1] = float("inf")
    fwd = torch.zeros(4, 4, dtype=torch.bool)
    fwd[0, 0] = True
    fwd[1:, 1] = True
    got = backward_mask(w, 1, 4, source="forward", forward=fwd)
    assert {(r, c) for r in range(4) for c in range(4) if got[r, c]} == {(0, 0), (3, 1)}


# ---------------------------------------------------------------- transposable masks


@pytest.mark.parametrize(("n", "m", "count"), [(1, 2, 2), (1, 3, 6), (2, 3, 6), (1, 4, 24), (2, 4, 90), (3, 4, 24)])
def test_pattern_enumeration_matches_brute_force(n, m, count):
    got = transposable_patterns(n, m)
    expected = brute_force_patterns(n, m)
    assert len(got) == len(expected) == count
    as_set = {tuple(p.flatten().tolist()) for p in got}
    assert as_set == {tuple(p.flatten().tolist()) for p in expected}


@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 4), (3, 4), (1, 2)])
def test_exact_transposable_mask_is_optimal(n, m):
    gen = torch.Generator().manual_seed(10 * n + m)
    w = torch.randn(8 * m, 6 * m, generator=gen)
    w[w.abs() < 0.3] = 0.5  # many ties, so optimality is checked with equal scores too
    mask = transposable_mask(w, n, m, method="exact")
    assert torch.equal(mask, transposable_mask(w, n, m))  # auto is exact for m <= 4
    mblocks, wblocks = blocks_of(mask, m), blocks_of(w.abs(), m)
    assert (mblocks.sum(dim=2) == n).all()
    assert (mblocks.sum(dim=1) == n).all()
    patterns = brute_force_patterns(n, m).double()
    best = torch.einsum("bij,pij->bp", wblocks.double(), patterns).max(dim=1).values
    got = (wblocks.double() * mblocks).sum(dim=(1, 2))
    torch.testing.assert_close(got, best, rtol=0, atol=1e-12)


def test_exact_2_4_on_a_hand_made_block():
    # Row-wise top-2 would take the four 9s of rows 0 and 1, which leaves columns 0 and 1 with
    # two each and columns 2, 3 empty; the best transposable choice is different.
    w = torch.tensor(
        [
            [9.0, 9.0, 1.0, 1.0],
            [9.0, 9.0, 1.0, 1.0],
            [8.0, 8.0, 2.0, 2.0],
            [8.0, 8.0, 2.0, 2.0],
        ]
    )
    mask = transposable_mask(w, 2, 4, method="exact")
    assert (mask.sum(0) == 2).all()
    assert (mask.sum(1) == 2).all()
    assert (w * mask).sum() == 9 + 9 + 9 + 9 + 2 + 2 + 2 + 2


@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 4), (2, 8), (1, 8), (4, 8), (3, 8)])
def test_greedy_matches_a_plain_python_greedy(n, m):
    gen = torch.Generator().manual_seed(n * 31 + m)
    w = torch.randn(2 * m, 3 * m, generator=gen)
    mask = transposable_mask(w, n, m, method="greedy")
    for b, (block, mblock) in enumerate(zip(blocks_of(w, m), blocks_of(mask, m), strict=True)):
        kept = {(r, c) for r in range(m) for c in range(m) if mblock[r, c]}
        assert kept == greedy_reference(block.tolist(), n), f"block {b}"


@pytest.mark.parametrize(("n", "m"), [(2, 4), (2, 8), (1, 8), (4, 8), (3, 16)])
def test_greedy_keeps_at_most_n_in_both_directions(n, m):
    w = torch.randn(4 * m, 2 * m, 3, 3, generator=torch.Generator().manual_seed(m))
    mask = transposable_mask(w, n, m, method="greedy")
    if m > 4:  # auto is greedy above m=4
        assert torch.equal(mask, transposable_mask(w, n, m))
    # conv weight: blocks of (C_out, C_in) at every kernel position
    per_c_in = mask.reshape(4 * m, 2, m, 3, 3).sum(dim=2)  # groups along C_in
    per_c_out = mask.reshape(4, m, 2 * m, 3, 3).sum(dim=1)  # groups along C_out
    assert per_c_in.max() <= n
    assert per_c_out.max() <= n


def test_greedy_can_leave_a_row_short_of_n():
    w = torch.tensor([[3.0, 4, 2, 11], [5, 6, 7, 16], [1, 12, 15, 8], [10, 9, 14, 13]])
    # By hand: 16 15 14 13 12 are kept; 11 10 9 8 7 meet a full row or column; 6 is kept; 5 4
    # are blocked; 3 is kept; 2 1 are blocked. Row 0 and column 0 end with one weight each.
    expected = {(1, 3), (2, 2), (3, 2), (3, 3), (2, 1), (1, 1), (0, 0)}
    assert greedy_reference(w.tolist(), 2) == expected
    mask = transposable_mask(w, 2, 4, method="greedy")
    assert {(r, c) for r in range(4) for c in range(4) if mask[r, c]} == expected
    assert mask.sum(dim=1).tolist() == [1, 2, 2, 2]
    assert mask.sum(dim=0).tolist() == [1, 2, 2, 2]
    exact = transposable_mask(w, 2, 4, method="exact")
    assert (exact.sum(dim=0) == 2).all()
    assert (exact.sum(dim=1) == 2).all()
    assert (w * exact).sum() >= (w * mask).sum()


def test_greedy_score_is_within_factor_two_of_exact():
    w = torch.randn(64, 64, generator=torch.Generator().manual_seed(3)).abs()
    exact = (w * transposable_mask(w, 2, 4, method="exact")).sum()
    greedy = (w * transposable_mask(w, 2, 4, method="greedy")).sum()
    assert exact / 2 <= greedy <= exact


def test_conv_transposable_mask_is_n_m_along_c_in_and_c_out_per_kernel_position():
    w = torch.randn(8, 12, 3, 3, generator=torch.Generator().manual_seed(4))
    mask = transposable_mask(w, 2, 4)
    assert (mask.reshape(8, 3, 4, 3, 3).sum(dim=2) == 2).all()  # along C_in, as forward_mask
    assert (mask.reshape(2, 4, 12, 3, 3).sum(dim=1) == 2).all()  # along C_out, as backward_mask
    for i, j in itertools.product(range(3), range(3)):
        assert torch.equal(mask[:, :, i, j], transposable_mask(w[:, :, i, j].contiguous(), 2, 4))


def test_transposable_keeps_nan_and_inf():
    w = torch.randn(4, 4, generator=torch.Generator().manual_seed(6))
    w[1, 2], w[3, 0] = float("nan"), float("inf")
    for method in ("exact", "greedy"):
        mask = transposable_mask(w, 1, 4, method=method)
        assert mask[1, 2], method
        assert mask[3, 0], method


def test_half_precision_weights():
    w = torch.randn(8, 8, generator=torch.Generator().manual_seed(7))
    for dtype in (torch.float16, torch.bfloat16):
        mask = transposable_mask(w.to(dtype), 2, 4)
        assert (blocks_of(mask, 4).sum(dim=2) == 2).all()


# ---------------------------------------------------------------- padding policy


def test_nm_mask_pad_keeps_min_n_k_in_the_tail_group():
    w = torch.tensor([[0.5, -3.0, 2.0, 1.0, 0.0, 7.0]])
    with pytest.raises(UsageError, match="not a multiple of m=4"):
        nm_mask(w, 2, 4)
    assert nm_mask(w, 2, 4, pad=True).tolist() == [[False, True, True, False, True, True]]
    # k=1 < n=2: the single real element is kept
    assert nm_mask(w[:, :5], 2, 4, pad=True).tolist() == [[False, True, True, False, True]]
    # a real zero beats a padding zero
    assert nm_mask(torch.zeros(1, 5), 1, 4, pad=True)[0, 4]
    # divisible sizes are unchanged by pad=True
    x = torch.randn(6, 8)
    assert torch.equal(nm_mask(x, 2, 4, dim=1, pad=True), nm_mask(x, 2, 4, dim=1))


def test_nm_mask_pad_along_any_dim():
    w = torch.randn(5, 6, 7, generator=torch.Generator().manual_seed(8))
    for dim in range(3):
        mask = nm_mask(w, 1, 4, dim=dim, pad=True)
        size = w.shape[dim]
        padded = torch.cat([w, torch.zeros_like(w).narrow(dim, 0, -size % 4)], dim=dim)
        assert torch.equal(mask, nm_mask(padded, 1, 4, dim=dim).narrow(dim, 0, size))


def test_transposable_pad():
    w = torch.randn(6, 10, generator=torch.Generator().manual_seed(9))
    mask = transposable_mask(w, 2, 4, pad=True)
    assert mask.shape == w.shape
    padded = torch.zeros(8, 12)
    padded[:6, :10] = w
    assert torch.equal(mask, transposable_mask(padded, 2, 4)[:6, :10])
    assert forward_mask(w, 2, 4, pad=True).shape == backward_mask(w, 2, 4, pad=True).shape == w.shape


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda w: transposable_mask(w, 4, 4), UsageError, "1 <= n < m"),
        (lambda w: transposable_mask(w, 2, 3), UsageError, "dimension 0 has size 8, which is not a multiple of m=3"),
        (lambda w: transposable_mask(w[:, :6], 2, 4), UsageError, "dimension 1 has size 6"),
        (lambda w: transposable_mask(w, 2, 8, method="exact"), UsageError, "m <= 4, not m=8"),
        (lambda w: transposable_mask(w, 2, 4, method="best"), UsageError, "method must be one of .*'best'"),
        (lambda w: transposable_mask(w[0], 1, 2), UsageError, "at least 2 dimensions"),
        (lambda w: transposable_mask(w.to(torch.int32), 2, 4), TypeError, "floating-point tensor"),
        (lambda w: forward_mask(w.to(torch.int64), 2, 4), TypeError, "floating-point tensor"),
        (lambda w: forward_mask(w[:, :6], 2, 4), UsageError, "not a multiple of m=4"),
        (lambda w: backward_mask(w, 2, 4, source="both"), UsageError, "source must be one of .*'both'"),
        (lambda w: backward_mask(w, 2, 4, forward=w > 0), UsageError, "only used with source='forward'"),
        (lambda w: backward_mask(w, 2, 4, source="forward", forward=w), UsageError, "bool mask of shape"),
        (lambda w: transposable_patterns(2, 8), UsageError, "m <= 4, not m=8"),
    ],
)
def test_invalid_input_is_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call(torch.randn(8, 8))
