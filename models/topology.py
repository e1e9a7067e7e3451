"""Workload importers and exporters: SCALE-Sim topology CSV (both forms) and ONNX.

SCALE-Sim topology CSV (as its ``topology_utils`` reads it, v2 and v3)
-------------------------------------------------------------------
* The first line is a header and is skipped; every other non-empty line is a layer whose cells are
  separated by commas, and **each row ends with a comma** (SCALE-Sim drops the last cell).
* Conv form: ``Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels,
  Num Filter, Strides, [Sparsity],``. There is no padding: the output is
  ``ceil((IFMAP - Filter + Stride) / Stride)``, so the IFMAP is the padded input. A name containing
  ``DP`` is a depthwise convolution (SCALE-Sim splits it into ``Channels`` single-channel layers of
  ``Num Filter`` filters each). v2 files may carry a separate ``Stride width`` cell; both are read.
* GEMM form (``scale.py -i gemm``): ``Layer Name, M, N, K, [Sparsity],``: output ``M x N``,
  reduction ``K``, i.e. SCALE-Sim's ``ifmap (M x K) . filter (K x N)``.
* Sparsity (v3): ``N:M`` of the filter along its reduction dimension (``1:1`` = dense, the default
  when the cell is absent) -- the same placement as this toolkit's compressed operand ``B``.

Our conventions on top of the format, both read and written here:

* A GEMM-form row named ``<layer>:<stage>`` (``ff``, ``bp``, ``wu``; ``bp:a`` / ``bp:b`` for the two
  input gradients of an activation x activation product) is one GEMM of a training iteration, taken
  literally; ``@<i>`` suffixes number the ``count`` identical products of a grouped GEMM (one row
  each). Any other row is a forward layer, expanded to FF, BP and WU by the sparse-training method.
* Exported conv-form IFMAPs are ``(H_out - 1) * stride + kernel``: the padded extent the convolution
  actually reads, so SCALE-Sim computes exactly our output size and MACs.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from trainforge.errors import UsageError
from trainforge.models.workloads import (
    GEMM_STAGES,
    GemmOp,
    Layer,
    VectorLayer,
    Workload,
    assemble_workload,
)

__all__ = [
    "onnx_workload",
    "parse_scalesim_csv",
    "read_scalesim_csv",
    "to_scalesim_csv",
    "write_scalesim_csv",
]

CONV_HEADER = (
    "Layer name",
    "IFMAP Height",
    "IFMAP Width",
    "Filter Height",
    "Filter Width",
    "Channels",
    "Num Filter",
    "Strides",
)
GEMM_HEADER = ("Layer Name", "M", "N", "K")
_STAGED = re.compile(r"^(?P<layer>.+):(?P<stage>ff|bp|wu)(?::(?P<operand>[ab]))?(?:@(?P<inst>\d+))?$")


# ---------------------------------------------------------------------------------------------
# export


def to_scalesim_csv(
    workload: Workload,
    *,
    form: str = "gemm",
    stages: Sequence[str] = GEMM_STAGES,
    sparsity: bool | None = None,
) -> str:
    """SCALE-Sim topology CSV text of a workload.

    Parameters
    ----------
    workload : Workload
    form : {"gemm", "conv"}
        ``gemm``: one row per GEMM of the chosen stages, named ``<layer>:<stage>``; a GEMM with
        ``count > 1`` becomes ``count`` rows ``<name>@<i>``. ``conv``: one row per forward layer (FF
        only), for SCALE-Sim's default mode; needs batch 1, 1-D or 2-D convolutions with equal strides
        and no dilation, plain or depthwise groups, and no activation x activation products.
    stages : sequence of str
        GEMM form only: which of ``ff``, ``bp``, ``wu`` to write.
    sparsity : bool, optional
        Write the v3 ``Sparsity`` column (``n:m`` or ``1:1``). Default: only if some written GEMM is
        compressed (SCALE-Sim v2 cannot read the column in conv form).

    Raises
    ------
    trainforge.errors.UsageError
        Unknown form or stage, or a layer the conv form cannot express (the message says why).
    """
    if not isinstance(workload, Workload):
        raise UsageError(f"expected a Workload, not {type(workload).__name__}")
    if form not in ("gemm", "conv"):
        raise UsageError(f"form must be 'gemm' or 'conv', not {form!r}")
    if isinstance(stages, str):
        stages = (stages,)
    bad = [s for s in stages if s not in GEMM_STAGES]
    if bad or not stages:
        raise UsageError(f"stages must be a non-empty subset of {', '.join(GEMM_STAGES)}, not {stages!r}")
    if sparsity is not None and not isinstance(sparsity, bool):
        raise UsageError(f"sparsity must be True, False or None, not {sparsity!r}")
    if form == "gemm":
        return _gemm_csv(workload, tuple(stages), sparsity)
    if tuple(stages) != ("ff",) and tuple(stages) != GEMM_STAGES:
        raise UsageError("the conv form describes forward layers only; leave stages at its default or ('ff',)")
    return _conv_csv(workload, sparsity)


def write_scalesim_csv(workload: Workload, path: str | os.PathLike[str], **kwargs: Any) -> Path:
    """Write :func:`to_scalesim_csv` output to ``path`` and return it."""
    path = Path(path)
    path.write_text(to_scalesim_csv(workload, **kwargs))
    return path


def _nm_cell(nm: tuple[int, int] | None) -> str:
    return f"{nm[0]}:{nm[1]}" if nm else "1:1"


def _clean(name: str) -> str:
    return name.replace(",", "_").replace("\n", " ").strip() or "layer"


def _gemm_csv(workload: Workload, stages: tuple[str, ...], sparsity: bool | None) -> str:
    gemms = [g for g in workload.gemms if g.stage in stages]
    if sparsity is None:
        sparsity = any(g.nm for g in gemms)
    header = [*GEMM_HEADER, *(["Sparsity"] if sparsity else [])]
    lines = [", ".join(header) + ","]
    for g in gemms:
        name = _clean(g.name)
        for i in range(g.count):
            cells = [f"{name}@{i}" if g.count > 1 else name, str(g.m), str(g.n), str(g.k)]
            if sparsity:
                cells.append(_nm_cell(g.nm))
            lines.append(", ".join(cells) + ",")
    return "\n".join(lines) + "\n"


def _conv_csv(workload: Workload, sparsity: bool | None) -> str:
    ff = {g.layer: g for g in workload.gemms if g.stage == "ff"}
    if sparsity is None:
        sparsity = any(g.nm for g in ff.values())
    header = [*CONV_HEADER, *(["Sparsity"] if sparsity else [])]
    lines = [", ".join(header) + ","]
    for layer in workload.layers:
        cells = _conv_row(layer)
        if sparsity:
            op = ff.get(layer.name)
            cells.append(_nm_cell(op.nm if op is not None else None))
        lines.append(", ".join(cells) + ",")
    return "\n".join(lines) + "\n"


def _conv_row(layer: Layer) -> list[str]:
    why = f"layer {layer.name!r} cannot be written in SCALE-Sim's conv form"
    name = _clean(layer.name)
    if layer.kind in ("matmul", "conv_transpose"):
        raise UsageError(f"{why}: it is a {layer.kind}; use form='gemm'")
    if layer.kind == "linear":
        if layer.groups != 1:
            raise UsageError(f"{why}: a grouped product; use form='gemm'")
        return [name.replace("DP", "Dp"), str(layer.rows), "1", "1", "1", str(layer.c_in), str(layer.c_out), "1"]
    if layer.batch != 1:
        raise UsageError(f"{why}: SCALE-Sim has no batch dimension (batch={layer.batch}); use form='gemm'")
    if len(layer.kernel) not in (1, 2):
        raise UsageError(f"{why}: a {len(layer.kernel)}-D convolution; use form='gemm'")
    if any(d != 1 for d in layer.dilation):
        raise UsageError(f"{why}: dilation {layer.dilation}; use form='gemm'")
    kernel = layer.kernel if len(layer.kernel) == 2 else (1, *layer.kernel)
    out = layer.out_spatial if len(layer.out_spatial) == 2 else (1, *layer.out_spatial)
    stride = layer.stride if len(layer.stride) == 2 else (1, *layer.stride)
    if len(layer.kernel) == 2 and stride[0] != stride[1]:
        raise UsageError(f"{why}: unequal strides {stride} (SCALE-Sim v3 reads one stride); use form='gemm'")
    s = stride[-1]
    # the padded input extent the convolution reads; with SCALE-Sim's ceil formula it gives `out` exactly
    ifmap = [(o - 1) * st + k for o, st, k in zip(out, stride, kernel, strict=True)]
    if len(layer.kernel) == 1:
        ifmap[0] = 1
    if layer.groups == 1:
        channels, filters = layer.c_in, layer.c_out
        name = name.replace("DP", "Dp")
    elif layer.groups == layer.c_in and layer.c_out % layer.c_in == 0:
        channels, filters = layer.c_in, layer.c_out // layer.c_in
        name = name if "DP" in name else f"{name}_DP"
    else:
        raise UsageError(f"{why}: groups={layer.groups} is neither 1 nor depthwise; use form='gemm'")
    return [name, str(ifmap[0]), str(ifmap[1]), str(kernel[0]), str(kernel[1]), str(channels), str(filters), str(s)]


# ---------------------------------------------------------------------------------------------
# import


def read_scalesim_csv(path: str | os.PathLike[str], **kwargs: Any) -> Workload:
    """:func:`parse_scalesim_csv` of a file; the workload is named after the file by default."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no SCALE-Sim topology file at {str(path)!r}")
    kwargs.setdefault("name", path.stem)
    return parse_scalesim_csv(path.read_text(), **kwargs)


