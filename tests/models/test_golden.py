"""The GEMM golden model against an independent per-element model built from the exact FP oracle.

The reference below walks one output element at a time through the PE steps as documented in
``models/golden.py`` (scalar ``fp.fma`` / ``fp.add`` / ``fp.mul`` calls, explicit loops over tiles
and tree levels); it shares no code with the model beyond the oracle itself.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainforge.errors import UsageError
from trainforge.hw.fp.formats import FORMATS
from trainforge.models import fp, nm_compress, nm_decompress
from trainforge.models.golden import ORDERS, gemm, reference_gemm, sparse_gemm

CNAN32 = 0x7FC0_0000
NEG_ZERO32 = 0x8000_0000
E = 2.0**-24  # half an ulp of 1.0 in FP32, and the product 2^-12 * 2^-12 of two FP16 normals

# (order, chunk) cases: K = 11 in the dense tests, so chunk 3 and 4 leave a short last tile and the
# tree carries odd elements.
FLAG_BITS = [(fp.FLAG_NX, "NX"), (fp.FLAG_UF, "UF"), (fp.FLAG_OF, "OF"), (fp.FLAG_NV, "NV")]
ORDER_CASES = [("sequential", None), ("systolic", 3), ("chunked", 3), ("chunked", 4), ("tree", None), ("tree", 4)]


# --------------------------------------------------------------------------------------------
# the independent reference
# --------------------------------------------------------------------------------------------


def _one(op, *operands, **kw) -> tuple[int, int]:
    r, f = op(*(np.array([x], dtype=np.uint64) for x in operands), **kw)
    return int(r[0]), int(f[0])


def ref_element(pairs, init, *, fmt, acc_fmt, order, rounding, chunk):
    """One output: ``pairs`` are the (x, y) operand bit patterns in the order the PE meets them.

    Returns (bits, flags), flags the OR of every step's.
    """
    flags = 0

    def fma(acc, x, y):
        nonlocal flags
        r, f = _one(fp.fma, x, y, acc, fmt=acc_fmt, src_fmt=fmt, rounding=rounding)
        flags |= f
        return r

    def add(u, v):
        nonlocal flags
        r, f = _one(fp.add, u, v, fmt=acc_fmt, rounding=rounding)
        flags |= f
        return r

    def rounded_product(x, y):
        # widen both factors exactly to the accumulator format, then one rounded multiplication
        nonlocal flags
        xw, f1 = _one(fp.convert, x, src_fmt=fmt, dst_fmt=acc_fmt, rounding=rounding)
        yw, f2 = _one(fp.convert, y, src_fmt=fmt, dst_fmt=acc_fmt, rounding=rounding)
        r, f3 = _one(fp.mul, xw, yw, fmt=acc_fmt, rounding=rounding)
        flags |= f1 | f2 | f3
        return r

    acc = init
    if order == "sequential":
        for x, y in pairs:
            acc = fma(acc, x, y)
    elif order == "systolic":
        for lo in range(0, len(pairs), chunk):
            psum = acc  # the partial sum of the previous tile enters the column's top PE
            for row in range(chunk):
                if lo + row < len(pairs):
                    psum = fma(psum, *pairs[lo + row])
            acc = psum  # and leaves at the bottom
    elif order == "chunked":
        for lo in range(0, len(pairs), chunk):
            psum = 0  # the column starts every tile from +0
            for x, y in pairs[lo : lo + chunk]:
                psum = fma(psum, x, y)
            acc = add(acc, psum)  # accumulator memory
    else:
        size = chunk or len(pairs)
        for lo in range(0, len(pairs), size):
            level = [rounded_product(x, y) for x, y in pairs[lo : lo + size]]
            while len(level) > 1:
                nxt = [add(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
                if len(level) % 2:
                    nxt.append(level[-1])
                level = nxt
            acc = add(acc, level[0])
    return acc, flags


def ref_gemm(a, b, init, **kw):
    m, k = a.shape
    n = b.shape[1]
    out = np.zeros((m, n), dtype=np.int64)
    flags = np.zeros((m, n), dtype=np.int64)
    for i in range(m):
        for j in range(n):
            pairs = [(int(a[i, kk]), int(b[kk, j])) for kk in range(k)]
            out[i, j], flags[i, j] = ref_element(pairs, int(init[i, j]), **kw)
    return out, flags


def ref_sparse_gemm(a, values, indices, n, m, init, **kw):
    """Per element: walk the kept weights of column j, select a[i, group * m + index]."""
    rows, cols = values.shape
    out = np.zeros((a.shape[0], cols), dtype=np.int64)
    flags = np.zeros_like(out)
    for i in range(a.shape[0]):
        for j in range(cols):
            pairs = []
            for t in range(rows):
                group = t // n
                k = group * m + int(indices[t, j])
                pairs.append((int(a[i, k]), int(values[t, j])))
            out[i, j], flags[i, j] = ref_element(pairs, int(init[i, j]), **kw)
    return out, flags


# --------------------------------------------------------------------------------------------
# stimulus
# --------------------------------------------------------------------------------------------


def draw(fmt: str, shape: tuple[int, ...], rng: np.random.Generator, special: float = 0.03) -> np.ndarray:
    """Biased random bit patterns (subnormals, zeros, near-overflow values, ties) with few inf/NaN."""
    spec = FORMATS[fmt]
    size = math.prod(shape)
    x = fp.random_vectors(size, fmt, int(rng.integers(1 << 30))).astype(np.int64)
    all_ones = (1 << spec.exp_bits) - 1
    is_special = ((x >> spec.man_bits) & all_ones) == all_ones
    field = rng.integers(spec.bias - 4, spec.bias + 4, size=size)
    normal = (field << spec.man_bits) | rng.integers(0, 1 << spec.man_bits, size=size)
    normal |= rng.integers(0, 2, size=size) << (spec.width - 1)
    x = np.where(is_special & (rng.random(size) >= special), normal, x)
    return x.reshape(shape)


def operands(fmt: str, m: int, k: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, init) with exact and near cancellation between consecutive products built in."""
    rng = np.random.default_rng(seed)
    sign = 1 << (FORMATS[fmt].width - 1)
    a, b = draw(fmt, (m, k), rng), draw(fmt, (k, n), rng)
    a[:, 1] = a[:, 0]
    b[1] = b[0] ^ sign  # product 1 == -(product 0): exact cancellation
    a[:, 3] = a[:, 2]
    b[3] = np.where((b[2] & (sign - 1)) < (sign - 1) - 0x400, (b[2] ^ sign) + 1, b[2])  # one unit off
    # zero rows of a meet the +0 and -0 rows of init; column 0 of b is positive, so there row 0 has
    # only +0 products and row 1 only -0 products
    a[0] = 0
    a[1] = sign
    b[:, 0] &= sign - 1
    if fmt == "bf16":  # products of about 2^-146 that FP32 cannot hold exactly: underflow
        a[2] = 0x0080 | (rng.integers(0, 2, size=k) * sign)
        b[:, 1] = ((127 - 20) << 7) | rng.integers(1, 128, size=k)
    init = draw("fp32", (m, n), rng)
    init[0, :] = 0
    init[0, 1:3] = [5, NEG_ZERO32 | 0x12345]  # subnormals, kept by the zero products of row 0
    init[1, :] = NEG_ZERO32
    return a.astype(np.uint16), b.astype(np.uint16), init.astype(np.uint32)


