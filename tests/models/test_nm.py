"""N:M golden models against an explicit per-group oracle written independently of them."""

from __future__ import annotations

import math
import struct

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trainforge.errors import UsageError
from trainforge.hw.fp.formats import FORMATS
from trainforge.models import nm_compress, nm_decompress, nm_mask
from trainforge.sim.stimulus import corner_case_floats


def oracle_keep(group: list[float], n: int) -> list[int]:
    """Positions kept in one group: n largest |x|, NaN above inf, earlier index wins ties.

    Written from the documented rule with Python floats, not bit patterns. Two NaNs are ordered
    by payload in the real rule; the stimulus for this oracle uses at most one NaN per group.
    """

    def rank(i: int) -> tuple:
        x = group[i]
        return (1 if math.isnan(x) else 0, abs(x) if not math.isnan(x) else 0.0, -i)

    order = sorted(range(len(group)), key=rank, reverse=True)
    return sorted(order[:n])


def test_mask_matches_oracle_on_small_example():
    w = torch.tensor([[0.5, -3.0, 2.0, 2.0, 0.0, -0.0, 1e-40, float("inf")]])
    # groups of 4 along dim 1: [0.5, -3, 2, 2] keeps -3 and the first 2; [0, -0, 1e-40, inf]
    # keeps inf and the subnormal
    assert nm_mask(w, 2, 4).tolist() == [[False, True, True, False, False, False, True, True]]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize(("n", "m"), [(1, 2), (2, 4), (1, 4), (3, 4), (2, 8), (1, 8), (4, 8), (7, 8), (2, 16)])
def test_mask_and_compress_match_oracle(dtype, n, m):
    gen = torch.Generator().manual_seed(n * 100 + m)
    fmt = next((f for f in FORMATS.values() if f.torch_dtype == dtype), FORMATS["fp32"])
    w = corner_case_floats(48 * m, fmt, gen, nan=False).to(dtype).reshape(6, -1)
    # at most one NaN per group so the float-based oracle is unambiguous
    w[:, ::m] = torch.where(torch.rand(6, w.shape[1] // m, generator=gen) < 0.2, float("nan"), w[:, ::m])
    mask = nm_mask(w, n, m, dim=1)
    values, indices = nm_compress(w, n, m, dim=1)
    for r in range(w.shape[0]):
        for g in range(w.shape[1] // m):
            group = [float(x) for x in w[r, g * m : (g + 1) * m]]
            keep = oracle_keep(group, n)
            assert [i for i in range(m) if mask[r, g * m + i]] == keep
            assert indices[r, g * n : (g + 1) * n].tolist() == keep
            got = values[r, g * n : (g + 1) * n].tolist()
            want = [group[i] for i in keep]
            assert [struct.pack("d", x) for x in got] == [struct.pack("d", x) for x in want] or all(
                (a == b) or (math.isnan(a) and math.isnan(b)) for a, b in zip(got, want, strict=True)
            )


def test_exactly_n_kept_per_group_along_every_dim():
    w = torch.randn(8, 12, 16, generator=torch.Generator().manual_seed(0))
    for dim, (n, m) in enumerate([(1, 2), (2, 4), (3, 8)]):
        mask = nm_mask(w, n, m, dim=dim)
        groups = mask.movedim(dim, -1).reshape(-1, m)
        assert (groups.sum(dim=1) == n).all()
        # the kept magnitudes dominate the pruned ones inside each group
        mags = w.abs().movedim(dim, -1).reshape(-1, m)
        kept_min = torch.where(groups, mags, torch.inf).min(dim=1).values
        pruned_max = torch.where(~groups, mags, -torch.inf).max(dim=1).values
        assert (kept_min >= pruned_max).all()


def test_conv_weight_grouped_along_c_in_and_c_out():
    w = torch.randn(8, 16, 3, 3, generator=torch.Generator().manual_seed(1))
    fwd = nm_mask(w, 2, 4, dim=1)  # FF: groups along C_in
    bwd = nm_mask(w, 2, 4, dim=0)  # BP: groups along C_out
    assert (fwd.reshape(8, 4, 4, 3, 3).sum(dim=2) == 2).all()
    assert (bwd.reshape(2, 4, 16, 3, 3).sum(dim=1) == 2).all()


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=1, max_value=5).flatmap(
        lambda log_m: st.tuples(
            st.integers(1, 2**log_m - 1), st.just(2**log_m), st.integers(1, 4), st.integers(0, 2**31)
        )
    ),
    st.sampled_from([torch.float16, torch.bfloat16, torch.float32]),
)
def test_decompress_inverts_compress(nm_rows_seed, dtype):
    n, m, rows, seed = nm_rows_seed
    fmt = next(f for f in FORMATS.values() if f.torch_dtype == dtype)
    w = corner_case_floats(rows * m * 3, fmt, torch.Generator().manual_seed(seed)).reshape(rows, -1)
    values, indices = nm_compress(w, n, m, dim=-1)
    dense = nm_decompress(values, indices, n, m, dim=-1)
    as_bits = {torch.float16: torch.int16, torch.bfloat16: torch.int16, torch.float32: torch.int32}[dtype]
    expected = torch.where(nm_mask(w, n, m), w.view(as_bits), torch.zeros((), dtype=as_bits))
    assert torch.equal(dense.view(as_bits), expected)


def test_ties_go_to_lower_index_and_nan_outranks_inf():
    w = torch.tensor([1.0, -1.0, 1.0, 1.0, float("inf"), float("nan"), -float("inf"), 5.0], dtype=torch.float16)
    assert nm_mask(w, 2, 4).tolist() == [True, True, False, False, True, True, False, False]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda w: nm_mask(w, 2, 2), UsageError, "1 <= n < m"),
        (lambda w: nm_mask(w, 0, 4), UsageError, "1 <= n < m"),
        (lambda w: nm_mask(w, 2, 3), UsageError, "not a multiple of m=3"),
        (lambda w: nm_mask(w, 2, 4, dim=2), UsageError, r"dim must be in \[-2, 1\]"),
        (lambda w: nm_mask(w.to(torch.int32), 2, 4), TypeError, "floating-point tensor"),
        (lambda w: nm_mask(w, 2.0, 4), UsageError, "n must be an integer"),
        (lambda w: nm_decompress(nm_compress(w, 2, 4)[0], nm_compress(w, 2, 4)[1] + 4, 2, 4), UsageError, "indices"),
        (lambda w: nm_decompress(w[:, :2], torch.zeros(4, 4), 2, 4), UsageError, "same shape"),
    ],
)
def test_invalid_input_is_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call(torch.randn(4, 8))
