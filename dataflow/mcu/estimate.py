"""One training step of a whole network on the MCU cluster: per-layer kernels, cycles, MAC/clk, time.

:func:`estimate` takes a :class:`~trainforge.models.workloads.Workload` (from the zoo, an ONNX file,
a workload JSON or a SCALE-Sim CSV, see :func:`load_workload`) and costs one training step of one
sample (a batch of ``b`` is ``b`` steps):

* the forward step of every GEMM layer, the weight gradient of every *trained* layer and the input
  gradient of every layer above the lowest trained one (``trained="all"`` or ``"last:K"``, the last
  ``K`` GEMM layers in forward order), each autotuned (:mod:`.autotune`);
* optionally (``vector_ops=True``) the non-GEMM work of the same step: activations, normalisation,
  pooling, residual adds, the loss, bias gradients and the SGD-with-momentum update of the trained
  parameters (:func:`~trainforge.dataflow.mcu.transforms.vector_cycles`);
* MAC/clk over the useful GEMM MACs of the step, time at the cluster clock.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainforge.dataflow.mcu.autotune import StepChoice, tune_step
from trainforge.dataflow.mcu.cluster import DTYPES, ClusterConfig
from trainforge.dataflow.mcu.layers import layer_kind, layer_steps
from trainforge.dataflow.mcu.transforms import vector_cycles
from trainforge.errors import UsageError

if TYPE_CHECKING:  # trainforge.models imports torch: only when a workload is actually built or read
    from trainforge.models.workloads import ElementwiseOp, UpdateOp, Workload

__all__ = ["MODEL_ALIASES", "Estimate", "LayerEstimate", "estimate", "load_workload", "trained_layers"]

MODEL_ALIASES = {"dscnn": "ds_cnn", "ds-cnn": "ds_cnn"}
"""Short names accepted for zoo models."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class LayerEstimate:
    """One GEMM layer's steps.

    Attributes
    ----------
    name, kind : str
    steps : tuple of StepChoice
    """

    name: str
    kind: str
    steps: tuple[StepChoice, ...]

    @property
    def macs(self) -> int:
        """Useful MACs of the steps run."""
        return sum(s.macs for s in self.steps)

    @property
    def cycles(self) -> int:
        return sum(s.cycles for s in self.steps)

    @property
    def mac_per_cycle(self) -> float:
        return self.macs / self.cycles if self.cycles else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "macs": self.macs,
            "cycles": self.cycles,
            "mac_per_cycle": self.mac_per_cycle,
            "steps": {s.step: s.to_dict() for s in self.steps},
        }


