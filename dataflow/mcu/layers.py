"""PULP-TrainLib's mapping of a layer's training steps to matmuls and shape transforms.

Every forward (``fw``), weight-gradient (``wg``) and input-gradient (``ig``) step is one matmul
``C[N x M] = A[N x K] . B[K x M]`` (``groups`` of them for depthwise layers) plus shape transforms,
CHW layout, batch 1 per step (a batch of ``b`` repeats the step ``b`` times):

=================  =================================  ================  ======  ==============  ===========
layer / step       transforms                         A                 N       K               M
=================  =================================  ================  ======  ==============  ===========
Conv2D fw          im2row(x)                          W                 C_out   kh*kw*C_in      Ho*Wo
Conv2D wg          im2row(x)                          dY                C_out   Ho*Wo           kh*kw*C_in
Conv2D ig          im2row(dY), block-transpose(W)     W flipped         C_in    kh*kw*C_out     Hi*Wi
Pointwise fw       none                               W                 C_out   C_in            H*W
Pointwise wg       none (B = X^T: X read as B^T)      dY                C_out   H*W             C_in
Pointwise ig       transpose(W)                       W^T               C_in    C_out           H*W
Linear fw          none                               W                 out     in              rows
Linear wg          transpose(dY) when rows > 1        dY^T              out     rows            in
Linear ig          none                               dY                rows    out             in
Depthwise fw       im2row(x) per channel              w_c (x C)         1       kh*kw           Ho*Wo
Depthwise wg       im2row(x) per channel              dY_c (x C)        1       Ho*Wo           kh*kw
Depthwise ig       im2row(dY) per channel, flip(w)    w_c flipped (xC)  1       kh*kw           Hi*Wi
=================  =================================  ================  ======  ==============  ===========

B's layout: an im2row buffer can be written in either layout at the same cost (``"free"``); the
pointwise and linear operands have a fixed one (``"natural"``: ``K x M``; ``"transposed"``: stored
``M x K``), and a kernel wanting the other pays a transpose of B. A strided convolution's input
gradient runs on the zero-dilated ``dY`` as the library's im2row does, so its executed MACs exceed
the useful ones by ``stride_h * stride_w``; MAC/clk is always reported on useful (forward) MACs.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

from trainforge.errors import UsageError

if TYPE_CHECKING:  # trainforge.models imports torch; the cost model does not need it
    from trainforge.models.workloads import Layer

__all__ = ["STEPS", "GemmStep", "Transform", "layer_kind", "layer_steps"]

STEPS = ("fw", "wg", "ig")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Transform:
    """A shape transform before a matmul.

    Attributes
    ----------
    kind : {"im2row", "transpose", "block_transpose"}
    shape : tuple of int
        ``(pixels, channels, kh, kw)`` for im2row; ``(rows, cols)`` for a transpose;
        ``(c_out, c_in, window)`` for a block transpose.
    """

    kind: str
    shape: tuple[int, ...]

    @property
    def elements(self) -> int:
        """Elements written."""
        return math.prod(self.shape)


@dataclasses.dataclass(frozen=True, kw_only=True)
class GemmStep:
    """One training step of one layer as a matmul.

    Attributes
    ----------
    layer : str
    kind : str
        The layer kind (:func:`layer_kind`), which decides the kernels the library allows.
    step : {"fw", "wg", "ig"}
    n, k, m, groups : int
        ``groups`` independent ``N x K x M`` products.
    b_layout : {"free", "natural", "transposed"}
        How B is available (see the module docstring).
    transforms : tuple of Transform
    macs : int
        Useful MACs (the forward MACs of the layer).
    """

    layer: str
    kind: str = "conv"
    step: str
    n: int
    k: int
    m: int
    groups: int = 1
    b_layout: str = "free"
    transforms: tuple[Transform, ...] = ()
    macs: int

    @property
    def executed_macs(self) -> int:
        """MACs the matmul executes (more than ``macs`` for a strided input gradient)."""
        return self.groups * self.n * self.k * self.m


def layer_kind(layer: Layer) -> str:
    """``conv``, ``pointwise``, ``depthwise``, ``grouped``, ``linear`` or ``matmul``."""
    if layer.kind == "linear":
        return "linear"
    if layer.kind == "matmul":
        return "matmul"
    if layer.kind != "conv":
        raise UsageError(f"{layer.name}: {layer.kind!r} layers have no MCU mapping (conv, linear, matmul only)")
    if len(layer.kernel) != 2:
        raise UsageError(f"{layer.name}: only 2-D convolutions have an MCU mapping, not kernel {layer.kernel}")
    if layer.groups > 1:
        if layer.groups == layer.c_in == layer.c_out:
            return "depthwise"
        return "grouped"
    pointwise = layer.kernel == (1, 1) and all(s == 1 for s in layer.stride) and not any(layer.padding)
    return "pointwise" if pointwise else "conv"


def layer_steps(layer: Layer, steps: tuple[str, ...] = STEPS) -> list[GemmStep]:
    """The matmuls and transforms of ``layer``'s ``steps`` (batch repeats are the caller's).

    Raises
    ------
    trainforge.errors.UsageError
        A layer kind without a mapping, or an unknown step.
    """
    for s in steps:
        if s not in STEPS:
            raise UsageError(f"step must be one of {', '.join(STEPS)}, not {s!r}")
    kind = layer_kind(layer)
    batch = layer.batch
    useful = layer.macs // batch
    out: list[GemmStep] = []
    if kind in ("linear", "matmul"):
        rows = layer.rows // batch if kind == "linear" else layer.rows
        groups = 1 if kind == "linear" else layer.groups
        n_in, n_out = (
            layer.c_in // (1 if kind == "linear" else groups),
            layer.c_out // (1 if kind == "linear" else groups),
        )
        if kind == "matmul":
            useful = layer.macs
        table = {
            "fw": dict(n=n_out, k=n_in, m=rows, b_layout="transposed", transforms=()),
            "wg": dict(
                n=n_out,
                k=rows,
                m=n_in,
                b_layout="natural",
                transforms=((Transform(kind="transpose", shape=(rows, n_out)),) if rows > 1 else ()),
            ),
            "ig": dict(n=rows, k=n_out, m=n_in, b_layout="natural", transforms=()),
        }
        for s in steps:
            out.append(GemmStep(layer=layer.name, kind=kind, step=s, groups=groups, macs=useful, **table[s]))
        return out
    (kh, kw), (ho, wo) = layer.kernel, layer.out_spatial
    hi, wi = layer.in_spatial
    c_in, c_out, g = layer.c_in, layer.c_out, layer.groups
    window = kh * kw
    if kind == "pointwise":
        table = {
            "fw": dict(n=c_out, k=c_in, m=ho * wo, b_layout="natural", transforms=()),
            "wg": dict(n=c_out, k=ho * wo, m=c_in, b_layout="transposed", transforms=()),
            "ig": dict(
                n=c_in,
                k=c_out,
                m=ho * wo,
                b_layout="natural",
                transforms=(Transform(kind="transpose", shape=(c_out, c_in)),),
            ),
        }
        groups = 1
    elif kind == "depthwise":
        table = {
            "fw": dict(n=1, k=window, m=ho * wo, transforms=(Transform(kind="im2row", shape=(ho * wo, c_in, kh, kw)),)),
            "wg": dict(n=1, k=ho * wo, m=window, transforms=(Transform(kind="im2row", shape=(ho * wo, c_in, kh, kw)),)),
            "ig": dict(
                n=1,
                k=window,
                m=hi * wi,
                transforms=(
                    Transform(kind="im2row", shape=(hi * wi, c_in, kh, kw)),
                    Transform(kind="block_transpose", shape=(1, c_in, window)),
                ),
            ),
        }
        groups = c_in
    else:  # conv and grouped conv (per group)
        ci, co = c_in // g, c_out // g
        table = {
            "fw": dict(
                n=co, k=window * ci, m=ho * wo, transforms=(Transform(kind="im2row", shape=(ho * wo, c_in, kh, kw)),)
            ),
            "wg": dict(
                n=co, k=ho * wo, m=window * ci, transforms=(Transform(kind="im2row", shape=(ho * wo, c_in, kh, kw)),)
            ),
            "ig": dict(
                n=ci,
                k=window * co,
                m=hi * wi,
                transforms=(
                    Transform(kind="im2row", shape=(hi * wi, c_out, kh, kw)),
                    Transform(kind="block_transpose", shape=(c_out, ci, window)),
                ),
            ),
        }
        groups = g
    for s in steps:
        out.append(GemmStep(layer=layer.name, kind=kind, step=s, groups=groups, macs=useful, **table[s]))
    return out
