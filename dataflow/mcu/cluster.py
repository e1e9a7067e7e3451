"""The PULP-style MCU cluster that the kernel models run on: one frozen, validated configuration.

Every number the cycle model uses comes from :class:`ClusterConfig`, so a cost model, an autotuner and
(later) an RTL cluster read the same parameters. The timing rules these fields feed are written out in
``docs/mcu.md`` ("The core timing rules").
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Self

from trainforge.config import GeneratorConfig
from trainforge.errors import ConfigError
from trainforge.hw.mcu.fp_simd import FPSimdConfig

__all__ = ["DTYPES", "PRESETS", "ClusterConfig", "dtype_bytes", "dtype_lanes"]

DTYPES = ("fp32", "fp16", "bf16")
"""Element formats of the kernel models: IEEE binary32, binary16 and bfloat16 (same timing as fp16)."""

_DEFAULT_FPU_LATENCY = max(1, FPSimdConfig().pipeline_stages)


def dtype_bytes(dtype: str) -> int:
    """Bytes per element: 4 for ``fp32``, 2 for ``fp16`` and ``bf16``."""
    _check_dtype(dtype)
    return 4 if dtype == "fp32" else 2


def dtype_lanes(dtype: str, simd_lanes: int) -> int:
    """MACs one FMA instruction does: 1 for ``fp32``, ``simd_lanes`` for the 16-bit formats."""
    _check_dtype(dtype)
    return 1 if dtype == "fp32" else simd_lanes


def _check_dtype(dtype: object) -> None:
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")


def _check_range(name: str, value: object, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{name} must be an integer in {lo}..{hi}, not {value!r}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClusterConfig(GeneratorConfig):
    """An 8+1-core PULP cluster: RV32IMFC + Xpulp cores, FPUs, a banked L1 TCDM, a DMA to L2.

    Parameters
    ----------
    cores : int
        Worker cores (1..32), default 8.
    fpus : int or None
        FPUs (1..cores). ``None`` (the default) or ``cores``: one private FPU per core; fewer: each FPU
        is shared by ``ceil(cores / fpus)`` cores (the RTL option ``NB_FPNEW = NB_CORES / 2``).
    fpu_latency : int
        Cycles from issuing an FP instruction to issuing an instruction that reads its result (1..4):
        1 means back-to-back dependent FP instructions do not stall. The default is
        ``max(1, FPSimdConfig().pipeline_stages)``, the output registers of the FP16 SIMD datapath
        RTL (``hw/mcu/fp_simd.py``): the core registers the result at write-back anyway, so 0 and 1
        pipeline stages both give latency 1.
    simd_lanes : int
        16-bit lanes of one FP register (1 or 2): 2 for FP16/BF16 in a 32-bit FPU; 1 disables SIMD.
    l1_bytes : int
        Shared L1 TCDM size in bytes (default 128 KiB, the pulp_cluster and deployer default).
    l1_banks : int
        Word-interleaved single-cycle L1 banks (a power of two, default 16).
    l2_bytes : int
        L2 size in bytes (default 1.5 MiB).
    dma_bytes_per_cycle : int
        Cluster DMA bandwidth L2 <-> L1 (default 8: a 64-bit AXI port).
    dma_setup_cycles : int
        Cycles to program one DMA transfer (default 20).
    clock_hz : int
        Cluster clock in Hz, only for converting cycles to time (default 400 MHz).
    load_latency : int
        Cycles from a load's issue to a consumer's issue (default 2: one load-use stall, CV32E40P).
    branch_penalty : int
        Bubble cycles after a taken branch or a jump (default 2).
    fork_cycles : int
        Cycles of ``pi_cl_team_fork`` from the call to the workers starting (default 60; only with
        more than one core).
    barrier_cycles : int
        Cycles from the last core reaching the barrier to the master continuing (default 12).
    """

    cores: int = 8
    fpus: int | None = None
    fpu_latency: int = _DEFAULT_FPU_LATENCY
    simd_lanes: int = 2
    l1_bytes: int = 128 * 1024
    l1_banks: int = 16
    l2_bytes: int = 1536 * 1024
    dma_bytes_per_cycle: int = 8
    dma_setup_cycles: int = 20
    clock_hz: int = 400_000_000
    load_latency: int = 2
    branch_penalty: int = 2
    fork_cycles: int = 60
    barrier_cycles: int = 12

    def validate(self) -> None:
        _check_range("cores", self.cores, 1, 32)
        if self.fpus is not None:
            _check_range("fpus", self.fpus, 1, 32)
        if self.fpus is not None and self.fpus > self.cores:
            raise ConfigError(f"fpus must be <= cores={self.cores}, not {self.fpus}")
        _check_range("fpu_latency", self.fpu_latency, 1, 4)
        if self.simd_lanes not in (1, 2) or isinstance(self.simd_lanes, bool):
            raise ConfigError(f"simd_lanes must be 1 or 2 (16-bit lanes of a 32-bit FPU), not {self.simd_lanes!r}")
        _check_range("l1_bytes", self.l1_bytes, 4096, 64 * 1024 * 1024)
        _check_range("l1_banks", self.l1_banks, 1, 256)
        if self.l1_banks & (self.l1_banks - 1):
            raise ConfigError(f"l1_banks must be a power of two, not {self.l1_banks}")
        _check_range("l2_bytes", self.l2_bytes, 0, 1 << 34)
        _check_range("dma_bytes_per_cycle", self.dma_bytes_per_cycle, 1, 1024)
        _check_range("dma_setup_cycles", self.dma_setup_cycles, 0, 100_000)
        _check_range("clock_hz", self.clock_hz, 1, 100_000_000_000)
        _check_range("load_latency", self.load_latency, 1, 8)
        _check_range("branch_penalty", self.branch_penalty, 0, 16)
        _check_range("fork_cycles", self.fork_cycles, 0, 100_000)
        _check_range("barrier_cycles", self.barrier_cycles, 0, 100_000)

    # -- derived values ----------------------------------------------------------------------
    @property
    def fpu_count(self) -> int:
        """FPUs in the cluster (``cores`` when they are private)."""
        return self.cores if self.fpus is None else self.fpus

    @property
    def private_fpus(self) -> bool:
        """True when every core has its own FPU."""
        return self.fpu_count == self.cores

    def fpu_share(self, active_cores: int | None = None) -> int:
        """Cores sharing one FPU when ``active_cores`` (default all) run FP code at the same time."""
        active = self.cores if active_cores is None else active_cores
        _check_range("active_cores", active, 1, self.cores)
        # the cores are spread over the FPUs in order; an FPU serves ceil(active / fpus) of them
        return max(1, math.ceil(active / self.fpu_count))

    def peak_mac_per_cycle(self, dtype: str, cores: int | None = None) -> int:
        """MAC/cycle upper bound: one FMA per cycle per FPU in use, ``lanes`` MACs each."""
        active = self.cores if cores is None else cores
        _check_range("cores", active, 1, self.cores)
        return min(active, self.fpu_count) * dtype_lanes(dtype, self.simd_lanes)

    @property
    def l1_usable_bytes(self) -> int:
        """L1 left for tensors: ``l1_bytes`` minus a 1 KiB stack per core."""
        return self.l1_bytes - 1024 * self.cores

    def with_cores(self, cores: int) -> ClusterConfig:
        """The same cluster with ``cores`` workers; private FPUs stay private, shared keep their ratio."""
        _check_range("cores", cores, 1, 32)
        if self.private_fpus:
            return self.replace(cores=cores, fpus=None)
        fpus = max(1, min(cores, math.ceil(cores * self.fpu_count / self.cores)))
        return self.replace(cores=cores, fpus=fpus)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> Self:
        """A named configuration from :data:`PRESETS`, with ``overrides`` applied (and validated).

        Raises
        ------
        trainforge.errors.ConfigError
            Unknown preset name or an invalid override.
        """
        if name not in PRESETS:
            raise ConfigError(f"unknown cluster preset {name!r}; valid: {', '.join(PRESETS)}")
        return cls.from_mapping({**PRESETS[name], **overrides})


PRESETS: dict[str, dict[str, Any]] = {
    # pulp_cluster RTL default and the PULP-TrainLib deployer: 8 cores, private FPUs, 128 KiB / 16 banks
    "pulp-private": {},
    # RTL option NB_FPNEW = NB_CORES / 2 (and current GVSoC): 4 FPUs shared by 8 cores
    "pulp-shared": {"fpus": 4},
    # the PULP-TrainLib tutorial's GVSoC setup: 256 KiB L1
    "tutorial": {"l1_bytes": 256 * 1024},
    # PULP-TrainLib (SAMOS 2022): 64 KiB L1
    "samos": {"l1_bytes": 64 * 1024},
}
