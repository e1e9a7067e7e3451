"""Cycle models of DNN training on a PULP-style RISC-V MCU cluster (installed as ``trainforge.dataflow.mcu``).

* :mod:`.cluster` -- :class:`ClusterConfig`: cores, FPUs, FPU latency, SIMD lanes, L1/L2, DMA, clock.
* :mod:`.core` -- the instruction-level timing rules of one core (what an RTL core is held to).
* :mod:`.tcdm` -- TCDM bank contention between the cores.
* :mod:`.kernels` -- the matmul kernels (PULP-TrainLib's, its tutorial's, and FP32-accumulating
  ``vfdotpex`` ones) as explicit programs; :func:`kernel_cycles`.
* :mod:`.transforms` -- im2row, transposes and the non-GEMM work.
* :mod:`.layers` -- the per-layer forward / weight-gradient / input-gradient mapping to matmuls.
* :mod:`.autotune` -- the fastest kernel and tiling per layer and step, by the model.
* :mod:`.estimate` -- a whole network's training step: MAC/clk, cycles, time.

See ``docs/mcu.md``.
"""

from trainforge.dataflow.mcu.autotune import LIBRARY_MANAGER, StepChoice, tune_step
from trainforge.dataflow.mcu.cluster import DTYPES, PRESETS, ClusterConfig
from trainforge.dataflow.mcu.core import CoreSim, Instr, Loop, Timing
from trainforge.dataflow.mcu.estimate import Estimate, LayerEstimate, estimate, load_workload, trained_layers
from trainforge.dataflow.mcu.kernels import (
    KERNELS,
    KernelResult,
    KernelSpec,
    kernel_cycles,
    kernel_names,
    kernel_program,
)
from trainforge.dataflow.mcu.layers import GemmStep, Transform, layer_kind, layer_steps
from trainforge.dataflow.mcu.tcdm import Contention, contention

__all__ = [
    "DTYPES",
    "KERNELS",
    "LIBRARY_MANAGER",
    "PRESETS",
    "ClusterConfig",
    "Contention",
    "CoreSim",
    "Estimate",
    "GemmStep",
    "Instr",
    "KernelResult",
    "KernelSpec",
    "LayerEstimate",
    "Loop",
    "StepChoice",
    "Timing",
    "Transform",
    "contention",
    "estimate",
    "kernel_cycles",
    "kernel_names",
    "kernel_program",
    "layer_kind",
    "layer_steps",
    "load_workload",
    "trained_layers",
    "tune_step",
]
