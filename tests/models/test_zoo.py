"""The architecture zoo: names, shapes, runnable reference models and clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainforge.errors import UsageError
from trainforge.models.zoo import ZOO, parameter_count, zoo_model

EXPECTED_INPUTS = {
    "resnet18": (1, 3, 224, 224),
    "resnet50": (1, 3, 224, 224),
    "vgg16": (1, 3, 224, 224),
    "vit_b_16": (1, 3, 224, 224),
    "deit_s": (1, 3, 224, 224),
    "bert_base_layer": (1, 128, 768),
    "gpt2_small_block": (1, 1024, 768),
    "resnet8": (1, 3, 32, 32),
    "ds_cnn": (1, 1, 49, 10),
}


def test_zoo_names():
    assert set(ZOO) == set(EXPECTED_INPUTS)


@pytest.mark.parametrize("name", ZOO)
def test_builds_on_meta_without_memory(name):
    model, x = zoo_model(name)
    assert isinstance(model, nn.Module)
    assert tuple(x.shape) == EXPECTED_INPUTS[name]
    assert x.is_meta
    assert all(p.is_meta for p in model.parameters())


# Parameter counts of the reference implementations (torchvision, timm, Hugging Face).
@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("resnet18", 11_689_512),
        ("resnet50", 25_557_032),
        ("vgg16", 138_357_544),
        ("vit_b_16", 86_567_656),
        ("deit_s", 22_050_664),
        ("bert_base_layer", 7_087_872),
        ("gpt2_small_block", 7_087_872),
    ],
)
def test_parameter_counts_match_reference_implementations(name, params):
    assert parameter_count(zoo_model(name)[0]) == params


def test_mlperf_tiny_models_run_and_have_reference_weight_counts():
    resnet8, x = zoo_model("resnet8", device="cpu")
    assert resnet8(torch.randn(2, *x.shape[1:])).shape == (2, 10)
    # MLPerf Tiny ResNet8: 77,360 convolution and dense weights (biases and batch norm excluded)
    weights = sum(m.weight.numel() for m in resnet8.modules() if isinstance(m, nn.Conv2d | nn.Linear))
    assert weights == 77_360
    ds_cnn, x = zoo_model("ds_cnn", device="cpu")
    feats = ds_cnn.bn1(ds_cnn.conv1(ds_cnn.pad(torch.randn(1, 1, 49, 10))))
    assert feats.shape == (1, 64, 25, 5)  # TensorFlow "same" padding of the 10x4/2 stem
    assert ds_cnn(torch.randn(3, *x.shape[1:])).shape == (3, 12)
    weights = sum(m.weight.numel() for m in ds_cnn.modules() if isinstance(m, nn.Conv2d | nn.Linear))
    assert weights == 10 * 4 * 64 + 4 * (9 * 64 + 64 * 64) + 64 * 12  # ~22k


def test_gpt2_block_is_causal():
    torch.manual_seed(0)
    model, _ = zoo_model("gpt2_small_block", device="cpu")
    x = torch.randn(1, 6, 768)
    y = model(x)
    x2 = x.clone()
    x2[0, 4:] += 1.0  # changing later tokens must not change earlier outputs
    assert torch.allclose(model(x2)[0, :4], y[0, :4], atol=1e-5)


def test_unknown_name_lists_valid_names():
    with pytest.raises(UsageError, match=r"unknown zoo model 'resnet-50'; valid: resnet18, resnet50, vgg16"):
        zoo_model("resnet-50")
    with pytest.raises(UsageError, match="device must be 'meta' or 'cpu'"):
        zoo_model("resnet8", device="cuda")
