"""Draw the SAT accelerator's block diagram (docs/img/sat-block-diagram.png) from a configuration.

Usage: ``.venv/bin/python scripts/sat_block_diagram.py [--preset tiny|default|paper] [-o PATH]``.
The sizes printed in the boxes come from :class:`trainforge.hw.sat.config.SatConfig`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from trainforge.hw.sat.config import SatConfig


def box(ax, x, y, w, h, title, body="", color="#dbe9f6"):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.08", fc=color, ec="#23415e"))
    ax.text(x + w / 2, y + h - 0.18, title, ha="center", va="top", fontsize=10, weight="bold")
    if body:
        ax.text(x + w / 2, y + h - 0.5, body, ha="center", va="top", fontsize=7.5, linespacing=1.3)


def arrow(ax, start, end, label="", both=False):
    style = "<|-|>" if both else "-|>"
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=12, lw=1.2, color="#23415e"))
    if label:
        ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.08, label, ha="center", fontsize=7, color="#444")


def draw(config: SatConfig, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(12, 6.6))
    ax.set_xlim(0, 12)
    ax.set_ylim(0, 6.6)
    ax.axis("off")
    c = config
    box(ax, 0.2, 5.3, 3.0, 1.1, "host / DRAM model", f"descriptors, memory image\n{c.mem_bits}-bit words")
    box(ax, 4.0, 5.3, 4.2, 1.1, "controller", "decode + check (error flag)\nL(t+1) | compute(t) | S(t-1) pipeline")
    box(ax, 9.0, 5.3, 2.8, 1.1, "status + counters", "busy, error code\ncycles by op, stalls, MACs")
    box(ax, 0.2, 2.9, 2.2, 1.9, "DMA", "line gather/scatter\nreads back to back\nin-order responses")
    box(
        ax,
        3.0,
        3.9,
        2.4,
        1.0,
        "A buffer x2",
        f"{c.a_lines} a-lines per half\n{c.rows} groups x {c.m_max} {c.in_fmt}",
    )
    box(
        ax,
        3.0,
        2.7,
        2.4,
        1.0,
        "B buffer x2",
        f"{c.b_lines} b-lines per half\n{c.cols} x (value, index)",
    )
    box(ax, 6.0, 2.6, 1.4, 2.3, "feeder", "OS steps\nWS loads\nWS rows\n+ psums", color="#e8f0da")
    box(
        ax,
        8.0,
        2.6,
        2.3,
        2.3,
        f"PE array {c.rows} x {c.cols}",
        f"{c.in_fmt} x {c.in_fmt} + FP32 FMA\nOS | WS per tile\n{c.m_max}:1 activation select\n(N:M sparse)",
        color="#fbe3c9",
    )
    box(ax, 8.0, 0.9, 2.3, 1.2, "writeback", f"{c.cols} FP32 adders\n(OS accumulate)", color="#e8f0da")
    box(ax, 4.6, 0.9, 2.6, 1.2, "acc buffer", f"{c.acc_lines} acc-lines\n{c.cols} x FP32")
    box(
        ax,
        0.2,
        0.3,
        3.6,
        2.2,
        "line streamer",
        "PRUNE: C x C transposer\n+ nm-prune, lanes = cols\nUPDATE: SGD momentum\n+ SR-STE, FP32 master -> " + c.in_fmt,
        color="#f3dbe9",
    )
    arrow(ax, (1.7, 5.3), (1.3, 4.8), "mem_req / mem_resp", both=True)
    arrow(ax, (3.2, 5.85), (4.0, 5.85), "cmd")
    arrow(ax, (8.2, 5.85), (9.0, 5.85))
    arrow(ax, (2.4, 4.3), (3.0, 4.3))
    arrow(ax, (2.4, 3.3), (3.0, 3.3))
    arrow(ax, (5.4, 4.4), (6.0, 4.1))
    arrow(ax, (5.4, 3.2), (6.0, 3.4))
    arrow(ax, (7.4, 3.75), (8.0, 3.75), "beats")
    arrow(ax, (9.15, 2.6), (9.15, 2.1), "rows")
    arrow(ax, (8.0, 1.5), (7.2, 1.5))
    arrow(ax, (5.9, 2.1), (6.4, 2.6), "psums")
    arrow(ax, (4.6, 1.5), (2.0, 2.9), "stores")
    arrow(ax, (1.3, 2.9), (1.3, 2.5), both=True)
    ax.set_title(f"SAT accelerator, preset '{c.preset}'", fontsize=12)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default", choices=["tiny", "default", "paper"])
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/img/sat-block-diagram.png"))
    args = parser.parse_args()
    draw(SatConfig.preset_named(args.preset), args.output)
    print(args.output)


if __name__ == "__main__":
    main()
