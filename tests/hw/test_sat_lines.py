"""SAT memory lines and layouts: round trips, bit positions built by hand from the doc, N:M operand layouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainforge.errors import UsageError
from trainforge.hw.sat import lines as sat_lines
from trainforge.hw.sat.config import SatConfig
from trainforge.hw.sat.isa import Dataflow
from trainforge.models.nm import nm_decompress, nm_mask

CONFIGS = [
    SatConfig.preset_named("tiny"),
    SatConfig.preset_named("default"),
    # odd sizes: b-lines of 3 * 18 = 54 bits, a-lines spanning words, 32-bit memory
    SatConfig(preset="custom", rows=5, cols=3, m_max=4, mem_bits=64, in_fmt="bf16"),
    SatConfig(preset="custom", rows=2, cols=7, m_max=16, mem_bits=32),
]
IDS = ["tiny", "default", "odd64", "m16w32"]


def u16(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.integers(0, 1 << 16, size=shape, dtype=np.uint16)


def by_hand(value: int, n_words: int, mem_bits: int) -> np.ndarray:
    """Memory words of a line held as one Python integer (bit 0 of the line = bit 0 of word 0, column 0)."""
    return np.array(
        [[(value >> (w * mem_bits + 32 * c)) & 0xFFFF_FFFF for c in range(mem_bits // 32)] for w in range(n_words)],
        dtype=np.uint32,
    )


def random_lines(config: SatConfig, kind: str, count: int, rng: np.random.Generator) -> tuple:
    c = config
    if kind == "a":
        return (u16(rng, count, c.rows, c.m_max),)
    if kind == "b":
        return u16(rng, count, c.cols), rng.integers(0, c.m_max, size=(count, c.cols), dtype=np.uint8)
    if kind == "acc":
        return (rng.integers(0, 1 << 32, size=(count, c.cols), dtype=np.uint32),)
    if kind == "w":
        return (u16(rng, count, c.cols),)
    return (rng.integers(0, 2, size=(count, c.cols)).astype(bool),)


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
@pytest.mark.parametrize("kind", sat_lines.LINE_KINDS)
def test_round_trip(config, kind):
    rng = np.random.default_rng(1)
    data = random_lines(config, kind, 9, rng)
    packed = sat_lines.pack_lines(config, kind, *data)
    assert packed.dtype == np.uint32
    assert packed.shape == (9 * sat_lines.line_words(config, kind), config.mem_bits // 32)
    back = sat_lines.unpack_lines(config, kind, packed)
    back = back if kind == "b" else (back,)
    for want, got in zip(data, back, strict=True):
        assert np.array_equal(got, want)


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_bit_positions_by_hand(config):
    """Each format against an integer assembled field by field in the doc's order (LSB first)."""
    rng = np.random.default_rng(2)
    c, ib, mb = config, config.index_bits, config.mem_bits
    (groups,) = random_lines(c, "a", 2, rng)
    values, indices = random_lines(c, "b", 2, rng)
    (acc,) = random_lines(c, "acc", 2, rng)
    (w,) = random_lines(c, "w", 2, rng)
    (mask,) = random_lines(c, "mask", 2, rng)
    for line in range(2):
        a_int = sum(int(groups[line, i, q]) << ((i * c.m_max + q) * 16) for i in range(c.rows) for q in range(c.m_max))
        b_int = sum((int(values[line, j]) | int(indices[line, j]) << 16) << (j * (16 + ib)) for j in range(c.cols))
        acc_int = sum(int(acc[line, j]) << (32 * j) for j in range(c.cols))
        w_int = sum(int(w[line, j]) << (16 * j) for j in range(c.cols))
        mask_int = sum(int(mask[line, j]) << j for j in range(c.cols))
        checks = [
            ("a", a_int, (groups,)),
            ("b", b_int, (values, indices)),
            ("acc", acc_int, (acc,)),
            ("w", w_int, (w,)),
            ("mask", mask_int, (mask,)),
        ]
        for kind, value, data in checks:
            words = sat_lines.line_words(c, kind)
            packed = sat_lines.pack_lines(c, kind, *data)
            assert np.array_equal(packed[line * words : (line + 1) * words], by_hand(value, words, mb)), kind


def test_float_inputs_and_padding():
    config = CONFIGS[0]
    x = np.array([[1.5, -2.0, np.inf]], dtype=np.float32)
    assert np.array_equal(
        sat_lines.unpack_acc_lines(sat_lines.pack_acc_lines(x, config), config)[0, :3], x.view(np.uint32)[0]
    )
    assert np.array_equal(sat_lines.unpack_acc_lines(sat_lines.pack_acc_lines(x, config), config)[0, 3:], [0])
    h = torch.tensor([[0.5, -1.0]], dtype=torch.float16)
    assert sat_lines.unpack_w_lines(sat_lines.pack_w_lines(h, config), config)[0].tolist() == [0x3800, 0xBC00, 0, 0]


