"""Training variants that change the GEMM mix, as op lists scheduled and costed like any workload.

* forward-only sparse (SR-STE: FF weight N:M, BP and WU dense), BDWP, transposable masks
  (:func:`~trainforge.dataflow.schedule.workload_for`);
* Progressive Gradient Flow structure decay (:class:`~trainforge.models.sparse_training.StructureDecay`):
  one workload per phase (dense, 7:8, 4:8, 2:8, ...), the run's mean iteration weighted by the
  phases' step counts (:func:`structure_decay`);
* updates of a subset of the layers per step (:func:`subset_update`): the frozen layers keep FF and
  BP, lose WU, UPDATE and PRUNE.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from typing import Any

from trainforge.dataflow.schedule import Options, schedule, workload_for
from trainforge.errors import UsageError
from trainforge.hw.sat.config import SatConfig
from trainforge.models.workloads import GemmOp, MaskOp, UpdateOp, Workload

__all__ = ["structure_decay", "subset_update", "variant_rows"]


def subset_update(workload: Workload, trained: Collection[str]) -> Workload:
    """``workload`` with only the layers in ``trained`` updated this step (the others frozen).

    Frozen layers keep their FF and BP GEMMs (the gradient still flows through them to trained
    layers below) but lose WU, UPDATE and PRUNE (their compressed copies stay valid).
    """
    names = {layer.name for layer in workload.layers}
    unknown = set(trained) - names
    if unknown:
        raise UsageError(f"unknown layers {sorted(unknown)}; valid: {sorted(names)}")
    keep = []
    for op in workload.ops:
        frozen = op.layer not in trained and op.layer in names
        if frozen and ((isinstance(op, GemmOp) and op.stage == "wu") or isinstance(op, UpdateOp | MaskOp)):
            continue
        keep.append(op)
    return dataclasses.replace(workload, ops=tuple(keep))


def structure_decay(
    config: SatConfig,
    model: Any,
    example: Any,
    patterns: list[tuple[int, int] | None],
    *,
    steps: list[int] | None = None,
    method: str = "bdwp",
    batch: int | None = None,
    options: Options = Options(offline=True),
) -> dict[str, Any]:
    """Cycles per iteration of each PGF phase and the run's step-weighted mean.

    Parameters
    ----------
    patterns : list of (n, m) or None
        The phases (``StructureDecay.patterns``), ``None`` for dense.
    steps : list of int, optional
        Steps spent in each phase (default: equal).
    """
    steps = steps or [1] * len(patterns)
    if len(steps) != len(patterns):
        raise UsageError("structure_decay needs one step count per phase")
    phases = []
    for pattern, count in zip(patterns, steps, strict=True):
        if pattern is None:
            wl = workload_for(model, example, "dense", 2, 8, batch=batch)
        else:
            wl = workload_for(model, example, method, *pattern, batch=batch)
        s = schedule(config, wl, options)
        phases.append(
            {
                "pattern": "dense" if pattern is None else f"{pattern[0]}:{pattern[1]}",
                "steps": count,
                "cycles": s.cycles,
                "energy_j": float(s.energy.total),
            }
        )
    total = sum(p["steps"] for p in phases)
    mean = sum(p["cycles"] * p["steps"] for p in phases) / total
    return {
        "phases": phases,
        "mean_cycles": mean,
        "speedup_vs_dense": phases[0]["cycles"] / mean if patterns[0] is None else None,
    }


def variant_rows(
    config: SatConfig, model: Any, example: Any, *, batch: int | None = None, options: Options = Options(offline=True)
) -> list[dict[str, Any]]:
    """Dense, SR-STE, BDWP and transposable 2:8, and BDWP with only the last half of the layers trained."""
    rows = []
    dense = None
    for method in ("dense", "srste", "bdwp", "transposable"):
        wl = workload_for(model, example, method, 2, 8, batch=batch)
        s = schedule(config, wl, options)
        dense = dense or s.cycles
        rows.append(
            {
                "variant": f"{method} 2:8" if method != "dense" else "dense",
                "cycles": s.cycles,
                "speedup_vs_dense": dense / s.cycles,
                "descriptors": len(s.program),
            }
        )
    wl = workload_for(model, example, "bdwp", 2, 8, batch=batch)
    layers = [lay.name for lay in wl.layers]
    half = subset_update(wl, layers[len(layers) // 2 :])
    s = schedule(config, half, options)
    rows.append(
        {
            "variant": "bdwp 2:8, last half of the layers updated",
            "cycles": s.cycles,
            "speedup_vs_dense": dense / s.cycles,
            "descriptors": len(s.program),
        }
    )
    return rows
