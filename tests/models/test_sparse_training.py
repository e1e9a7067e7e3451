"""Sparse training layers against hand-written GEMMs with explicit masks.

Every expected output and gradient here is written from the equations with ``nm_mask`` and
plain matmuls (conv through ``unfold``/``fold``, i.e. im2col), never with the autograd
functions under test; ``torch.autograd.gradcheck`` covers the cases where the sparse gradient
is the true gradient.
"""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional

from trainforge.errors import UsageError
from trainforge.models.masks import transposable_mask
from trainforge.models.nm import nm_mask
from trainforge.models.sparse_training import (
    DEFAULT_DECAY,
    LayerMasks,
    MaskDecay,
    SparseConv2d,
    SparseLinear,
    SparsityConfig,
    StructureDecay,
    densify,
    sparse_conv2d,
    sparse_linear,
    sparse_masks,
    sparsify,
)

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "accuracy_experiment.py"


def expected_masks(w: torch.Tensor, method: str, n: int, m: int, source: str = "dense"):
    """(forward mask, backward mask) of each method, from nm_mask directly."""
    if method == "dense":
        return None, None
    if method == "transposable":
        t = transposable_mask(w, n, m)
        return t, t
    fwd = nm_mask(w, n, m, dim=1)
    if method == "srste":
        return fwd, fwd
    if source == "dense":
        return fwd, nm_mask(w, n, m, dim=0)
    return fwd, nm_mask(torch.where(fwd, w, 0.0), n, m, dim=0) & fwd


def apply(w: torch.Tensor, mask: torch.Tensor | None, alpha: float = 0.0) -> torch.Tensor:
    return w if mask is None else w * (mask + (~mask) * alpha)


def linear_reference(x, w, b, gy, mf, mb, decay, alpha=0.0):
    """y = x Wf^T + b, dx = gy Wb, dW = gy^T x + decay (1 - mf) W, db = sum gy."""
    x2, gy2 = x.reshape(-1, x.shape[-1]), gy.reshape(-1, gy.shape[-1])
    y = (x2 @ apply(w, mf, alpha).T + b).reshape(*x.shape[:-1], -1)
    dx = (gy2 @ apply(w, mb, alpha)).reshape(x.shape)
    dw = gy2.T @ x2
    if mf is not None:
        dw = dw + decay * (~mf) * w
    return y, dx, dw, gy2.sum(0)


def conv_reference(x, w, b, gy, mf, mb, decay, stride, padding, dilation, alpha=0.0):
    """The same three GEMMs after im2col: unfold the input, fold the input gradient back."""
    batch, _, height, width = x.shape
    c_out, _, kh, kw = w.shape
    cols = functional.unfold(x, (kh, kw), dilation=dilation, padding=padding, stride=stride)  # (B, C_in*k*k, L)
    gy_flat = gy.reshape(batch, c_out, -1)  # (B, C_out, L)
    y = (apply(w, mf, alpha).reshape(c_out, -1) @ cols).reshape(gy.shape) + b.reshape(1, -1, 1, 1)
    dcols = apply(w, mb, alpha).reshape(c_out, -1).T @ gy_flat
    dx = functional.fold(dcols, (height, width), (kh, kw), dilation=dilation, padding=padding, stride=stride)
    dw = torch.einsum("bol,bkl->ok", gy_flat, cols).reshape(w.shape)
    if mf is not None:
        dw = dw + decay * (~mf) * w
    return y, dx, dw, gy.sum(dim=(0, 2, 3))


def run(layer: nn.Module, x: torch.Tensor, seed: int = 0):
    """Forward, backward with a random dY; returns (y, dY, dx, dW, db)."""
    x = x.clone().requires_grad_(True)
    y = layer(x)
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=y.dtype)
    y.backward(gy)
    return y.detach(), gy, x.grad, layer.weight.grad, layer.bias.grad


def close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------- the done-when checks


