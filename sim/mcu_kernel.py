"""Run a matmul kernel of the MCU cycle model on the Verilator-built cluster RTL and check it.

One call does what ``trainforge mcu kernel --rtl`` shows: lower the kernel
(:func:`trainforge.dataflow.mcu.program.kernel_image`: assembly text and TCDM layout), assemble it
(:mod:`trainforge.hw.mcu.asm`), run it on the cluster RTL (:mod:`trainforge.sim.mcu_bench`) with
random FP operands, and compare

* the RTL's kernel cycles with the model's :func:`~trainforge.dataflow.mcu.kernels.kernel_cycles`
  (they must be equal: ``docs/mcu-core.md``), and
* C, bit for bit, with :mod:`trainforge.models.mcu_golden` in each output's accumulation order,
  and numerically with PyTorch in float32.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from trainforge.dataflow.mcu.cluster import ClusterConfig
from trainforge.dataflow.mcu.kernels import KERNELS, KernelSpec, kernel_cycles, split
from trainforge.dataflow.mcu.program import KernelImage, kernel_image
from trainforge.errors import UsageError
from trainforge.hw.mcu.asm import assemble
from trainforge.hw.mcu.core import TCDM_BASE
from trainforge.models.mcu_golden import dot
from trainforge.sim.mcu_bench import McuJob, McuRun, run_programs

__all__ = ["KernelCase", "KernelRun", "accumulation_map", "kernel_reference", "run_kernel", "run_kernels"]


@dataclasses.dataclass(frozen=True)
class KernelRun:
    """A kernel run on the cluster RTL, checked against the model and the references.

    Attributes
    ----------
    kernel : str
        The kernel that ran (after any fallback).
    model_cycles, rtl_cycles : int
        The cycle model's kernel cycles and the RTL's (fork, slowest core, barrier).
    bit_exact : bool
        C equals the accumulation-order reference bit for bit.
    mismatches : int
        Outputs that differ from the reference.
    max_abs_diff_vs_torch : float
        Largest ``|C - A.B|`` against PyTorch in float32.
    counters : list of dict
        The RTL's performance counters per core.
    contention : str
        How the model counted TCDM contention (``none`` on one core, ``exact`` or ``extrapolated``).
    """

    kernel: str
    n: int
    k: int
    m: int
    cores: int
    dtype: str
    trans_b: bool
    model_cycles: int
    rtl_cycles: int
    bit_exact: bool
    mismatches: int
    max_abs_diff_vs_torch: float
    counters: list[dict[str, int]]
    contention: str

    @property
    def cycles_match(self) -> bool:
        """The RTL took exactly the model's cycles."""
        return self.model_cycles == self.rtl_cycles

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, with ``cycles_match``."""
        return {**dataclasses.asdict(self), "cycles_match": self.cycles_match}


def _block_accumulation(spec: KernelSpec, trans_b: bool) -> str:
    if spec.mode == "scalar" or (spec.mode == "simd" and not trans_b):
        return "sequential"  # simd with B as stored: the two lanes are two columns, k runs in order
    if spec.mode in ("simd", "simd_pack"):
        return "lanes"
    if spec.mode == "dotpex":
        return "dotpex"
    raise UsageError(f"kernel {spec.name} ({spec.mode}) has no RTL reference; valid: non-depthwise kernels")


def accumulation_map(spec: KernelSpec, *, n: int, m: int, cores: int, trans_b: bool) -> np.ndarray:
    """Each output's accumulation order (:data:`~trainforge.models.mcu_golden.ACCUMULATIONS`), ``(n, m)``.

    Full ``U x V`` blocks and the leftover rows (blocks of one row, same ``V``) use the kernel's
    inner loop; each core's leftover columns (its share's width modulo ``V``) are naive
    ``fmadd`` dot products (:mod:`~trainforge.dataflow.mcu.kernels`).
    """
    block_order = _block_accumulation(spec, trans_b)
    out = np.full((n, m), block_order, dtype=object)
    for core in range(cores):
        if spec.parallel == "N":
            r0, r1 = split(n, cores, core)
            c0, c1 = 0, m
        else:
            r0, r1 = 0, n
            c0, c1 = split(m, cores, core)
        if r1 <= r0 or c1 <= c0:
            continue
        left = (c1 - c0) % spec.cols
        if left:
            out[r0:r1, c1 - left : c1] = "sequential"
    return out


def kernel_reference(image: KernelImage, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """C of ``image``'s kernel on operands ``a``, ``b`` (bit patterns as stored), bit-exact."""
    if image.groups != 1:
        raise UsageError(f"groups must be 1 for an RTL reference, not {image.groups}")
    spec = KERNELS[image.kernel]
    fmt = "fp32" if image.dtype == "fp32" else image.dtype
    b_rows = b if image.trans_b else b.T  # (m, k)
    orders = accumulation_map(spec, n=image.n, m=image.m, cores=image.cores, trans_b=image.trans_b)
    c = np.zeros((image.n, image.m), dtype=np.uint64)
    rows = np.repeat(np.arange(image.n), image.m)
    cols = np.tile(np.arange(image.m), image.n)
    flat = orders.ravel()
    for order in set(flat):
        pick = flat == order
        i, j = rows[pick], cols[pick]
        c[i, j] = dot(a[i].astype(np.uint64), b_rows[j].astype(np.uint64), fmt=fmt, accumulation=order)
    return c.astype(a.dtype)


