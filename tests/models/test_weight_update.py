"""The update engine's PyTorch reference against torch.optim.SGD and, bit for bit, against the exact FP oracle."""

from __future__ import annotations

import platform

import numpy as np
import pytest
import torch

from trainforge.errors import UsageError
from trainforge.models import fp
from trainforge.models.weight_update import sgd_srste_update

# (lr, momentum, decay): ordinary, not representable in float32, zero, negative, overflowing, subnormal.
PARAMS = [
    (0.1, 0.9, 2e-4),
    (1 / 3, 0.0, 0.5),
    (0.0, 1.0, 0.0),
    (-0.01, -0.5, -3.0),
    (3e38, 0.99, 1e38),
    (1e-3, 1e-40, 1.4e-45),
]


def oracle_update(w, v, g, keep, *, lr, momentum, decay, use_mask, in_fmt):
    """The UPDATE formula on bit patterns, each operation rounded once by the exact oracle."""
    f32 = {"fmt": "fp32", "rounding": "rne"}
    hyper = {name: fp.from_float(np.float64(x), "fp32") for name, x in (("lr", lr), ("mu", momentum), ("d", decay))}
    dw, _ = fp.mul(w, hyper["d"], **f32)
    d = np.where(use_mask & ~keep, dw, np.uint64(0))
    g2, _ = fp.add(g, d, **f32)
    mv, _ = fp.mul(v, hyper["mu"], **f32)
    v2, _ = fp.add(mv, g2, **f32)
    step, _ = fp.mul(v2, hyper["lr"], **f32)
    w2, _ = fp.add(w, step, subtract=True, **f32)
    w16, _ = fp.convert(w2, src_fmt="fp32", dst_fmt=in_fmt, rounding="rne")
    return w2, v2, w16


def bits32(t: torch.Tensor) -> np.ndarray:
    return t.view(torch.int32).numpy().view(np.uint32).astype(np.uint64)


def bits16(t: torch.Tensor) -> np.ndarray:
    return t.view(torch.int16).numpy().view(np.uint16).astype(np.uint64)