def test_done_when_linear_bdwp():
    torch.manual_seed(0)
    layer = sparsify(nn.Linear(64, 32), "bdwp", n=2, m=4)
    x = torch.randn(16, 64)
    y, gy, dx, dw, db = run(layer, x)
    w = layer.weight.detach()
    mask_fwd, mask_bwd = nm_mask(w, 2, 4, dim=1), nm_mask(w, 2, 4, dim=0)
    assert (mask_bwd.reshape(8, 4, 64).sum(dim=1) == 2).all()  # grouped along C_out
    torch.testing.assert_close(y, x @ (w * mask_fwd).T + layer.bias.detach())
    torch.testing.assert_close(dx, gy @ (w * mask_bwd))
    assert not torch.allclose(dx, gy @ (w * mask_fwd))  # the backward mask really differs
    torch.testing.assert_close(dw, gy.T @ x + 2e-4 * (1 - mask_fwd.float()) * w)
    torch.testing.assert_close(db, gy.sum(0))
    assert torch.equal(layer.masks.forward, mask_fwd)
    assert torch.equal(layer.masks.backward, mask_bwd)


def test_done_when_conv2d_bdwp():
    torch.manual_seed(1)
    layer = sparsify(nn.Conv2d(8, 16, 3, stride=2, padding=1), "bdwp", n=2, m=4)
    x = torch.randn(4, 8, 9, 9)
    y, gy, dx, dw, db = run(layer, x)
    w, b = layer.weight.detach(), layer.bias.detach()
    mask_fwd, mask_bwd = nm_mask(w, 2, 4, dim=1), nm_mask(w, 2, 4, dim=0)
    assert (mask_fwd.reshape(16, 2, 4, 3, 3).sum(dim=2) == 2).all()  # along C_in
    assert (mask_bwd.reshape(4, 4, 8, 3, 3).sum(dim=1) == 2).all()  # along C_out
    want = conv_reference(x, w, b, gy, mask_fwd, mask_bwd, 2e-4, 2, 1, 1)
    for got, expected in zip((y, dx, dw, db), want, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    wrong_dx = conv_reference(x, w, b, gy, mask_fwd, mask_fwd, 2e-4, 2, 1, 1)[1]
    assert not torch.allclose(dx, wrong_dx, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- every method, float64


METHODS = [
    ("dense", {}),
    ("srste", {}),
    ("bdwp", {}),
    ("bdwp", {"bwd_mask_source": "forward"}),
    ("transposable", {}),
]


@pytest.mark.parametrize(("method", "options"), METHODS)
@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 4), (2, 8)])
def test_linear_matches_reference(method, options, n, m):
    torch.manual_seed(n * 10 + m)
    layer = sparsify(nn.Linear(32, 16).double(), method, n, m, **options)
    x = torch.randn(3, 5, 32, dtype=torch.float64)  # extra batch dimension
    y, gy, dx, dw, db = run(layer, x)
    w, b = layer.weight.detach(), layer.bias.detach()
    mf, mb = expected_masks(w, method, n, m, options.get("bwd_mask_source", "dense"))
    decay = 0.0 if method == "dense" else DEFAULT_DECAY
    for got, expected in zip((y, dx, dw, db), linear_reference(x, w, b, gy, mf, mb, decay), strict=True):
        close(got, expected)


@pytest.mark.parametrize(("method", "options"), METHODS)
@pytest.mark.parametrize(("stride", "padding", "dilation"), [(1, 0, 1), (2, 1, 1), (1, 2, 2), ((2, 1), (1, 0), (1, 2))])
def test_conv2d_matches_reference(method, options, stride, padding, dilation):
    torch.manual_seed(2)
    conv = nn.Conv2d(8, 8, (3, 2), stride=stride, padding=padding, dilation=dilation).double()
    layer = sparsify(conv, method, 2, 4, decay=1e-2 if method != "dense" else None, **options)
    x = torch.randn(2, 8, 9, 7, dtype=torch.float64)
    y, gy, dx, dw, db = run(layer, x)
    w, b = layer.weight.detach(), layer.bias.detach()
    mf, mb = expected_masks(w, method, 2, 4, options.get("bwd_mask_source", "dense"))
    decay = 0.0 if method == "dense" else 1e-2
    want = conv_reference(x, w, b, gy, mf, mb, decay, stride, padding, dilation)
    for got, expected in zip((y, dx, dw, db), want, strict=True):
        close(got, expected)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "circular"])