def test_bad_lines_rejected():
    config = CONFIGS[0]
    with pytest.raises(UsageError, match="at most"):
        sat_lines.pack_w_lines(np.zeros((1, 5), dtype=np.uint16), config)
    with pytest.raises(UsageError, match="indices"):
        sat_lines.pack_b_lines(np.zeros((1, 4), dtype=np.uint16), np.full((1, 4), 8), config)
    with pytest.raises(UsageError, match="outside"):
        sat_lines.pack_w_lines(np.full((1, 4), 1 << 16), config)
    with pytest.raises(UsageError, match="whole number"):
        sat_lines.unpack_a_lines(np.zeros((3, 4), dtype=np.uint32), config)
    with pytest.raises(UsageError, match="kind"):
        sat_lines.line_words(config, "z")


@pytest.mark.parametrize("stride", [None, 9])
def test_panel_layout(stride):
    config = CONFIGS[2]  # C = 3
    x = np.arange(7 * 8, dtype=np.uint32).reshape(7, 8) + 1
    lines = sat_lines.panel_lines(x, config, panel_stride=stride)
    ps = stride or 7
    assert lines.shape == (3 * ps, 3)
    for p in range(3):
        for r in range(ps):
            for j in range(3):
                col = p * 3 + j
                want = x[r, col] if r < 7 and col < 8 else 0
                assert lines[p * ps + r, j] == want
    assert np.array_equal(sat_lines.panel_matrix(lines, 7, 8, config, panel_stride=stride), x)
    mask = np.random.default_rng(0).integers(0, 2, (4, 5)).astype(bool)
    assert np.array_equal(sat_lines.panel_matrix(sat_lines.panel_lines(mask, config), 4, 5, config), mask)


