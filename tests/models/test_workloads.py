"""Training workloads: MAC counts against independent formulas, stage structure, N:M per method."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.nn import functional

from trainforge.errors import UsageError
from trainforge.models.workloads import (
    ElementwiseOp,
    GemmOp,
    MaskOp,
    UpdateOp,
    Workload,
    assemble_workload,
    workload,
)
from trainforge.models.zoo import zoo_model

# ---------------------------------------------------------------------------------------------
# independent MAC formulas (written from the architectures, not from the code under test)


def conv(h_out: int, w_out: int, c_in: int, c_out: int, k: int, groups: int = 1) -> int:
    return h_out * w_out * c_out * (c_in // groups) * k * k


def resnet_forward_macs(bottleneck: bool, depths: tuple[int, ...], image: int = 224) -> int:
    h = image // 2
    macs = conv(h, h, 3, 64, 7)  # stem
    h //= 2  # max-pool
    c_in = 64
    for i, depth in enumerate(depths):
        width = 64 * 2**i
        for j in range(depth):
            stride = 2 if i > 0 and j == 0 else 1
            h_out = h // stride
            if bottleneck:
                c_out = 4 * width
                macs += (
                    conv(h, h, c_in, width, 1)
                    + conv(h_out, h_out, width, width, 3)
                    + conv(h_out, h_out, width, c_out, 1)
                )
            else:
                c_out = width
                macs += conv(h_out, h_out, c_in, width, 3) + conv(h_out, h_out, width, width, 3)
            if stride != 1 or c_in != c_out:
                macs += conv(h_out, h_out, c_in, c_out, 1)  # projection shortcut
            c_in, h = c_out, h_out
    return macs + c_in * 1000


def vgg16_forward_macs() -> int:
    plan = [(224, 3, 64), (224, 64, 64), (112, 64, 128), (112, 128, 128)]
    plan += [(56, 128, 256), (56, 256, 256), (56, 256, 256), (28, 256, 512), (28, 512, 512), (28, 512, 512)]
    plan += [(14, 512, 512)] * 3
    return sum(conv(r, r, ci, co, 3) for r, ci, co in plan) + 25088 * 4096 + 4096 * 4096 + 4096 * 1000


def vit_forward_macs(dim: int, depth: int, heads: int, hidden: int, tokens: int = 197) -> int:
    head_dim = dim // heads
    block = tokens * dim * 3 * dim  # qkv
    block += 2 * heads * tokens * tokens * head_dim  # Q K^T and A V
    block += tokens * dim * dim  # projection
    block += 2 * tokens * dim * hidden  # MLP
    return depth * block + (tokens - 1) * dim * 3 * 16 * 16 + dim * 1000


RESNET8 = (
    conv(32, 32, 3, 16, 3)
    + 2 * conv(32, 32, 16, 16, 3)
    + conv(16, 16, 16, 32, 3)
    + conv(16, 16, 32, 32, 3)
    + conv(16, 16, 16, 32, 1)
    + conv(8, 8, 32, 64, 3)
    + conv(8, 8, 64, 64, 3)
    + conv(8, 8, 32, 64, 1)
    + 64 * 10
)
DS_CNN = 25 * 5 * 64 * 10 * 4 + 4 * (conv(25, 5, 64, 64, 3, groups=64) + conv(25, 5, 64, 64, 1)) + 64 * 12


@pytest.fixture(scope="module")
def traced() -> dict[str, Workload]:
    out = {}
    for name in ("resnet18", "resnet50", "vgg16", "vit_b_16", "resnet8", "ds_cnn"):
        model, x = zoo_model(name)
        out[name] = workload(model, x)
    return out


def test_formulas_agree_with_published_counts():
    # sanity of the oracle itself against the literature: ResNet-50 ~4.1 G, ResNet-18 ~1.8 G,
    # VGG-16 ~15.5 G, ViT-B/16 ~17.6 G, ResNet8 12.50 M, DS-CNN 2.66 M forward MACs
    assert resnet_forward_macs(True, (3, 4, 6, 3)) == pytest.approx(4.1e9, rel=0.01)
    assert resnet_forward_macs(False, (2, 2, 2, 2)) == pytest.approx(1.82e9, rel=0.01)
    assert vgg16_forward_macs() == pytest.approx(15.5e9, rel=0.01)
    assert vit_forward_macs(768, 12, 12, 3072) == pytest.approx(17.6e9, rel=0.01)
    assert round(RESNET8 / 1e6, 2) == 12.50
    assert round(DS_CNN / 1e6, 2) == 2.66


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("resnet18", resnet_forward_macs(False, (2, 2, 2, 2))),
        ("resnet50", resnet_forward_macs(True, (3, 4, 6, 3))),
        ("vgg16", vgg16_forward_macs()),
        ("vit_b_16", vit_forward_macs(768, 12, 12, 3072)),
        ("resnet8", RESNET8),
        ("ds_cnn", DS_CNN),
    ],
)
def test_forward_macs_match_formula(traced, name, expected):
    assert traced[name].macs("ff") == expected


def test_resnet50_layer_shapes(traced):
    w = traced["resnet50"]
    ff = {g.layer: g for g in w.gemms if g.stage == "ff"}
    stem = ff["conv1"]
    assert (stem.m, stem.n, stem.k, stem.count) == (112 * 112, 64, 3 * 7 * 7, 1)
    c = ff["layer2.0.conv2"]  # the strided 3x3 of the first bottleneck of stage 2 (v1.5)
    assert (c.m, c.n, c.k) == (28 * 28, 128, 128 * 9)
    fc = ff["fc"]
    assert (fc.m, fc.n, fc.k) == (1, 1000, 2048)
    assert (fc.a_role, fc.b_role, fc.out_role) == ("activation", "weight", "output")
    # BP and WU forms of the same layer (documented convention)
    bp, wu = w.op("layer2.0.conv2:bp"), w.op("layer2.0.conv2:wu")
    assert (bp.m, bp.n, bp.k) == (28 * 28, 128 * 9, 128)
    assert (wu.m, wu.n, wu.k) == (128, 128 * 9, 28 * 28)
    assert (bp.a_role, bp.b_role, bp.out_role) == ("output_gradient", "weight", "input_gradient")
    assert (wu.a_role, wu.b_role, wu.out_role) == ("output_gradient", "activation", "weight_gradient")


@pytest.mark.parametrize("name", ["resnet50", "vit_b_16", "ds_cnn"])
def test_ff_bp_wu_equal_per_weight_layer_and_first_layer_has_no_bp(traced, name):
    w = traced[name]
    first = w.layers[0].name
    for layer, macs in w.layer_macs().items():
        kinds = {g.b_role for g in w.gemms if g.layer == layer and g.stage == "ff"}
        if kinds != {"weight"}:
            continue
        assert macs["wu"] == macs["ff"], layer
        assert macs["bp"] == (0 if layer == first else macs["ff"]), layer
    assert not [g for g in w.gemms if g.layer == first and g.stage == "bp"]


def test_input_grad_gives_the_first_layer_a_bp():
    model, x = zoo_model("resnet8")
    w = workload(model, x, input_grad=True)
    assert w.macs("bp") == w.macs("ff") == w.macs("wu") == RESNET8


def test_batch_is_a_parameter():
    model, x = zoo_model("resnet8")
    w1, w8 = workload(model, x), workload(model, x, batch=8)
    assert w8.batch == 8
    assert w8.macs_by_stage() == {k: 8 * v for k, v in w1.macs_by_stage().items()}
    assert w8.op("conv1:ff").m == 8 * 32 * 32
    assert w8.op("fc:wu").k == 8
    assert w8.trainable_parameters == w1.trainable_parameters


def test_nm_annotation_per_method():
    model, x = zoo_model("resnet8")
    dense = workload(model, x, method="dense")
    srste = workload(model, x, method="srste", n=2, m=8)
    bdwp = workload(model, x, method="bdwp", n=2, m=8)
    assert all(g.nm is None for g in dense.gemms)
    assert not [op for op in dense.ops if isinstance(op, MaskOp)]
    for w in (srste, bdwp):
        assert all(g.nm is None for g in w.gemms if g.stage == "wu")
        for g in w.gemms:
            if g.nm is not None:
                assert g.b_role == "weight"
                assert g.k % 8 == 0
                assert g.useful_macs * 8 == g.macs * 2
    # SR-STE: forward copies only, grouped along C_in; conv1 (C_in = 3) stays dense
    assert srste.op("conv1:ff").nm is None
    assert srste.op("stack1.conv1:ff").nm == (2, 8)
    assert srste.op("stack1.conv1:ff").sparse_along == "C_in"
    assert all(g.nm is None for g in srste.gemms if g.stage == "bp")
    # BDWP: the BP copy too, grouped along C_out; the 10-class FC's BP (C_out = 10) stays dense
    assert bdwp.op("stack1.conv1:bp").nm == (2, 8)
    assert bdwp.op("stack1.conv1:bp").sparse_along == "C_out"
    assert bdwp.op("fc:ff").nm == (2, 8)
    assert bdwp.op("fc:bp").nm is None
    masks = [op for op in bdwp.ops if isinstance(op, MaskOp)]
    assert {(op.param, op.copy) for op in masks} >= {("stack1.conv1.weight", "ff"), ("stack1.conv1.weight", "bp")}
    assert {op.along for op in masks if op.copy == "bp"} == {"C_out"}
    assert len([op for op in srste.ops if isinstance(op, MaskOp)]) == 9  # 9 convs + fc, all but conv1
    # ideal speed-up ordering: dense < srste < bdwp <= 3 / (2 r + 1)
    assert dense.ideal_speedup == 1.0
    assert 1.0 < srste.ideal_speedup < bdwp.ideal_speedup <= 3 / (2 * 0.25 + 1)


def test_dense_layers_and_other_nm():
    model, x = zoo_model("resnet8")
    w = workload(model, x, n=1, m=4, dense_layers={"stack1.conv1"})
    assert w.op("stack1.conv1:ff").nm is None
    assert w.op("stack1.conv2:ff").nm == (1, 4)
    assert w.op("stack1.conv2:ff").useful_macs * 4 == w.op("stack1.conv2:ff").macs


def test_depthwise_and_grouped_convs_are_per_group(traced):
    w = traced["ds_cnn"]
    dw = w.op("blocks.0:ff")
    assert (dw.m, dw.n, dw.k, dw.count) == (25 * 5, 1, 9, 64)
    assert dw.nm is None
    assert w.op("blocks.0:bp").nm is None
    pw = w.op("blocks.3:ff")
    assert (pw.m, pw.n, pw.k, pw.count, pw.nm) == (125, 64, 64, 1, (2, 8))
    model = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.Conv2d(32, 64, 3, padding=1, groups=4))
    g = workload(model, torch.zeros(2, 16, 8, 8), method="bdwp", n=2, m=8).op("1:ff")
    assert (g.m, g.n, g.k, g.count) == (2 * 64, 16, 8 * 9, 4)
    assert g.macs == conv(8, 8, 32, 64, 3, groups=4) * 2


def test_attention_matmuls_have_no_weights(traced):
    w = traced["vit_b_16"]
    qk = w.op("blocks.0.attn.bmm:ff")
    av = w.op("blocks.0.attn.bmm#2:ff")
    assert (qk.m, qk.n, qk.k, qk.count) == (197, 197, 64, 12)
    assert (av.m, av.n, av.k, av.count) == (197, 64, 197, 12)
    for op in (qk, av):
        assert (op.a_role, op.b_role, op.nm) == ("activation", "activation", None)
    da, db = w.op("blocks.0.attn.bmm:bp:a"), w.op("blocks.0.attn.bmm:bp:b")
    assert (da.m, da.n, da.k) == (197, 64, 197)  # dQ = dS K
    assert (db.m, db.n, db.k) == (64, 197, 197)  # dK^T = Q^T dS
    assert not [g for g in w.gemms if g.layer == "blocks.0.attn.bmm" and g.stage == "wu"]
    softmax = [op for op in w.ops if isinstance(op, ElementwiseOp) and op.kind == "softmax" and op.stage == "ff"]
    assert len(softmax) == 12
    assert softmax[0].elements == 12 * 197 * 197


class _SdpaBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(32, 96)
        self.mha = nn.MultiheadAttention(32, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).view(x.shape[0], x.shape[1], 3, 4, 8).permute(2, 0, 3, 1, 4)
        y = functional.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(x.shape)
        return self.mha(y, y, y, need_weights=False)[0]


def test_sdpa_and_multihead_attention_are_traced():
    w = workload(_SdpaBlock(), torch.zeros(2, 10, 32), method="dense")
    matmuls = [g for g in w.gemms if g.stage == "ff" and g.b_role == "activation"]
    assert len(matmuls) == 4  # Q K^T and A V, for SDPA and for nn.MultiheadAttention
    assert {(g.m, g.count) for g in matmuls} == {(10, 8)}
    linear = {g.layer: g for g in w.gemms if g.stage == "ff" and g.b_role == "weight"}
    assert (linear["mha.in_proj"].m, linear["mha.in_proj"].n, linear["mha.in_proj"].k) == (20, 96, 32)
    assert (linear["mha.out_proj"].n, linear["mha.out_proj"].k) == (32, 32)


def test_non_gemm_work_updates_and_masks(traced):
    w = traced["resnet50"]
    params = 25_557_032  # torchvision's ResNet-50 parameter count
    assert w.trainable_parameters == params
    kinds = w.elements_by_kind()
    assert kinds["normalisation"] > 0
    assert kinds["activation"] > 0
    assert kinds["pooling"] > 0
    masks = [op for op in w.ops if isinstance(op, MaskOp)]
    conv_fc_weights = sum(layer.weight_elements for layer in w.layers)
    assert kinds["mask"] == sum(m.elements for m in masks)
    assert kinds["mask"] < 2 * conv_fc_weights  # conv1 has no BP copy and a dense FF copy
    # every update follows the backward of the parameter's layer
    names = [op.name for op in w.ops]
    assert names.index("fc.weight:update") > names.index("fc:wu")
    assert names.index("fc.weight:prune:ff") == names.index("fc.weight:update") + 1
    assert all(isinstance(op, UpdateOp) for op in w.ops if op.stage == "update")


def test_frozen_parameters_get_no_weight_gradient():
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 8))
    model[0].requires_grad_(False)
    w = workload(model, torch.zeros(4, 16))
    # nothing before layer 2 needs a gradient, so layer 2 needs no BP either (as autograd decides)
    assert [g.name for g in w.gemms] == ["0:ff", "2:ff", "2:wu"]
    assert {op.param for op in w.ops if isinstance(op, UpdateOp)} == {"2.weight", "2.bias"}
    model[0].requires_grad_(True)
    model[2].requires_grad_(False)
    w = workload(model, torch.zeros(4, 16))
    assert [g.name for g in w.gemms] == ["0:ff", "2:ff", "2:bp", "0:wu"]
    assert not [op for op in w.ops if isinstance(op, MaskOp) and op.param.startswith("2.")]


def test_class_token_and_position_embedding_are_updated():
    model, x = zoo_model("deit_s")
    w = workload(model, x)
    updated = {op.param for op in w.ops if isinstance(op, UpdateOp)}
    assert {"cls_token", "pos_embed"} <= updated
    assert w.trainable_parameters == sum(p.numel() for p in model.parameters())


def test_meta_and_cpu_traces_agree_and_model_is_untouched():
    model, x = zoo_model("resnet8", device="cpu")
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 32, 32)
    on_meta, on_cpu = workload(model, x), workload(model, x, device="cpu")
    assert on_meta.gemms == on_cpu.gemms
    assert not model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(UsageError, match="batch"):
        workload(model, x, batch=4, device="cpu")


def test_json_round_trip_and_table(traced):
    w = traced["ds_cnn"]
    text = w.to_json()
    assert json.loads(text)["summary"]["macs"]["ff"] == DS_CNN
    assert Workload.from_json(text) == w
    table = w.to_table()
    assert "blocks.3" in table
    assert f"{DS_CNN:,}" in table
    assert "ideal speed-up" in table
    assert "more layers" in w.to_table(max_rows=2)


def test_batch_256_scales_resnet50_exactly():
    # (tracing speed is a benchmark, not a test: scripts/workload_table.py prints it)
    model, x = zoo_model("resnet50")
    w = workload(model, x, batch=256)
    assert w.macs("ff") == 256 * resnet_forward_macs(True, (3, 4, 6, 3))


def test_assemble_workload_from_layers():
    from trainforge.models.workloads import Layer, VectorLayer

    layers = [
        Layer(name="a", kind="linear", rows=4, c_in=16, c_out=32, weight="a.w", grad_a=False),
        VectorLayer(name="relu", kind="activation", elements=128),
        Layer(name="b", kind="linear", rows=4, c_in=32, c_out=8, weight="b.w", bias="b.b"),
    ]
    w = assemble_workload(layers, name="mlp", method="bdwp", n=1, m=4)
    assert [op.name for op in w.gemms] == ["a:ff", "b:ff", "b:bp", "b:wu", "a:wu"]
    assert w.op("b:bp").nm == (1, 4)
    assert w.op("a:ff").nm == (1, 4)
    assert w.trainable_parameters == 16 * 32 + 32 * 8 + 8


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "sparse"}, r"method must be one of 'dense', 'srste', 'bdwp', not 'sparse'"),
        ({"n": 4, "m": 4}, r"1 <= n < m, not n=4, m=4"),
        ({"n": 2.0}, r"n must be an integer, not 2.0"),
        ({"batch": 0}, r"batch must be >= 1, not 0"),
        ({"dense_layers": {"nope"}}, r"unknown layer 'nope'; layers are: 0, 2"),
        ({"dense_layers": "0"}, r"not the string '0'"),
        ({"device": "cuda"}, r"device must be one of 'meta', 'cpu'"),
        ({"input_grad": 1}, r"input_grad must be True or False"),
    ],
)
def test_bad_arguments_are_usage_errors(kwargs, match):
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))
    with pytest.raises(UsageError, match=match):
        workload(model, torch.zeros(1, 8), **kwargs)


def test_bad_model_and_input():
    with pytest.raises(UsageError, match=r"torch\.nn\.Module, not int"):
        workload(3, torch.zeros(1))
    with pytest.raises(UsageError, match="example_input must be a tensor"):
        workload(nn.Linear(2, 2), [1, 2])
    with pytest.raises(UsageError, match="batch dimension"):
        workload(nn.Linear(2, 2), torch.tensor(1.0))

    class ReadsValues(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * float(x.sum())

    with pytest.raises(UsageError, match="device='cpu'"):
        workload(ReadsValues(), torch.zeros(1, 2))


def test_op_validation():
    fields = {"name": "x", "layer": "x", "m": 1, "n": 1, "k": 8, "a_role": "activation", "b_role": "weight"}
    with pytest.raises(UsageError, match="stage must be one of"):
        GemmOp(**fields, stage="fw", out_role="output")
    with pytest.raises(UsageError, match="sparse_along"):
        GemmOp(**fields, stage="ff", out_role="output", nm=(2, 8))
    with pytest.raises(UsageError, match="m must be >= 1, not 0"):
        GemmOp(**{**fields, "m": 0}, stage="ff", out_role="output")
    with pytest.raises(UsageError, match="no operation named"):
        Workload(name="w", method="dense", n=2, m=8, batch=1, layers=(), ops=()).op("x")


class _WeightOnTheLeft(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(24, 16))
        self.v = nn.Parameter(torch.zeros(8, 24))
        self.register_buffer("dct", torch.zeros(16, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.w @ x[0]  # (24 x 16) . (16 x 5)
        z = torch.mv(self.v, y[:, 0])
        c = x[0].t() @ self.dct  # a constant (buffer) operand
        return y.sum() + z.sum() + c.sum()


def test_weight_on_the_left_mv_and_constant_operands():
    w = workload(_WeightOnTheLeft(), torch.zeros(1, 16, 5), method="bdwp", n=2, m=8)
    got = [(g.name, g.m, g.n, g.k, g.b_role, g.nm) for g in w.gemms]
    assert got == [
        ("w:ff", 5, 24, 16, "weight", (2, 8)),  # normalised to X W^T: rows are the 5 columns of x
        ("v:ff", 1, 8, 24, "weight", (2, 8)),
        ("mm:ff", 5, 16, 16, "constant", None),  # never compressed, never updated, no BP (x is data)
        ("v:bp", 1, 24, 8, "weight", (2, 8)),
        ("v:wu", 8, 24, 1, "activation", None),
        ("w:wu", 24, 16, 5, "activation", None),
    ]
