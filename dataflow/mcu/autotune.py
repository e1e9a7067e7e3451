"""Model-driven autotuning: the fastest kernel (and tiling) per layer and step, without simulation.

PULP-TrainLib's AutoTuner runs every candidate on the simulator; here every candidate is costed by
the instruction-level model instead (:func:`~trainforge.dataflow.mcu.kernels.kernel_cycles`), so a
whole network tunes in seconds. For one step (:class:`~trainforge.dataflow.mcu.layers.GemmStep`):

1. Candidates: every kernel of the step's format (``kernels="library"`` keeps those the paper-era
   PULP-TrainLib dispatches for that layer kind and step, :data:`LIBRARY_MANAGER`; ``"all"`` adds
   the later library's, the tutorial's and ours), in each layout of B it takes.
   Depthwise steps also get the per-channel kernels (parallel over channels). SIMD kernels need
   ``simd_lanes == 2``.
2. Cost of a candidate = its shape transforms (im2row, block transpose; a transpose of B when the
   kernel wants the layout B is not in) + the matmul, tiled when the operands do not fit in L1.
3. Tiling: a step whose ``A + B + C`` fit in the usable L1 runs untiled and L1-resident (no DMA, as
   the paper's measurements). Otherwise it is split over groups, then over ``N`` (output channels,
   the library's only tiling), then also over ``M`` (output pixels; beyond the library) into the
   fewest tiles that fit. Tiles stream through the DMA from L2 with double buffering: the step
   takes ``max(compute, DMA)`` plus the first tile's input and the last tile's output transfer.
4. The minimum wins. Candidates are first ranked by their cost without TCDM bank conflicts (a lower
   bound), and conflicts are simulated only until the bound exceeds the best total: exact, and fast.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any

from trainforge.dataflow.mcu.cluster import ClusterConfig, dtype_bytes
from trainforge.dataflow.mcu.kernels import KERNELS, kernel_cycles
from trainforge.dataflow.mcu.layers import GemmStep, Transform
from trainforge.dataflow.mcu.transforms import block_transpose_cycles, im2row_cycles, transpose_cycles
from trainforge.errors import UsageError

__all__ = [
    "KERNEL_SETS",
    "LIBRARY_MANAGER",
    "StepChoice",
    "TilePlan",
    "candidates",
    "plan_tiles",
    "transform_cycles",
    "tune_step",
]

KERNEL_SETS = ("library", "all")
"""``library``: what paper-era PULP-TrainLib's ``mm_manager`` accepts per layer and step
(:data:`LIBRARY_MANAGER`); ``all``: every kernel model, ours included."""

_FP16_STD = ("mm_fp16", "mm_M_fp16", "mm_fp16_SIMD_2x4", "mm_fp16_SIMD_4x8", "mm_M_fp16_SIMD_2x4", "mm_M_fp16_SIMD_4x8")
_FP32_STD = tuple(n for n, s in KERNELS.items() if s.fmt == "fp32" and s.parallel != "G")
_FP16_DW = ("mm_dw_fp16", "mm_dw_fp16_SIMD_1x2_u2")
_FP32_DW = ("mm_dw", "mm_dw_u2", "mm_dw_unroll_1x2", "mm_dw_unroll_1x4")


def _library_manager() -> dict[tuple[str, str, str], tuple[str, ...]]:
    table: dict[tuple[str, str, str], tuple[str, ...]] = {}
    for fmt, std, dw, naive in (("fp16", _FP16_STD, _FP16_DW, "mm_fp16"), ("fp32", _FP32_STD, _FP32_DW, "mm")):
        for step in ("fw", "wg", "ig"):
            for kind in ("pointwise", "linear", "matmul"):
                table[(fmt, kind, step)] = std
            table[(fmt, "depthwise", step)] = dw
            # Conv2D's input gradient: mm_manager accepts only the naive kernel
            for kind in ("conv", "grouped"):
                table[(fmt, kind, step)] = (naive,) if step == "ig" else std
    return table


LIBRARY_MANAGER: dict[tuple[str, str, str], tuple[str, ...]] = _library_manager()
"""Kernels paper-era PULP-TrainLib's ``mm_manager`` / ``mm_manager_fp16`` dispatch, by
``(format, layer kind, step)``: notably only the naive kernel for a Conv2D input gradient."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class TilePlan:
    """How a step's matmul is split to fit in L1.

    Attributes
    ----------
    tiles : tuple of ((groups, n, m), count)
        Distinct tile shapes and how many of each.
    dma_bytes : int
        Bytes moved L2 <-> L1 (0 when untiled: L1-resident).
    transfers : int
        DMA transfers programmed.
    first_bytes, last_bytes : int
        The first tile's input and the last tile's output (not hidden by double buffering).
    """

    tiles: tuple[tuple[tuple[int, int, int], int], ...]
    dma_bytes: int = 0
    transfers: int = 0
    first_bytes: int = 0
    last_bytes: int = 0

    @property
    def count(self) -> int:
        """Number of tiles."""
        return sum(c for _, c in self.tiles)