def f16(*values: float) -> np.ndarray:
    return fp.from_float(np.array(values, dtype=np.float64), "fp16").astype(np.uint16)


def bf(*values: float) -> np.ndarray:
    return fp.from_float(np.array(values, dtype=np.float64), "bf16").astype(np.uint16)


def bits32(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32).view(np.uint32)


# --------------------------------------------------------------------------------------------
# the float32 shortcut is the fused step
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["fp16", "bf16"])
def test_float32_addition_of_the_exact_product_is_the_fused_step(fmt):
    """IEEE float32 (NumPy, RNE, subnormals) a*b + c equals the oracle's fused fp16/bf16 -> fp32 step.

    For FP16 on every vector; for BF16 exactly where the product is an FP32 number, and not beyond
    (which is why the model sends such steps to the oracle).
    """
    a, b, c = fp.random_operands("fma", 200_000, fmt="fp32", src_fmt=fmt, seed=7)
    ca, cb, cc = fp.corner_vectors("fma", "fp32", src_fmt=fmt, seed=7)
    a, b, c = np.concatenate([a, ca]), np.concatenate([b, cb]), np.concatenate([c, cc])
    want, _ = fp.fma(a, b, c, fmt="fp32", src_fmt=fmt, rounding="rne")
    av, bv = fp.to_float(a, fmt), fp.to_float(b, fmt)  # exact float64
    with np.errstate(all="ignore"):
        got = av.astype(np.float32) * bv.astype(np.float32) + c.astype(np.uint32).view(np.float32)
        exact_product = av * bv
        representable = ~np.isfinite(exact_product) | (
            exact_product.astype(np.float32).astype(np.float64) == exact_product
        )
    got_bits = np.where(np.isnan(got), CNAN32, got.view(np.uint32)).astype(np.uint64)
    if fmt == "fp16":
        assert representable.all()
    np.testing.assert_array_equal(got_bits[representable], want[representable])
    if fmt == "bf16":
        assert (~representable).sum() > 1000
        assert (got_bits[~representable] != want[~representable]).any()


