"""Training workloads: the operations of one training iteration, ready for the dataflow scheduler.

:func:`workload` runs a ``torch.nn.Module`` once on the meta device (no data, no arithmetic) and
records every operation it dispatches, then derives the backward pass analytically: per GEMM layer a
forward (FF), an input-gradient (BP) and a weight-gradient (WU) GEMM, per non-GEMM operation its
forward and backward element counts, and per trainable parameter the weight update and the N:M mask
generation of the chosen sparse-training method.

GEMM convention (every :class:`GemmOp`)
---------------------------------------
``out[M x N] = A[M x K] . B[K x N]``, ``count`` independent products of that shape (the groups of a
grouped convolution, the batch x heads of attention). ``macs = count * M * N * K``. When a weight is
N:M compressed it is always operand ``B``, with its groups of ``m`` running along ``K`` (the
reduction), which is the only placement where skipping pays (see ``docs/workloads.md``).

For a weight layer (linear, or convolution after im2col, per group of a grouped convolution):

===== ================== ================================ ========================== ======================
stage product            M                                N                          K
===== ================== ================================ ========================== ======================
FF    Y = X W^T          batch * H_out * W_out (rows)     C_out / g                  C_in / g * kh * kw
BP    dX = dY W          batch * H_out * W_out            C_in / g * kh * kw         C_out / g
WU    dW = dY^T X        C_out / g                        C_in / g * kh * kw         batch * H_out * W_out
===== ================== ================================ ========================== ======================

so all three have the same MACs. FF's ``B`` is ``W^T`` (compressed along C_in under ``srste`` and
``bdwp``), BP's ``B`` is ``W`` (compressed along C_out under ``bdwp``), WU is always dense. BP is
omitted where the layer's input needs no gradient (the first layer), WU where the weight is frozen.

An activation x activation product ``C = A . B`` (attention's ``Q K^T`` and ``A V``) has no weight
and is never compressed: FF ``(M, N, K)``, and per operand that needs a gradient ``dA = dC B^T``
``(M, K, N)`` and ``dB = A^T dC`` ``(K, N, M)``, both in stage ``bp``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple, Self

from trainforge.errors import UsageError

__all__ = [
    "GEMM_STAGES",
    "METHODS",
    "STAGES",
    "ElementwiseOp",
    "GemmOp",
    "Layer",
    "MaskOp",
    "UpdateOp",
    "VectorLayer",
    "Workload",
    "assemble_workload",
    "workload",
]

METHODS = ("dense", "srste", "bdwp")
"""Sparse-training methods: dense; SR-STE (forward weight N:M); BDWP (forward and backward weight N:M)."""

GEMM_STAGES = ("ff", "bp", "wu")
STAGES = (*GEMM_STAGES, "update", "prune")
"""Stages of one iteration: forward, input gradient, weight gradient, optimizer step, mask generation."""

ROLES = ("activation", "weight", "constant", "output", "output_gradient", "input_gradient", "weight_gradient")
LAYER_KINDS = ("conv", "conv_transpose", "linear", "matmul")
VECTOR_KINDS = (
    "elementwise",
    "activation",
    "normalisation",
    "softmax",
    "pooling",
    "reduction",
    "embedding",
    "bias",
    "loss",
)
_FORMAT = "trainforge.workload/1"


# ---------------------------------------------------------------------------------------------
# validation helpers


def _check_int(name: str, value: object, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{name} must be an integer, not {value!r}")
    if value < minimum:
        raise UsageError(f"{name} must be >= {minimum}, not {value}")
    return value


def _check_choice(name: str, value: object, valid: Sequence[str]) -> str:
    if value not in valid:
        raise UsageError(f"{name} must be one of {', '.join(map(repr, valid))}, not {value!r}")
    return value  # type: ignore[return-value]


def _check_nm(n: object, m: object) -> tuple[int, int]:
    _check_int("n", n)
    _check_int("m", m)
    if not n < m:  # type: ignore[operator]
        raise UsageError(f"N:M needs 1 <= n < m, not n={n}, m={m}")
    return n, m  # type: ignore[return-value]


def _check_name(name: object, what: str = "name") -> str:
    if not isinstance(name, str) or not name:
        raise UsageError(f"{what} must be a non-empty string, not {name!r}")
    return name


def _check_int_tuple(name: str, value: object, *, minimum: int = 0) -> tuple[int, ...]:
    if not isinstance(value, tuple):
        raise UsageError(f"{name} must be a tuple of integers, not {value!r}")
    for v in value:
        _check_int(name, v, minimum=minimum)
    return value


# ---------------------------------------------------------------------------------------------
# operations


@dataclasses.dataclass(frozen=True, kw_only=True)
class GemmOp:
    """One GEMM of the iteration: ``out[M x N] = A[M x K] . B[K x N]``, ``count`` times.

    Attributes
    ----------
    name : str
        Unique in its workload: ``"<layer>:<stage>"``, or ``"<layer>:bp:a"`` / ``"<layer>:bp:b"`` for
        the two input gradients of an activation x activation product.
    layer : str
        The forward layer this GEMM belongs to.
    stage : str
        ``"ff"``, ``"bp"`` or ``"wu"``.
    m, n, k : int
        Output rows, output columns, reduction length.
    count : int
        Independent products of this shape (groups of a grouped convolution, batch x heads).
    a_role, b_role, out_role : str
        What the operands and the result are: ``activation``, ``weight``, ``constant``, ``output``,
        ``output_gradient``, ``input_gradient``, ``weight_gradient``. ``A`` is read as ``M x K``, so a
        transposed operand (``dY^T`` in WU) keeps its role.
    nm : tuple of int or None
        ``(n, m)`` when operand ``B`` (always the weight) is N:M compressed along ``K``; ``None`` if dense.
    sparse_along : str or None
        The weight dimension the groups run along: ``"C_in"`` (FF) or ``"C_out"`` (BP).
    """

    type: ClassVar[str] = "gemm"
    name: str
    layer: str
    stage: str
    m: int
    n: int
    k: int
    count: int = 1
    a_role: str
    b_role: str
    out_role: str
    nm: tuple[int, int] | None = None
    sparse_along: str | None = None

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_name(self.layer, "layer")
        _check_choice("stage", self.stage, GEMM_STAGES)
        for field in ("m", "n", "k", "count"):
            _check_int(field, getattr(self, field))
        for field in ("a_role", "b_role", "out_role"):
            _check_choice(field, getattr(self, field), ROLES)
        if self.nm is not None:
            _check_nm(*self.nm)
            if self.sparse_along is None:
                raise UsageError(f"{self.name}: a compressed operand needs sparse_along ('C_in' or 'C_out')")
        elif self.sparse_along is not None:
            raise UsageError(f"{self.name}: sparse_along={self.sparse_along!r} given for a dense GEMM")

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the dense product: ``count * m * n * k``."""
        return self.count * self.m * self.n * self.k

    @property
    def useful_macs(self) -> int:
        """MACs left when compressed weights are skipped: ``macs * n / m`` (``k`` is a multiple of m)."""
        if self.nm is None:
            return self.macs
        n, m = self.nm
        return self.count * self.m * self.n * (-(-self.k // m) * n)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ElementwiseOp:
    """A non-GEMM operation counted by the elements it touches.

    Attributes
    ----------
    name, layer, stage : str
        As for :class:`GemmOp`; ``stage`` is ``ff``, ``bp`` (the gradient of the operation) or ``wu``
        (a parameter gradient that is not a GEMM: bias, embedding table, normalisation affine without
        an input gradient).
    kind : str
        One of ``elementwise``, ``activation``, ``normalisation``, ``softmax``, ``pooling``,
        ``reduction``, ``embedding``, ``bias``, ``loss``.
    elements : int
        Elements processed: the larger of the output and the activation input (a pooling or a
        reduction reads more than it writes); the output for an embedding lookup.
    op : str
        The operator it came from (``aten.relu_``, an ONNX op type, ...), for reference.
    """

    type: ClassVar[str] = "elementwise"
    name: str
    layer: str
    stage: str
    kind: str
    elements: int
    op: str = ""

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_name(self.layer, "layer")
        _check_choice("stage", self.stage, GEMM_STAGES)
        _check_choice("kind", self.kind, VECTOR_KINDS)
        _check_int("elements", self.elements, minimum=0)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MaskOp:
    """Generation of one N:M compressed copy of a weight (top-n of every m magnitudes).

    One per pruned weight for ``srste`` (the forward copy, groups along C_in); two for ``bdwp`` (also
    the backward copy, groups along C_out). Scheduled right after the weight's update, so the copies
    are ready for the next iteration ("pre-generation").
    """

    type: ClassVar[str] = "mask"
    name: str
    layer: str
    param: str
    elements: int
    n: int
    m: int
    along: str
    copy: str
    stage: str = "prune"

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_name(self.param, "param")
        _check_int("elements", self.elements)
        _check_nm(self.n, self.m)
        _check_choice("along", self.along, ("C_in", "C_out"))
        _check_choice("copy", self.copy, ("ff", "bp"))
        _check_choice("stage", self.stage, ("prune",))


@dataclasses.dataclass(frozen=True, kw_only=True)
class UpdateOp:
    """Optimizer step of one trainable parameter (SGD with momentum: ``v = mu v + g; w -= lr v``)."""

    type: ClassVar[str] = "update"
    name: str
    layer: str
    param: str
    elements: int
    optimizer: str = "sgd_momentum"
    stage: str = "update"

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_name(self.param, "param")
        _check_int("elements", self.elements)
        _check_choice("optimizer", self.optimizer, ("sgd_momentum",))
        _check_choice("stage", self.stage, ("update",))


Op = GemmOp | ElementwiseOp | MaskOp | UpdateOp
_OP_TYPES: dict[str, type] = {cls.type: cls for cls in (GemmOp, ElementwiseOp, MaskOp, UpdateOp)}


# ---------------------------------------------------------------------------------------------
# forward-pass records from which the iteration is assembled


@dataclasses.dataclass(frozen=True, kw_only=True)
class Layer:
    """A GEMM of the forward pass, with what is needed to derive its FF, BP and WU products.

    Attributes
    ----------
    name : str
        Unique layer name (the module path of the weight for torch models).
    kind : str
        ``conv``, ``conv_transpose``, ``linear`` (operand B is a parameter) or ``matmul`` (operand B
        is an activation or a constant, never compressed).
    rows : int
        ``M`` of the forward product: batch x output pixels for a convolution (input pixels for a
        transposed one), batch x tokens for a linear layer, per-product rows for a matmul.
    c_in, c_out : int
        Input and output channels (all groups together); for a matmul ``K`` and ``N``.
    kernel : tuple of int
        Spatial kernel size (empty for linear and matmul).
    groups : int
        Convolution groups (``c_in`` for depthwise); for a matmul the number of independent products.
    weight, bias : str or None
        Parameter names of the weight (``B``) and bias; ``None`` for a matmul / no bias.
    grad_a, grad_b : bool
        Whether operand A (the activation) and operand B (weight or second activation) need a
        gradient: BP exists iff ``grad_a``, WU (or the second BP of a matmul) iff ``grad_b``.
    b_const : bool
        Matmul only: operand B is a constant (a buffer), not an activation.
    nm : tuple of int or None
        Per-layer N:M overriding the workload's (e.g. from a SCALE-Sim sparsity column).
    batch : int
        Batch size contained in ``rows``.
    in_spatial, out_spatial, stride, padding, dilation : tuple of int
        Convolution geometry (unpadded input size; empty for other kinds).
    """

    name: str
    kind: str
    rows: int
    c_in: int
    c_out: int
    kernel: tuple[int, ...] = ()
    groups: int = 1
    weight: str | None = None
    bias: str | None = None
    grad_a: bool = True
    grad_b: bool = True
    b_const: bool = False
    nm: tuple[int, int] | None = None
    batch: int = 1
    in_spatial: tuple[int, ...] = ()
    out_spatial: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_choice("kind", self.kind, LAYER_KINDS)
        for field in ("rows", "c_in", "c_out", "groups", "batch"):
            _check_int(f"{self.name}: {field}", getattr(self, field))
        for field in ("kernel", "in_spatial", "out_spatial", "stride", "dilation"):
            _check_int_tuple(f"{self.name}: {field}", getattr(self, field), minimum=1)
        _check_int_tuple(f"{self.name}: padding", self.padding, minimum=0)
        if self.c_in % self.groups or self.c_out % self.groups:
            raise UsageError(
                f"{self.name}: c_in={self.c_in} and c_out={self.c_out} must be multiples of groups={self.groups}"
            )
        if (self.kind == "matmul") != (self.weight is None):
            raise UsageError(
                f"{self.name}: a {self.kind!r} layer {'has no' if self.weight is None else 'has a'} weight"
            )
        if self.kind == "matmul" and self.bias is not None:
            raise UsageError(f"{self.name}: a matmul has no bias")
        if self.nm is not None:
            _check_nm(*self.nm)

    @property
    def window(self) -> int:
        """Kernel positions ``kh * kw`` (1 for linear and matmul)."""
        return math.prod(self.kernel)

    @property
    def ff_shape(self) -> tuple[int, int, int, int]:
        """``(M, N, K, count)`` of the forward product."""
        g = self.groups
        if self.kind == "conv_transpose":
            return self.rows, self.c_out // g * self.window, self.c_in // g, g
        return self.rows, self.c_out // g, self.c_in // g * self.window, g

    @property
    def weight_elements(self) -> int:
        """Elements of the weight: ``C_out * C_in / g * kh * kw``."""
        return self.c_out * self.c_in // self.groups * self.window

    @property
    def output_elements(self) -> int:
        """Elements of the forward output (``rows * C_out``; a transposed convolution's output pixels)."""
        if self.kind == "conv_transpose" and self.out_spatial:
            return self.batch * math.prod(self.out_spatial) * self.c_out
        return self.rows * self.c_out

    @property
    def macs(self) -> int:
        """Forward MACs."""
        m, n, k, count = self.ff_shape
        return m * n * k * count

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, kw_only=True)
class VectorLayer:
    """A non-GEMM operation of the forward pass.

    Attributes
    ----------
    name : str
        Unique name.
    kind : str
        See :class:`ElementwiseOp`.
    elements : int
        Elements of the forward operation; its gradient is counted with the same number.
    op : str
        Source operator, for reference.
    grad : bool
        A gradient flows through it to an activation input: a ``bp`` counterpart exists.
    param_grad : bool
        It consumes a trainable parameter (normalisation affine, embedding table): when ``grad`` is
        false the parameter gradient is a ``wu`` counterpart of the same element count.
    params : tuple of str
        Parameters it consumes (they are updated after its backward).
    """

    name: str
    kind: str
    elements: int
    op: str = ""
    grad: bool = True
    param_grad: bool = False
    params: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_choice("kind", self.kind, VECTOR_KINDS)
        _check_int("elements", self.elements, minimum=0)


# ---------------------------------------------------------------------------------------------
# the workload


@dataclasses.dataclass(frozen=True, kw_only=True)
class Workload:
    """The operations of one training iteration, in a valid execution order.

    Order: the forward operations as traced, the loss, then the backward pass layer by layer in
    reverse; right after the backward of the first (forward-order) use of a parameter come its update
    and, for pruned weights, its mask generation for the next iteration.

    Attributes
    ----------
    name : str
        Model name.
    method : str
        ``dense``, ``srste`` or ``bdwp``.
    n, m : int
        Default N:M of the method (kept for every method; unused by ``dense``).
    batch : int
        Batch size.
    layers : tuple of Layer
        The GEMM layers of the forward pass (geometry for exporters and schedulers).
    ops : tuple of GemmOp, ElementwiseOp, UpdateOp and MaskOp
        The iteration.
    """

    name: str
    method: str
    n: int
    m: int
    batch: int
    layers: tuple[Layer, ...]
    ops: tuple[Op, ...]

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_choice("method", self.method, METHODS)
        _check_nm(self.n, self.m)
        _check_int("batch", self.batch)
        names = Counter(op.name for op in self.ops)
        dup = [k for k, v in names.items() if v > 1]
        if dup:
            raise UsageError(f"op names must be unique, {dup[0]!r} appears {names[dup[0]]} times")

    # -- selections ------------------------------------------------------------------------
    @property
    def gemms(self) -> tuple[GemmOp, ...]:
        """The GEMM operations, in order."""
        return tuple(op for op in self.ops if isinstance(op, GemmOp))

    @property
    def vector_ops(self) -> tuple[ElementwiseOp | MaskOp | UpdateOp, ...]:
        """Every non-GEMM operation, in order."""
        return tuple(op for op in self.ops if not isinstance(op, GemmOp))

    def op(self, name: str) -> Op:
        """The operation called ``name``."""
        for op in self.ops:
            if op.name == name:
                return op
        raise UsageError(f"no operation named {name!r} in workload {self.name!r}")

    # -- totals ----------------------------------------------------------------------------
    def macs(self, stage: str | None = None) -> int:
        """Dense GEMM MACs of one stage (``ff``, ``bp``, ``wu``) or of the whole iteration."""
        if stage is not None:
            _check_choice("stage", stage, GEMM_STAGES)
        return sum(g.macs for g in self.gemms if stage in (None, g.stage))

    def useful_macs(self, stage: str | None = None) -> int:
        """MACs left after skipping the pruned weights."""
        if stage is not None:
            _check_choice("stage", stage, GEMM_STAGES)
        return sum(g.useful_macs for g in self.gemms if stage in (None, g.stage))

    def macs_by_stage(self) -> dict[str, int]:
        """``{"ff": ..., "bp": ..., "wu": ...}`` dense MACs."""
        return {s: self.macs(s) for s in GEMM_STAGES}

    def useful_macs_by_stage(self) -> dict[str, int]:
        """``{"ff": ..., "bp": ..., "wu": ...}`` MACs after skipping pruned weights."""
        return {s: self.useful_macs(s) for s in GEMM_STAGES}

    @property
    def ideal_speedup(self) -> float:
        """Dense MACs over useful MACs: the speed-up of a perfect N:M engine, non-GEMM work ignored."""
        useful = self.useful_macs()
        return self.macs() / useful if useful else 1.0

    def elements_by_kind(self) -> dict[str, int]:
        """Non-GEMM elements per kind (``mask`` and ``update`` included), all stages together."""
        totals: dict[str, int] = {}
        for op in self.vector_ops:
            kind = op.kind if isinstance(op, ElementwiseOp) else op.type
            totals[kind] = totals.get(kind, 0) + op.elements
        return totals

    @property
    def trainable_parameters(self) -> int:
        """Elements updated by the optimizer."""
        return sum(op.elements for op in self.ops if isinstance(op, UpdateOp))

    def layer_macs(self) -> dict[str, dict[str, int]]:
        """Per layer, dense MACs per stage: ``{layer: {"ff": .., "bp": .., "wu": ..}}``."""
        table: dict[str, dict[str, int]] = {}
        for g in self.gemms:
            row = table.setdefault(g.layer, dict.fromkeys(GEMM_STAGES, 0))
            row[g.stage] += g.macs
        return table

    def summary(self) -> dict[str, Any]:
        """Totals as plain numbers (what ``to_table`` prints at the bottom)."""
        return {
            "name": self.name,
            "method": self.method,
            "nm": f"{self.n}:{self.m}" if self.method != "dense" else None,
            "batch": self.batch,
            "gemm_layers": len(self.layers),
            "macs": self.macs_by_stage(),
            "useful_macs": self.useful_macs_by_stage(),
            "total_macs": self.macs(),
            "total_useful_macs": self.useful_macs(),
            "ideal_speedup": round(self.ideal_speedup, 4),
            "elements": self.elements_by_kind(),
            "trainable_parameters": self.trainable_parameters,
        }

    def to_table(self, *, max_rows: int | None = None) -> str:
        """A fixed-width text table: one row per GEMM layer, then totals.

        Parameters
        ----------
        max_rows : int, optional
            Show at most this many layer rows (the totals always cover every layer).
        """
        if max_rows is not None:
            _check_int("max_rows", max_rows, minimum=0)
        ff_ops = {g.layer: g for g in self.gemms if g.stage == "ff"}
        bp_nm = {g.layer: g.nm for g in self.gemms if g.stage == "bp" and g.nm is not None}
        header = ("layer", "FF M x N x K (xcount)", "FF MACs", "BP MACs", "WU MACs", "FF N:M", "BP N:M")
        rows: list[tuple[str, ...]] = []
        for layer, macs in self.layer_macs().items():
            ff = ff_ops.get(layer)
            shape = f"{ff.m} x {ff.n} x {ff.k}" + (f" (x{ff.count})" if ff.count > 1 else "") if ff else "-"
            rows.append(
                (
                    layer,
                    shape,
                    f"{macs['ff']:,}",
                    f"{macs['bp']:,}" if macs["bp"] else "-",
                    f"{macs['wu']:,}" if macs["wu"] else "-",
                    f"{ff.nm[0]}:{ff.nm[1]}" if ff is not None and ff.nm else "dense",
                    "{}:{}".format(*bp_nm[layer]) if layer in bp_nm else ("dense" if macs["bp"] else "-"),
                )
            )
        hidden = 0
        if max_rows is not None and len(rows) > max_rows:
            hidden = len(rows) - max_rows
            rows = rows[:max_rows]
        widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
        right = {2, 3, 4}

        def fmt(r: tuple[str, ...]) -> str:
            return "  ".join(
                c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )

        lines = [fmt(header), "  ".join("-" * w for w in widths)]
        lines += [fmt(r) for r in rows]
        if hidden:
            lines.append(f"... {hidden} more layers")
        s = self.summary()
        nm = f" {s['nm']}" if s["nm"] else ""
        lines.append("")
        lines.append(f"{self.name}: method {self.method}{nm}, batch {self.batch}, {len(self.layers)} GEMM layers")
        for stage in GEMM_STAGES:
            lines.append(f"  {stage.upper()} MACs {s['macs'][stage]:>20,}   useful {s['useful_macs'][stage]:>20,}")
        lines.append(f"  total   {s['total_macs']:>20,}   useful {s['total_useful_macs']:>20,}")
        lines.append(f"  ideal speed-up over dense {s['ideal_speedup']:.3f}x")
        elems = ", ".join(f"{k} {v:,}" for k, v in sorted(s["elements"].items()))
        lines.append(f"  non-GEMM elements: {elems}")
        return "\n".join(lines)

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (``from_dict`` inverts it; ``summary`` is informational)."""
        ops = []
        for op in self.ops:
            d = {"type": op.type, **dataclasses.asdict(op)}
            ops.append(d)
        return {
            "format": _FORMAT,
            "name": self.name,
            "method": self.method,
            "n": self.n,
            "m": self.m,
            "batch": self.batch,
            "layers": [layer.to_dict() for layer in self.layers],
            "ops": ops,
            "summary": self.summary(),
        }

    def to_json(self, **kwargs: Any) -> str:
        """JSON text of :meth:`to_dict`; keyword arguments go to :func:`json.dumps`."""
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild a workload from :meth:`to_dict` output.

        Raises
        ------
        trainforge.errors.UsageError
            Not a workload dict, an unknown op type or an invalid field.
        """
        if not isinstance(data, Mapping) or data.get("format") != _FORMAT:
            raise UsageError(f"not a workload dict: expected format {_FORMAT!r}")
        ops: list[Op] = []
        for raw in data["ops"]:
            raw = dict(raw)
            kind = raw.pop("type", None)
            if kind not in _OP_TYPES:
                raise UsageError(f"unknown op type {kind!r}; valid: {', '.join(_OP_TYPES)}")
            ops.append(_build(_OP_TYPES[kind], raw))
        layers = tuple(_build(Layer, dict(raw)) for raw in data["layers"])
        return cls(
            name=data["name"],
            method=data["method"],
            n=data["n"],
            m=data["m"],
            batch=data["batch"],
            layers=layers,
            ops=tuple(ops),
        )

    @classmethod
    def from_json(cls, text: str) -> Self:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))


