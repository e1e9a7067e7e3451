"""The cycle model's matmul kernels on the MCU cluster RTL: cycles equal to the model, C bit-exact.

Every case lowers a kernel (``kernel_image``), runs it on the Verilator cluster with random operands
(``run_kernels``: one simulator process per cluster build, many jobs each) and asserts

* RTL kernel cycles == ``kernel_cycles(...).cycles`` (``docs/mcu-core.md``: the model simulates the
  cores jointly and exactly for these sizes, so the two must agree to the cycle),
* C equal bit for bit to ``models.mcu_golden`` in each output's accumulation order (``models.fp``
  operations), and close to a float64 product of the same operands.

The issue's done-when cases (the tutorial's FC input gradient, n=1, k=m=128, 1 and 8 cores) plus a
spread of the other kernels on ragged shapes, 1 and 8 cores; the FP delay line (``fpu_latency`` 2) and
a shared FPU on the small clusters that ``test_mcu_cluster.py`` also builds. The whole sweep over
every kernel is ``scripts/mcu_rtl_check.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from trainforge.dataflow.mcu.cluster import ClusterConfig
from trainforge.dataflow.mcu.kernels import kernel_cycles
from trainforge.dataflow.mcu.program import kernel_image
from trainforge.sim.mcu_kernel import KernelCase, _random_operands, run_kernels

pytestmark = pytest.mark.verilator

DEFAULT = ClusterConfig()
# the two small clusters of test_mcu_cluster.py (same configurations: one cached build each)
ONE_LAT2 = ClusterConfig(cores=1, l1_bytes=8192, l1_banks=4, fpu_latency=2)
TWO_SHARED = ClusterConfig(cores=2, fpus=1, l1_bytes=8192, l1_banks=4, fork_cycles=10, barrier_cycles=3)

DONE_WHEN = [("vm_naive", False), ("vm_naive", True), ("vm_SIMD_naive", False), ("vm_T_SIMD", True)]

# (kernel, trans_b, (n, k, m)): every inner-loop mode, both parallelisations, full blocks with
# leftover rows and columns, odd K (k tails), fallbacks; shapes that lower on 1 and on 8 cores
SPREAD = [
    ("mm", False, (3, 7, 5)),
    ("mm_u2", True, (5, 7, 9)),
    ("mm_unroll_2x4", False, (13, 16, 9)),
    ("mm_unroll_8x1", True, (60, 6, 5)),
    ("mm_M_unroll_1x8", False, (3, 7, 70)),
    ("mm_M_unroll_4x2", True, (6, 5, 18)),
    ("mm_fp16", True, (3, 7, 5)),
    ("mm_fp16_unroll_4x1", False, (27, 8, 6)),
    ("mm_fp16_SIMD_2x4", False, (5, 8, 16)),
    ("mm_fp16_SIMD_4x8", True, (14, 10, 22)),
    ("mm_M_fp16_SIMD_4x8", False, (5, 12, 60)),
    ("mm_M_fp16_dotpex_2x4", True, (3, 12, 44)),
    ("mm_fp16_dotpex_4x8", False, (15, 18, 34)),
    ("mm_fp16_dotpex_6x8", True, (21, 6, 12)),
    ("vm_SIMD_naive", False, (1, 33, 28)),
    ("vm_T_SIMD", True, (1, 34, 28)),
]

SMALL = [  # on ONE_LAT2 and TWO_SHARED (8 KiB TCDM)
    ("mm_unroll_2x2", True, (5, 7, 6)),
    ("mm_fp16_SIMD_2x4", False, (3, 10, 10)),
    ("mm_fp16_SIMD_4x8", True, (4, 8, 8)),
    ("mm_fp16_dotpex_4x8", True, (5, 8, 12)),
    ("mm_M_fp16_SIMD_4x8", False, (2, 10, 16)),
    ("vm_T_SIMD", True, (1, 16, 12)),
]


def _dtype(name: str) -> str:
    return "fp16" if "fp16" in name or name.startswith("vm_") else "fp32"


def _cases(table, cores: int, seed: int) -> list[KernelCase]:
    return [
        KernelCase(name=k, n=n, k=kk, m=m, trans_b=t, dtype=_dtype(k), cores=cores, seed=seed + i)
        for i, (k, t, (n, kk, m)) in enumerate(table)
    ]


@pytest.fixture(scope="module")
def default_runs():
    """Done-when + spread on the default cluster, 1 and 8 cores: one batch (two simulator processes)."""
    cases = []
    for cores in (1, 8):
        cases += _cases([(k, t, (1, 128, 128)) for k, t in DONE_WHEN], cores, seed=11)
        cases += _cases(SPREAD, cores, seed=100)
    return list(zip(cases, run_kernels(cases, cluster=DEFAULT), strict=True))


@pytest.fixture(scope="module")
def small_runs():
    """SMALL on the fpu_latency=2 core and on the two cores sharing one FPU."""
    out = []
    for cluster in (ONE_LAT2, TWO_SHARED):
        cases = _cases(SMALL, cluster.cores, seed=7)
        out += [(cluster, c, r) for c, r in zip(cases, run_kernels(cases, cluster=cluster), strict=True)]
    return out


def _abs_product(case: KernelCase, cluster: ClusterConfig) -> np.ndarray:
    """``|A| . |B|`` of the operands as run (same seed), in float64: bounds every partial sum."""
    image = kernel_image(
        case.name,
        n=case.n,
        k=case.k,
        m=case.m,
        trans_b=case.trans_b,
        dtype=case.dtype,
        cores=case.cores,
        cluster=cluster.with_cores(case.cores),
    )
    a, b = _random_operands(image, case.seed)
    view = np.float16 if case.dtype == "fp16" else np.float32
    af, bf = a.view(view).astype(np.float64), b.view(view).astype(np.float64)
    return np.abs(af) @ np.abs(bf.T if case.trans_b else bf)


def _check(case: KernelCase, run, cluster: ClusterConfig) -> None:
    label = f"{case.name} trans_b={case.trans_b} {case.n}x{case.k}x{case.m} on {case.cores} cores"
    model = kernel_cycles(
        case.name,
        n=case.n,
        k=case.k,
        m=case.m,
        trans_b=case.trans_b,
        dtype=case.dtype,
        cores=case.cores,
        cluster=cluster.with_cores(case.cores),
    )
    assert model.contention_model in ("none", "exact"), label  # the model is exact for these sizes
    assert run.rtl_cycles == model.cycles, f"{label}: RTL {run.rtl_cycles} cycles, model {model.cycles}"
    assert run.bit_exact, f"{label}: {run.mismatches} outputs differ from the accumulation-order reference"
    # numerically: within (K + 2) roundings of the largest partial sum (the standard gamma_K bound)
    unit = 2.0**-11 if case.dtype == "fp16" else 2.0**-24
    assert run.max_abs_diff_vs_torch <= (case.k + 2) * unit * _abs_product(case, cluster).max(), label


@pytest.mark.parametrize("cores", [1, 8])
@pytest.mark.parametrize(("name", "trans_b"), DONE_WHEN)
def test_done_when_fc_input_gradient(default_runs, name, trans_b, cores):
    """The tutorial's FC input gradient (n=1, k=m=128): RTL cycles == kernel_cycles and C bit-exact."""
    ((case, run),) = [
        (c, r) for c, r in default_runs if (c.name, c.trans_b, c.cores, c.k) == (name, trans_b, cores, 128)
    ]
    _check(case, run, DEFAULT)
    assert run.kernel == name  # no fallback at this size


@pytest.mark.parametrize("cores", [1, 8])
def test_kernel_spread_ragged(default_runs, cores):
    """Every inner-loop mode on ragged shapes: cycles equal to the model and C bit-exact, case by case."""
    picked = [(c, r) for c, r in default_runs if c.cores == cores and c.k != 128]
    assert len(picked) == len(SPREAD)
    for case, run in picked:
        _check(case, run, DEFAULT)
    assert all(r.kernel == c.name for c, r in picked)  # no fallback: the spread runs its kernels


def test_fpu_latency_2_and_shared_fpu(small_runs):
    """The FP delay line (accumulator RAW stalls) and a shared FPU's issue interval, against the model."""
    assert len(small_runs) == 2 * len(SMALL)
    for cluster, case, run in small_runs:
        _check(case, run, cluster)
    shared = [r for cl, _, r in small_runs if cl is TWO_SHARED]
    # the interval of 2 costs stalls wherever FP ops come closer (vm_T_SIMD's vfmac issues every 4 cycles)
    assert all(r.counters[0]["fpu-share"] > 0 for r in shared if r.kernel != "vm_T_SIMD")