def parse_scalesim_csv(
    text: str,
    *,
    form: str = "auto",
    method: str = "bdwp",
    n: int = 2,
    m: int = 8,
    batch: int = 1,
    input_grad: bool = False,
    dense_layers: Collection[str] = (),
    name: str = "scalesim",
) -> Workload:
    """A workload from SCALE-Sim topology CSV text.

    Forward-layer rows are expanded into a training iteration like :func:`workload` does: FF, BP
    (except for the first row, whose input is data, unless ``input_grad``) and WU, weight update and
    the method's mask generation. A row's ``Sparsity`` cell, when present, sets that layer's N:M
    (``1:1`` keeps it dense); without the cell the layer gets ``n:m``. Rows named
    ``<layer>:<stage>`` (what :func:`to_scalesim_csv` writes in GEMM form) are taken literally as the
    GEMMs of an iteration; the workload then holds only GEMMs.

    Parameters
    ----------
    text : str
        The CSV, header line first.
    form : {"auto", "conv", "gemm"}
        ``auto`` reads ``M, N, K`` in header cells 2-4 as the GEMM form, anything else as conv.
    method, n, m, dense_layers :
        As for :func:`trainforge.models.workloads.workload` (forward-layer rows only).
    batch : int
        Multiplies the rows (``M``) of every forward layer: SCALE-Sim files describe one sample.
    input_grad : bool
        The first layer's input needs a gradient too.
    name : str
        Workload name.

    Raises
    ------
    trainforge.errors.UsageError
        Malformed rows (the message gives the line number and the bad cell), a filter larger than its
        IFMAP, a mix of literal and forward rows, or invalid arguments.
    """
    if not isinstance(text, str):
        raise UsageError(f"text must be a str, not {type(text).__name__}")
    if form not in ("auto", "conv", "gemm"):
        raise UsageError(f"form must be 'auto', 'conv' or 'gemm', not {form!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise UsageError(f"batch must be a positive integer, not {batch!r}")
    lines = [(i + 1, line.strip()) for i, line in enumerate(text.splitlines())]
    lines = [(no, line) for no, line in lines if line]
    if not lines:
        raise UsageError("empty SCALE-Sim topology: expected a header line and at least one layer")
    header = [c.strip().lower() for c in lines[0][1].split(",")]
    if form == "auto":
        form = "gemm" if header[1:4] == ["m", "n", "k"] else "conv"
    rows = [(no, _cells(line)) for no, line in lines[1:]]
    if not rows:
        raise UsageError("SCALE-Sim topology has a header but no layer rows")
    if form == "gemm":
        staged = [bool(_STAGED.match(cells[0])) for _, cells in rows]
        if all(staged):
            if batch != 1:
                raise UsageError("batch applies to forward layers; literal <layer>:<stage> rows are taken as they are")
            return _literal_workload(rows, name=name, n=n, m=m)
        if any(staged):
            no = rows[staged.index(True)][0]
            raise UsageError(
                f"line {no}: mixes literal '<layer>:<stage>' rows with forward-layer rows; use one kind per file"
            )
    if isinstance(dense_layers, str):
        raise UsageError(f"dense_layers must be a collection of layer names, not the string {dense_layers!r}")
    layers: list[Layer] = []
    dense = set(dense_layers)
    seen: dict[str, int] = {}
    for index, (no, cells) in enumerate(rows):
        layer, nm = (_gemm_layer if form == "gemm" else _conv_layer)(no, cells, batch, index == 0 and not input_grad)
        count = seen.get(layer.name, 0) + 1
        seen[layer.name] = count
        if count > 1:
            layer = _renamed(layer, f"{layer.name}#{count}")
        if nm == (1, 1):
            dense.add(layer.name)
        elif nm is not None:
            layer = _with_nm(layer, nm)
        layers.append(layer)
    return assemble_workload(layers, name=name, method=method, n=n, m=m, batch=batch, dense_layers=dense)


def _cells(line: str) -> list[str]:
    cells = [c.strip() for c in line.split(",")]
    while cells and cells[-1] == "":
        cells.pop()
    return cells


def _int(no: int, cells: list[str], i: int, what: str) -> int:
    try:
        value = int(cells[i])
    except IndexError:
        raise UsageError(f"line {no}: missing {what} (cell {i + 1}) in {', '.join(cells)!r}") from None
    except ValueError:
        raise UsageError(f"line {no}: {what} must be an integer, not {cells[i]!r}") from None
    if value < 1:
        raise UsageError(f"line {no}: {what} must be >= 1, not {value}")
    return value


def _sparsity_cell(no: int, cell: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", cell)
    if not match:
        raise UsageError(f"line {no}: sparsity must look like 'N:M' (e.g. 2:4, 1:1 for dense), not {cell!r}")
    n, m = int(match[1]), int(match[2])
    if not 1 <= n <= m:
        raise UsageError(f"line {no}: sparsity {cell!r} needs 1 <= N <= M")
    return (1, 1) if n == m else (n, m)


def _conv_layer(no: int, cells: list[str], batch: int, first: bool) -> tuple[Layer, tuple[int, int] | None]:
    if len(cells) < 8:
        raise UsageError(
            f"line {no}: a conv-form row needs {len(CONV_HEADER)} cells ({', '.join(CONV_HEADER)}), got {len(cells)}"
        )
    name = cells[0] or f"layer{no}"
    h, w, kh, kw, c, f, sh = (_int(no, cells, i, CONV_HEADER[i]) for i in range(1, 8))
    sw, nm = sh, None
    for i in range(8, len(cells)):
        if ":" in cells[i]:
            nm = _sparsity_cell(no, cells[i])
        else:
            sw = _int(no, cells, i, "Stride width")
    if kh > h or kw > w:
        raise UsageError(f"line {no}: filter {kh}x{kw} is larger than the IFMAP {h}x{w}")
    ho, wo = math.ceil((h - kh + sh) / sh), math.ceil((w - kw + sw) / sw)
    depthwise = "DP" in name
    layer = Layer(
        name=name,
        kind="conv",
        rows=batch * ho * wo,
        c_in=c,
        c_out=c * f if depthwise else f,
        kernel=(kh, kw),
        groups=c if depthwise else 1,
        weight=f"{name}.weight",
        grad_a=not first,
        batch=batch,
        in_spatial=(h, w),
        out_spatial=(ho, wo),
        stride=(sh, sw),
        padding=(0, 0),
        dilation=(1, 1),
    )
    return layer, nm


def _gemm_layer(no: int, cells: list[str], batch: int, first: bool) -> tuple[Layer, tuple[int, int] | None]:
    if len(cells) < 4:
        raise UsageError(f"line {no}: a GEMM-form row needs Layer Name, M, N, K; got {', '.join(cells)!r}")
    name = cells[0] or f"layer{no}"
    m_, n_, k_ = (_int(no, cells, i, GEMM_HEADER[i]) for i in range(1, 4))
    nm = _sparsity_cell(no, cells[4]) if len(cells) > 4 else None
    layer = Layer(
        name=name,
        kind="linear",
        rows=batch * m_,
        c_in=k_,
        c_out=n_,
        weight=f"{name}.weight",
        grad_a=not first,
        batch=batch,
    )
    return layer, nm


def _renamed(layer: Layer, name: str) -> Layer:
    return dataclasses.replace(layer, name=name, weight=f"{name}.weight" if layer.weight else None)


def _with_nm(layer: Layer, nm: tuple[int, int]) -> Layer:
    return dataclasses.replace(layer, nm=nm)


def _literal_workload(rows: list[tuple[int, list[str]]], *, name: str, n: int, m: int) -> Workload:
    """Rows ``<layer>:<stage>[:a|b][@i]`` taken as the GEMMs of an iteration."""
    merged: list[dict[str, Any]] = []
    for no, cells in rows:
        match = _STAGED.match(cells[0])
        assert match is not None
        if len(cells) < 4:
            raise UsageError(f"line {no}: a GEMM-form row needs Layer Name, M, N, K; got {', '.join(cells)!r}")
        dims = tuple(_int(no, cells, i, GEMM_HEADER[i]) for i in range(1, 4))
        nm = _sparsity_cell(no, cells[4]) if len(cells) > 4 else (1, 1)
        op_name = cells[0].rsplit("@", 1)[0] if match["inst"] is not None else cells[0]
        last = merged[-1] if merged else None
        if last is not None and last["name"] == op_name and match["inst"] is not None and last["inst"]:
            if (last["dims"], last["nm"]) != (dims, nm):
                raise UsageError(f"line {no}: instance {cells[0]!r} differs in shape or sparsity from the earlier ones")
            last["count"] += 1
            continue
        merged.append(
            {
                "name": op_name,
                "layer": match["layer"],
                "stage": match["stage"],
                "operand": match["operand"],
                "dims": dims,
                "nm": nm,
                "count": 1,
                "inst": match["inst"] is not None,
                "line": no,
            }
        )
    matmul_layers = {r["layer"] for r in merged if r["operand"]}
    ops: list[GemmOp] = []
    for r in merged:
        is_matmul = r["layer"] in matmul_layers
        stage, operand = r["stage"], r["operand"]
        nm = None if r["nm"] == (1, 1) else r["nm"]
        if nm is not None and (is_matmul or stage == "wu"):
            raise UsageError(
                f"line {r['line']}: {r['name']!r} is compressed, but only weight operands of FF and BP GEMMs can be"
            )
        if operand and stage != "bp":
            raise UsageError(f"line {r['line']}: operand suffix ':{operand}' is only valid on bp rows")
        if is_matmul:
            roles = {
                ("ff", None): ("activation", "activation", "output"),
                ("bp", "a"): ("output_gradient", "activation", "input_gradient"),
                ("bp", "b"): ("activation", "output_gradient", "input_gradient"),
            }.get((stage, operand))
            if roles is None:
                raise UsageError(f"line {r['line']}: {r['name']!r}: an activation x activation product has no {stage}")
        else:
            roles = {
                "ff": ("activation", "weight", "output"),
                "bp": ("output_gradient", "weight", "input_gradient"),
                "wu": ("output_gradient", "activation", "weight_gradient"),
            }[stage]
        m_, n_, k_ = r["dims"]
        ops.append(
            GemmOp(
                name=r["name"],
                layer=r["layer"],
                stage=stage,
                m=m_,
                n=n_,
                k=k_,
                count=r["count"],
                a_role=roles[0],
                b_role=roles[1],
                out_role=roles[2],
                nm=nm,
                sparse_along=None if nm is None else ("C_in" if stage == "ff" else "C_out"),
            )
        )
    stages = {(o.layer, o.stage) for o in ops}
    layers = []
    for o in ops:
        if o.stage != "ff":
            continue
        is_matmul = o.layer in matmul_layers
        layers.append(
            Layer(
                name=o.layer,
                kind="matmul" if is_matmul else "linear",
                rows=o.m,
                c_in=o.k * o.count,
                c_out=o.n * o.count,
                groups=o.count,
                weight=None if is_matmul else f"{o.layer}.weight",
                grad_a=(o.layer, "bp") in stages,
                grad_b=is_matmul or (o.layer, "wu") in stages,
                nm=o.nm,
            )
        )
    sparse = [o for o in ops if o.nm]
    method = "bdwp" if any(o.stage == "bp" for o in sparse) else "srste" if sparse else "dense"
    if sparse:
        n, m = sparse[0].nm  # type: ignore[misc]
    return Workload(name=name, method=method, n=n, m=m, batch=1, layers=tuple(layers), ops=tuple(ops))


# ---------------------------------------------------------------------------------------------
# ONNX

_ONNX_ACTIVATIONS = frozenset(
    [
        "Relu",
        "Gelu",
        "Sigmoid",
        "Tanh",
        "Clip",
        "LeakyRelu",
        "HardSwish",
        "HardSigmoid",
        "Elu",
        "Selu",
        "Celu",
        "Softplus",
        "Softsign",
        "Mish",
        "PRelu",
        "ThresholdedRelu",
    ]
)
_ONNX_NORMS = frozenset(
    [
        "BatchNormalization",
        "LayerNormalization",
        "GroupNormalization",
        "InstanceNormalization",
        "RMSNormalization",
        "LpNormalization",
    ]
)
_ONNX_SOFTMAX = frozenset(("Softmax", "LogSoftmax"))
_ONNX_POOLS = frozenset(["MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "GlobalLpPool"])
_ONNX_REDUCTIONS = frozenset(
    [
        "ReduceMean",
        "ReduceSum",
        "ReduceMax",
        "ReduceMin",
        "ReduceProd",
        "ReduceL1",
        "ReduceL2",
        "ReduceSumSquare",
        "ReduceLogSumExp",
    ]
)
_ONNX_IGNORED = frozenset(
    [
        "Reshape",
        "Transpose",
        "Flatten",
        "Squeeze",
        "Unsqueeze",
        "Concat",
        "Slice",
        "Shape",
        "Size",
        "Constant",
        "ConstantOfShape",
        "Identity",
        "Cast",
        "CastLike",
        "Split",
        "Expand",
        "Pad",
        "GatherElements",
        "GatherND",
        "Tile",
        "Range",
        "DepthToSpace",
        "SpaceToDepth",
        "NonZero",
    ]
)
_FLOAT_TYPES = (1, 10, 11, 16)  # FLOAT, FLOAT16, DOUBLE, BFLOAT16


def onnx_workload(
    model: Any,
    *,
    method: str = "bdwp",
    n: int = 2,
    m: int = 8,
    batch: int | None = None,
    input_grad: bool = False,
    dense_layers: Collection[str] = (),
    name: str | None = None,
) -> Workload:
    """The training iteration of an ONNX graph (a forward/inference graph, as exporters write).

    ``Conv``, ``Gemm`` and ``MatMul`` nodes become GEMM layers, with shapes from
    ``onnx.shape_inference``; an operand that is an initializer is a weight (trainable), one computed
    from the graph inputs an activation. Other nodes become non-GEMM work counted by elements
    (activations, normalisations, softmax, pooling, elementwise arithmetic; shape and data-movement
    nodes are not counted; a node whose shapes cannot be inferred is skipped). Float initializers
    are the trainable parameters, except a BatchNormalization's running mean and variance.

    Parameters
    ----------
    model : onnx.ModelProto or path
    method, n, m, dense_layers, input_grad :
        As for :func:`trainforge.models.workloads.workload`.
    batch : int, optional
        Replaces dimension 0 of every graph input (needed when it is symbolic).
    name : str, optional
        Default: the graph's name.

    Raises
    ------
    trainforge.errors.UsageError
        Unreadable model, a symbolic dimension other than the batch, or a GEMM node whose operand
        shapes are unknown.
    """
    import onnx

    if isinstance(model, str | os.PathLike):
        path = Path(model)
        if not path.is_file():
            raise UsageError(f"no ONNX model at {str(path)!r}")
        model = onnx.load(str(path))
    if not isinstance(model, onnx.ModelProto):
        raise UsageError(f"model must be an onnx.ModelProto or a path, not {type(model).__name__}")
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise UsageError(f"batch must be a positive integer, not {batch!r}")
    model_copy = onnx.ModelProto()
    model_copy.CopyFrom(model)
    graph = model_copy.graph
    inits = {t.name: t for t in graph.initializer}
    graph_inputs = [v for v in graph.input if v.name not in inits]
    if not graph_inputs:
        raise UsageError("the ONNX graph has no inputs besides its initializers")
    batches = set()
    for v in graph_inputs:
        dims = v.type.tensor_type.shape.dim
        for i, d in enumerate(dims):
            if i == 0 and batch is not None:
                d.ClearField("dim_param")
                d.dim_value = batch
            elif not d.HasField("dim_value"):
                what = f"symbolic batch dimension {d.dim_param!r}; pass batch=" if i == 0 else f"symbolic dimension {i}"
                raise UsageError(f"ONNX input {v.name!r} has a {what} ({d.dim_param or '?'})")
        if len(dims):
            batches.add(dims[0].dim_value)
    try:
        inferred = onnx.shape_inference.infer_shapes(model_copy, data_prop=True)
    except Exception as exc:
        raise UsageError(f"ONNX shape inference failed: {exc}") from exc
    graph = inferred.graph
    shapes: dict[str, tuple[int, ...] | None] = {}
    for v in (*graph.input, *graph.value_info, *graph.output):
        dims = v.type.tensor_type.shape.dim
        known = all(d.HasField("dim_value") for d in dims) and v.type.tensor_type.HasField("shape")
        shapes[v.name] = tuple(d.dim_value for d in dims) if known else None
    for t in graph.initializer:
        shapes[t.name] = tuple(t.dims)

    bn_stats = {node.input[i] for node in graph.node if node.op_type == "BatchNormalization" for i in (3, 4)}
    params = {k: (math.prod(t.dims), t.data_type in _FLOAT_TYPES and k not in bn_stats) for k, t in inits.items()}
    act: dict[str, bool] = {v.name: True for v in graph_inputs}
    grad: dict[str, bool] = {v.name: input_grad and v.type.tensor_type.elem_type in _FLOAT_TYPES for v in graph_inputs}
    for k in inits:
        act[k] = False
        grad[k] = params[k][1]

    items: list[Layer | VectorLayer] = []
    used: dict[str, int] = {}

    def unique(base: str) -> str:
        base = base.replace(":", "_").replace(",", "_") or "node"
        used[base] = used.get(base, 0) + 1
        return base if used[base] == 1 else f"{base}#{used[base]}"

    def shape(node: Any, value: str) -> tuple[int, ...]:
        s = shapes.get(value)
        if s is None:
            raise UsageError(f"ONNX node {node.name or node.op_type!r}: the shape of {value!r} is unknown")
        return s

    for index, node in enumerate(graph.node):
        ins = [i for i in node.input if i]
        node_act = any(act.get(i, False) for i in ins)
        node_grad = any(grad.get(i, False) for i in ins)
        for o in node.output:
            act[o] = node_act
            grad[o] = node_grad
        label = node.name or f"{node.op_type}_{index}"
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Conv":
            items.extend(_onnx_conv(node, label, attrs, shape, act, grad, inits, unique))
        elif node.op_type in ("Gemm", "MatMul"):
            items.extend(_onnx_gemm(node, label, attrs, shape, act, grad, inits, unique))
        elif not node_act or node.op_type in _ONNX_IGNORED:
            continue
        else:
            item = _onnx_vector(node, label, shapes, act, grad, params, inits, unique)
            if item is not None:
                items.append(item)
    outputs = [o.name for o in graph.output if act.get(o.name) and grad.get(o.name) and shapes.get(o.name)]
    if outputs:
        items.append(
            VectorLayer(
                name="loss",
                kind="loss",
                elements=sum(math.prod(shapes[o] or ()) for o in outputs),
                op="loss and its gradient",
            )
        )
    consumed = {p for it in items for p in ((it.weight, it.bias) if isinstance(it, Layer) else it.params)}
    return assemble_workload(
        items,
        name=name or graph.name or "onnx",
        method=method,
        n=n,
        m=m,
        batch=batch if batch is not None else (min(batches) if batches else 1),
        params={k: v for k, v in params.items() if k in consumed},
        dense_layers=dense_layers,
    )


def _onnx_conv(
    node: Any, label: str, attrs: dict[str, Any], shape: Any, act: dict, grad: dict, inits: dict, unique: Any
) -> list[Layer | VectorLayer]:
    x, w = node.input[0], node.input[1]
    if w not in inits:
        raise UsageError(f"ONNX Conv {label!r}: a weight computed in the graph is not supported (not an initializer)")
    if not act.get(x, False):
        return []
    xs, ws = shape(node, x), shape(node, w)
    ys = shape(node, node.output[0])
    groups = int(attrs.get("group", 1))
    kernel = tuple(int(k) for k in ws[2:])
    nd = len(kernel)
    stride = tuple(int(s) for s in attrs.get("strides", (1,) * nd))
    dilation = tuple(int(d) for d in attrs.get("dilations", (1,) * nd))
    pads = tuple(int(p) for p in attrs.get("pads", (0,) * (2 * nd)))[:nd]
    bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
    return [
        Layer(
            name=unique(label),
            kind="conv",
            rows=xs[0] * math.prod(ys[2:]),
            c_in=xs[1],
            c_out=ys[1],
            kernel=kernel,
            groups=groups,
            weight=w,
            bias=bias if bias in inits else None,
            grad_a=grad.get(x, False),
            grad_b=grad.get(w, False),
            batch=xs[0],
            in_spatial=tuple(xs[2:]),
            out_spatial=tuple(ys[2:]),
            stride=stride,
            padding=pads,
            dilation=dilation,
        )
    ]


def _onnx_gemm(
    node: Any, label: str, attrs: dict[str, Any], shape: Any, act: dict, grad: dict, inits: dict, unique: Any
) -> list[Layer | VectorLayer]:
    a, b = node.input[0], node.input[1]
    a_act, b_act = act.get(a, False), act.get(b, False)
    if not a_act and not b_act:
        return []
    as_, bs = list(shape(node, a)), list(shape(node, b))
    if node.op_type == "Gemm":
        if attrs.get("transA", 0):
            as_ = as_[::-1]
        if attrs.get("transB", 0):
            bs = bs[::-1]
    if len(as_) == 1:
        as_ = [1, *as_]
    if len(bs) == 1:
        bs = [*bs, 1]
    m_, k_, n_ = as_[-2], as_[-1], bs[-1]
    if bs[-2] != k_:
        raise UsageError(f"ONNX {node.op_type} {label!r}: inner dimensions differ ({k_} vs {bs[-2]})")
    a_batch, b_batch = math.prod(as_[:-2]), math.prod(bs[:-2])
    bias = node.input[2] if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2] else None
    extra: list[Layer | VectorLayer] = []
    if bias is not None and act.get(bias, False):
        extra.append(
            VectorLayer(name=unique(f"{label}.add"), kind="elementwise", elements=m_ * n_, op="Gemm C (activation)")
        )
        bias = None
    if a_act and b_act:
        count = max(a_batch, b_batch)
        return [
            Layer(
                name=unique(label),
                kind="matmul",
                rows=m_,
                c_in=k_ * count,
                c_out=n_ * count,
                groups=count,
                grad_a=grad.get(a, False),
                grad_b=grad.get(b, False),
            ),
            *extra,
        ]
    # one side is a weight: normalise to X (rows x K) . W^T (K x C_out)
    if a_act:
        x, w, rows, c_in, c_out, w_batch, x_batch = a, b, m_, k_, n_, b_batch, a_batch
    else:
        x, w, rows, c_in, c_out, w_batch, x_batch = b, a, n_, k_, m_, a_batch, b_batch
    if w not in inits:
        return [
            Layer(
                name=unique(label),
                kind="matmul",
                rows=rows * x_batch,
                c_in=c_in,
                c_out=c_out,
                grad_a=grad.get(x, False),
                grad_b=False,
                b_const=True,
            ),
            *extra,
        ]
    groups = w_batch if w_batch > 1 else 1
    return [
        Layer(
            name=unique(label),
            kind="linear",
            rows=rows * x_batch // groups,
            c_in=c_in * groups,
            c_out=c_out * groups,
            groups=groups,
            weight=w,
            bias=bias if bias in inits else None,
            grad_a=grad.get(x, False),
            grad_b=grad.get(w, False),
            batch=1,
        ),
        *extra,
    ]


def _onnx_vector(
    node: Any, label: str, shapes: dict, act: dict, grad: dict, params: dict, inits: dict, unique: Any
) -> VectorLayer | None:
    op = node.op_type
    ins = [i for i in node.input if i]
    out_shape = shapes.get(node.output[0]) if node.output else None
    if out_shape is None:
        return None
    consumed = tuple(sorted(i for i in ins if i in inits and params.get(i, (0, False))[1]))
    if op == "Gather":
        if node.input[0] in inits and act.get(node.input[1], False):
            return VectorLayer(
                name=unique(label),
                kind="embedding",
                elements=math.prod(out_shape),
                op=op,
                grad=False,
                param_grad=bool(consumed),
                params=consumed,
            )
        return None
    if op in _ONNX_ACTIVATIONS:
        kind = "activation"
    elif op in _ONNX_NORMS:
        kind = "normalisation"
    elif op in _ONNX_SOFTMAX:
        kind = "softmax"
    elif op in _ONNX_POOLS:
        kind = "pooling"
    elif op in _ONNX_REDUCTIONS:
        kind = "reduction"
    else:
        kind = "elementwise"
    act_sizes = [math.prod(shapes[i]) for i in ins if act.get(i, False) and shapes.get(i) is not None]
    return VectorLayer(
        name=unique(label),
        kind=kind,
        elements=max([math.prod(out_shape), *act_sizes]),
        op=op,
        grad=any(grad.get(i, False) for i in ins if act.get(i, False)),
        param_grad=bool(consumed),
        params=consumed,
    )