def _build(cls: type, raw: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise UsageError(f"unknown field {unknown[0]!r} for {cls.__name__}; valid: {', '.join(sorted(names))}")
    for key, value in raw.items():
        if isinstance(value, list):
            raw[key] = tuple(value)
    try:
        return cls(**raw)
    except TypeError as exc:
        raise UsageError(f"{cls.__name__}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# assembling the iteration from the forward pass


def _sparsity(
    layer: Layer, method: str, n: int, m: int, dense: Collection[str]
) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    """N:M of the FF and BP copies of ``layer``'s weight under ``method`` (None: dense).

    A copy is pruned only when its grouped dimension (C_in / g for FF, C_out / g for BP) is a multiple
    of m; otherwise that copy stays dense (e.g. an RGB first layer, a 10-class classifier's BP).
    """
    if method == "dense" or layer.kind == "matmul" or layer.name in dense:
        return None, None
    nm = layer.nm if layer.nm is not None else (n, m)
    group_m = nm[1]
    ff = nm if (layer.c_in // layer.groups) % group_m == 0 else None
    bp = None
    if method == "bdwp" and layer.grad_a and (layer.c_out // layer.groups) % group_m == 0:
        bp = nm
    return ff, bp


def assemble_workload(
    forward: Iterable[Layer | VectorLayer],
    *,
    name: str,
    method: str = "bdwp",
    n: int = 2,
    m: int = 8,
    batch: int = 1,
    params: Mapping[str, tuple[int, bool]] | None = None,
    dense_layers: Collection[str] = (),
) -> Workload:
    """Build the iteration from the forward pass (used by :func:`workload` and the importers).

    Parameters
    ----------
    forward : iterable of Layer and VectorLayer
        The forward pass in execution order.
    name : str
        Workload name.
    method : {"dense", "srste", "bdwp"}
        Which weight copies are N:M compressed: none; the FF copy along C_in; the FF copy along C_in
        and the BP copy along C_out. WU is always dense.
    n, m : int
        Default N:M (a :class:`Layer` may carry its own).
    batch : int
        Batch size (recorded).
    params : mapping, optional
        ``{parameter: (elements, trainable)}``; by default derived from the layers' weights and biases.
    dense_layers : collection of str
        Layers kept dense whatever the method (e.g. the first convolution).

    Raises
    ------
    trainforge.errors.UsageError
        Invalid method, N:M, batch, duplicate layer names or an unknown name in ``dense_layers``.
    """
    _check_choice("method", method, METHODS)
    _check_nm(n, m)
    _check_int("batch", batch)
    _check_name(name)
    items = list(forward)
    for item in items:
        if not isinstance(item, Layer | VectorLayer):
            raise UsageError(f"forward items must be Layer or VectorLayer, not {type(item).__name__}")
    counts = Counter(item.name for item in items)
    dup = [k for k, v in counts.items() if v > 1]
    if dup:
        raise UsageError(f"forward item names must be unique, {dup[0]!r} appears {counts[dup[0]]} times")
    if isinstance(dense_layers, str):
        raise UsageError(f"dense_layers must be a collection of layer names, not the string {dense_layers!r}")
    layer_names = [item.name for item in items if isinstance(item, Layer)]
    unknown = sorted(set(dense_layers) - set(layer_names))
    if unknown:
        shown = ", ".join(layer_names[:8]) + (", ..." if len(layer_names) > 8 else "")
        raise UsageError(f"dense_layers names unknown layer {unknown[0]!r}; layers are: {shown}")

    if params is None:
        derived: dict[str, tuple[int, bool]] = {}
        for item in items:
            if isinstance(item, Layer) and item.weight is not None:
                derived.setdefault(item.weight, (item.weight_elements, item.grad_b))
                if item.bias is not None:
                    derived.setdefault(item.bias, (item.c_out, item.grad_b))
        params = derived

    # which parameter is used first where, and which weight copies are pruned
    first_use: dict[str, int] = {}
    owner: dict[str, str] = {}
    masks: dict[str, dict[str, tuple[tuple[int, int], str, int]]] = {}
    sparsity: dict[str, tuple[tuple[int, int] | None, tuple[int, int] | None]] = {}
    for idx, item in enumerate(items):
        used = (item.weight, item.bias) if isinstance(item, Layer) else item.params
        for p in used:
            if p is not None:
                first_use.setdefault(p, idx)
                owner.setdefault(p, item.name)
        if isinstance(item, Layer):
            ff_nm, bp_nm = _sparsity(item, method, n, m, dense_layers)
            sparsity[item.name] = (ff_nm, bp_nm)
            if item.weight is not None and item.grad_b:
                copies = masks.setdefault(item.weight, {})
                if ff_nm is not None:
                    copies.setdefault("ff", (ff_nm, "C_in", item.weight_elements))
                if bp_nm is not None:
                    copies.setdefault("bp", (bp_nm, "C_out", item.weight_elements))

    ops: list[Op] = []
    # forward
    for item in items:
        if isinstance(item, Layer):
            ops.extend(_ff_ops(item, sparsity[item.name][0]))
        else:
            ops.append(
                ElementwiseOp(
                    name=f"{item.name}:ff",
                    layer=item.name,
                    stage="ff",
                    kind=item.kind,
                    elements=item.elements,
                    op=item.op,
                )
            )
    # backward, updates and mask generation
    for idx in range(len(items) - 1, -1, -1):
        item = items[idx]
        if isinstance(item, Layer):
            ops.extend(_backward_ops(item, sparsity[item.name][1]))
        elif item.grad or item.param_grad:
            stage = "bp" if item.grad else "wu"
            ops.append(
                ElementwiseOp(
                    name=f"{item.name}:{stage}",
                    layer=item.name,
                    stage=stage,
                    kind=item.kind,
                    elements=item.elements,
                    op=item.op,
                )
            )
        for p in sorted((p for p, i in first_use.items() if i == idx), key=lambda p: (p not in masks, p)):
            elements, trainable = params.get(p, (0, False))
            if not trainable or elements <= 0:
                continue
            ops.append(UpdateOp(name=f"{p}:update", layer=owner[p], param=p, elements=elements))
            for copy, (nm, along, w_elems) in masks.get(p, {}).items():
                ops.append(
                    MaskOp(
                        name=f"{p}:prune:{copy}",
                        layer=owner[p],
                        param=p,
                        elements=w_elems,
                        n=nm[0],
                        m=nm[1],
                        along=along,
                        copy=copy,
                    )
                )
    return Workload(
        name=name,
        method=method,
        n=n,
        m=m,
        batch=batch,
        layers=tuple(item for item in items if isinstance(item, Layer)),
        ops=tuple(ops),
    )


def _ff_ops(layer: Layer, nm: tuple[int, int] | None) -> list[Op]:
    m_, n_, k_, count = layer.ff_shape
    if layer.kind == "matmul":
        b_role = "constant" if layer.b_const else "activation"
        return [
            GemmOp(
                name=f"{layer.name}:ff",
                layer=layer.name,
                stage="ff",
                m=m_,
                n=n_,
                k=k_,
                count=count,
                a_role="activation",
                b_role=b_role,
                out_role="output",
            )
        ]
    ops: list[Op] = [
        GemmOp(
            name=f"{layer.name}:ff",
            layer=layer.name,
            stage="ff",
            m=m_,
            n=n_,
            k=k_,
            count=count,
            a_role="activation",
            b_role="weight",
            out_role="output",
            nm=nm,
            sparse_along="C_in" if nm else None,
        )
    ]
    if layer.bias is not None:
        ops.append(
            ElementwiseOp(
                name=f"{layer.name}:bias:ff",
                layer=layer.name,
                stage="ff",
                kind="bias",
                elements=layer.output_elements,
                op="bias add",
            )
        )
    return ops


def _backward_ops(layer: Layer, bp_nm: tuple[int, int] | None) -> list[Op]:
    m_, n_, k_, count = layer.ff_shape
    ops: list[Op] = []
    if layer.kind == "matmul":
        if layer.grad_a:
            ops.append(
                GemmOp(
                    name=f"{layer.name}:bp:a",
                    layer=layer.name,
                    stage="bp",
                    m=m_,
                    n=k_,
                    k=n_,
                    count=count,
                    a_role="output_gradient",
                    b_role="constant" if layer.b_const else "activation",
                    out_role="input_gradient",
                )
            )
        if layer.grad_b and not layer.b_const:
            ops.append(
                GemmOp(
                    name=f"{layer.name}:bp:b",
                    layer=layer.name,
                    stage="bp",
                    m=k_,
                    n=n_,
                    k=m_,
                    count=count,
                    a_role="activation",
                    b_role="output_gradient",
                    out_role="input_gradient",
                )
            )
        return ops
    if layer.grad_a:
        ops.append(
            GemmOp(
                name=f"{layer.name}:bp",
                layer=layer.name,
                stage="bp",
                m=m_,
                n=k_,
                k=n_,
                count=count,
                a_role="output_gradient",
                b_role="weight",
                out_role="input_gradient",
                nm=bp_nm,
                sparse_along="C_out" if bp_nm else None,
            )
        )
    if layer.grad_b:
        ops.append(
            GemmOp(
                name=f"{layer.name}:wu",
                layer=layer.name,
                stage="wu",
                m=n_,
                n=k_,
                k=m_,
                count=count,
                a_role="output_gradient",
                b_role="activation",
                out_role="weight_gradient",
            )
        )
        if layer.bias is not None:
            ops.append(
                ElementwiseOp(
                    name=f"{layer.name}:bias:wu",
                    layer=layer.name,
                    stage="wu",
                    kind="bias",
                    elements=layer.output_elements,
                    op="bias gradient (sum over rows)",
                )
            )
    return ops


# ---------------------------------------------------------------------------------------------
# tracing a torch model

# aten operators that move or describe data without arithmetic: not counted
_IGNORED = frozenset(
    [
        "view",
        "_unsafe_view",
        "reshape",
        "_reshape_alias",
        "t",
        "transpose",
        "permute",
        "expand",
        "expand_as",
        "unsqueeze",
        "squeeze",
        "slice",
        "select",
        "split",
        "split_with_sizes",
        "chunk",
        "unbind",
        "alias",
        "detach",
        "as_strided",
        "clone",
        "contiguous",
        "_to_copy",
        "copy",
        "copy_",
        "empty",
        "empty_like",
        "empty_strided",
        "zeros",
        "zeros_like",
        "ones",
        "ones_like",
        "full",
        "full_like",
        "arange",
        "lift_fresh",
        "lift_fresh_copy",
        "scalar_tensor",
        "cat",
        "stack",
        "new_empty",
        "new_empty_strided",
        "new_zeros",
        "new_ones",
        "new_full",
        "fill",
        "fill_",
        "zero",
        "zero_",
        "_local_scalar_dense",
        "flatten",
        "unflatten",
        "constant_pad_nd",
        "pad",
        "index",
        "index_select",
        "gather",
        "repeat",
        "roll",
        "narrow",
        "diagonal",
        "tril",
        "triu",
        "unfold",
        "im2col",
        "col2im",
        "pixel_shuffle",
        "pixel_unshuffle",
        "channel_shuffle",
        "set_",
        "resize_",
        "item",
        "lift",
        "view_as_real",
        "view_as_complex",
        "_assert_async",
        "_assert_tensor_metadata",
        "sym_size",
        "sym_stride",
        "sym_numel",
        "sym_storage_offset",
        "_to_dense",
        "masked_select",
        "nonzero",
        "bernoulli",
        "bernoulli_",
        "uniform_",
        "normal_",
        "rand",
        "randn",
        "randint",
        "randperm",
    ]
)
_ACTIVATIONS = frozenset(
    [
        "relu",
        "gelu",
        "silu",
        "sigmoid",
        "tanh",
        "hardtanh",
        "hardswish",
        "hardsigmoid",
        "leaky_relu",
        "elu",
        "selu",
        "celu",
        "mish",
        "softplus",
        "threshold",
        "relu6",
        "prelu",
        "_prelu_kernel",
        "glu",
        "log_sigmoid_forward",
        "logsigmoid",
    ]
)
_NORMS = frozenset(
    [
        "native_batch_norm",
        "_native_batch_norm_legit",
        "_native_batch_norm_legit_no_training",
        "_native_batch_norm_legit_functional",
        "_batch_norm_with_update",
        "_batch_norm_no_update",
        "_batch_norm_with_update_functional",
        "native_layer_norm",
        "native_group_norm",
        "_fused_rms_norm",
        "rms_norm",
    ]
)
_SOFTMAX = frozenset(["_softmax", "_log_softmax", "_safe_softmax", "softmax", "log_softmax"])
_POOLS = frozenset(
    [
        "max_pool1d",
        "max_pool2d",
        "max_pool3d",
        "max_pool2d_with_indices",
        "max_pool3d_with_indices",
        "avg_pool1d",
        "avg_pool2d",
        "avg_pool3d",
        "adaptive_avg_pool1d",
        "adaptive_avg_pool2d",
        "adaptive_avg_pool3d",
        "_adaptive_avg_pool2d",
        "_adaptive_avg_pool3d",
        "adaptive_max_pool1d",
        "adaptive_max_pool2d",
        "adaptive_max_pool3d",
    ]
)
_REDUCTIONS = frozenset(
    [
        "mean",
        "sum",
        "amax",
        "amin",
        "max",
        "min",
        "var",
        "std",
        "var_mean",
        "std_mean",
        "norm",
        "linalg_vector_norm",
        "prod",
    ]
)
_SDPA = frozenset(
    [
        "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_cudnn_attention",
        "_scaled_dot_product_fused_attention_overrideable",
    ]
)


def _vector_kind(op: str) -> str:
    if op in _ACTIVATIONS:
        return "activation"
    if op in _NORMS:
        return "normalisation"
    if op in _SOFTMAX:
        return "softmax"
    if op in _POOLS:
        return "pooling"
    if op in _REDUCTIONS:
        return "reduction"
    if op == "embedding":
        return "embedding"
    return "elementwise"


def _layer_name_from_param(param: str) -> str:
    """``layer1.0.conv1.weight`` -> ``layer1.0.conv1``; ``attn.in_proj_weight`` -> ``attn.in_proj``."""
    head, _, leaf = param.rpartition(".")
    if leaf == "weight":
        return head or param
    stem = re.sub(r"_?weight$", "", leaf)
    stem = stem or leaf
    return f"{head}.{stem}" if head else stem


class _Operand(NamedTuple):
    """A GEMM operand as the tracer sees it: its matrix shape and where it comes from."""

    rows: int
    cols: int
    act: bool  # depends on the model input
    grad: bool  # requires a gradient
    srcs: frozenset[str]  # parameters it is computed from (for non-activations)


class _Namer:
    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()

    def __call__(self, base: str) -> str:
        base = base.replace(":", "_").replace(",", "_") or "op"
        self.seen[base] += 1
        k = self.seen[base]
        return base if k == 1 else f"{base}#{k}"


def _make_tracer(
    param_names: dict[int, str], trainable: dict[str, bool], param_numel: dict[str, int], batch: int
) -> Any:
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class _Tracer(TorchDispatchMode):
        """Records GEMMs and non-GEMM work; tracks which tensors depend on the input (activations)."""

        def __init__(self) -> None:
            super().__init__()
            self.info: dict[int, tuple[bool, frozenset[str]]] = {}
            self.keep: list[torch.Tensor] = []
            self.items: list[Layer | VectorLayer] = []
            self.stack: list[tuple[str, bool]] = [("", False)]
            self.name = _Namer()

        # -- tensor bookkeeping ------------------------------------------------------------
        def mark(self, t: torch.Tensor) -> None:
            self.info[id(t)] = (True, frozenset())
            self.keep.append(t)

        def act(self, t: torch.Tensor) -> bool:
            return self._info(t)[0]

        def _info(self, t: torch.Tensor) -> tuple[bool, frozenset[str]]:
            found = self.info.get(id(t))
            if found is not None:
                return found
            p = param_names.get(id(t))
            return (False, frozenset((p,)) if p else frozenset())

        def sources(self, t: torch.Tensor) -> frozenset[str]:
            return self._info(t)[1]

        def here(self, op: str) -> str:
            module, leaf = self.stack[-1]
            if leaf and module:
                return self.name(module)
            return self.name(f"{module}.{op}" if module else op)

        # -- the dispatch hook -------------------------------------------------------------
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            inputs = [a for a in tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)]
            infos = [self._info(a) for a in inputs]
            is_act = any(i[0] for i in infos)
            srcs = frozenset() if is_act else frozenset().union(*(i[1] for i in infos))
            outputs = [o for o in tree_leaves(out) if isinstance(o, torch.Tensor)]
            for o in outputs:
                prev = self.info.get(id(o))
                if prev is not None and prev[0]:
                    continue  # an in-place op on an activation keeps it one
                self.info[id(o)] = (is_act, srcs)
                self.keep.append(o)
            op = func.overloadpacket.__name__
            base = op[:-1] if op.endswith("_") and not op.startswith("_") else op
            self._record(op, base, args, kwargs, inputs, outputs, is_act)
            return out

        # -- classification ----------------------------------------------------------------
        def _record(self, op, base, args, kwargs, inputs, outputs, is_act) -> None:
            if op in ("mm", "addmm", "mv", "addmv"):
                a, b = (args[1], args[2]) if op.startswith("add") else (args[0], args[1])
                bias = args[0] if op.startswith("add") else None
                b_shape = (b.shape[0], 1) if b.dim() == 1 else (b.shape[0], b.shape[1])
                self._gemm(op, self.operand(a, a.shape[0], a.shape[1]), self.operand(b, *b_shape), bias, count=1)
            elif op in ("bmm", "baddbmm"):
                a, b = (args[1], args[2]) if op == "baddbmm" else (args[0], args[1])
                bias = args[0] if op == "baddbmm" else None
                a_op, b_op = self.operand(a, a.shape[1], a.shape[2]), self.operand(b, b.shape[1], b.shape[2])
                self._gemm(op, a_op, b_op, bias, count=a.shape[0])
            elif op == "linear":
                x, w = args[0], args[1]
                bias = args[2] if len(args) > 2 else kwargs.get("bias")
                rows = math.prod(x.shape[:-1])
                x_op, w_op = self.operand(x, rows, x.shape[-1]), self.operand(w, w.shape[1], w.shape[0])
                self._gemm(op, x_op, w_op, bias, count=1)
            elif op == "convolution":
                self._conv(args, outputs[0])
            elif op in _SDPA:
                self._sdpa(op, args)
            elif base in _IGNORED and is_act:
                self._param_copy(op, inputs)
            elif not is_act:
                return
            else:
                self._vector(base, inputs, outputs)

        def _weight_of(self, srcs: frozenset[str]) -> str | None:
            if not srcs:
                return None
            return max(sorted(srcs), key=lambda p: param_numel.get(p, 0))

        def _bias(self, bias, elements: int) -> tuple[str | None, VectorLayer | None]:
            """A parameter bias becomes the layer's bias; an activation (fused residual) an add after it."""
            if bias is None:
                return None, None
            if self.act(bias):
                add = VectorLayer(
                    name=self.here("add"),
                    kind="elementwise",
                    elements=elements,
                    op="aten.add (fused into the GEMM)",
                    grad=True,
                )
                return None, add
            return self._weight_of(self.sources(bias)), None

        def operand(self, t: torch.Tensor, rows: int, cols: int) -> _Operand:
            act, srcs = self._info(t)
            return _Operand(int(rows), int(cols), act, bool(t.requires_grad), srcs)

        def _gemm(self, op: str, a: _Operand, b: _Operand, bias, *, count: int) -> None:
            rows_a, k, n = a.rows, a.cols, b.cols
            if not a.act and not b.act:
                return  # weight-only arithmetic (weight preprocessing): not part of the iteration's GEMMs
            if a.act and b.act:
                self.items.append(
                    Layer(
                        name=self.here(op),
                        kind="matmul",
                        rows=rows_a,
                        c_in=k * count,
                        c_out=n * count,
                        groups=count,
                        grad_a=a.grad,
                        grad_b=b.grad,
                    )
                )
                _, add = self._bias(bias if bias is not None and self.act(bias) else None, rows_a * n * count)
                if add is not None:
                    self.items.append(add)
                return
            # exactly one side is an activation: normalise to X (rows x K) . W^T (K x C_out)
            if a.act:
                x, w, rows, c_in, c_out = a, b, rows_a, k, n
            else:
                x, w, rows, c_in, c_out = b, a, n, k, rows_a
            weight = self._weight_of(w.srcs)
            if weight is None:  # a constant operand (buffer): never compressed, never updated
                self.items.append(
                    Layer(
                        name=self.here(op),
                        kind="matmul",
                        rows=rows,
                        c_in=c_in * count,
                        c_out=c_out * count,
                        groups=count,
                        grad_a=x.grad,
                        grad_b=False,
                        b_const=True,
                    )
                )
                return
            groups = 1
            if count > 1 and param_numel.get(weight, 0) == c_in * c_out:
                rows *= count  # one weight broadcast over the batch: a single product with more rows
            elif count > 1:
                groups = count  # a different weight per product: grouped
            bias_name, add = self._bias(bias, rows * c_out * groups)
            self.items.append(
                Layer(
                    name=self.name(_layer_name_from_param(weight)),
                    kind="linear",
                    rows=rows,
                    c_in=c_in * groups,
                    c_out=c_out * groups,
                    groups=groups,
                    weight=weight,
                    bias=bias_name,
                    grad_a=x.grad,
                    grad_b=trainable.get(weight, False),
                    batch=batch,
                )
            )
            if add is not None:
                self.items.append(add)

        def _conv(self, args, out) -> None:
            x, w, bias, stride, padding, dilation, transposed, _out_pad, groups = args[:9]
            x_act, w_act = self.act(x), self.act(w)
            if not x_act:
                return
            spatial_in = tuple(int(s) for s in x.shape[2:])
            spatial_out = tuple(int(s) for s in out.shape[2:])
            kernel = tuple(int(s) for s in w.shape[2:])
            batch = int(x.shape[0])
            c_in, c_out = int(x.shape[1]), int(out.shape[1])
            rows = batch * math.prod(spatial_in if transposed else spatial_out)
            weight = None if w_act else self._weight_of(self.sources(w))
            if weight is None:
                # dynamic or constant filter: an uncompressed product per group
                self.items.append(
                    Layer(
                        name=self.here("convolution"),
                        kind="matmul",
                        rows=batch * math.prod(spatial_out),
                        c_in=c_in * math.prod(kernel),
                        c_out=c_out,
                        groups=groups,
                        grad_a=x.requires_grad,
                        grad_b=w.requires_grad and w_act,
                        b_const=not w_act,
                    )
                )
                return
            bias_name = None
            if bias is not None:
                bias_name = self._weight_of(self.sources(bias)) if not self.act(bias) else None
            self.items.append(
                Layer(
                    name=self.name(_layer_name_from_param(weight)),
                    kind="conv_transpose" if transposed else "conv",
                    rows=rows,
                    c_in=c_in,
                    c_out=c_out,
                    kernel=kernel,
                    groups=int(groups),
                    weight=weight,
                    bias=bias_name,
                    grad_a=x.requires_grad,
                    grad_b=trainable.get(weight, False),
                    batch=batch,
                    in_spatial=spatial_in,
                    out_spatial=spatial_out,
                    stride=tuple(int(s) for s in stride),
                    padding=tuple(int(s) for s in padding),
                    dilation=tuple(int(s) for s in dilation),
                )
            )

        def _sdpa(self, op: str, args) -> None:
            q, k, v = args[:3]
            count = math.prod(q.shape[:-2])
            seq_q, e = q.shape[-2], q.shape[-1]
            seq_k, ev = k.shape[-2], v.shape[-1]
            base = self.stack[-1][0]
            self.items.append(
                Layer(
                    name=self.name(f"{base}.attention.qk" if base else "attention.qk"),
                    kind="matmul",
                    rows=seq_q,
                    c_in=e * count,
                    c_out=seq_k * count,
                    groups=count,
                    grad_a=q.requires_grad,
                    grad_b=k.requires_grad,
                )
            )
            self.items.append(
                VectorLayer(
                    name=self.name(f"{base}.attention.softmax" if base else "attention.softmax"),
                    kind="softmax",
                    elements=count * seq_q * seq_k,
                    op=f"aten.{op}",
                    grad=q.requires_grad or k.requires_grad,
                )
            )
            self.items.append(
                Layer(
                    name=self.name(f"{base}.attention.av" if base else "attention.av"),
                    kind="matmul",
                    rows=seq_q,
                    c_in=seq_k * count,
                    c_out=ev * count,
                    groups=count,
                    grad_a=q.requires_grad or k.requires_grad,
                    grad_b=v.requires_grad,
                )
            )

        def _param_copy(self, op: str, inputs) -> None:
            """Data movement that places a parameter into an activation (a class token concatenated)."""
            parts = [t for t in inputs if not self.act(t) and any(trainable.get(p) for p in self.sources(t))]
            if not parts:
                return
            params = sorted({p for t in parts for p in self.sources(t)})
            self.items.append(
                VectorLayer(
                    name=self.here(op),
                    kind="elementwise",
                    elements=sum(t.numel() for t in parts),
                    op=f"aten.{op} (parameter copied into an activation)",
                    grad=False,
                    param_grad=True,
                    params=tuple(params),
                )
            )

        def _vector(self, op: str, inputs, outputs) -> None:
            if not outputs:
                return
            kind = _vector_kind(op)
            if kind == "embedding":
                elements = outputs[0].numel()
            else:
                act_in = [t.numel() for t in inputs if self.act(t)]
                elements = max([o.numel() for o in outputs[:1]] + act_in)
            grad = any(t.requires_grad for t in inputs if self.act(t))
            params = sorted({p for t in inputs if not self.act(t) for p in self.sources(t)})
            param_grad = any(trainable.get(p, False) for p in params)
            self.items.append(
                VectorLayer(
                    name=self.here(op),
                    kind=kind,
                    elements=int(elements),
                    op=f"aten.{op}",
                    grad=grad,
                    param_grad=param_grad,
                    params=tuple(params),
                )
            )

    return _Tracer()


def workload(
    model: Any,
    example_input: Any,
    method: str = "bdwp",
    n: int = 2,
    m: int = 8,
    batch: int | None = None,
    *,
    dense_layers: Collection[str] = (),
    input_grad: bool = False,
    name: str | None = None,
    device: str = "meta",
) -> Workload:
    """The operations of one training iteration of ``model``.

    The model runs once in training mode on the meta device (shapes only, so ResNet-50 at 224 x 224
    takes well under a second and any batch size is free); every operation PyTorch dispatches is
    recorded, then the backward pass, the optimizer step and the mask generation are derived.

    Parameters
    ----------
    model : torch.nn.Module
        The network. It is not modified (parameters and buffers are replaced by meta tensors for the
        trace; ``requires_grad=False`` parameters are treated as frozen: no WU, no update).
    example_input : torch.Tensor or tuple of torch.Tensor
        Positional inputs of ``model.forward``; dimension 0 of each is the batch. Integer inputs (token
        ids) are fine.
    method : {"bdwp", "srste", "dense"}
        ``dense``: no compression; ``srste``: the FF weight N:M along C_in; ``bdwp``: the FF weight
        along C_in and the BP weight along C_out. WU is always dense. A copy whose grouped dimension is
        not a multiple of ``m`` stays dense.
    n, m : int
        Keep ``n`` of every ``m`` weights, ``1 <= n < m``.
    batch : int, optional
        Batch size; by default that of ``example_input``.
    dense_layers : collection of str
        Layer names kept dense (e.g. ``{"conv1"}``).
    input_grad : bool
        The floating-point inputs need a gradient, as when ``model`` is one block of a larger network:
        the first layer then has a BP GEMM too. Default ``False``: the input is data, so the first
        layer has no BP.
    name : str, optional
        Workload name; default the model's class name.
    device : {"meta", "cpu"}
        ``meta`` (default) traces without data. ``cpu`` runs the real model on the real example input
        (for models that look at values, e.g. data-dependent control flow); ``batch`` must then be
        ``None`` or the example's batch.

    Returns
    -------
    Workload

    Raises
    ------
    trainforge.errors.UsageError
        Invalid arguments, or a model that cannot run on the meta device (the message says to use
        ``device="cpu"``).
    """
    import torch
    from torch.func import functional_call

    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    _check_choice("method", method, METHODS)
    _check_nm(n, m)
    _check_choice("device", device, ("meta", "cpu"))
    inputs = (example_input,) if isinstance(example_input, torch.Tensor) else example_input
    if not isinstance(inputs, tuple | list) or not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise UsageError(
            f"example_input must be a tensor or a non-empty tuple of tensors, not {type(example_input).__name__}"
        )
    if any(t.dim() == 0 for t in inputs):
        raise UsageError("every example input needs a batch dimension (dimension 0); got a 0-d tensor")
    example_batch = int(inputs[0].shape[0])
    if batch is not None:
        _check_int("batch", batch)
    if not isinstance(input_grad, bool):
        raise UsageError(f"input_grad must be True or False, not {input_grad!r}")
    batch_size = example_batch if batch is None else batch
    if name is None:
        name = type(model).__name__
    _check_name(name)

    named_params = dict(model.named_parameters())
    if device == "meta":
        params = {
            k: torch.empty(p.shape, dtype=p.dtype, device="meta", requires_grad=p.requires_grad)
            for k, p in named_params.items()
        }
        buffers = {k: torch.empty(b.shape, dtype=b.dtype, device="meta") for k, b in model.named_buffers()}
        run_inputs = [torch.empty((batch_size, *t.shape[1:]), dtype=t.dtype, device="meta") for t in inputs]
    else:
        if batch_size != example_batch:
            raise UsageError(
                f"device='cpu' runs the real example input, whose batch is {example_batch}; "
                f"batch={batch} needs device='meta' or an example input of that batch"
            )
        if any(p.is_meta for p in named_params.values()):
            raise UsageError("device='cpu' needs a model with real parameters; this one is on the meta device")
        params = dict(named_params)
        buffers = {k: b.detach().clone() for k, b in model.named_buffers()}
        run_inputs = [t.detach() for t in inputs]
    if input_grad:
        run_inputs = [t.requires_grad_(True) if t.is_floating_point() else t for t in run_inputs]

    param_names = {id(t): k for k, t in params.items()}
    trainable = {k: bool(t.requires_grad) for k, t in params.items()}
    param_numel = {k: t.numel() for k, t in params.items()}
    tracer = _make_tracer(param_names, trainable, param_numel, batch_size)

    modules = dict(model.named_modules())
    handles = []
    for mod_name, module in modules.items():
        leaf = not any(True for _ in module.children())

        def pre(_mod: Any, _args: Any, _name: str = mod_name, _leaf: bool = leaf) -> None:
            tracer.stack.append((_name, _leaf))

        def post(_mod: Any, _args: Any, _out: Any) -> None:
            if len(tracer.stack) > 1:
                tracer.stack.pop()

        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    training = {k: mod.training for k, mod in modules.items()}
    model.train()
    try:
        for t in run_inputs:
            tracer.mark(t)
        with torch.enable_grad(), tracer:
            output = functional_call(model, {**params, **buffers}, tuple(run_inputs))
    except UsageError:
        raise
    except Exception as exc:
        if device == "meta":
            raise UsageError(
                f"{name} could not be traced on the meta device ({type(exc).__name__}: {exc}); "
                "if it reads tensor values, pass device='cpu' with a real example input"
            ) from exc
        raise UsageError(f"{name} failed on its example input: {type(exc).__name__}: {exc}") from exc
    finally:
        for h in handles:
            h.remove()
        for k, mod in modules.items():
            mod.train(training[k])

    from torch.utils._pytree import tree_leaves

    outs = [o for o in tree_leaves(output) if isinstance(o, torch.Tensor) and tracer.act(o) and o.requires_grad]
    items = list(tracer.items)
    if outs:
        items.append(
            VectorLayer(name="loss", kind="loss", elements=sum(o.numel() for o in outs), op="loss and its gradient")
        )
    used = {p for item in items for p in ((item.weight, item.bias) if isinstance(item, Layer) else item.params)}
    param_info = {k: (param_numel[k], trainable[k]) for k in params if k in used}
    return assemble_workload(
        items,
        name=name,
        method=method,
        n=n,
        m=m,
        batch=batch_size,
        params=param_info,
        dense_layers=dense_layers,
    )