# --------------------------------------------------------------------------------------------
# gemm against the per-element reference
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rounding", fp.ROUNDING_MODES)
@pytest.mark.parametrize(("order", "chunk"), ORDER_CASES)
@pytest.mark.parametrize("fmt", ["fp16", "bf16"])
def test_gemm_matches_per_element_oracle(fmt, order, chunk, rounding):
    seed = ORDER_CASES.index((order, chunk)) * 10 + fp.ROUNDING_MODES.index(rounding) + (fmt == "bf16") * 100
    a, b, init = operands(fmt, 4, 11, 5, seed)
    kw = {"fmt": fmt, "acc_fmt": "fp32", "order": order, "rounding": rounding, "chunk": chunk}
    want, want_flags = ref_gemm(a, b, init, **kw)
    got, got_flags = gemm(a, b, init=init, flags=True, **kw)
    assert got.dtype == np.uint32
    assert got_flags.dtype == np.uint8
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_flags, want_flags)
    np.testing.assert_array_equal(gemm(a, b, init=init, **kw), want)  # the float32 path for rne
    # default init is +0
    want0, _ = ref_gemm(a, b, np.zeros((4, 5), dtype=np.int64), **kw)
    np.testing.assert_array_equal(gemm(a, b, **kw), want0)


def test_stimulus_reaches_the_corners():
    """The reference tests above see NaN, inf, zeros of both signs and subnormal results."""
    seen = set()
    for fmt in ("fp16", "bf16"):
        for seed in range(3):
            a, b, init = operands(fmt, 4, 11, 5, seed)
            out, flags = gemm(a, b, init=init, fmt=fmt, flags=True)
            cls = fp.classify(out, fmt="fp32")
            seen |= {int(c).bit_length() - 1 for c in np.unique(cls)}
            seen |= {name for bit, name in FLAG_BITS if (flags & bit).any()}
    # fclass bits: 0 -inf, 1 -normal, 2 -subnormal, 3 -0, 4 +0, 5 +subnormal, 6 +normal, 7 +inf,
    # 9 quiet NaN; and every flag that a sum can raise
    assert set(range(8)) | {9} <= seen
    assert {"NX", "UF", "OF", "NV"} <= seen


@pytest.mark.parametrize(("order", "chunk"), ORDER_CASES)
@pytest.mark.parametrize("fmt", ["fp16", "bf16"])
def test_fast_path_equals_exact_path_on_larger_shapes(fmt, order, chunk):
    """The float32 path (rne) against the oracle path on every element, the reference on a sample."""
    rng = np.random.default_rng(3)
    a, b = draw(fmt, (24, 96), rng, special=0.002).astype(np.uint16), draw(fmt, (96, 20), rng, special=0.002)
    b = b.astype(np.uint16)
    kw = {"fmt": fmt, "order": order, "chunk": chunk}
    fast = gemm(a, b, **kw)
    exact, _ = gemm(a, b, flags=True, **kw)
    np.testing.assert_array_equal(fast, exact)
    for i, j in zip(rng.integers(0, 24, 6), rng.integers(0, 20, 6), strict=True):
        pairs = [(int(a[i, k]), int(b[k, j])) for k in range(96)]
        want, _ = ref_element(pairs, 0, fmt=fmt, acc_fmt="fp32", order=order, rounding="rne", chunk=chunk)
        assert int(fast[i, j]) == want


NARROW_CASES = [
    (fmt, acc_fmt, order, chunk)
    for fmt, acc_fmt in [("fp16", "fp16"), ("bf16", "bf16"), ("fp16", "bf16")]
    for order, chunk in [("sequential", None), ("chunked", 4), ("tree", None)]
    if order != "tree" or fmt == acc_fmt  # the reference widens tree leaves exactly: not fp16 -> bf16
]


@pytest.mark.parametrize("rounding", ["rne", "rdn", "rmm"])
@pytest.mark.parametrize(("fmt", "acc_fmt", "order", "chunk"), NARROW_CASES)
def test_narrow_accumulator_matches_reference(fmt, acc_fmt, order, chunk, rounding):
    a, b, _ = operands(fmt, 3, 11, 4, 5)
    init = draw(acc_fmt, (3, 4), np.random.default_rng(6)).astype(np.uint16)
    kw = {"fmt": fmt, "acc_fmt": acc_fmt, "order": order, "rounding": rounding, "chunk": chunk}
    want, want_flags = ref_gemm(a, b, init, **kw)
    got, got_flags = gemm(a, b, init=init, flags=True, **kw)
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_flags, want_flags)
    np.testing.assert_array_equal(gemm(a, b, init=init, **kw), want)