def test_conv2d_string_padding_and_padding_modes(padding_mode):
    torch.manual_seed(3)
    dense = nn.Conv2d(4, 8, 4, padding="same", padding_mode=padding_mode).double()
    sparse = sparsify(nn.Conv2d(4, 8, 4, padding="same", padding_mode=padding_mode).double(), "bdwp", 2, 4)
    sparse.load_state_dict(dense.state_dict())
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    y, gy, dx, dw, _ = run(sparse, x)
    w = sparse.weight.detach()
    mf, mb = expected_masks(w, "bdwp", 2, 4)
    # The reference pads explicitly the way nn.Conv2d does, then convolves without padding.
    xp = x.clone().requires_grad_(True)
    mode = "constant" if padding_mode == "zeros" else padding_mode
    padded = functional.pad(xp, dense._reversed_padding_repeated_twice, mode=mode)
    ref = conv_reference(padded.detach(), w, sparse.bias.detach(), gy, mf, mb, DEFAULT_DECAY, 1, 0, 1)
    close(y, ref[0])
    padded.backward(ref[1])  # chain the padded-input gradient through the padding
    close(dx, xp.grad)
    close(dw, ref[2])


def test_unbatched_conv_input():
    layer = sparsify(nn.Conv2d(4, 4, 3).double(), "srste", 2, 4)
    x = torch.randn(4, 5, 5, dtype=torch.float64)
    close(layer(x), layer(x.unsqueeze(0)).squeeze(0))


# ---------------------------------------------------------------- gradcheck where the gradient is exact


