"""Co-simulated training without the RTL: the hardware-exact golden run against plain PyTorch float32.

Tolerance of the weights: every GEMM operand is rounded to FP16 (unit roundoff u = 2^-11) and
accumulated in FP32, so each gradient carries a relative error of a few u, and the master weights
differ from the float32 ones by a few u times the distance training moved them. The bound is
``2^-7 = 16 u`` of that distance; measured: below 1 u (about 3e-4 of it) over 3 steps for every
model and method. (Discrete events widen it: a pre-activation within FP16 rounding of 0 takes
the other side of the ReLU, after which momentum carries the difference along, so the bound is
only asserted over a few steps.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainforge.errors import UsageError
from trainforge.hw.sat import lines
from trainforge.hw.sat.config import SatConfig
from trainforge.hw.sat.isa import Dataflow, ErrorCode, Prune
from trainforge.models.nm import nm_mask
from trainforge.models.sat_golden import execute
from trainforge.sim import cosim

TINY = SatConfig.preset_named("tiny")
REL = 2.0**-7


def moved(weights, initial) -> float:
    return max(float(np.max(np.abs(w - i))) for w, i in zip(weights, initial, strict=True))


def distance(a, b) -> float:
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("method", cosim.METHODS)
@pytest.mark.parametrize("model", cosim.MODELS)
def test_golden_run_tracks_pytorch(model, method):
    kw = dict(model=model, method=method, n=2, m=4, steps=3)
    golden = cosim.golden_steps(TINY, **kw)
    ref = cosim.torch_steps(TINY, **kw)
    assert golden.cycles is None  # the golden executor has no cycle counters
    assert len(golden.losses) == len(ref.losses) == 3
    np.testing.assert_allclose(golden.losses, ref.losses, rtol=0, atol=1e-3)
    for t in range(3):
        change = moved(golden.weights[t], golden.initial)
        assert change > 1e-3  # training moved the weights
        assert distance(golden.weights[t], ref.weights[t]) <= REL * change, f"step {t}"
    for spec, w in zip(cosim.network(model, TINY, 4), golden.weights[-1], strict=True):
        assert w.shape == (spec.out_p, spec.in_p)
        assert not w[spec.c_out :].any()  # padded weights stay exactly zero
        assert not w[:, spec.c_in :].any()


def test_the_methods_differ():
    """The masks matter: dense, SR-STE and BDWP give weights further apart than the tolerance."""
    kw = dict(model="mlp", n=1, m=4, steps=2)
    runs = {method: cosim.golden_steps(TINY, method=method, **kw) for method in cosim.METHODS}
    change = moved(runs["dense"].weights[-1], runs["dense"].initial)
    for a, b in (("dense", "srste"), ("srste", "bdwp")):
        assert distance(runs[a].weights[-1], runs[b].weights[-1]) > 10 * REL * change, (a, b)


@pytest.mark.parametrize(("model", "method"), [("mlp", "dense"), ("mlp", "bdwp"), ("cnn", "srste")])
def test_loss_decreases_over_20_steps(model, method):
    losses = cosim.golden_steps(TINY, model=model, method=method, n=2, m=4, steps=20).losses
    assert np.all(np.isfinite(losses))
    # One batch of 16 per step: noisy, so compare the means of the first and the last five steps.
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.1, losses


def test_ff_copy_is_the_ff_gemm_operand():
    """PRUNE(transpose=1) of a band of C output rows writes exactly the B lines of that FF column tile."""
    c = TINY
    gen = torch.Generator().manual_seed(5)
    w = torch.randn(8, 24, generator=gen).to(torch.float16)  # C_out x C_in
    x = torch.randn(6, 24, generator=gen).to(torch.float16)
    image = lines.MemoryImage(c)
    w16 = image.place("w", lines.panel_lines(w.view(torch.int16).numpy().view(np.uint16), c, panel_stride=8))
    steps = 24 // 4 * 2
    bands = {band: image.alloc_lines("b", steps) for band in range(2)}
    prunes = [
        Prune(n=2, m=4, lines=6, src_addr=w16 + band * 4 * c.w_words, dst_addr=addr, transpose=True, panel_stride=8)
        for band, addr in bands.items()
    ]
    pruned = execute(c, prunes, image)
    assert pruned.error_code == ErrorCode.NONE
    image = lines.MemoryImage.from_array(c, pruned.image)
    xb = x.view(torch.int16).numpy().view(np.uint16)
    prog = lines.gemm_program(c, xb, None, 2, 4, dataflow=Dataflow.OS, image=image, b_addrs=bands, b_cols=8)
    got = prog.result(execute(c, prog.descriptors, image).image)
    masked = (w * nm_mask(w, 2, 4, dim=1)).float()
    np.testing.assert_allclose(got, (x.float() @ masked.T).numpy(), rtol=1e-4, atol=1e-4)


def test_result_file_round_trip(tmp_path):
    result = cosim.golden_steps(TINY, model="mlp", method="bdwp", n=2, m=4, steps=1)
    result.cycles, result.cycles_by_op = 123, dict.fromkeys(cosim.COUNTED_OPS, 7)
    result.save(tmp_path / "r.npz")
    back = cosim.CosimResult.load(tmp_path / "r.npz")
    assert back.cycles == 123
    assert back.cycles_by_op == result.cycles_by_op
    assert np.array_equal(np.float32(back.losses).view(np.uint32), np.float32(result.losses).view(np.uint32))
    for a, b in zip(back.weights[0] + back.initial, result.weights[0] + result.initial, strict=True):
        assert np.array_equal(a.view(np.uint32), b.view(np.uint32))
    report = cosim.report(back, result, cosim.TorchResult(losses=result.losses, weights=result.weights))
    assert report["bit_exact"]
    assert report["max_abs_weight_diff"] == 0.0
    back.weights[0][1][0, 0] = np.nextafter(back.weights[0][1][0, 0], np.float32(1))
    assert not cosim.report(back, result, cosim.TorchResult(losses=result.losses, weights=result.weights))["bit_exact"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model": "resnet"}, "unknown model 'resnet'"),
        ({"method": "transposable"}, "unknown method 'transposable'"),
        ({"n": 4, "m": 4}, "need 1 <= n < m"),
        ({"n": 1, "m": 3}, "m must divide m_max = 8"),
        ({"n": 1, "m": 16}, "m must divide m_max = 8"),
        ({"steps": 0}, "--steps must be >= 1"),
        ({"batch": 0}, "--batch must be in 1..256"),
    ],
)
def test_bad_arguments(changes, message):
    args = dict(model="mlp", method="bdwp", n=2, m=4, steps=1, batch=16) | changes
    with pytest.raises(UsageError, match=message):
        cosim.check_arguments(TINY, **args)


def test_cnn_layer_is_a_convolution():
    """The host's im2col and the conv layer's GEMM compute ``conv2d(x, W, padding=1, stride=2)``."""
    from torch.nn import functional

    x = torch.rand(3, 64, generator=torch.Generator().manual_seed(2))
    w = torch.randn(8, 9, generator=torch.Generator().manual_seed(3))
    got = (cosim._im2col(x) @ w.T).reshape(3, 4, 4, 8).permute(0, 3, 1, 2)
    want = functional.conv2d(x.reshape(3, 1, 8, 8), w.reshape(8, 1, 3, 3), padding=1, stride=2)
    torch.testing.assert_close(got, want)