def test_nan_results_are_canonical_and_invalid_operations_flagged():
    a = f16(1.0, math.inf, 2.0)[None, :]
    a_snan = np.array([[0x7C01, 0x3C00, 0x3C00]], dtype=np.uint16)  # signalling NaN
    b = f16(0.0, 0.0, 3.0)[:, None]
    for order, chunk in ORDER_CASES:
        out, flags = gemm(a, b, order=order, chunk=chunk, flags=True)
        assert out[0, 0] == CNAN32, order  # inf * 0
        assert flags[0, 0] & fp.FLAG_NV
        assert gemm(a, b, order=order, chunk=chunk)[0, 0] == CNAN32
        out, flags = gemm(a_snan, b, order=order, chunk=chunk, flags=True)
        assert out[0, 0] == CNAN32
        assert flags[0, 0] & fp.FLAG_NV
        assert gemm(a_snan, b, order=order, chunk=chunk)[0, 0] == CNAN32
    # inf - inf
    out, flags = gemm(f16(math.inf, math.inf)[None, :], f16(1.0, -1.0)[:, None], flags=True)
    assert out[0, 0] == CNAN32
    assert flags[0, 0] == fp.FLAG_NV


def test_bf16_products_outside_fp32_are_fused_exactly():
    """Cases where the float32 shortcut would be wrong, each at the edge of the model's range check."""
    tiny = 2.0**-68 * (1 + 2.0**-7)  # mantissa unit 2^-75: the product's unit is 2^-150
    a = bf(1.5 * 2.0**64, tiny, -(2.0**-100))[None, :]
    b = np.zeros((3, 3), dtype=np.uint16)
    b[0, 0], b[1, 1], b[2, 2] = bf(1.5 * 2.0**63)[0], bf(tiny)[0], bf(2.0**-100)[0]
    flt_max = float(np.finfo(np.float32).max)
    init = np.array([[bits32(-flt_max)[0], 1, 0]], dtype=np.uint32)
    out = gemm(a, b, fmt="bf16", init=init)
    # 1.125 * 2^128 - FLT_MAX = 2^125 + 2^104 (float32 would overflow the product to inf);
    # 2^-149 + (2^-136 + 2^-142 + 2^-150) is a tie that goes to the even 8322 * 2^-149 (float32 would
    # round the product to 8320 * 2^-149 first and give 8321); +0 + (-2^-200) = -0 (float32: +0)
    np.testing.assert_array_equal(out, np.array([[bits32(2.0**125 + 2.0**104)[0], 8322, NEG_ZERO32]]))
    want, _ = ref_gemm(a, b, init, fmt="bf16", acc_fmt="fp32", order="sequential", rounding="rne", chunk=None)
    np.testing.assert_array_equal(out, want)
    # the same operands one step inside the range go through float32 and are exact there too
    a_in, b_in = bf(1.5 * 2.0**63, 2 * tiny)[None, :], np.diag(bf(1.5 * 2.0**63, tiny)).astype(np.uint16)
    out = gemm(a_in, b_in, fmt="bf16", init=init[:, :2])
    want, _ = ref_gemm(
        a_in, b_in, init[:, :2], fmt="bf16", acc_fmt="fp32", order="sequential", rounding="rne", chunk=None
    )
    np.testing.assert_array_equal(out, want)


def test_flush_to_zero_mode_falls_back_to_the_oracle():
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals")
    try:
        a, b, init = f16(1.0)[None, :], f16(0.0)[:, None], np.array([[1]], dtype=np.uint32)
        assert gemm(a, b, init=init)[0, 0] == 1  # 2^-149 + 0 stays subnormal
        a, b, init = operands("bf16", 4, 11, 5, 1)
        kw = {"fmt": "bf16", "acc_fmt": "fp32", "order": "sequential", "rounding": "rne", "chunk": None}
        np.testing.assert_array_equal(gemm(a, b, init=init, fmt="bf16"), ref_gemm(a, b, init, **kw)[0])
    finally:
        torch.set_flush_denormal(False)


# --------------------------------------------------------------------------------------------
# the orders
# --------------------------------------------------------------------------------------------