@dataclasses.dataclass(frozen=True, kw_only=True)
class Estimate:
    """A network's training step on the cluster.

    Attributes
    ----------
    model, dtype : str
    cores : int
    trained : str
        ``"all"`` or ``"last:K"``.
    clock_hz : int
    layers : tuple of LayerEstimate
    vector_cycles : int
        Non-GEMM work (0 when not modelled).
    vector_breakdown : dict of str to int
        Its cycles per ``kind:stage``.
    cluster : ClusterConfig
    kernels : str
    """

    model: str
    dtype: str
    cores: int
    trained: str
    clock_hz: int
    layers: tuple[LayerEstimate, ...]
    vector_cycles: int
    vector_breakdown: dict[str, int]
    cluster: ClusterConfig
    kernels: str

    @property
    def macs(self) -> int:
        """Useful GEMM MACs of the step."""
        return sum(layer.macs for layer in self.layers)

    @property
    def gemm_cycles(self) -> int:
        return sum(layer.cycles for layer in self.layers)

    @property
    def cycles(self) -> int:
        """GEMM steps (with their transforms) plus the vector work."""
        return self.gemm_cycles + self.vector_cycles

    @property
    def mac_per_cycle(self) -> float:
        return self.macs / self.cycles if self.cycles else 0.0

    @property
    def ms(self) -> float:
        """Milliseconds at ``clock_hz``."""
        return self.cycles / self.clock_hz * 1e3

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable: ``mac_per_cycle``, ``cycles``, ``ms``, ``macs``, ``layers`` and the setup."""
        return {
            "model": self.model,
            "dtype": self.dtype,
            "cores": self.cores,
            "trained_layers": self.trained,
            "kernels": self.kernels,
            "clock_hz": self.clock_hz,
            "macs": self.macs,
            "cycles": self.cycles,
            "gemm_cycles": self.gemm_cycles,
            "vector_cycles": self.vector_cycles,
            "vector_breakdown": self.vector_breakdown,
            "mac_per_cycle": self.mac_per_cycle,
            "ms": self.ms,
            "layers": [layer.to_dict() for layer in self.layers],
            "cluster": self.cluster.to_dict(),
        }


def load_workload(model: str) -> Workload:
    """A dense workload (batch 1) from a zoo name (``resnet8``, ``dscnn``, ...) or a file.

    Files: ``.onnx`` (ONNX graph), ``.json`` (:meth:`Workload.to_json` output), ``.csv`` (SCALE-Sim
    topology).

    Raises
    ------
    trainforge.errors.UsageError
        Unknown name, missing file or unsupported extension.
    """
    from trainforge.models.zoo import ZOO, zoo_model

    name = MODEL_ALIASES.get(model, model)
    if name in ZOO:
        from trainforge.models.workloads import workload

        net, x = zoo_model(name)
        return workload(net, x, method="dense", name=model)
    path = Path(model)
    if not path.suffix:
        raise UsageError(f"unknown model {model!r}; valid: {', '.join(ZOO)}, dscnn, or an .onnx/.json/.csv file")
    if not path.is_file():
        raise UsageError(f"model file {model!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from trainforge.models.topology import onnx_workload

        return onnx_workload(str(path), method="dense", batch=1)
    if suffix == ".json":
        from trainforge.models.workloads import Workload

        try:
            return Workload.from_json(path.read_text())
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise UsageError(f"{model}: not a workload JSON file ({exc})") from None
    if suffix == ".csv":
        from trainforge.models.topology import read_scalesim_csv

        return read_scalesim_csv(path, method="dense")
    raise UsageError(f"model file {model!r}: unsupported extension {suffix!r} (use .onnx, .json or .csv)")


def trained_layers(workload: Workload, spec: str) -> tuple[str, ...]:
    """Names of the GEMM layers trained under ``spec`` (``"all"`` or ``"last:K"``).

    Raises
    ------
    trainforge.errors.UsageError
        A malformed spec or ``K`` out of range.
    """
    names = [layer.name for layer in workload.layers]
    if not names:
        raise UsageError(f"workload {workload.name!r} has no GEMM layers to train")
    if spec == "all":
        return tuple(names)
    head, sep, tail = spec.partition(":")
    if head != "last" or not sep or not tail.isdigit():
        raise UsageError(f"trained layers must be 'all' or 'last:K', not {spec!r}")
    k = int(tail)
    if not 1 <= k <= len(names):
        raise UsageError(f"last:K needs 1 <= K <= {len(names)} (the GEMM layers of {workload.name}), not {k}")
    return tuple(names[-k:])


def estimate(
    workload: Workload,
    *,
    dtype: str = "fp16",
    cluster: ClusterConfig | None = None,
    trained: str = "all",
    kernels: str | Sequence[str] = "all",
    vector_ops: bool = True,
) -> Estimate:
    """Cost one training step of ``workload`` (batch 1) on the cluster (see the module docstring).

    Parameters
    ----------
    workload : Workload
    dtype : {"fp16", "bf16", "fp32"}
    cluster : ClusterConfig, optional
    trained : str
        ``"all"`` or ``"last:K"``.
    kernels : {"all", "library"} or list of str
        The autotuner's candidate set.
    vector_ops : bool
        Also cost the non-GEMM work.

    Returns
    -------
    Estimate

    Raises
    ------
    trainforge.errors.UsageError
        Unknown dtype, a malformed ``trained`` spec, or a layer without an MCU mapping.
    """
    if dtype not in DTYPES:
        raise UsageError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    cluster = ClusterConfig() if cluster is None else cluster
    trained_names = trained_layers(workload, trained)
    order = [layer.name for layer in workload.layers]
    lowest = min(order.index(n) for n in trained_names)
    layers = []
    for index, layer in enumerate(workload.layers):
        steps = ["fw"]
        if layer.name in trained_names and layer.grad_b:
            steps.append("wg")
        if index > lowest and layer.grad_a:
            steps.append("ig")
        choices = []
        for step in layer_steps(layer, tuple(steps)):
            choice = tune_step(step, dtype=dtype, cluster=cluster, kernels=kernels)
            if layer.batch > 1:
                choice = dataclasses.replace(choice, cycles=choice.cycles * layer.batch, macs=choice.macs * layer.batch)
            choices.append(choice)
        layers.append(LayerEstimate(name=layer.name, kind=layer_kind(layer), steps=tuple(choices)))
    breakdown: dict[str, int] = {}
    if vector_ops:
        from trainforge.models.workloads import UpdateOp

        for op in _vector_ops(workload, trained_names, lowest):
            if isinstance(op, UpdateOp):
                kind, stage = "update", "update"
            else:
                kind, stage = op.kind, op.stage
            c = vector_cycles(kind=kind, stage=stage, elements=op.elements, dtype=dtype, cluster=cluster).cycles
            key = f"{kind}:{stage}"
            breakdown[key] = breakdown.get(key, 0) + c
    return Estimate(
        model=workload.name,
        dtype=dtype,
        cores=cluster.cores,
        trained=trained,
        clock_hz=cluster.clock_hz,
        layers=tuple(layers),
        vector_cycles=sum(breakdown.values()),
        vector_breakdown=breakdown,
        cluster=cluster,
        kernels=kernels if isinstance(kernels, str) else ",".join(kernels),
    )


def _vector_ops(workload: Workload, trained: tuple[str, ...], lowest: int) -> list[ElementwiseOp | UpdateOp]:
    """The non-GEMM operations of a step that trains ``trained`` (see the module docstring)."""
    from trainforge.models.workloads import ElementwiseOp, GemmOp, UpdateOp

    ops = workload.ops
    lowest_name = workload.layers[lowest].name
    gemm_layers = {layer.name for layer in workload.layers}
    # the backward pass stops after the lowest trained layer's own backward operations
    cutoff = max((i for i, op in enumerate(ops) if getattr(op, "layer", None) == lowest_name), default=len(ops))
    loss_bp = next((i for i, op in enumerate(ops) if isinstance(op, ElementwiseOp) and op.stage == "bp"), len(ops))
    out: list[ElementwiseOp | UpdateOp] = []
    for i, op in enumerate(ops):
        if isinstance(op, GemmOp):
            continue
        if isinstance(op, ElementwiseOp) and op.stage == "ff":
            out.append(op)
            continue
        if not isinstance(op, ElementwiseOp | UpdateOp):
            continue
        if i < loss_bp or i > cutoff:
            continue
        frozen = op.layer in gemm_layers and op.layer not in trained
        if frozen and (isinstance(op, UpdateOp) or op.stage == "wu"):
            continue
        out.append(op)
    return out
