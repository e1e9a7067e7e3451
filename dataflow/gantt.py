"""Gantt timeline (PNG) of a scheduled iteration: one lane per resource, from the exact milestones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainforge.hw.sat import isa

__all__ = ["gantt_png", "resource_intervals"]

_COLOURS = {"ff": "tab:blue", "bp": "tab:orange", "wu": "tab:green", "prune": "tab:red", "update": "tab:purple"}
LANES = ("DMA load", "PE array", "DMA store", "pruning unit", "update engine")


def resource_intervals(schedule: Any) -> dict[str, list[tuple[int, int, str]]]:
    """Per resource, ``(start, end, kind)`` busy intervals (end inclusive) merged when adjacent and alike."""
    lanes: dict[str, list[tuple[int, int, str]]] = {k: [] for k in LANES}

    def add(lane: str, start: int | None, end: int | None, kind: str) -> None:
        if start is None or end is None:
            return
        items = lanes[lane]
        if items and items[-1][2] == kind and start <= items[-1][1] + 1:
            items[-1] = (items[-1][0], max(items[-1][1], end), kind)
        else:
            items.append((start, end, kind))

    for d, owner, t in zip(schedule.program, schedule.owners, schedule.timing.descriptors, strict=True):
        if isinstance(d, isa.Gemm):
            kind = owner.split(":")[1]
            add("DMA load", t.load_start, t.load_end, kind)
            add("PE array", t.compute_start, t.compute_end, kind)
            add("DMA store", t.store_start, t.store_end, kind)
        elif isinstance(d, isa.Prune):
            add("pruning unit", t.accepted + 1, t.done, "prune")
        else:
            add("update engine", t.accepted + 1, t.done, "update")
    return lanes


def gantt_png(config: Any, schedule: Any, path: str | Path, *, title: str = "") -> Path:
    """Write the iteration's timeline to ``path`` (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    lanes = resource_intervals(schedule)
    scale = 1 / (config.clock_mhz * 1e3)  # cycles -> milliseconds
    fig, ax = plt.subplots(figsize=(14, 3.6), dpi=120)
    for y, lane in enumerate(LANES):
        for kind in _COLOURS:
            bars = [(s * scale, (e - s + 1) * scale) for s, e, k in lanes[lane] if k == kind]
            if bars:
                ax.broken_barh(bars, (y - 0.4, 0.8), facecolors=_COLOURS[kind], linewidth=0)
    ax.set_yticks(range(len(LANES)), LANES)
    ax.invert_yaxis()
    ax.set_xlabel(f"time (ms at {config.clock_mhz:g} MHz); {schedule.cycles:,} cycles")
    label = title or "iteration"
    if schedule.options.overlap:
        label += " (timeline as the RTL runs it; --overlap totals are a modelled extension)"
    ax.set_title(label)
    ax.legend(handles=[Patch(color=c, label=k) for k, c in _COLOURS.items()], loc="upper right", ncols=5, fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