def test_order_changes_the_rounded_result():
    """Products 1, then seven times 2^-24 (half an ulp of 1) -- each order rounds differently."""
    a = f16(1.0, *[2.0**-12] * 7)[None, :]
    b = f16(1.0, *[2.0**-12] * 7)[:, None]
    result = {}
    for order, chunk in [("sequential", None), ("systolic", 4), ("chunked", 4), ("tree", None), ("tree", 4)]:
        result[order, chunk] = float(gemm(a, b, order=order, chunk=chunk).view(np.float32)[0, 0])
    # sequential: every 1 + 2^-24 is a tie that rounds back to 1 (even)
    assert result["sequential", None] == result["systolic", 4] == 1.0
    # chunked: tile 1 gives 1, tile 2 gives 4 * 2^-24 exactly, 1 + 2^-22 is exact
    assert result["chunked", 4] == 1.0 + 4 * E
    # tree: (1 + e) -> 1, three pairs e + e = 2e; then 1 + 2e and 2e + 2e; then 1 + 6e
    assert result["tree", None] == result["tree", 4] == 1.0 + 6 * E
    # and the rounding mode: rup rounds every tie up
    assert float(gemm(a, b, rounding="rup").view(np.float32)[0, 0]) == 1.0 + 14 * E


@pytest.mark.parametrize("chunk", [1, 2, 5, 64])
def test_systolic_equals_sequential_for_every_chunk(chunk):
    a, b, init = operands("fp16", 6, 40, 7, 11)
    for rounding in ("rne", "rtz"):
        want = gemm(a, b, init=init, rounding=rounding)
        np.testing.assert_array_equal(gemm(a, b, init=init, order="systolic", chunk=chunk, rounding=rounding), want)


def test_chunk_one_chunked_and_whole_k_chunk():
    """chunked with one product per tile adds rounded products into the accumulator (= tree, chunk=1),
    and a tile as long as K is one fused chain from +0 followed by one add to init."""
    a, b, _ = operands("fp16", 5, 13, 6, 4)
    np.testing.assert_array_equal(gemm(a, b, order="chunked", chunk=1), gemm(a, b, order="tree", chunk=1))
    np.testing.assert_array_equal(gemm(a, b, order="chunked", chunk=13), gemm(a, b, order="chunked", chunk=100))


def test_empty_shapes():
    a, b = np.zeros((3, 0), dtype=np.uint16), np.zeros((0, 4), dtype=np.uint16)
    init = bits32(1.5, -0.0, 2.0, 3.0)[None, :]
    for order, chunk in ORDER_CASES:
        np.testing.assert_array_equal(gemm(a, b, order=order, chunk=chunk, init=init), np.tile(init, (3, 1)))
        assert (gemm(a, b, order=order, chunk=chunk) == 0).all()
    assert gemm(np.zeros((0, 5), dtype=np.uint16), np.zeros((5, 4), dtype=np.uint16)).shape == (0, 4)


# --------------------------------------------------------------------------------------------
# sparse
# --------------------------------------------------------------------------------------------


def sparse_operands(fmt: str, m_rows: int, groups: int, n_cols: int, n: int, m: int, seed: int):
    rng = np.random.default_rng(seed)
    a, _, init = operands(fmt, m_rows, groups * m, n_cols, seed)
    values = draw(fmt, (groups * n, n_cols), rng).astype(np.uint16)
    indices = np.empty((groups * n, n_cols), dtype=np.uint8)
    for g in range(groups):
        for j in range(n_cols):
            indices[g * n : (g + 1) * n, j] = np.sort(rng.choice(m, size=n, replace=False))
    return a, values, indices, init


SPARSE_CASES = [(mode, "sequential", None) for mode in fp.ROUNDING_MODES] + [
    (mode, order, chunk)
    for mode in ("rne", "rup")
    for order, chunk in [("systolic", 3), ("chunked", 3), ("chunked", 4), ("tree", None), ("tree", 4)]
]


@pytest.mark.parametrize(("n", "m"), [(2, 4), (3, 8)])
@pytest.mark.parametrize(("rounding", "order", "chunk"), SPARSE_CASES)
@pytest.mark.parametrize("fmt", ["fp16", "bf16"])
def test_sparse_gemm_matches_per_element_loop(fmt, rounding, order, chunk, n, m):
    seed = SPARSE_CASES.index((rounding, order, chunk)) + 7 * m + (fmt == "bf16") * 50
    a, values, indices, init = sparse_operands(fmt, 3, 3, 4, n, m, seed)
    kw = {"fmt": fmt, "acc_fmt": "fp32", "order": order, "rounding": rounding, "chunk": chunk}
    want, want_flags = ref_sparse_gemm(a, values, indices, n, m, init, **kw)
    got, got_flags = sparse_gemm(a, values, indices, n=n, m=m, init=init, flags=True, **kw)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_flags, want_flags)
    np.testing.assert_array_equal(sparse_gemm(a, values, indices, n=n, m=m, init=init, **kw), want)


