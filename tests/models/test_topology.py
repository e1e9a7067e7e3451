"""SCALE-Sim topology CSV and ONNX importers/exporters."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainforge.errors import UsageError
from trainforge.models.topology import (
    onnx_workload,
    parse_scalesim_csv,
    read_scalesim_csv,
    to_scalesim_csv,
    write_scalesim_csv,
)
from trainforge.models.workloads import MaskOp, UpdateOp, workload
from trainforge.models.zoo import zoo_model


def gemm_key(g):  # everything but the name
    return (g.stage, g.m, g.n, g.k, g.count, g.nm, g.sparse_along, g.a_role, g.b_role, g.out_role)


# ---------------------------------------------------------------------------------------------
# SCALE-Sim


def test_gemm_form_layout():
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))
    text = to_scalesim_csv(workload(model, torch.zeros(4, 16), n=1, m=4))
    lines = text.splitlines()
    assert lines[0] == "Layer Name, M, N, K, Sparsity,"
    assert all(line.endswith(",") for line in lines)
    assert lines[1:] == [
        "0:ff, 4, 32, 16, 1:4,",
        "2:ff, 4, 8, 32, 1:4,",
        "2:bp, 4, 32, 8, 1:4,",
        "2:wu, 8, 32, 4, 1:1,",
        "0:wu, 32, 16, 4, 1:1,",
    ]
    dense = to_scalesim_csv(workload(model, torch.zeros(4, 16), method="dense"), stages=("ff",))
    assert dense.splitlines() == ["Layer Name, M, N, K,", "0:ff, 4, 32, 16,", "2:ff, 4, 8, 32,"]


@pytest.mark.parametrize("name", ["resnet8", "ds_cnn", "deit_s"])
def test_gemm_form_round_trip(name):
    model, x = zoo_model(name)
    w = workload(model, x, method="bdwp", n=2, m=8)
    back = parse_scalesim_csv(to_scalesim_csv(w))
    assert [(g.name, *gemm_key(g)) for g in back.gemms] == [(g.name, *gemm_key(g)) for g in w.gemms]
    assert (back.method, back.n, back.m) == ("bdwp", 2, 8)
    assert back.macs_by_stage() == w.macs_by_stage()


@pytest.mark.parametrize("name", ["resnet8", "ds_cnn"])
@pytest.mark.parametrize("method", ["dense", "srste", "bdwp"])
def test_conv_form_round_trip(name, method):
    model, x = zoo_model(name)
    w = workload(model, x, method=method, n=2, m=8)
    text = to_scalesim_csv(w, form="conv")
    assert text.splitlines()[0].startswith("Layer name, IFMAP Height, IFMAP Width, Filter Height")
    back = parse_scalesim_csv(text, method=method, n=2, m=8)
    assert [gemm_key(g) for g in back.gemms] == [gemm_key(g) for g in w.gemms]
    masks = sorted((op.elements, op.copy) for op in back.ops if isinstance(op, MaskOp))
    assert masks == sorted((op.elements, op.copy) for op in w.ops if isinstance(op, MaskOp))


def test_conv_form_values_follow_scalesim_arithmetic():
    model, x = zoo_model("resnet8")
    rows = {line.split(",")[0]: line for line in to_scalesim_csv(workload(model, x), form="conv").splitlines()[1:]}
    # a 3x3/2 conv to 16x16 reads a 33x33 window of its padded input: (16 - 1) * 2 + 3
    assert rows["stack2.conv1"] == "stack2.conv1, 33, 33, 3, 3, 16, 32, 2, 2:8,"
    assert rows["conv1"] == "conv1, 34, 34, 3, 3, 3, 16, 1, 1:1,"
    assert rows["fc"] == "fc, 1, 1, 1, 1, 64, 10, 1, 2:8,"
    model, x = zoo_model("ds_cnn")
    text = to_scalesim_csv(workload(model, x, method="dense"), form="conv")
    assert "blocks.0_DP, 27, 7, 3, 3, 64, 1, 1," in text.splitlines()  # depthwise: "DP" in the name


SCALESIM_CONV = """Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,
Conv1, 224, 224, 7, 7, 3, 64, 2,
Conv2, 56, 56, 3, 3, 64, 64, 1, 2:4,
Conv3, 56, 56, 3, 3, 64, 64, 1, 1:1,
Conv4_DP, 30, 30, 3, 3, 32, 1, 1,
FC, 1, 1, 1, 1, 2048, 1000, 1,
"""


def test_parse_scalesim_conv_form():
    w = parse_scalesim_csv(SCALESIM_CONV, method="bdwp", n=2, m=8)
    ff = {g.layer: g for g in w.gemms if g.stage == "ff"}
    # SCALE-Sim's output size: ceil((IFMAP - Filter + Stride) / Stride), no padding
    ho = math.ceil((224 - 7 + 2) / 2)
    assert ho == 110
    assert (ff["Conv1"].m, ff["Conv1"].n, ff["Conv1"].k) == (110 * 110, 64, 147)
    assert ff["Conv1"].macs == 110 * 110 * 7 * 7 * 3 * 64
    assert ff["Conv2"].nm == (2, 4)  # the row's sparsity overrides n:m
    assert ff["Conv3"].nm is None  # 1:1 is dense
    assert ff["FC"].nm == (2, 8)  # no cell: the method's n:m
    dw = ff["Conv4_DP"]
    assert (dw.m, dw.n, dw.k, dw.count) == (28 * 28, 1, 9, 32)
    assert not [g for g in w.gemms if g.layer == "Conv1" and g.stage == "bp"]  # first row: input is data
    assert w.op("Conv2:bp").nm == (2, 4)
    assert w.op("FC:bp").nm == (2, 8)
    assert w.macs("ff") == sum(g.macs for g in ff.values())
    assert parse_scalesim_csv(SCALESIM_CONV, batch=4).macs("ff") == 4 * w.macs("ff")
    assert parse_scalesim_csv(SCALESIM_CONV, input_grad=True).op("Conv1:bp").m == 110 * 110


def test_parse_v2_stride_columns_and_gemm_form():
    v2 = "Layer name,IFMAP height,IFMAP width,Filter height,Filter width,Channels,Num filter,"
    v2 += "Stride height,Stride width,\nc,32,16,3,3,8,8,2,1,\n"
    g = parse_scalesim_csv(v2, method="dense").op("c:ff")
    assert g.m == math.ceil((32 - 3 + 2) / 2) * math.ceil((16 - 3 + 1) / 1)
    gemm = "Layer Name, M, N, K, Sparsity,\nGEMM_1, 3, 5, 16, 3:4,\nGEMM_2, 1, 5, 16, 1:4,\n"
    w = parse_scalesim_csv(gemm, method="srste")
    assert [(g.name, g.m, g.n, g.k, g.nm) for g in w.gemms if g.stage == "ff"] == [
        ("GEMM_1:ff", 3, 5, 16, (3, 4)),
        ("GEMM_2:ff", 1, 5, 16, (1, 4)),
    ]


def test_file_round_trip(tmp_path):
    model, x = zoo_model("resnet8")
    w = workload(model, x, method="srste", n=1, m=4)
    path = write_scalesim_csv(w, tmp_path / "resnet8.csv")
    back = read_scalesim_csv(path)
    assert back.name == "resnet8"
    assert [gemm_key(g) for g in back.gemms] == [gemm_key(g) for g in w.gemms]
    with pytest.raises(UsageError, match="no SCALE-Sim topology file"):
        read_scalesim_csv(tmp_path / "missing.csv")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty SCALE-Sim topology"),
        ("Layer, M, N, K,\n", "no layer rows"),
        ("Layer, M, N, K,\nfc, 4, x, 8,\n", r"line 2: N must be an integer, not 'x'"),
        ("Layer, M, N, K,\nfc, 4, 0, 8,\n", r"line 2: N must be >= 1, not 0"),
        ("Layer, M, N, K,\nfc, 4, 8,\n", r"line 2: a GEMM-form row needs"),
        ("Layer, M, N, K, Sparsity,\nfc, 4, 8, 8, 2-4,\n", r"look like 'N:M'"),
        ("Layer, M, N, K, Sparsity,\nfc, 4, 8, 8, 4:2,\n", r"needs 1 <= N <= M"),
        ("Layer, M, N, K,\na:ff, 4, 8, 8,\nb, 4, 8, 8,\n", "mixes literal"),
        ("Layer, M, N, K, Sparsity,\na:wu, 4, 8, 8, 2:4,\n", "only weight operands of FF and BP"),
        (
            SCALESIM_CONV.replace("Conv2, 56, 56, 3", "Conv2, 2, 56, 3"),
            r"line 3: filter 3x3 is larger than the IFMAP 2x56",
        ),
        ("Layer name, IFMAP Height,\nc, 8, 8, 3,\n", "a conv-form row needs 8 cells"),
    ],
)
def test_bad_csv_is_a_usage_error(text, match):
    with pytest.raises(UsageError, match=match):
        parse_scalesim_csv(text)


def test_conv_form_refuses_what_it_cannot_express():
    model, x = zoo_model("deit_s")
    with pytest.raises(UsageError, match=r"blocks.0.attn.bmm.*matmul; use form='gemm'"):
        to_scalesim_csv(workload(model, x), form="conv")
    model, x = zoo_model("resnet8")
    with pytest.raises(UsageError, match=r"no batch dimension \(batch=2\)"):
        to_scalesim_csv(workload(model, x, batch=2), form="conv")
    grouped = nn.Sequential(nn.Conv2d(8, 8, 3, groups=2))
    with pytest.raises(UsageError, match="groups=2 is neither 1 nor depthwise"):
        to_scalesim_csv(workload(grouped, torch.zeros(1, 8, 8, 8)), form="conv")
    with pytest.raises(UsageError, match="form must be 'gemm' or 'conv'"):
        to_scalesim_csv(workload(grouped, torch.zeros(1, 8, 8, 8)), form="mnk")
    with pytest.raises(UsageError, match="stages must be a non-empty subset"):
        to_scalesim_csv(workload(grouped, torch.zeros(1, 8, 8, 8)), stages=("fw",))


# ---------------------------------------------------------------------------------------------
# ONNX (graphs built in memory with onnx.helper; nothing downloaded)


@pytest.fixture
def onnx():
    return pytest.importorskip("onnx")


def _init(onnx, name, *shape):
    return onnx.helper.make_tensor(name, onnx.TensorProto.FLOAT, shape, [0.0] * math.prod(shape))


def small_cnn_onnx(onnx, batch="N"):
    nodes = [
        onnx.helper.make_node("Conv", ["x", "c1.w"], ["a"], name="c1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        onnx.helper.make_node("BatchNormalization", ["a", "bn.s", "bn.b", "bn.m", "bn.v"], ["b"], name="bn"),
        onnx.helper.make_node("Relu", ["b"], ["c"], name="relu1"),
        onnx.helper.make_node(
            "Conv", ["c", "c2.w", "c2.b"], ["d"], name="c2", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]
        ),
        onnx.helper.make_node("Relu", ["d"], ["e"], name="relu2"),
        onnx.helper.make_node("GlobalAveragePool", ["e"], ["f"], name="pool"),
        onnx.helper.make_node("Flatten", ["f"], ["g"], name="flat"),
        onnx.helper.make_node("Gemm", ["g", "fc.w", "fc.b"], ["y"], name="fc", transB=1),
    ]
    inits = [
        _init(onnx, "c1.w", 8, 3, 3, 3),
        _init(onnx, "bn.s", 8),
        _init(onnx, "bn.b", 8),
        _init(onnx, "bn.m", 8),
        _init(onnx, "bn.v", 8),
        _init(onnx, "c2.w", 16, 8, 3, 3),
        _init(onnx, "c2.b", 16),
        _init(onnx, "fc.w", 8, 16),
        _init(onnx, "fc.b", 8),
    ]
    graph = onnx.helper.make_graph(
        nodes,
        "small_cnn",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [batch, 3, 16, 16])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [batch, 8])],
        inits,
    )
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])


def small_cnn_torch():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 8),
    )


@pytest.mark.parametrize("method", ["dense", "srste", "bdwp"])
def test_onnx_matches_torch_workload_of_the_same_model(onnx, method):
    proto = small_cnn_onnx(onnx)
    onnx.checker.check_model(proto)
    from_onnx = onnx_workload(proto, method=method, n=1, m=4, batch=2)
    from_torch = workload(small_cnn_torch(), torch.zeros(2, 3, 16, 16), method=method, n=1, m=4)
    assert [gemm_key(g) for g in from_onnx.gemms] == [gemm_key(g) for g in from_torch.gemms]
    assert from_onnx.trainable_parameters == from_torch.trainable_parameters  # BN mean/var are not trained
    masks = [(op.elements, op.copy, op.along) for op in from_onnx.ops if isinstance(op, MaskOp)]
    assert masks == [(op.elements, op.copy, op.along) for op in from_torch.ops if isinstance(op, MaskOp)]
    updates = sorted(op.elements for op in from_onnx.ops if isinstance(op, UpdateOp))
    assert updates == sorted(op.elements for op in from_torch.ops if isinstance(op, UpdateOp))
    kinds = from_onnx.elements_by_kind()
    assert kinds["normalisation"] == 2 * 2 * 8 * 16 * 16  # forward and backward of the batch norm
    assert from_onnx.batch == 2


def test_onnx_batch_and_path(onnx, tmp_path):
    with pytest.raises(UsageError, match="symbolic batch dimension 'N'; pass batch="):
        onnx_workload(small_cnn_onnx(onnx))
    fixed = small_cnn_onnx(onnx, batch=3)
    path = tmp_path / "cnn.onnx"
    onnx.save(fixed, str(path))
    w = onnx_workload(path, method="dense")
    assert w.batch == 3
    assert w.name == "small_cnn"
    assert w.op("c1:ff").m == 3 * 16 * 16
    assert onnx_workload(path, method="dense", batch=5).op("c1:ff").m == 5 * 16 * 16
    with pytest.raises(UsageError, match="no ONNX model"):
        onnx_workload(tmp_path / "missing.onnx")
    with pytest.raises(UsageError, match=r"onnx\.ModelProto or a path"):
        onnx_workload(42)


def test_onnx_matmuls_weights_and_attention(onnx):
    nodes = [
        onnx.helper.make_node("MatMul", ["x", "wq"], ["q"], name="q_proj"),
        onnx.helper.make_node("MatMul", ["x", "wk"], ["k"], name="k_proj"),
        onnx.helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        onnx.helper.make_node("MatMul", ["q", "kt"], ["s"], name="scores"),
        onnx.helper.make_node("Softmax", ["s"], ["p"], name="softmax", axis=-1),
        onnx.helper.make_node("MatMul", ["p", "x"], ["y"], name="mix"),
    ]
    graph = onnx.helper.make_graph(
        nodes,
        "attn",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 10, 16])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 10, 16])],
        [_init(onnx, "wq", 16, 16), _init(onnx, "wk", 16, 16)],
    )
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    w = onnx_workload(proto, method="bdwp", n=2, m=8)
    q = w.op("q_proj:ff")
    assert (q.m, q.n, q.k, q.nm, q.b_role) == (20, 16, 16, (2, 8), "weight")  # batch folded into rows
    s = w.op("scores:ff")
    assert (s.m, s.n, s.k, s.count, s.b_role, s.nm) == (10, 10, 16, 2, "activation", None)
    assert w.op("scores:bp:a").m == 10
    assert w.op("scores:bp:b").m == 16
    # x is data: "mix" needs the gradient of p only, and q_proj / k_proj no BP
    assert [g.name for g in w.gemms if g.layer == "mix"] == ["mix:ff", "mix:bp:a"]
    assert not [g for g in w.gemms if g.layer in ("q_proj", "k_proj") and g.stage == "bp"]
    assert w.elements_by_kind()["softmax"] == 2 * 2 * 10 * 10
    grad = onnx_workload(proto, method="dense", input_grad=True)
    assert [g.name for g in grad.gemms if g.layer == "mix"] == ["mix:ff", "mix:bp:a", "mix:bp:b"]