def _random_operands(image: KernelImage, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    dtype = {"fp16": np.float16, "fp32": np.float32}.get(image.dtype)
    if dtype is None:
        raise UsageError(f"dtype must be fp16 or fp32 for an RTL run, not {image.dtype!r}")
    view = np.uint16 if dtype is np.float16 else np.uint32
    a = rng.uniform(-1, 1, image.a_shape()).astype(dtype).view(view)
    b = rng.uniform(-1, 1, image.b_shape()).astype(dtype).view(view)
    return a, b


def _as_float(bits: np.ndarray, dtype: str) -> np.ndarray:
    return bits.view(np.float16 if dtype != "fp32" else np.float32).astype(np.float32)


@dataclasses.dataclass(frozen=True, kw_only=True)
class KernelCase:
    """One kernel run for :func:`run_kernels` (fields as :func:`run_kernel`'s arguments)."""

    name: str
    n: int
    k: int
    m: int
    trans_b: bool = False
    dtype: str = "fp16"
    cores: int = 1
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class _Prepared:
    case: KernelCase
    cluster: ClusterConfig
    image: KernelImage
    model_cycles: int
    contention: str
    a: np.ndarray
    b: np.ndarray
    job: McuJob


def _prepare(case: KernelCase, cluster: ClusterConfig) -> _Prepared:
    """Lower, cost and assemble ``case`` on ``cluster`` (already ``with_cores(case.cores)``)."""
    shape = {"n": case.n, "k": case.k, "m": case.m, "trans_b": case.trans_b, "dtype": case.dtype}
    image = kernel_image(case.name, **shape, cores=case.cores, cluster=cluster)
    model = kernel_cycles(case.name, **shape, cores=case.cores, cluster=cluster)
    a, b = _random_operands(image, case.seed)
    job = McuJob(
        words=assemble(image.asm).words,
        tcdm_image={TCDM_BASE: image.build_tcdm(a, b).tobytes()},
        args_addr=image.args_addr,
        read=[(image.c_addr, image.c_bytes)],
        clear_tcdm=False,  # A, B, C and the args are the image; spills are stored before they are loaded
    )
    return _Prepared(case, cluster, image, model.cycles, model.contention_model, a, b, job)


def _check(p: _Prepared, run: McuRun) -> KernelRun:
    """Compare one RTL run with the model's cycles, the accumulation-order reference and PyTorch."""
    image, a, b, dtype = p.image, p.a, p.b, p.case.dtype
    if run.timed_out:
        raise UsageError(f"{image.kernel} did not finish on the RTL within {p.job.budget:,} cycles")
    got = np.frombuffer(run.data[0], dtype=np.dtype(a.dtype).newbyteorder("<")).astype(a.dtype).reshape(image.c_shape())
    want = kernel_reference(image, a, b)
    b_kn = _as_float(b, dtype).T if image.trans_b else _as_float(b, dtype)
    exact_f32 = torch.from_numpy(_as_float(a, dtype)) @ torch.from_numpy(np.ascontiguousarray(b_kn))
    return KernelRun(
        kernel=image.kernel,
        n=image.n,
        k=image.k,
        m=image.m,
        cores=image.cores,
        dtype=dtype,
        trans_b=image.trans_b,
        model_cycles=p.model_cycles,
        rtl_cycles=run.cycles,
        bit_exact=bool(np.array_equal(got, want)),
        mismatches=int(np.count_nonzero(got != want)),
        max_abs_diff_vs_torch=float(np.max(np.abs(_as_float(got, dtype) - exact_f32.numpy()), initial=0.0)),
        counters=run.counters,
        contention=p.contention,
    )


def _cluster_for(cluster: ClusterConfig | None, cores: int) -> ClusterConfig:
    cluster = cluster or ClusterConfig()
    return cluster if cores == cluster.cores else cluster.with_cores(cores)


def run_kernels(cases: Sequence[KernelCase], *, cluster: ClusterConfig | None = None) -> list[KernelRun]:
    """Run many kernels on the cluster RTL, one simulator process per core count, and check each.

    Parameters
    ----------
    cases : sequence of KernelCase
        The runs; each on ``cluster.with_cores(case.cores)``.
    cluster : ClusterConfig, optional
        Default: ``ClusterConfig()``.

    Returns
    -------
    list of KernelRun
        In the order of ``cases``.

    Raises
    ------
    LoweringError
        A case that does not lower (:func:`~trainforge.dataflow.mcu.program.kernel_image`).
    """
    prepared = [_prepare(c, _cluster_for(cluster, c.cores)) for c in cases]
    results: list[KernelRun | None] = [None] * len(prepared)
    for config in dict.fromkeys(p.cluster for p in prepared):
        picks = [i for i, p in enumerate(prepared) if p.cluster == config]
        runs = run_programs([prepared[i].job for i in picks], cluster=config)
        for i, run in zip(picks, runs, strict=True):
            results[i] = _check(prepared[i], run)
    return results  # type: ignore[return-value]


def run_kernel(
    name: str,
    *,
    n: int,
    k: int,
    m: int,
    trans_b: bool = False,
    dtype: str = "fp16",
    cores: int | None = None,
    cluster: ClusterConfig | None = None,
    seed: int = 0,
) -> KernelRun:
    """Run kernel ``name`` on the cluster RTL with random operands and check it (module docstring).

    Parameters
    ----------
    name, n, k, m, trans_b, dtype, cores, cluster
        As :func:`~trainforge.dataflow.mcu.kernels.kernel_cycles` (``dtype`` ``fp16`` or ``fp32``).
    seed : int
        Seed of the operands (uniform in [-1, 1)).
    """
    cores = (cluster or ClusterConfig()).cores if cores is None else cores
    case = KernelCase(name=name, n=n, k=k, m=m, trans_b=trans_b, dtype=dtype, cores=cores, seed=seed)
    (run,) = run_kernels([case], cluster=cluster)
    return run