def value(bits: np.ndarray) -> float:
    return float(bits.view(np.float32)[0, 0])


def compressed(b_bits: np.ndarray, n: int, m: int):
    """nm_compress of a K x N fp16 weight along K, as numpy bit arrays, and the decompressed weight."""
    w = torch.from_numpy(b_bits.view(np.int16)).view(torch.float16)
    values, indices = nm_compress(w, n, m, dim=0)
    dense = nm_decompress(values, indices, n, m, dim=0)
    return values, indices, dense


@pytest.mark.parametrize("rounding", ["rne", "rdn"])
def test_sparse_equals_dense_on_decompressed_up_to_zero_signs(rounding):
    """Sequential order: skipping x * (+0) changes nothing but the sign of a zero result."""
    rng = np.random.default_rng(21)
    a = draw("fp16", (8, 32), rng, special=0.0).astype(np.uint16)
    b = draw("fp16", (32, 9), rng, special=0.0).astype(np.uint16)
    values, indices, dense = compressed(b, 2, 4)
    sparse = sparse_gemm(a, values, indices, n=2, m=4, rounding=rounding)
    full = gemm(a, dense, rounding=rounding)
    nonzero = (full & 0x7FFF_FFFF) != 0
    np.testing.assert_array_equal(sparse[nonzero], full[nonzero])
    np.testing.assert_array_equal(sparse[~nonzero] & 0x7FFF_FFFF, 0)
    # chunked with tiles aligned to whole groups: chunk kept products == chunk * m / n dense positions
    sparse_c = sparse_gemm(a, values, indices, n=2, m=4, order="chunked", chunk=4, rounding=rounding)
    full_c = gemm(a, dense, order="chunked", chunk=8, rounding=rounding)
    nonzero = (full_c & 0x7FFF_FFFF) != 0
    np.testing.assert_array_equal(sparse_c[nonzero], full_c[nonzero])


def test_pruned_positions_contribute_nothing():
    # signed zero: kept weights -0, -0 (ties keep the lower indices), pruned +0, +0
    a = f16(1.0, 1.0, 1.0, 1.0)[None, :]
    b = f16(-0.0, -0.0, 0.0, 0.0)[:, None]
    values, indices, dense = compressed(b, 2, 4)
    assert indices[:, 0].tolist() == [0, 1]
    init = np.array([[NEG_ZERO32]], dtype=np.uint32)
    assert sparse_gemm(a, values, indices, n=2, m=4, init=init)[0, 0] == NEG_ZERO32  # -0 + -0 + -0
    assert gemm(a, dense, init=init)[0, 0] == 0  # ... + (1 * +0) = +0
    # inf * pruned zero: NaN in the dense product, nothing in the sparse one
    a = f16(1.0, 1.0, math.inf, 1.0)[None, :]
    b = f16(2.0, 3.0, 0.5, 0.0)[:, None]
    values, indices, dense = compressed(b, 2, 4)
    assert indices[:, 0].tolist() == [0, 1]
    assert float(sparse_gemm(a, values, indices, n=2, m=4).view(np.float32)[0, 0]) == 5.0
    assert gemm(a, dense)[0, 0] == CNAN32


def test_sparse_order_follows_the_kept_products():
    """Tiles count kept products, so a sparse tile spans more of K than a dense one."""
    # 2:4, every group keeps positions 0 and 1; kept products 1, then seven times 2^-24
    a = np.zeros((1, 16), dtype=np.uint16)
    a[0, [0, 1, 4, 5, 8, 9, 12, 13]] = f16(1.0, *[2.0**-12] * 7)
    b = np.zeros((16, 1), dtype=np.uint16)
    b[[0, 1, 4, 5, 8, 9, 12, 13], 0] = f16(1.0, *[2.0**-12] * 7)
    b[[2, 3, 6, 7, 10, 11, 14, 15], 0] = f16(-0.0)[0]  # pruned (smaller magnitude than 2^-12)
    values, indices, dense = compressed(b, 2, 4)
    # sparse chunk 4 = two groups per tile: (1, e, e, e) -> 1, (e, e, e, e) -> 4e
    assert value(sparse_gemm(a, values, indices, n=2, m=4, order="chunked", chunk=4)) == 1.0 + 4 * E
    # dense chunk 4 = one group per tile: (1, e, 0, 0) -> 1, then three tiles of 2e: 1 + 6e
    assert value(gemm(a, dense, order="chunked", chunk=4)) == 1.0 + 6 * E
    assert value(gemm(a, dense, order="chunked", chunk=8)) == 1.0 + 4 * E
    assert value(sparse_gemm(a, values, indices, n=2, m=4)) == value(gemm(a, dense)) == 1.0