def test_gradcheck_with_full_masks_is_the_true_gradient():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(3, 8, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(4, 8, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, generator=gen, requires_grad=True)
    full = torch.ones(4, 8, dtype=torch.bool)
    assert torch.autograd.gradcheck(lambda x, w, b: sparse_linear(x, w, b, mask_fwd=full, mask_bwd=full), (x, w, b))
    xc = torch.randn(1, 4, 4, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    wc = torch.randn(4, 4, 2, 2, dtype=torch.float64, generator=gen, requires_grad=True)
    fullc = torch.ones(4, 4, 2, 2, dtype=torch.bool)
    assert torch.autograd.gradcheck(
        lambda x, w, b: sparse_conv2d(x, w, b, 2, 1, 1, mask_fwd=fullc, mask_bwd=fullc), (xc, wc, b)
    )


@pytest.mark.parametrize("alpha", [0.0, 0.3])
def test_gradcheck_input_gradient_when_both_gemms_share_the_mask(alpha):
    # srste and transposable use one mask in FF and BP, so dX is the true gradient w.r.t. x.
    gen = torch.Generator().manual_seed(5)
    w = torch.randn(8, 8, dtype=torch.float64, generator=gen)
    mask = transposable_mask(w, 2, 4)
    x = torch.randn(3, 8, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(8, dtype=torch.float64, generator=gen, requires_grad=True)

    def fn(x, b):
        return sparse_linear(x, w, b, mask_fwd=mask, mask_bwd=mask, alpha=alpha, decay=0.1)

    assert torch.autograd.gradcheck(fn, (x, b))
    wc = torch.randn(4, 4, 3, 3, dtype=torch.float64, generator=gen)
    maskc = nm_mask(wc, 1, 4, dim=1)
    xc = torch.randn(1, 4, 4, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    bc = torch.randn(4, dtype=torch.float64, generator=gen, requires_grad=True)

    def fnc(x, b):
        return sparse_conv2d(x, wc, b, 1, 1, mask_fwd=maskc, mask_bwd=maskc, alpha=alpha)

    assert torch.autograd.gradcheck(fnc, (xc, bc))


def test_weight_gradient_is_straight_through_not_the_masked_gradient():
    # The true gradient of x (W*mask)^T w.r.t. W is zero at pruned positions; STE keeps them.
    layer = sparsify(nn.Linear(8, 4, bias=False).double(), "srste", 1, 4, decay=0.0)
    x = torch.randn(5, 8, dtype=torch.float64)
    layer(x).sum().backward()
    close(layer.weight.grad, torch.ones(5, 4, dtype=torch.float64).T @ x)
    assert (layer.weight.grad[~layer.masks.forward] != 0).all()


# ---------------------------------------------------------------- masks, parameters, state dict


def test_masks_are_recomputed_on_every_forward_and_exposed():
    model = sparsify(nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4)), "bdwp", 1, 4)
    assert model[0].masks is None
    x = torch.randn(2, 8)
    model(x)
    first = model[0].masks.forward.clone()
    with torch.no_grad():
        model[0].weight.neg_().mul_(torch.linspace(0.1, 3, 8))  # new magnitude order inside groups
    model(x)
    w = model[0].weight.detach()
    assert torch.equal(model[0].masks.forward, nm_mask(w, 1, 4, dim=1))
    assert torch.equal(model[0].masks.backward, nm_mask(w, 1, 4, dim=0))
    assert not torch.equal(first, model[0].masks.forward)
    now = sparse_masks(model)
    assert set(now) == {"0", "2"}
    assert torch.equal(now["2"].forward, nm_mask(model[2].weight.detach(), 1, 4, dim=1))
    assert now["0"].pattern == (1, 4)
    assert now["0"].alpha == 0.0


def test_state_dict_parameters_and_optimizer_survive():
    torch.manual_seed(6)
    model = nn.Sequential(nn.Conv2d(4, 8, 3), nn.Flatten(), nn.Linear(8 * 4, 4))
    params = list(model.parameters())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    conv = model[0]
    assert sparsify(model, "srste", 2, 4) is model
    assert model[0] is conv
    assert isinstance(conv, SparseConv2d)
    assert isinstance(conv, nn.Conv2d)
    assert isinstance(model[2], SparseLinear)
    assert all(a is b for a, b in zip(model.parameters(), params, strict=True))
    state = model.state_dict()
    assert state.keys() == before.keys()
    assert all(torch.equal(state[k], before[k]) for k in before)
    model(torch.randn(2, 4, 4, 4)).sum().backward()
    opt.step()
    assert not torch.equal(model[0].weight, before["0.weight"])
    # a dense checkpoint loads into the sparse model and back
    dense = nn.Sequential(nn.Conv2d(4, 8, 3), nn.Flatten(), nn.Linear(8 * 4, 4))
    model.load_state_dict(dense.state_dict())
    dense.load_state_dict(model.state_dict())
    densify(model)
    assert type(model[0]) is nn.Conv2d
    assert type(model[2]) is nn.Linear
    assert not hasattr(model[0], "sparsity")
    x = torch.randn(2, 4, 4, 4)
    assert torch.equal(model(x), dense(x))


def test_dense_method_is_the_ordinary_layer():
    torch.manual_seed(7)
    plain = nn.Linear(16, 8)
    layer = sparsify(nn.Linear(16, 8), "dense")
    layer.load_state_dict(plain.state_dict())
    x = torch.randn(4, 16)
    assert torch.equal(layer(x), plain(x))
    assert layer.masks == LayerMasks(None, None, None, 0.0)
    assert layer.sparsity.decay == 0.0


def test_resparsify_reconfigures():
    model = nn.Sequential(nn.Linear(8, 8))
    sparsify(model, "srste", 2, 4)
    sparsify(model, "bdwp", 1, 4, bwd_mask_source="forward")
    assert model[0].sparsity.method == "bdwp"
    assert model[0].sparsity.bwd_mask_source == "forward"
    assert "method='bdwp'" in repr(model)


def test_sparse_layers_can_be_constructed_directly():
    layer = SparseLinear(8, 4, sparsity=SparsityConfig(method="bdwp", n=1, m=4))
    assert layer.sparsity.bwd_mask_source == "dense"
    assert layer.sparsity.decay == DEFAULT_DECAY
    layer(torch.randn(2, 8))
    assert layer.masks.pattern == (1, 4)
    with pytest.raises(UsageError, match="groups=1"):
        SparseConv2d(4, 4, 3, groups=2, sparsity=SparsityConfig(method="srste"))


# ---------------------------------------------------------------- layers that do not fit


def test_incompatible_layers():
    def model():
        return nn.Sequential(nn.Linear(8, 10), nn.ReLU(), nn.Linear(10, 4))

    with pytest.raises(UsageError, match=r"layer '2' has C_in=10 .* not a multiple of m=4"):
        sparsify(model(), "srste", 2, 4)
    with pytest.raises(UsageError, match=r"layer '0' has C_out=10 \(weight dim 0\)"):
        sparsify(model(), "bdwp", 2, 4)
    kept = sparsify(model(), "bdwp", 2, 4, incompatible="dense")
    assert type(kept[0]) is nn.Linear
    assert type(kept[2]) is nn.Linear
    srste = sparsify(model(), "srste", 2, 4, incompatible="dense")
    assert isinstance(srste[0], SparseLinear)  # only C_in matters for srste
    assert type(srste[2]) is nn.Linear
    excluded = sparsify(model(), "srste", 2, 4, exclude=["2"])
    assert type(excluded[2]) is nn.Linear
    padded = sparsify(model(), "bdwp", 2, 4, incompatible="pad")
    padded(torch.randn(3, 8)).sum().backward()
    masks = padded[0].masks
    assert (masks.backward[8:].sum(dim=0) == 2).all()  # tail group of C_out: 2 real rows, both kept
    assert (masks.forward.reshape(10, 2, 4).sum(dim=2) == 2).all()
    mf2 = nm_mask(padded[2].weight.detach(), 2, 4, dim=1, pad=True)
    assert torch.equal(padded[2].masks.forward, mf2)


def test_grouped_convolutions_are_refused_or_left_dense():
    with pytest.raises(UsageError, match=r"grouped convolution \(groups=2\).*incompatible='dense'"):
        sparsify(nn.Sequential(nn.Conv2d(8, 8, 3, groups=2)), "srste", 2, 4, incompatible="pad")
    model = sparsify(nn.Sequential(nn.Conv2d(8, 8, 3, groups=2)), "srste", 2, 4, incompatible="dense")
    assert type(model[0]) is nn.Conv2d
    assert isinstance(sparsify(nn.Conv2d(8, 8, 3, groups=2), "dense"), SparseConv2d)


# ---------------------------------------------------------------- Progressive Gradient Flow


def test_mask_decay_alpha():
    linear = MaskDecay(kind="linear", rate=0.25)
    assert [linear.alpha(t) for t in range(6)] == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    exp = MaskDecay(kind="exponential", rate=0.1)
    assert exp.alpha(10) == pytest.approx(math.exp(-1))
    assert MaskDecay(kind="step").alpha(0) == 0.0
    linear.step(2)
    assert linear.t == 2
    assert linear.alpha() == 0.5
    saved = linear.state_dict()
    other = MaskDecay(kind="linear", rate=0.25)
    other.load_state_dict(saved)
    assert other.alpha() == 0.5


@pytest.mark.parametrize("method", ["srste", "bdwp"])
def test_mask_decay_scales_the_pruned_weights_in_both_gemms(method):
    torch.manual_seed(8)
    schedule = MaskDecay(kind="linear", rate=0.25)
    layer = sparsify(nn.Linear(16, 8).double(), method, 1, 4, schedule=schedule)
    assert layer.sparsity.decay == 0.0  # PGF: no SR-STE term by default
    x = torch.randn(4, 16, dtype=torch.float64)
    w, b = layer.weight.detach(), layer.bias.detach()
    mf, mb = expected_masks(w, method, 1, 4)
    for t, alpha in [(0, 1.0), (1, 0.75), (3, 0.25), (4, 0.0)]:
        schedule.load_state_dict({"t": t})
        layer.zero_grad()
        y, gy, dx, dw, db = run(layer, x, seed=t)
        assert layer.masks.alpha == alpha
        for got, expected in zip((y, dx, dw, db), linear_reference(x, w, b, gy, mf, mb, 0.0, alpha), strict=True):
            close(got, expected)
    # alpha = 1 at the start: the dense layer; alpha = 0: plain hard pruning
    schedule.load_state_dict({"t": 0})
    close(layer(x), x @ w.T + b)


def test_structure_decay_phases():
    sched = StructureDecay.tightening(1, 8, total_steps=100)
    assert sched.patterns == (None, (7, 8), (4, 8), (2, 8), (1, 8))
    assert [sched.pattern(t) for t in (0, 19, 20, 39, 40, 60, 79, 80, 100, 10**6)] == [
        None, None, (7, 8), (7, 8), (4, 8), (2, 8), (2, 8), (1, 8), (1, 8), (1, 8),
    ]  # fmt: skip
    assert StructureDecay.tightening(2, 4, total_steps=3).patterns == (None, (3, 4), (2, 4))
    assert StructureDecay.tightening(1, 2, total_steps=3).patterns == (None, (1, 2))
    assert StructureDecay.tightening(3, 8, total_steps=3).patterns == (None, (7, 8), (4, 8), (3, 8))
    geometric = StructureDecay([None, (8, 64), (4, 32), (2, 16), (1, 8)], total_steps=10)
    assert geometric.pattern(9) == (1, 8)
    assert "dense -> 8:64 -> 4:32" in repr(geometric)


def test_structure_decay_drives_the_layer():
    torch.manual_seed(9)
    schedule = StructureDecay.tightening(2, 8, total_steps=4)  # dense, 7:8, 4:8, 2:8: one step each
    layer = sparsify(nn.Linear(16, 16).double(), "bdwp", 2, 8, schedule=schedule)
    x = torch.randn(3, 16, dtype=torch.float64)
    w, b = layer.weight.detach(), layer.bias.detach()
    close(layer(x), x @ w.T + b)
    assert layer.masks.forward is None
    for n in (7, 4, 2):
        schedule.step()
        layer.zero_grad()
        y, gy, dx, dw, db = run(layer, x, seed=n)
        assert layer.masks.pattern == (n, 8)
        mf, mb = nm_mask(w, n, 8, dim=1), nm_mask(w, n, 8, dim=0)
        for got, expected in zip((y, dx, dw, db), linear_reference(x, w, b, gy, mf, mb, DEFAULT_DECAY), strict=True):
            close(got, expected)
    with pytest.raises(UsageError, match="ends at 2:8 but n:m is 2:4"):
        sparsify(nn.Linear(16, 16), "bdwp", 2, 4, schedule=StructureDecay.tightening(2, 8, total_steps=4))
    # every phase's m must fit the layer: a 16-wide layer cannot take 1:32
    with pytest.raises(UsageError, match="not a multiple of m=32 for 8:32"):
        sparsify(nn.Linear(16, 16), "srste", 1, 8, schedule=StructureDecay([(8, 32), (1, 8)], total_steps=2))


# ---------------------------------------------------------------- option validation


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "sparse"}, r"method must be one of 'dense', 'srste', 'bdwp', 'transposable', not 'sparse'"),
        ({"method": "srste", "n": 4, "m": 4}, r"1 <= n < m, not n=4, m=4"),
        ({"method": "srste", "n": 2.0}, r"n must be an integer, not 2.0"),
        ({"method": "srste", "decay": -1e-4}, r"decay must be a finite number >= 0, not -0.0001"),
        ({"method": "srste", "decay": float("nan")}, r"decay must be a finite number >= 0, not nan"),
        ({"method": "dense", "decay": 1e-4}, r"not to 'dense' \(got decay=0.0001\)"),
        ({"method": "srste", "bwd_mask_source": "dense"}, r"bwd_mask_source applies only to method 'bdwp'"),
        (
            {"method": "bdwp", "bwd_mask_source": "both"},
            r"bwd_mask_source must be one of .*, not 'both'",
        ),
        ({"method": "bdwp", "transposable_method": "exact"}, r"transposable_method applies only to .* not 'bdwp'"),
        ({"method": "transposable", "transposable_method": "best"}, r"transposable_method must be one of .* 'best'"),
        ({"method": "dense", "schedule": MaskDecay(kind="step")}, r"a schedule needs a sparse method, not 'dense'"),
        ({"method": "srste", "schedule": 3}, r"schedule must be a MaskDecay or StructureDecay, not 3"),
        (
            {"method": "srste", "incompatible": "skip"},
            r"incompatible must be one of 'error', 'dense', 'pad', not 'skip'",
        ),
        ({"method": "srste", "exclude": ["fc"]}, r"exclude names no layer of the model: 'fc'"),
        ({"method": "srste", "exclude": "0"}, r"exclude must be a collection of layer names, not the string '0'"),
    ],
)
def test_invalid_options_are_one_line_errors(kwargs, message):
    with pytest.raises(UsageError, match=message) as info:
        sparsify(nn.Sequential(nn.Linear(8, 8)), **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: MaskDecay(kind="cosine", rate=0.1),
            r"kind must be one of 'linear', .*, not 'cosine'",
        ),
        (lambda: MaskDecay(kind="linear"), r"MaskDecay\(kind='linear'\) needs a positive finite rate, not None"),
        (lambda: MaskDecay(kind="exponential", rate=-1), r"positive finite rate, not -1"),
        (lambda: StructureDecay([], total_steps=3), r"non-empty sequence, not \[\]"),
        (lambda: StructureDecay([(2, 4), None], total_steps=3), r"last pattern must be an \(n, m\) pair, not None"),
        (lambda: StructureDecay([(4, 2)], total_steps=3), r"needs 1 <= n < m, not n=4, m=2"),
        (lambda: StructureDecay(["2:4"], total_steps=3), r"\(n, m\) pairs or None, not '2:4'"),
        (lambda: StructureDecay([(2, 4)], total_steps=0), r"total_steps must be a positive integer, not 0"),
        (lambda: MaskDecay(kind="step").step(-1), r"count must be a non-negative integer, not -1"),
        (lambda: sparsify("model", "srste"), r"needs an nn.Module, not str"),
        (lambda: sparse_linear(torch.ones(2, 4), torch.ones(2, 4), mask_fwd=torch.ones(2, 4)), r"bool tensors"),
        (lambda: sparse_conv2d(torch.ones(1, 4, 3, 3), torch.ones(4, 4, 1, 1), padding="same"), r"numeric padding"),
    ],
)
def test_invalid_schedule_and_functional_arguments(make, message):
    with pytest.raises(UsageError, match=message):
        make()


# ---------------------------------------------------------------- the accuracy experiment


def _load_script():
    name = "accuracy_experiment"
    if name not in sys.modules:  # dataclasses look their module up in sys.modules
        spec = importlib.util.spec_from_file_location(name, SCRIPT)
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


def test_experiment_runs_are_deterministic():
    script = _load_script()
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        variant = next(v for v in script.VARIANTS if v.schedule is not None)
        runs = [script.train_once(name, variant, seed=1, epochs=1) for name in script.MODELS for _ in range(2)]
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    assert runs[0] == runs[1]
    assert runs[2] == runs[3]


def test_experiment_script_quick(tmp_path):
    out = tmp_path / "table.md"
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--jobs", "1", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert time.perf_counter() - start < 60
    script = _load_script()
    text = out.read_text()
    assert text in proc.stdout
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == len(script.MODELS) * len(script.VARIANTS)
    for row in rows:
        accuracy = float(row.split("|")[4].split("±")[0])
        assert 0.0 <= accuracy <= 100.0
    assert "1 seed(s), 2 epochs" in text
