"""The golden SAT program executor against models/golden.py, nm_compress / nm_mask and the exact FP oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainforge.hw.sat import lines as sat_lines
from trainforge.hw.sat.config import SatConfig
from trainforge.hw.sat.isa import Dataflow, ErrorCode, Gemm, Prune, Update
from trainforge.models import fp, golden
from trainforge.models.nm import nm_compress, nm_mask
from trainforge.models.sat_golden import execute

TINY = SatConfig.preset_named("tiny")  # 4 x 4, m_max 8, 128-bit memory
ODD = SatConfig(preset="custom", rows=3, cols=5, m_max=4, a_lines=8, b_lines=8, acc_lines=8, mem_bits=64, in_fmt="bf16")
DTYPE = {"fp16": torch.float16, "bf16": torch.bfloat16}
NEG_ZERO = np.uint32(0x8000_0000)


def operand(config: SatConfig, *shape: int, seed: int) -> np.ndarray:
    t = torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(DTYPE[config.in_fmt])
    return t.view(torch.int16).numpy().view(np.uint16)


def reference(config, a, b, n, m, **order):
    """golden.gemm / sparse_gemm on the whole matrices (K zero-padded to a multiple of m when sparse)."""
    if n == m:
        return golden.gemm(a, b, fmt=config.in_fmt, **order)
    k = a.shape[1]
    kp = -(-k // m) * m
    a, b = np.pad(a, ((0, 0), (0, kp - k))), np.pad(b, ((0, kp - k), (0, 0)))
    w = torch.from_numpy(b.view(np.int16)).view(DTYPE[config.in_fmt])
    values, indices = nm_compress(w, n, m, dim=0)
    v = values.view(torch.int16).numpy().view(np.uint16)
    return golden.sparse_gemm(a, v, indices.numpy(), n=n, m=m, fmt=config.in_fmt, **order)


CASES = [
    # config, (M, K, N), n, m, max_steps (OS K-chunk cap), max_rows (WS A-row block cap)
    (TINY, (7, 45, 10), 8, 8, None, None),
    (TINY, (9, 45, 6), 8, 8, 16, 4),
    (TINY, (5, 70, 9), 2, 8, 6, 3),
    (TINY, (6, 33, 4), 1, 4, None, None),
    (TINY, (3, 19, 5), 4, 4, 4, None),
    (ODD, (8, 23, 11), 4, 4, None, 5),
    (ODD, (4, 30, 7), 2, 4, 4, 2),
    (ODD, (7, 13, 6), 1, 2, 3, None),
]


@pytest.mark.parametrize("dataflow", [Dataflow.OS, Dataflow.WS])
@pytest.mark.parametrize(("config", "shape", "n", "m", "max_steps", "max_rows"), CASES)
def test_gemm_program_matches_golden(config, shape, n, m, max_steps, max_rows, dataflow):
    mm, k, nn = shape
    a, b = operand(config, mm, k, seed=k), operand(config, k, nn, seed=k + 1)
    image = sat_lines.MemoryImage(config)
    prog = sat_lines.gemm_program(
        config, a, b, n, m, dataflow=dataflow, image=image, max_steps=max_steps, max_rows=max_rows
    )
    run = execute(config, prog.descriptors, image)
    assert run.error_code == ErrorCode.NONE
    assert run.executed == len(prog.descriptors)
    if dataflow == Dataflow.OS:
        # K-chunks accumulated in the acc buffer, the first taken as it is (-0 + t == t).
        want = reference(config, a, b, n, m, order="chunked", chunk=prog.steps_per_tile, init=NEG_ZERO)
    else:
        want = reference(config, a, b, n, m, order="systolic", chunk=config.rows)
    assert np.array_equal(prog.result_bits(run.image), want)
    # and within rounding of a float32 matmul of the (masked) operands
    mask = np.ones((k, nn), dtype=bool)
    if n < m:
        w = torch.from_numpy(b.view(np.int16)).view(DTYPE[config.in_fmt])
        mask = nm_mask(w, n, m, dim=0, pad=True).numpy()
    wide = golden.reference_gemm(a, np.where(mask, b, 0).astype(np.uint16), fmt=config.in_fmt)
    np.testing.assert_allclose(prog.result(run.image), wide, rtol=1e-3, atol=1e-3 * np.sqrt(k))
    assert not prog.result_bits(image).any()  # execute ran on a copy: C is still zero in the input


def test_gemm_program_reuses_operands_and_chunks():
    a, b = operand(TINY, 6, 40, seed=1), operand(TINY, 40, 12, seed=2)
    # K = 32 fits the buffers: one tile per output tile, A shared along a row block
    prog = sat_lines.gemm_program(
        TINY, a[:, :32], b[:32], 8, 8, dataflow=Dataflow.OS, image=sat_lines.MemoryImage(TINY)
    )
    assert [d.load_a for d in prog.descriptors] == [True, False, False, True, False, False]
    assert all(d.load_b and d.store and not d.accumulate for d in prog.descriptors)
    assert [d.acc_addr for d in prog.descriptors] == [0, 4, 0, 4, 0, 4]
    # K = 40 does not (b_lines = 32): K-chunks
    prog = sat_lines.gemm_program(TINY, a, b, 8, 8, dataflow=Dataflow.OS, image=sat_lines.MemoryImage(TINY))
    assert [d.steps for d in prog.descriptors[:2]] == [32, 8]
    assert len(prog.descriptors) == 12
    prog = sat_lines.gemm_program(
        TINY, a, b, 8, 8, dataflow=Dataflow.OS, image=sat_lines.MemoryImage(TINY), max_steps=16
    )
    assert [d.steps for d in prog.descriptors[:3]] == [16, 16, 8]
    assert [d.accumulate for d in prog.descriptors[:3]] == [False, True, True]
    assert [d.store for d in prog.descriptors[:3]] == [False, False, True]
    prog = sat_lines.gemm_program(TINY, a, b, 8, 8, dataflow=Dataflow.WS, image=sat_lines.MemoryImage(TINY))
    assert {d.steps for d in prog.descriptors} == {4}
    assert len(prog.descriptors) == 3 * 10


def os_tile(config, a_tile, values, indices, n):
    """One OS tile computed independently: sequential sparse sum from +0 over the tile's steps."""
    rows, steps = a_tile.shape[0], values.shape[0]
    # Expand: step s selects a_tile[:, (s // n) * m_max + index]
    a_groups = sat_lines.os_a_lines(a_tile, n, config.m_max, config)  # groups of m_max: n:m_max indices
    x = a_groups[np.arange(steps) // n, :rows].transpose(1, 0, 2).reshape(rows, -1)
    return golden.sparse_gemm(x, values, indices, n=1, m=config.m_max, fmt=config.in_fmt)


def test_operand_halves_toggle_and_reuse():
    """Loads alternate between two halves; a tile without a load reads what the last load left in its half."""
    c = TINY
    rng = np.random.default_rng(7)
    image = sat_lines.MemoryImage(c)
    a_x = rng.integers(0x3000, 0x4000, size=(2, c.rows, c.m_max), dtype=np.uint16)
    a_y = rng.integers(0x3000, 0x4000, size=(2, c.rows, c.m_max), dtype=np.uint16)
    a_z = rng.integers(0x3000, 0x4000, size=(1, c.rows, c.m_max), dtype=np.uint16)
    values = rng.integers(0x3000, 0x4000, size=(16, c.cols), dtype=np.uint16)
    indices = rng.integers(0, c.m_max, size=(16, c.cols), dtype=np.uint8)
    addr = {name: image.place("a", x) for name, x in (("x", a_x), ("y", a_y), ("z", a_z))}
    b_addr = image.place("b", values, indices)
    out = image.alloc_lines("acc", 4 * c.rows)
    common = dict(n=8, m=8, rows=4, cols=4, b_addr=b_addr, acc_addr=0)

    def c_at(t):
        return out + t * c.rows * c.acc_words

    program = [
        Gemm(steps=16, a_addr=addr["x"], c_addr=c_at(0), **common),  # half 0 <- x
        Gemm(steps=16, a_addr=addr["y"], c_addr=c_at(1), load_b=False, **common),  # half 1 <- y
        Gemm(steps=8, a_addr=addr["z"], c_addr=c_at(2), load_b=False, **common),  # half 0 <- z over x[0]
        Gemm(steps=16, a_addr=0, c_addr=c_at(3), load_a=False, load_b=False, **common),  # reads [z0, x1]
    ]
    run = execute(c, program, image)
    assert run.error_code == ErrorCode.NONE
    assert run.executed == 4
    mixed = np.concatenate([a_z, a_x[1:]])
    for t, groups, steps in [(0, a_x, 16), (1, a_y, 16), (2, a_z, 8), (3, mixed, 16)]:
        got = sat_lines.read_lines_at(run.image, c, "acc", c_at(t) + c.acc_words * np.arange(c.rows))
        x = groups[np.arange(steps) // 8].transpose(1, 0, 2).reshape(c.rows, -1)
        want = golden.sparse_gemm(x, values[:steps], indices[:steps], n=1, m=c.m_max)
        assert np.array_equal(got, want), t


def test_unused_columns_are_zero_and_accumulate_reads_the_buffer():
    c = TINY
    a, b = operand(c, 4, 8, seed=3), operand(c, 8, 4, seed=4)
    image = sat_lines.MemoryImage(c)
    a_addr = image.place("a", sat_lines.os_a_lines(a, 8, 8, c))
    b_addr = image.place("b", *sat_lines.b_lines(b, 8, 8, c))
    ws_addr = image.place("a", sat_lines.ws_a_lines(a, 4, 4, 8, 8, c))
    out = image.alloc_lines("acc", 3 * c.rows)
    base = dict(n=8, m=8, rows=4, steps=8, a_addr=a_addr, b_addr=b_addr)
    program = [
        Gemm(cols=4, c_addr=out, **base),
        Gemm(cols=2, c_addr=out + 4 * c.acc_words, accumulate=True, **base),  # acc + t, cols 2, 3 -> +0
        Gemm(  # WS: steps 4..7 chained onto the acc lines' partial sums
            dataflow=Dataflow.WS,
            n=8,
            m=8,
            rows=4,
            cols=3,
            steps=4,
            a_addr=ws_addr,
            b_addr=b_addr + 4 * c.b_words,
            c_addr=out + 8 * c.acc_words,
            accumulate=True,
        ),
    ]
    run = execute(c, program, image)
    got = sat_lines.read_lines_at(run.image, c, "acc", out + c.acc_words * np.arange(12)).reshape(3, 4, 4)
    t = golden.gemm(a, b)
    assert np.array_equal(got[0], t)
    assert np.array_equal(got[1, :, :2], fp.add(t[:, :2], t[:, :2], fmt="fp32", rounding="rne")[0])
    assert not got[1, :, 2:].any()
    doubled = got[1, :, :3]
    assert np.array_equal(got[2, :, :3], golden.gemm(a[:, 4:], b[4:, :3], init=doubled))
    assert not got[2, :, 3:].any()
    assert np.array_equal(run.acc[:4], got[2])


def test_special_values_give_canonical_nans():
    c = TINY
    a = operand(c, 4, 8, seed=5)
    b = operand(c, 8, 4, seed=6)
    a[0, 0], b[0, 0] = 0x7C00, 0  # inf * 0
    a[1, 1], b[1, 1] = 0x7E01, 0x3C00  # NaN operand with a payload
    image = sat_lines.MemoryImage(c)
    prog = sat_lines.gemm_program(c, a, b, 8, 8, dataflow=Dataflow.WS, image=image)
    got = prog.result_bits(execute(c, prog.descriptors, image).image)
    assert got[0, 0] == got[1, 1] == 0x7FC0_0000
    assert np.array_equal(got, golden.gemm(a, b))


@pytest.mark.parametrize(
    ("config", "n", "m"), [(TINY, 2, 8), (TINY, 1, 4), (TINY, 3, 4), (ODD, 2, 4), (ODD, 1, 2)], ids=str
)
def test_prune_bp_copy(config, n, m):
    c = config
    lines = 3 * m
    w = torch.randn(lines, c.cols, generator=torch.Generator().manual_seed(n * m)).to(DTYPE[c.in_fmt])
    w[1, 0], w[2, 1] = float("inf"), float("nan")
    bits = w.view(torch.int16).numpy().view(np.uint16)
    image = sat_lines.MemoryImage(c)
    src = image.place("w", bits)
    dst, mask = image.alloc_lines("b", lines // m * n), image.alloc_lines("mask", lines)
    prune = Prune(n=n, m=m, lines=lines, src_addr=src, dst_addr=dst, mask_addr=mask, write_mask=True)
    run = execute(c, [prune], image)
    assert run.error_code == ErrorCode.NONE
    values, indices = nm_compress(w, n, m, dim=0)
    got_v, got_i = sat_lines.read_lines_at(run.image, c, "b", dst + c.b_words * np.arange(lines // m * n))
    assert np.array_equal(got_v, values.view(torch.int16).numpy().view(np.uint16))
    assert np.array_equal(got_i, indices.numpy())
    got_mask = sat_lines.read_lines_at(run.image, c, "mask", mask + c.mask_words * np.arange(lines))
    assert np.array_equal(got_mask, nm_mask(w, n, m, dim=0).numpy())


@pytest.mark.parametrize(
    ("config", "n", "m", "panels"),
    [(TINY, 2, 8, 2), (TINY, 1, 4, 3), (TINY, 1, 2, 1), (ODD, 1, 4, 4), (ODD, 1, 2, 2)],
    ids=str,
)
def test_prune_ff_copy_transposed(config, n, m, panels):
    c = config
    stride = c.cols + 2  # a gap between panels, which PRUNE must not touch
    band = torch.randn(c.cols, panels * c.cols, generator=torch.Generator().manual_seed(m)).to(DTYPE[c.in_fmt])
    band[0, 1] = float("-inf")
    bits = band.view(torch.int16).numpy().view(np.uint16)
    image = sat_lines.MemoryImage(c)
    src = image.place("w", sat_lines.panel_lines(bits, c, panel_stride=stride))
    steps = panels * c.cols // m * n
    dst = image.alloc_lines("b", steps)
    mask = image.place("mask", np.ones((panels * stride, c.cols), dtype=bool))
    prune = Prune(
        n=n, m=m, lines=panels, src_addr=src, dst_addr=dst, mask_addr=mask, transpose=True, write_mask=True,
        panel_stride=stride,
    )  # fmt: skip
    run = execute(c, [prune], image)
    assert run.error_code == ErrorCode.NONE
    values, indices = nm_compress(band, n, m, dim=1)  # lane i walks row i along C_in
    got_v, got_i = sat_lines.read_lines_at(run.image, c, "b", dst + c.b_words * np.arange(steps))
    assert np.array_equal(got_v, values.view(torch.int16).numpy().view(np.uint16).T)
    assert np.array_equal(got_i, indices.numpy().T)
    got_mask = sat_lines.read_lines_at(run.image, c, "mask", mask + c.mask_words * np.arange(panels * stride))
    want_mask = sat_lines.panel_lines(nm_mask(band, n, m, dim=1).numpy(), c, panel_stride=stride)
    gap = (np.arange(panels * stride) % stride) >= c.cols
    want_mask[gap] = True  # untouched
    assert np.array_equal(got_mask, want_mask)


def oracle_update(w, v, g, keep, lr, mom, decay, use_mask, in_fmt):
    """The UPDATE equations, one exact-oracle rounding per operation (canonical NaNs)."""

    def bits32(x):
        return np.uint32(np.array([x], dtype=np.float32).view(np.uint32)[0])

    rne = dict(fmt="fp32", rounding="rne")
    d = fp.mul(bits32(decay), w, **rne)[0]
    d = np.where(use_mask & ~keep, d, 0)
    g2 = fp.add(g, d, **rne)[0]
    v2 = fp.add(fp.mul(bits32(mom), v, **rne)[0], g2, **rne)[0]
    w2 = fp.add(w, fp.mul(bits32(lr), v2, **rne)[0], subtract=True, **rne)[0]
    w16 = fp.convert(w2, src_fmt="fp32", dst_fmt=in_fmt, rounding="rne")[0]
    return w2.astype(np.uint32), v2.astype(np.uint32), w16.astype(np.uint16)


@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("config", [TINY, ODD], ids=["tiny", "odd"])
def test_update(config, use_mask):
    c = config
    lines = 6
    rng = np.random.default_rng(8)
    w, v, g = (rng.standard_normal((lines, c.cols)).astype(np.float32).view(np.uint32) for _ in range(3))
    w[0, 0], v[1, 1], g[2, 2] = 0x7F80_0000, 0x7FC1_2345, 0x0000_0003  # inf, NaN with payload, subnormal
    w[3, 0], v[3, 0] = 0x7F80_0000, 0  # inf - lr * v stays inf; inf * decay
    keep = rng.integers(0, 2, (lines, c.cols)).astype(bool)
    image = sat_lines.MemoryImage(c)
    addrs = {name: image.place("acc", x) for name, x in (("w", w), ("v", v), ("g", g))}
    mask = image.place("mask", keep)
    w16 = image.alloc_lines("w", lines)
    hyper = dict(lr=0.1, momentum=0.9, decay=2e-4)
    upd = Update(
        lines=lines, w_addr=addrs["w"], v_addr=addrs["v"], g_addr=addrs["g"], mask_addr=mask, w16_addr=w16,
        use_mask=use_mask, **hyper,
    )  # fmt: skip
    run = execute(c, [upd], image)
    assert run.error_code == ErrorCode.NONE
    assert run.executed == 1
    want_w, want_v, want_16 = oracle_update(w, v, g, keep, 0.1, 0.9, 2e-4, use_mask, c.in_fmt)
    assert np.array_equal(
        sat_lines.read_lines_at(run.image, c, "acc", addrs["w"] + c.acc_words * np.arange(lines)), want_w
    )
    assert np.array_equal(
        sat_lines.read_lines_at(run.image, c, "acc", addrs["v"] + c.acc_words * np.arange(lines)), want_v
    )
    assert np.array_equal(sat_lines.read_lines_at(run.image, c, "w", w16 + c.w_words * np.arange(lines)), want_16)


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (Gemm(n=8, m=8, rows=4, cols=5, steps=8), ErrorCode.TILE_TOO_BIG),
        (Gemm(n=3, m=6, rows=4, cols=4, steps=8), ErrorCode.BAD_PATTERN),
        (Gemm(n=8, m=8, rows=0, cols=4, steps=8), ErrorCode.ZERO_DIM),
        (Gemm(n=8, m=8, rows=4, cols=4, steps=8, acc_addr=30), ErrorCode.BUFFER_OVERFLOW),
        (Prune(n=8, m=8, lines=8), ErrorCode.BAD_PATTERN),
        (Update(lines=0), ErrorCode.ZERO_DIM),
        ("not a descriptor", ErrorCode.BAD_OP),
    ],
)
def test_invalid_descriptor_stops_the_program(bad, code):
    c = TINY
    a, b = operand(c, 4, 8, seed=9), operand(c, 8, 4, seed=10)
    image = sat_lines.MemoryImage(c)
    a_addr, b_addr = (
        image.place("a", sat_lines.os_a_lines(a, 8, 8, c)),
        image.place("b", *sat_lines.b_lines(b, 8, 8, c)),
    )
    out = image.alloc_lines("acc", 2 * c.rows)
    first = Gemm(n=8, m=8, rows=4, cols=4, steps=8, a_addr=a_addr, b_addr=b_addr, c_addr=out)
    after = Gemm(n=8, m=8, rows=4, cols=4, steps=8, a_addr=a_addr, b_addr=b_addr, c_addr=out + 4 * c.acc_words)
    run = execute(c, [first, bad, after], image)
    assert run.error_code == code
    assert run.executed == 1
    assert np.array_equal(run.image, execute(c, [first], image).image)  # the third never ran
    assert np.array_equal(run.acc[:4], golden.gemm(a, b))
    assert not image.words[out:].any()  # execute works on a copy