def test_sparse_accepts_nm_compress_output_directly():
    rng = np.random.default_rng(5)
    a = torch.from_numpy(draw("bf16", (4, 16), rng, special=0).astype(np.int16)).view(torch.bfloat16)
    w = torch.randn(16, 6).to(torch.bfloat16)
    values, indices = nm_compress(w, 1, 4, dim=0)
    got = sparse_gemm(a, values, indices, n=1, m=4, fmt="bf16")
    kept_bits = values.view(torch.int16).numpy().view(np.uint16)
    a_bits = a.view(torch.int16).numpy().view(np.uint16)
    zeros = np.zeros((4, 6), dtype=np.int64)
    kw = {"fmt": "bf16", "acc_fmt": "fp32", "order": "sequential", "rounding": "rne", "chunk": None}
    want, _ = ref_sparse_gemm(a_bits, kept_bits, indices.numpy(), 1, 4, zeros, **kw)
    np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------------------------
# reference_gemm, operand forms
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["fp16", "bf16"])
def test_reference_gemm_is_close(fmt):
    torch.manual_seed(0)
    dtype = FORMATS[fmt].torch_dtype
    a, b = torch.randn(32, 200).to(dtype), torch.randn(200, 24).to(dtype)
    ref = reference_gemm(a, b, fmt=fmt)
    assert ref.dtype == np.float32
    abs_ab = np.abs(a.float().numpy()) @ np.abs(b.float().numpy())
    for order, chunk in ORDER_CASES:
        got = gemm(a, b, fmt=fmt, order=order, chunk=chunk).view(np.float32)
        # each of the two sums is within K * 2^-24 * sum|a b| of the exact value
        assert (np.abs(got - ref) <= 2 * 200 * 2.0**-24 * abs_ab).all()
        assert np.allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_operand_forms_agree():
    torch.manual_seed(1)
    a, b = torch.randn(5, 7).half(), torch.randn(7, 3).half()
    a_bits, b_bits = a.view(torch.int16).numpy().view(np.uint16), b.view(torch.int16).numpy().view(np.uint16)
    want = gemm(a_bits, b_bits)
    np.testing.assert_array_equal(gemm(a, b), want)
    np.testing.assert_array_equal(gemm(a.numpy(), b.numpy()), want)
    np.testing.assert_array_equal(gemm(a_bits.view(np.int16), b_bits.astype(np.int64)), want)
    np.testing.assert_array_equal(gemm(a.view(torch.int16), b.view(torch.int16)), want)
    np.testing.assert_array_equal(gemm(a_bits.tolist(), b_bits.tolist()), want)
    # init as a torch float32 tensor, NumPy float32, uint32 bits, or a broadcast scalar
    c = torch.randn(5, 3)
    want_c = gemm(a, b, init=c.numpy().view(np.uint32))
    np.testing.assert_array_equal(gemm(a, b, init=c), want_c)
    np.testing.assert_array_equal(gemm(a, b, init=c.numpy()), want_c)
    np.testing.assert_array_equal(gemm(a, b, init=np.float32(0.0)), want)
    np.testing.assert_array_equal(gemm(a, b, init=torch.tensor(2.0)), gemm(a, b, init=np.full((5, 3), 2.0, np.float32)))
    # bf16 tensors and their bits; frm integers for rounding
    ab, bb = a.bfloat16(), b.bfloat16()
    want_b = gemm(ab.view(torch.int16).numpy(), bb.view(torch.int16).numpy(), fmt="bf16", rounding="rup")
    np.testing.assert_array_equal(gemm(ab, bb, fmt="bf16", rounding=3), want_b)


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------

