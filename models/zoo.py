"""Architectures of the training workloads, in plain ``torch.nn`` (no weights, nothing downloaded).

:func:`zoo_model` returns ``(model, example_input)`` with a batch of one; build on the meta device
(the default) for tracing with :func:`trainforge.models.workloads.workload` in milliseconds, or on
``"cpu"`` to run the model for real.

The shapes follow the reference definitions (torchvision for the ImageNet CNNs and ViT-B/16; the DeiT
paper for DeiT-S; the original BERT and GPT-2 configurations; the MLPerf Tiny reference Keras models for
ResNet8 and DS-CNN, including TensorFlow's "same" padding). Sequence lengths: BERT-base 128 tokens
(pre-training phase 1), GPT-2 small 1024 (its context); image models 224 x 224 (CIFAR-10 32 x 32 for
ResNet8, a 49 x 10 MFCC map for DS-CNN).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from trainforge.errors import UsageError

__all__ = ["ZOO", "parameter_count", "zoo_model"]


# ---------------------------------------------------------------------------------------------
# ResNet (torchvision layout, v1.5: the stride of a bottleneck sits on its 3x3 convolution)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = _downsample(c_in, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(c_in, width * 4, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _downsample(c_in: int, c_out: int, stride: int) -> nn.Module | None:
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))


class ResNet(nn.Module):
    """ImageNet ResNet: 7x7/2 stem, 3x3/2 max-pool, four stages, global average pool, classifier."""

    def __init__(self, block: type[BasicBlock | Bottleneck], depths: tuple[int, ...], classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        c_in = 64
        stages = []
        for i, depth in enumerate(depths):
            width = 64 * 2**i
            blocks = []
            for j in range(depth):
                blocks.append(block(c_in, width, 2 if (i > 0 and j == 0) else 1))
                c_in = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ---------------------------------------------------------------------------------------------
# VGG-16 (torchvision configuration "D", no batch norm)


class VGG16(nn.Module):
    """Thirteen 3x3 convolutions in five stages, then 25088 -> 4096 -> 4096 -> classes."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"):
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c_in, int(v), 3, padding=1), nn.ReLU(inplace=True)]
                c_in = int(v)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(),
            nn.Linear(4096, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# ---------------------------------------------------------------------------------------------
# Transformers


class Attention(nn.Module):
    """Multi-head self-attention with explicit ``Q K^T`` and ``A V`` products (what the tracer sees)."""

    def __init__(self, dim: int, heads: int, *, causal: bool = False, max_len: int = 0) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.causal = causal
        if causal:
            self.register_buffer("mask", torch.ones(max_len, max_len, dtype=torch.bool).tril(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-2, -1)) * self.scale
        if self.causal:
            att = att.masked_fill(~self.mask[:t, :t], float("-inf"))
        att = att.softmax(dim=-1)
        out = (att @ v).transpose(1, 2).reshape(b, t, d)
        return self.proj(out)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class PreNormBlock(nn.Module):
    """``x + attn(LN(x))``, ``x + mlp(LN(x))``: ViT, DeiT and GPT-2."""

    def __init__(self, dim: int, heads: int, hidden: int, *, causal: bool = False, max_len: int = 0) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, causal=causal, max_len=max_len)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class PostNormBlock(nn.Module):
    """``LN(x + attn(x))``, ``LN(x + mlp(x))``: the BERT encoder layer."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.attn = Attention(dim, heads)
        self.ln1 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, hidden)
        self.ln2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ln1(x + self.attn(x))
        return self.ln2(x + self.mlp(x))


class VisionTransformer(nn.Module):
    """Patch embedding (a stride-p convolution), class token, learned positions, pre-norm blocks, head."""

    def __init__(
        self, *, image: int = 224, patch: int = 16, dim: int, depth: int, heads: int, hidden: int, classes: int = 1000
    ) -> None:
        super().__init__()
        tokens = (image // patch) ** 2 + 1
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, dim))
        self.blocks = nn.Sequential(*(PreNormBlock(dim, heads, hidden) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


# ---------------------------------------------------------------------------------------------
# MLPerf Tiny


class ResNet8(nn.Module):
    """MLPerf Tiny image classification (CIFAR-10): 3 stacks of 16/32/64 channels, 12.50 M MACs.

    Keras "same" padding; the strided 1x1 shortcuts of stacks 2 and 3 have no batch norm, as in the
    reference model.
    """

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.stack1 = _TinyStack(16, 16, 1)
        self.stack2 = _TinyStack(16, 32, 2)
        self.stack3 = _TinyStack(32, 64, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.stack3(self.stack2(self.stack1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class _TinyStack(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride) if stride != 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.relu(identity + y)


class DSCNN(nn.Module):
    """MLPerf Tiny keyword spotting (49 x 10 MFCC, 12 classes): 2.66 M MACs.

    Conv 10x4/2 with TensorFlow "same" padding (4 rows above, 5 below, 1 column each side) to
    25 x 5 x 64, four depthwise-separable blocks (3x3 depthwise + 1x1 pointwise, each with batch norm
    and ReLU), average pool, dense 64 -> 12.
    """

    def __init__(self, classes: int = 12, channels: int = 64, blocks: int = 4) -> None:
        super().__init__()
        self.pad = nn.ZeroPad2d((1, 1, 4, 5))
        self.conv1 = nn.Conv2d(1, channels, (10, 4), 2)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.dropout1 = nn.Dropout(0.2)
        layers: list[nn.Module] = []
        for _ in range(blocks):
            layers += [
                nn.Conv2d(channels, channels, 3, 1, 1, groups=channels),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
                nn.Conv2d(channels, channels, 1),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            ]
        self.blocks = nn.Sequential(*layers)
        self.dropout2 = nn.Dropout(0.4)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout1(self.relu(self.bn1(self.conv1(self.pad(x)))))
        x = self.dropout2(self.blocks(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ---------------------------------------------------------------------------------------------
# registry


def _image(size: int, channels: int = 3) -> Callable[[], torch.Tensor]:
    return lambda: torch.zeros(1, channels, size, size)


_REGISTRY: dict[str, tuple[Callable[[], nn.Module], Callable[[], torch.Tensor]]] = {
    "resnet18": (lambda: ResNet(BasicBlock, (2, 2, 2, 2)), _image(224)),
    "resnet50": (lambda: ResNet(Bottleneck, (3, 4, 6, 3)), _image(224)),
    "vgg16": (VGG16, _image(224)),
    "vit_b_16": (lambda: VisionTransformer(dim=768, depth=12, heads=12, hidden=3072), _image(224)),
    "deit_s": (lambda: VisionTransformer(dim=384, depth=12, heads=6, hidden=1536), _image(224)),
    "bert_base_layer": (lambda: PostNormBlock(768, 12, 3072), lambda: torch.zeros(1, 128, 768)),
    "gpt2_small_block": (
        lambda: PreNormBlock(768, 12, 3072, causal=True, max_len=1024),
        lambda: torch.zeros(1, 1024, 768),
    ),
    "resnet8": (ResNet8, _image(32)),
    "ds_cnn": (DSCNN, lambda: torch.zeros(1, 1, 49, 10)),
}

ZOO: tuple[str, ...] = tuple(_REGISTRY)
"""Names accepted by :func:`zoo_model`."""


def zoo_model(name: str, *, device: str = "meta") -> tuple[nn.Module, torch.Tensor]:
    """Build a zoo architecture and an example input of batch 1.

    Parameters
    ----------
    name : str
        One of :data:`ZOO`: ``resnet18``, ``resnet50``, ``vgg16``, ``vit_b_16``, ``deit_s``,
        ``bert_base_layer``, ``gpt2_small_block``, ``resnet8``, ``ds_cnn``.
    device : {"meta", "cpu"}
        ``meta`` (default): no memory, no initialisation cost, for tracing. ``cpu``: a runnable model
        with PyTorch's default initialisation.

    Returns
    -------
    model : torch.nn.Module
    example_input : torch.Tensor
        Zeros of the model's input shape with batch 1 (an image in NCHW or a token sequence
        ``(1, tokens, 768)``).

    Raises
    ------
    trainforge.errors.UsageError
        Unknown ``name`` or ``device``.
    """
    if name not in _REGISTRY:
        raise UsageError(f"unknown zoo model {name!r}; valid: {', '.join(ZOO)}")
    if device not in ("meta", "cpu"):
        raise UsageError(f"device must be 'meta' or 'cpu', not {device!r}")
    build, example = _REGISTRY[name]
    with torch.device(device):
        model = build()
        x = example()
    return model, x


def parameter_count(model: nn.Module) -> int:
    """Number of trainable parameter elements (works on the meta device)."""
    return sum(math.prod(p.shape) for p in model.parameters() if p.requires_grad)