def from_bits32(b: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(b.astype(np.uint32).view(np.int32).copy()).view(torch.float32)


def is_nan(b: np.ndarray, fmt: str) -> np.ndarray:
    return np.isnan(fp.to_float(b, fmt))


def assert_same_bits(got: np.ndarray, want: np.ndarray, fmt: str, what: str) -> None:
    """Equal bit patterns, except that any NaN matches any NaN (PyTorch's NaNs are not canonical)."""
    nan_got, nan_want = is_nan(got, fmt), is_nan(want, fmt)
    assert np.array_equal(nan_got, nan_want), f"{what}: NaN in different places"
    bad = np.flatnonzero((got != want) & ~nan_want)
    assert bad.size == 0, f"{what}: {bad.size} differ, first at {bad[0]}: got {got[bad[0]]:#x}, want {want[bad[0]]:#x}"


def special_operands(n: int, seed: int) -> tuple[np.ndarray, ...]:
    """w, v, g bit patterns: biased random FP32 (subnormals, near overflow, inf, NaN, -0) and every corner triple."""
    corners = fp.corner_values("fp32")
    grid = [x.reshape(-1) for x in np.meshgrid(corners, corners, corners, indexing="ij")]
    rnd = [fp.random_vectors(n, "fp32", seed + k) for k in range(3)]
    return tuple(np.concatenate([a, b]) for a, b in zip(grid, rnd, strict=True))


@pytest.mark.parametrize("in_fmt", ["fp16", "bf16"])
@pytest.mark.parametrize("use_mask", [True, False])
@pytest.mark.parametrize(("lr", "momentum", "decay"), PARAMS)
def test_reference_is_bit_exact_with_the_oracle(lr, momentum, decay, use_mask, in_fmt):
    w, v, g = special_operands(20_000, seed=7)
    keep = np.random.default_rng(3).random(len(w)) < 0.5
    got = sgd_srste_update(
        from_bits32(w),
        from_bits32(v),
        from_bits32(g),
        torch.from_numpy(keep),
        lr=lr,
        momentum=momentum,
        decay=decay,
        use_mask=use_mask,
        in_fmt=in_fmt,
    )
    want = oracle_update(w, v, g, keep, lr=lr, momentum=momentum, decay=decay, use_mask=use_mask, in_fmt=in_fmt)
    assert_same_bits(bits32(got[0]), want[0], "fp32", "w'")
    assert_same_bits(bits32(got[1]), want[1], "fp32", "v'")
    assert got[2].dtype == {"fp16": torch.float16, "bf16": torch.bfloat16}[in_fmt]
    assert_same_bits(bits16(got[2]), want[2], in_fmt, "w16")


def test_nan_patterns_oracle_canonical_torch_not():
    """Documents the NaN convention: the oracle (and the RTL) return the canonical NaN, x86 PyTorch does not."""
    inf, nan_payload = 0x7F800000, 0xFF812345  # a negative signalling NaN with a payload
    w = np.array([inf, inf, nan_payload, 0x3F800000], dtype=np.uint64)
    v = np.array([0, 0xFF800000, 0, 0], dtype=np.uint64)
    g = np.array([0, 0, 0, nan_payload], dtype=np.uint64)
    keep = np.zeros(4, dtype=bool)
    want = oracle_update(w, v, g, keep, lr=1.0, momentum=1.0, decay=0.0, use_mask=True, in_fmt="fp16")
    # inf*0, inf - inf, NaN operands: every NaN is the canonical one
    assert all(int(x) == fp.canonical_nan("fp32") == 0x7FC00000 for x in want[0])
    assert all(int(x) == fp.canonical_nan("fp16") == 0x7E00 for x in want[2])
    got = sgd_srste_update(
        *(from_bits32(x) for x in (w, v, g)), torch.from_numpy(keep), lr=1.0, momentum=1.0, decay=0.0, use_mask=True
    )
    got_w = bits32(got[0])
    assert is_nan(got_w, "fp32").all()
    if platform.machine() in ("x86_64", "AMD64"):
        # On x86 an invalid operation gives the "default NaN" 0xFFC00000, a NaN operand keeps its
        # (quieted) payload: hence NaN results are compared as "both NaN".
        assert (got_w != fp.canonical_nan("fp32")).any()


@pytest.mark.parametrize("use_mask", [True, False])
def test_reference_equals_torch_sgd_on_the_srste_gradient(use_mask):
    gen = torch.Generator().manual_seed(5)
    shape = (64, 48)
    w = torch.randn(shape, generator=gen)
    v = torch.randn(shape, generator=gen) * 0.1
    g = torch.randn(shape, generator=gen) * 0.01
    keep = torch.rand(shape, generator=gen) < 0.5
    lr, momentum, decay = 0.05, 0.9, 2e-4

    w_new, v_new, w16 = sgd_srste_update(w, v, g, keep, lr=lr, momentum=momentum, decay=decay, use_mask=use_mask)

    param = torch.nn.Parameter(w.clone())
    opt = torch.optim.SGD([param], lr=lr, momentum=momentum, dampening=0, nesterov=False, foreach=False)
    opt.state[param]["momentum_buffer"] = v.clone()  # otherwise the first step takes the buffer as grad
    d = torch.where(~keep & use_mask, w * decay, torch.zeros_like(w))
    param.grad = g + d
    opt.step()
    # SGD may fuse w - lr*v' into one rounding: equal within float32 rounding, not bit for bit
    torch.testing.assert_close(v_new, opt.state[param]["momentum_buffer"], rtol=2e-7, atol=1e-9)
    torch.testing.assert_close(w_new, param.detach(), rtol=2e-7, atol=1e-8)
    assert torch.equal(w16, w_new.half())
    if use_mask:  # the decay did something: the pruned weights moved differently
        plain = sgd_srste_update(w, v, g, keep, lr=lr, momentum=momentum, decay=decay, use_mask=False)[0]
        assert not torch.equal(plain[~keep], w_new[~keep])
        assert torch.equal(plain[keep], w_new[keep])


def test_hyperparameters_are_rounded_to_float32_first():
    w = torch.tensor([1.0, -2.5, 3.0e-39])
    zeros = torch.zeros(3)
    lr = 0.1  # not a float32 value: lr*v must use float32(0.1)
    got = sgd_srste_update(
        w, zeros, torch.ones(3), torch.ones(3, dtype=torch.bool), lr=lr, momentum=0.0, decay=0.0, use_mask=False
    )
    expected = w - torch.tensor(lr, dtype=torch.float32)
    assert torch.equal(got[0], expected)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"w": torch.zeros(3, dtype=torch.float64)}, "w must be a float32 tensor"),
        ({"keep": torch.zeros(3)}, "keep must be a bool tensor"),
        ({"g": torch.zeros(4)}, r"g has shape \(4,\), w has \(3,\)"),
        ({"in_fmt": "fp32"}, "in_fmt must be one of 'fp16', 'bf16', not 'fp32'"),
        ({"lr": "0.1"}, "lr must be a real number, not '0.1'"),
    ],
)
def test_bad_arguments_name_the_value(change, message):
    args = {"w": torch.zeros(3), "v": torch.zeros(3), "g": torch.zeros(3), "keep": torch.zeros(3, dtype=torch.bool)}
    kwargs = {"lr": 0.1, "momentum": 0.9, "decay": 0.0, "use_mask": True, "in_fmt": "fp16"}
    for key, value in change.items():
        (args if key in args else kwargs)[key] = value
    with pytest.raises(UsageError, match=message):
        sgd_srste_update(args["w"], args["v"], args["g"], args["keep"], **kwargs)