A2 = np.zeros((2, 4), dtype=np.uint16)
B2 = np.zeros((4, 3), dtype=np.uint16)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fmt": "fp32"}, "fmt must be one of 'fp16', 'bf16', not 'fp32'"),
        ({"acc_fmt": "fp64"}, "acc_fmt must be one of .* not 'fp64'"),
        ({"order": "random"}, "order must be one of 'sequential', 'systolic', 'chunked', 'tree', not 'random'"),
        ({"rounding": "nearest"}, "rounding must be one of .* not 'nearest'"),
        ({"rounding": 5}, "rounding must be one of .* not 5"),
        ({"order": "chunked"}, "order='chunked' needs chunk"),
        ({"order": "systolic"}, "order='systolic' needs chunk"),
        ({"order": "sequential", "chunk": 4}, "chunk must be None, not 4"),
        ({"order": "chunked", "chunk": 0}, "chunk must be a positive integer .* not 0"),
        ({"order": "tree", "chunk": 2.5}, "chunk must be a positive integer .* not 2.5"),
        ({"order": "tree", "chunk": True}, "chunk must be a positive integer .* not True"),
        ({"flags": 1}, "flags must be True or False, not 1"),
        ({"init": np.zeros((3, 3), dtype=np.uint32)}, r"init has shape \(3, 3\), which does not broadcast"),
        ({"init": np.zeros((2, 3), dtype=np.float64)}, "init has dtype float64, but fmt 'fp32' needs"),
        ({"init": torch.zeros(2, 3, dtype=torch.float16)}, "init is a torch.float16 tensor, but fmt 'fp32'"),
    ],
)
def test_gemm_argument_errors(kwargs, match):
    with pytest.raises(UsageError, match=match):
        gemm(A2, B2, **kwargs)


@pytest.mark.parametrize(
    ("a", "b", "fmt", "match"),
    [
        (A2, np.zeros((5, 3), dtype=np.uint16), "fp16", "a is 2 x 4 and b is 5 x 3: a's columns must equal b's rows"),
        (np.zeros(4, dtype=np.uint16), B2, "fp16", r"a must be a 2-d matrix, not an array of shape \(4,\)"),
        (A2, np.zeros((1, 4, 3), dtype=np.uint16), "fp16", "b must be a 2-d matrix"),
        (A2.astype(np.float32), B2, "fp16", "a has dtype float32, but fmt 'fp16' needs NumPy float16 values or"),
        (A2.astype(np.float16), B2, "bf16", "a has dtype float16, but fmt 'bf16' needs torch.bfloat16"),
        (torch.zeros(2, 4), B2, "fp16", "a is a torch.float32 tensor, but fmt 'fp16' needs torch.float16"),
        (torch.zeros(2, 4, dtype=torch.bfloat16), B2, "fp16", "a is a torch.bfloat16 tensor"),
        (A2, np.full((4, 3), 0x10000), "fp16", r"b\[0, 0\] is 65536, which is not a 16-bit fp16 bit pattern"),
        (A2, np.full((4, 3), -1), "fp16", r"b\[0, 0\] is -1, which is not"),
    ],
)
def test_gemm_operand_errors(a, b, fmt, match):
    with pytest.raises(UsageError, match=match):
        gemm(a, b, fmt=fmt)
    if "matrix" not in match and "columns" not in match:
        with pytest.raises(UsageError, match=match):
            reference_gemm(a, b, fmt=fmt)


V = np.zeros((4, 3), dtype=np.uint16)  # 2 groups of 2:4 -> K = 8
IDX = np.tile(np.array([[0], [1]], dtype=np.uint8), (2, 3))


@pytest.mark.parametrize(
    ("a", "values", "indices", "nm", "match"),
    [
        (np.zeros((2, 8), np.uint16), V, IDX, (2, 2), "N:M needs 1 <= n < m, not n=2, m=2"),
        (np.zeros((2, 8), np.uint16), V, IDX, (0, 4), "N:M needs 1 <= n < m, not n=0, m=4"),
        (np.zeros((2, 8), np.uint16), V, IDX, (2.0, 4), "n must be an integer, not 2.0"),
        (np.zeros((2, 8), np.uint16), V, IDX[:2], (2, 4), r"values \(4, 3\) and indices \(2, 3\) must have the same"),
        (np.zeros((2, 8), np.uint16), V, IDX.astype(float), (2, 4), "indices must be an integer array"),
        (np.zeros((2, 8), np.uint16), V[:3], IDX[:3], (2, 4), "values has 3 rows, which is not a multiple of n=2"),
        (np.zeros((2, 12), np.uint16), V, IDX, (2, 4), "covering K = 8, but a has K = 12 columns"),
        (np.zeros((2, 8), np.uint16), V, IDX + 3, (2, 4), r"indices must lie in \[0, 4\), found \[3, 4\]"),
        (np.zeros((2, 8), np.uint16), V, IDX[::-1].copy(), (2, 4), r"indices of group 0 in column 0 are \[1, 0\]"),
        (np.zeros((2, 8), np.uint16), V, np.zeros_like(IDX), (2, 4), "strictly ascending"),
    ],
)
def test_sparse_gemm_errors(a, values, indices, nm, match):
    with pytest.raises(UsageError, match=match):
        sparse_gemm(a, values, indices, n=nm[0], m=nm[1])


def test_orders_constant():
    assert ORDERS == ("sequential", "systolic", "chunked", "tree")