@pytest.mark.parametrize(("n", "m"), [(4, 4), (2, 4), (1, 2)])
def test_os_a_lines(n, m):
    config = CONFIGS[2]  # R = 5, m_max = 4
    a = u16(np.random.default_rng(3), 4, 11)
    out = sat_lines.os_a_lines(a, n, m, config)
    assert out.shape == (-(-11 // m), 5, 4)
    for g in range(out.shape[0]):
        for i in range(5):
            for q in range(4):
                k = g * m + q
                want = a[i, k] if i < 4 and q < m and k < 11 else 0
                assert out[g, i, q] == want


@pytest.mark.parametrize(("n", "m", "k0", "steps"), [(4, 4, 4, 5), (2, 4, 3, 5), (1, 2, 0, 2), (3, 4, 1, 4)])
def test_ws_a_lines(n, m, k0, steps):
    config = CONFIGS[2]  # R = 5, m_max = 4
    a = u16(np.random.default_rng(4), 6, 13)
    out = sat_lines.ws_a_lines(a, k0, steps, n, m, config)
    assert out.shape == (6, 5, 4)
    for r in range(6):
        for i in range(5):
            g = (k0 + i) // n  # the group of compressed step k0 + i
            for q in range(4):
                k = g * m + q
                want = a[r, k] if i < steps and q < m and k < 13 else 0
                assert out[r, i, q] == want


@pytest.mark.parametrize(("n", "m"), [(2, 8), (1, 4), (3, 4), (1, 2), (8, 8), (4, 4)])
@pytest.mark.parametrize("fmt", ["fp16", "bf16"])
def test_b_lines_decompress_to_the_masked_tensor(n, m, fmt):
    config = SatConfig(preset="custom", cols=6, in_fmt=fmt)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[fmt]
    k, cols = 21, 5
    b = torch.randn(k, cols, generator=torch.Generator().manual_seed(5)).to(dtype)
    b[3, 1] = float("nan")
    b[7:9, 2] = 0.25  # a tie
    bits = b.view(torch.int16).numpy().view(np.uint16)
    values, indices = sat_lines.b_lines(bits, n, m, config)
    assert values.shape == indices.shape == (-(-k // m) * n if n < m else k, 6)
    assert not values[:, cols:].any()
    assert not indices[:, cols:].any()
    if n == m:
        assert np.array_equal(values[:, :cols], bits)
        assert np.array_equal(indices[:, :cols], np.tile((np.arange(k) % m)[:, None], (1, cols)))
        return
    kp = -(-k // m) * m
    padded = torch.cat([b, torch.zeros(kp - k, cols, dtype=dtype)])
    v = torch.from_numpy(values[:, :cols].view(np.int16)).view(dtype)
    dense = nm_decompress(v, torch.from_numpy(indices[:, :cols]), n, m, dim=0)
    masked = torch.where(nm_mask(padded, n, m, dim=0), padded, torch.zeros((), dtype=dtype))
    assert torch.equal(dense.view(torch.int16), masked.view(torch.int16))


def test_memory_image():
    config = CONFIGS[2]
    rng = np.random.default_rng(6)
    image = sat_lines.MemoryImage(config)
    assert image.alloc(3) == 0
    assert image.n_words == 3
    values, indices = random_lines(config, "b", 4, rng)
    b_addr = image.place("b", values, indices)
    assert b_addr == 3
    acc_addr = image.alloc_lines("acc", 2)
    assert acc_addr == 3 + 4 * config.b_words
    assert image.top == acc_addr + 2 * config.acc_words
    assert image.alloc(1, align=8) % 8 == 0
    got_v, got_i = image.read_lines(b_addr, "b", 4)
    assert np.array_equal(got_v, values)
    assert np.array_equal(got_i, indices)
    (acc,) = random_lines(config, "acc", 2, rng)
    image.write_lines(acc_addr, "acc", acc)
    assert np.array_equal(image.read_lines(acc_addr, "acc", 2), acc)
    assert image.words.shape == (image.n_words, 2)
    # strided access reads the same lines as consecutive access
    addrs = acc_addr + np.array([1, 0]) * config.acc_words
    assert np.array_equal(sat_lines.read_lines_at(image.words, config, "acc", addrs), acc[::-1])
    copy = sat_lines.MemoryImage.from_array(config, image.words)
    assert copy.top == image.n_words
    assert np.array_equal(copy.words, image.words)
    with pytest.raises(UsageError, match="outside"):
        image.read_lines(image.n_words, "acc", 1)


@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 8), (8, 8)])
@pytest.mark.parametrize("dataflow", [Dataflow.OS, Dataflow.WS])
def test_gemm_program_with_pre_placed_b_lines(n, m, dataflow):
    """``b_addrs``: the same tiles as placing B, reading each column block's b-lines where they already are."""
    c = SatConfig.preset_named("tiny")
    rng = np.random.default_rng(n * m)
    a, b = u16(rng, 6, 40), u16(rng, 40, 10)
    placed = sat_lines.MemoryImage(c)
    want = sat_lines.gemm_program(c, a, b, n, m, dataflow=dataflow, image=placed, max_steps=16)
    image = sat_lines.MemoryImage(c)
    blocks = {p: image.place("b", *sat_lines.b_lines(b[:, p * c.cols : (p + 1) * c.cols], n, m, c)) for p in range(3)}
    got = sat_lines.gemm_program(
        c, a, None, n, m, dataflow=dataflow, image=image, max_steps=16, b_addrs=blocks, b_cols=10
    )
    assert got.b_addrs == blocks
    assert got.shape == want.shape
    assert got.steps_per_tile == want.steps_per_tile
    # Tile by tile identical but for the addresses: B where it was put, A and C after it.
    assert len(got.descriptors) == len(want.descriptors)
    for g, w in zip(got.descriptors, want.descriptors, strict=True):
        block = max(p for p in range(3) if w.b_addr >= want.b_addrs[p])
        assert g.b_addr - blocks[block] == w.b_addr - want.b_addrs[block]
        same = ("rows", "cols", "steps", "n", "m", "acc_addr", "load_a", "load_b", "accumulate", "store")
        assert all(getattr(g, f) == getattr(w, f) for f in same)
    # no B placed by gemm_program: its first allocation (A) starts right after the pre-placed lines
    assert min(got.a_addrs.values()) >= max(blocks.values())


def test_gemm_program_pre_placed_b_arguments():
    c = SatConfig.preset_named("tiny")
    a, b = np.zeros((4, 8), np.uint16), np.zeros((8, 8), np.uint16)
    image = sat_lines.MemoryImage(c)
    with pytest.raises(UsageError, match="b=None"):
        sat_lines.gemm_program(c, a, b, 2, 4, dataflow=Dataflow.OS, image=image, b_addrs={0: 0, 1: 0}, b_cols=8)
    with pytest.raises(UsageError, match="b_cols"):
        sat_lines.gemm_program(c, a, None, 2, 4, dataflow=Dataflow.OS, image=image, b_addrs={0: 0, 1: 0})
    with pytest.raises(UsageError, match=r"column blocks \[1\]"):
        sat_lines.gemm_program(c, a, None, 2, 4, dataflow=Dataflow.OS, image=image, b_addrs={0: 0}, b_cols=8)
    with pytest.raises(UsageError, match="needs b"):
        sat_lines.gemm_program(c, a, None, 2, 4, dataflow=Dataflow.OS, image=image)
