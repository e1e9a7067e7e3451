"""The MCU kernels' dot-product references against step-by-step float64 arithmetic.

With operands of moderate magnitude every product and every sum of the references is exact in
float64, so NumPy's (correctly rounded) float64 -> float16/float32 conversion after each step is
an independent oracle of one fused step with one rounding.
"""

import numpy as np
import pytest
import torch

from trainforge.errors import UsageError
from trainforge.models.mcu_golden import dot


def _operands(rng, outputs, k, fmt):
    dtype = np.float16 if fmt == "fp16" else np.float32
    a = (rng.uniform(0.25, 4.0, (outputs, k)) * rng.choice([-1, 1], (outputs, k))).astype(dtype)
    b = (rng.uniform(0.25, 4.0, (outputs, k)) * rng.choice([-1, 1], (outputs, k))).astype(dtype)
    view = np.uint16 if fmt == "fp16" else np.uint32
    return a, b, a.view(view).astype(np.uint64), b.view(view).astype(np.uint64)


@pytest.mark.parametrize("k", [1, 2, 7, 32])
def test_sequential_fp16_is_one_rounding_per_step(k):
    rng = np.random.default_rng(k)
    a, b, abits, bbits = _operands(rng, 50, k, "fp16")
    c = np.zeros(50, dtype=np.float16)
    for kk in range(k):
        c = (a[:, kk].astype(np.float64) * b[:, kk] + c.astype(np.float64)).astype(np.float16)
    got = dot(abits, bbits, fmt="fp16", accumulation="sequential")
    assert np.array_equal(got.astype(np.uint16), c.view(np.uint16))


def test_sequential_fp32():
    rng = np.random.default_rng(1)
    a, b, abits, bbits = _operands(rng, 40, 9, "fp32")
    a, b = a.astype(np.float16).astype(np.float32), b.astype(np.float16).astype(np.float32)  # exact products
    abits, bbits = a.view(np.uint32).astype(np.uint64), b.view(np.uint32).astype(np.uint64)
    c = np.zeros(40, dtype=np.float32)
    for kk in range(9):
        c = (a[:, kk].astype(np.float64) * b[:, kk] + c.astype(np.float64)).astype(np.float32)
    got = dot(abits, bbits, fmt="fp32", accumulation="sequential")
    assert np.array_equal(got.astype(np.uint32), c.view(np.uint32))


@pytest.mark.parametrize("k", [2, 5, 16])
def test_lanes_split_even_and_odd_k(k):
    rng = np.random.default_rng(10 + k)
    a, b, abits, bbits = _operands(rng, 30, k, "fp16")
    lanes = [np.zeros(30, dtype=np.float16), np.zeros(30, dtype=np.float16)]
    for kk in range(k):
        lane = kk % 2
        lanes[lane] = (a[:, kk].astype(np.float64) * b[:, kk] + lanes[lane].astype(np.float64)).astype(np.float16)
    want = (lanes[0].astype(np.float64) + lanes[1]).astype(np.float16)
    got = dot(abits, bbits, fmt="fp16", accumulation="lanes")
    assert np.array_equal(got.astype(np.uint16), want.view(np.uint16))


@pytest.mark.parametrize("k", [2, 9])
def test_dotpex_accumulates_in_fp32(k):
    rng = np.random.default_rng(20 + k)
    a, b, abits, bbits = _operands(rng, 30, k, "fp16")
    c = np.zeros(30, dtype=np.float32)
    for kk in range(k):
        c = (a[:, kk].astype(np.float64) * b[:, kk] + c.astype(np.float64)).astype(np.float32)
    got = dot(abits, bbits, fmt="fp16", accumulation="dotpex")
    assert np.array_equal(got.astype(np.uint16), c.astype(np.float16).view(np.uint16))


def test_close_to_pytorch():
    rng = np.random.default_rng(3)
    a, b, abits, bbits = _operands(rng, 64, 128, "fp16")
    want = (torch.from_numpy(a.astype(np.float32)) * torch.from_numpy(b.astype(np.float32))).sum(dim=1).numpy()
    for accumulation in ("sequential", "lanes", "dotpex"):
        got = dot(abits, bbits, fmt="fp16", accumulation=accumulation).astype(np.uint16).view(np.float16)
        assert np.allclose(got.astype(np.float32), want, rtol=2e-2, atol=0.5), accumulation


def test_bad_arguments():
    with pytest.raises(UsageError, match="accumulation must be one of"):
        dot(np.zeros((1, 2)), np.zeros((1, 2)), fmt="fp16", accumulation="tree")
    with pytest.raises(UsageError, match="same 2-D shape"):
        dot(np.zeros((1, 2)), np.zeros((1, 3)), fmt="fp16", accumulation="lanes")
    with pytest.raises(UsageError, match="16-bit format"):
        dot(np.zeros((1, 2)), np.zeros((1, 2)), fmt="fp32", accumulation="lanes")