@dataclasses.dataclass(frozen=True, kw_only=True)
class StepChoice:
    """The autotuner's choice for one step, with its cost breakdown.

    Attributes
    ----------
    layer, step : str
    kernel : str
        Kernel chosen (before any fallback of the library's own).
    kernel_used : str
        Kernel that runs on the full tile shape.
    trans_b : bool
    cycles : int
        Transforms + matmul (+ exposed DMA).
    matmul_cycles, transform_cycles, dma_cycles : int
        The parts (``dma_cycles``: total DMA time, overlapped with the matmul except the first and
        last transfers).
    tiles : int
    macs : int
        Useful MACs.
    executed_macs : int
    transforms : tuple of (str, int)
        Each transform and its cycles.
    """

    layer: str
    step: str
    kernel: str
    kernel_used: str
    trans_b: bool
    cycles: int
    matmul_cycles: int
    transform_cycles: int
    dma_cycles: int
    tiles: int
    macs: int
    executed_macs: int
    transforms: tuple[tuple[str, int], ...]

    @property
    def mac_per_cycle(self) -> float:
        """Useful MACs per cycle of the whole step."""
        return self.macs / self.cycles if self.cycles else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["transforms"] = [list(t) for t in self.transforms]
        d["mac_per_cycle"] = self.mac_per_cycle
        return d


def candidates(
    step: GemmStep, *, dtype: str, cluster: ClusterConfig, kernels: str | Sequence[str] = "all"
) -> list[tuple[str, bool]]:
    """``(kernel, trans_b)`` pairs the autotuner tries for ``step``.

    Raises
    ------
    trainforge.errors.UsageError
        Unknown kernel set or kernel name, or no candidate at all.
    """
    fmt = "fp32" if dtype == "fp32" else "fp16"
    if isinstance(kernels, str):
        if kernels not in KERNEL_SETS:
            raise UsageError(f"kernels must be one of {', '.join(KERNEL_SETS)} or a list of names, not {kernels!r}")
        names = list(KERNELS) if kernels == "all" else list(LIBRARY_MANAGER[(fmt, step.kind, step.step)])
    else:
        names = list(kernels)
        unknown = [n for n in names if n not in KERNELS]
        if unknown:
            raise UsageError(f"unknown kernel {unknown[0]!r}; valid: {', '.join(KERNELS)}")
    out = []
    for name in names:
        spec = KERNELS[name]
        if spec.fmt != fmt or (spec.simd and cluster.simd_lanes < 2):
            continue
        if spec.parallel == "G" and step.groups == 1:
            continue
        for trans_b in spec.layouts:
            out.append((name, trans_b))
    if not out:
        raise UsageError(f"no {dtype} kernel candidate for {step.layer}:{step.step}")
    return out


def _workset(e: int, g: int, n: int, k: int, m: int) -> int:
    return e * g * (n * k + k * m + n * m)


def plan_tiles(step: GemmStep, *, dtype: str, cluster: ClusterConfig) -> TilePlan:
    """Split ``step``'s matmul into tiles that fit the usable L1 (see the module docstring)."""
    e = dtype_bytes(dtype)
    budget = cluster.l1_usable_bytes
    g, n, k, m = step.groups, step.n, step.k, step.m
    if _workset(e, g, n, k, m) <= budget:
        return TilePlan(tiles=(((g, n, m), 1),))
    tg, tn, tm = g, n, m
    if g > 1 and _workset(e, 1, n, k, m) <= budget:
        tg = max(t for t in range(1, g + 1) if _workset(e, t, n, k, m) <= budget)
    else:
        tg = 1
        for parts in range(1, m + 1):
            tm = -(-m // parts)
            fits = [t for t in range(1, n + 1) if _workset(e, 1, t, k, tm) <= budget]
            if fits and (max(fits) >= min(n, 8) or tm == 1):
                tn = max(fits)
                break
        else:
            raise UsageError(
                f"{step.layer}:{step.step}: one row of the matmul (K={k}) does not fit in L1 ({budget} bytes usable)"
            )
    shapes: dict[tuple[int, int, int], int] = {}
    for gs in _pieces(g, tg):
        for ns in _pieces(n, tn):
            for ms in _pieces(m, tm):
                shapes[(gs, ns, ms)] = shapes.get((gs, ns, ms), 0) + 1
    m_tiles = -(-m // tm)
    n_tiles = -(-n // tn) * -(-g // tg)
    a_bytes, b_bytes, c_bytes = e * g * n * k, e * g * k * m, e * g * n * m
    # M tiles outer, N (and group) tiles inner: B once, A once per M tile, C once
    dma_bytes = b_bytes + a_bytes * m_tiles + c_bytes
    transfers = m_tiles + 2 * m_tiles * n_tiles
    first = e * tg * (tn * k + k * tm)
    last = e * tg * tn * tm
    return TilePlan(
        tiles=tuple(shapes.items()), dma_bytes=dma_bytes, transfers=transfers, first_bytes=first, last_bytes=last
    )


def _pieces(total: int, size: int) -> list[int]:
    full, rest = divmod(total, size)
    return [size] * full + ([rest] if rest else [])


def transform_cycles(transform: Transform, *, dtype: str, cluster: ClusterConfig, cores: int | None = None) -> int:
    """Cycles of one shape transform on the cluster."""
    if transform.kind == "im2row":
        pixels, channels, kh, kw = transform.shape
        return im2row_cycles(
            pixels=pixels, channels=channels, kh=kh, kw=kw, dtype=dtype, cluster=cluster, cores=cores
        ).cycles
    if transform.kind == "transpose":
        rows, cols = transform.shape
        return transpose_cycles(rows=rows, cols=cols, dtype=dtype, cluster=cluster, cores=cores).cycles
    if transform.kind == "block_transpose":
        c_out, c_in, window = transform.shape
        return block_transpose_cycles(
            c_out=c_out, c_in=c_in, window=window, dtype=dtype, cluster=cluster, cores=cores
        ).cycles
    raise UsageError(f"unknown transform {transform.kind!r}")


def _matmul(
    name: str, trans_b: bool, step: GemmStep, plan: TilePlan, dtype: str, cluster: ClusterConfig, cores: int, bank: bool
) -> tuple[int, str]:
    total = 0
    used = name
    for (g, n, m), count in plan.tiles:
        r = kernel_cycles(
            name,
            n=n,
            k=step.k,
            m=m,
            groups=g,
            dtype=dtype,
            cores=cores,
            trans_b=trans_b,
            cluster=cluster,
            bank_conflicts=bank,
        )
        total += r.cycles * count
        if count == max(c for _, c in plan.tiles):
            used = r.kernel
    return total, used


def tune_step(
    step: GemmStep,
    *,
    dtype: str,
    cluster: ClusterConfig | None = None,
    kernels: str | Sequence[str] = "all",
    cores: int | None = None,
) -> StepChoice:
    """Pick the fastest kernel, layout and tiling for one step.

    Parameters
    ----------
    step : GemmStep
    dtype : {"fp16", "bf16", "fp32"}
    cluster : ClusterConfig, optional
    kernels : {"all", "library"} or list of str
        Candidate set.
    cores : int, optional
        Default: all the cluster's.

    Returns
    -------
    StepChoice
    """
    cluster = ClusterConfig() if cluster is None else cluster
    cores = cluster.cores if cores is None else cores
    key = tuple(kernels) if not isinstance(kernels, str) else kernels
    return _tune(step, dtype, cluster, key, cores)


@functools.lru_cache(maxsize=4096)
def _tune(step: GemmStep, dtype: str, cluster: ClusterConfig, kernels: Any, cores: int) -> StepChoice:
    plan = plan_tiles(step, dtype=dtype, cluster=cluster)
    base_transforms = tuple(
        (t.kind, transform_cycles(t, dtype=dtype, cluster=cluster, cores=cores)) for t in step.transforms
    )
    dma = 0
    if plan.dma_bytes:
        dma = math.ceil(plan.dma_bytes / cluster.dma_bytes_per_cycle) + plan.transfers * cluster.dma_setup_cycles
    exposed = 0
    if plan.dma_bytes:
        exposed = math.ceil((plan.first_bytes + plan.last_bytes) / cluster.dma_bytes_per_cycle)
        exposed += 3 * cluster.dma_setup_cycles

    def layout_cost(trans_b: bool) -> tuple[tuple[str, int], ...]:
        wrong = (step.b_layout == "natural" and trans_b) or (step.b_layout == "transposed" and not trans_b)
        if not wrong:
            return ()
        rows, cols = (step.k, step.m) if step.b_layout == "natural" else (step.m, step.k)
        c = transpose_cycles(rows=rows, cols=cols * step.groups, dtype=dtype, cluster=cluster, cores=cores).cycles
        return (("transpose_b", c),)

    ranked = []
    for name, trans_b in candidates(step, dtype=dtype, cluster=cluster, kernels=kernels):
        extra = layout_cost(trans_b)
        fixed = sum(c for _, c in base_transforms) + sum(c for _, c in extra)
        bound, _ = _matmul(name, trans_b, step, plan, dtype, cluster, cores, False)
        ranked.append((fixed + max(bound, dma) + exposed, name, trans_b, fixed, extra))
    ranked.sort(key=lambda r: (r[0], r[1], r[2]))
    best: StepChoice | None = None
    for lower, name, trans_b, fixed, extra in ranked:
        if best is not None and lower >= best.cycles:
            break
        matmul, used = _matmul(name, trans_b, step, plan, dtype, cluster, cores, True)
        total = fixed + max(matmul, dma) + exposed
        if best is None or total < best.cycles:
            best = StepChoice(
                layer=step.layer,
                step=step.step,
                kernel=name,
                kernel_used=used,
                trans_b=trans_b,
                cycles=total,
                matmul_cycles=matmul,
                transform_cycles=fixed,
                dma_cycles=dma,
                tiles=plan.count,
                macs=step.macs,
                executed_macs=step.executed_macs,
                transforms=base_transforms + extra,
            )
    assert best is not None
    return best
