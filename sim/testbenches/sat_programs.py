"""Random SAT programs for the regression: GEMMs, PRUNEs and UPDATEs placed in one memory image.

Each builder returns a :class:`Program` (image, descriptors, a label); the testbench runs it on the
RTL and on :func:`trainforge.models.sat_golden.execute` and requires the two final images to be
identical word for word.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from trainforge.hw.sat import isa
from trainforge.hw.sat.config import SatConfig
from trainforge.hw.sat.lines import MemoryImage, gemm_program

__all__ = ["Program", "bad_programs", "gemm_case", "patterns", "prune_case", "update_case"]

_TORCH = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclasses.dataclass
class Program:
    label: str
    image: np.ndarray
    descriptors: list[isa.Gemm | isa.Prune | isa.Update]

    def encoded(self, config: SatConfig) -> list[int]:
        return [isa.encode(config, d) for d in self.descriptors]


def patterns(config: SatConfig) -> list[tuple[int, int]]:
    """Dense (``m_max:m_max``) and every sparse n:m the issue names that ``config`` supports."""
    wanted = [(1, 2), (2, 4), (1, 4), (2, 8), (1, 8), (4, 8), (3, 4)]
    return [(config.m_max, config.m_max)] + [p for p in wanted if config.supports(*p)]


def _bits(rng: np.random.Generator, shape: tuple[int, ...], fmt: str, scale: float = 1.0) -> np.ndarray:
    values = torch.from_numpy(rng.standard_normal(shape).astype(np.float32) * scale).to(_TORCH[fmt])
    return values.view(torch.int16).numpy().astype(np.uint16)


def gemm_case(
    config: SatConfig,
    rng: np.random.Generator,
    *,
    dataflow: isa.Dataflow,
    pattern: tuple[int, int],
    tag: isa.Tag = isa.Tag.OTHER,
    ragged: bool = True,
) -> Program:
    """A random GEMM with ragged edges (dims not multiples of R, C or m), tiled by ``gemm_program``."""
    n, m = pattern
    rows, cols = config.rows, config.cols
    big_m = int(rng.integers(1, 2 * rows + 2)) if ragged else 2 * rows
    big_n = int(rng.integers(1, 2 * cols + 2)) if ragged else 2 * cols
    big_k = int(rng.integers(1, 4 * m + 1)) if ragged else 4 * m
    image = MemoryImage(config)
    a = _bits(rng, (big_m, big_k), config.in_fmt)
    b = _bits(rng, (big_k, big_n), config.in_fmt)
    # Now and then force K to be split across tiles (OS chunks / several WS K-tiles).
    max_steps = int(rng.integers(1, 3)) * n if rng.random() < 0.3 and dataflow == isa.Dataflow.OS else None
    program = gemm_program(config, a, b, n, m, dataflow=dataflow, image=image, tag=tag, max_steps=max_steps)
    label = f"gemm {dataflow.name} {n}:{m} {big_m}x{big_k}x{big_n}"
    return Program(label, image.words, list(program.descriptors))


def prune_case(config: SatConfig, rng: np.random.Generator, *, pattern: tuple[int, int], transpose: bool) -> Program:
    """PRUNE of a random weight panel: the BP copy of one panel, or the FF copy of a band of ``cols`` rows."""
    n, m = pattern
    cols = config.cols
    image = MemoryImage(config)
    if transpose:
        unit_panels = int(np.lcm(cols, m)) // cols
        # Up to about two streamer chunks (32 lines) and a half: chunk boundaries are covered.
        panels = unit_panels * int(rng.integers(1, max(2, 80 // (unit_panels * cols)) + 1))
        stride = cols + int(rng.integers(0, 3))  # rows of the matrix, at least the band
        lines = np.zeros((panels * stride, cols), dtype=np.uint16)
        lines[:] = _bits(rng, lines.shape, config.in_fmt)
        count = panels
        reduction = panels * cols
    else:
        lines = _bits(rng, (m * int(rng.integers(1, 80 // m + 1)), cols), config.in_fmt)
        stride, count, reduction = 0, len(lines), len(lines)
    _ties_and_zeros(rng, lines)
    src = image.place("w", lines)
    dst = image.alloc_lines("b", reduction // m * n)
    mask = image.alloc_lines("mask", len(lines))
    desc = isa.Prune(
        n=n,
        m=m,
        lines=count,
        src_addr=src,
        dst_addr=dst,
        mask_addr=mask,
        transpose=transpose,
        write_mask=bool(rng.random() < 0.8),
        panel_stride=stride,
        tag=isa.Tag.FF if transpose else isa.Tag.BP,
    )
    return Program(f"prune {'FF' if transpose else 'BP'} {n}:{m} {count} lines", image.words, [desc])


def _ties_and_zeros(rng: np.random.Generator, lines: np.ndarray) -> None:
    """Sprinkle equal magnitudes (ties), zeros and signed zeros over a weight array, in place."""
    flat = lines.reshape(-1)
    picks = rng.random(flat.shape)
    flat[picks < 0.05] = 0x0000
    flat[(picks >= 0.05) & (picks < 0.08)] = 0x8000
    flat[(picks >= 0.08) & (picks < 0.15)] = flat[0] & 0x7FFF


def update_case(config: SatConfig, rng: np.random.Generator, *, lines: int | None = None) -> Program:
    """UPDATE of random FP32 master weights, momentum and gradients, with and without the SR-STE mask."""
    count = int(rng.integers(1, 20)) if lines is None else lines
    image = MemoryImage(config)
    shape = (count, config.cols)
    w = rng.standard_normal(shape).astype(np.float32)
    v = (rng.standard_normal(shape) * 0.1).astype(np.float32)
    g = (rng.standard_normal(shape) * 0.01).astype(np.float32)
    keep = rng.random(shape) < 0.5
    desc = isa.Update(
        lines=count,
        w_addr=image.place("acc", w.view(np.uint32)),
        v_addr=image.place("acc", v.view(np.uint32)),
        g_addr=image.place("acc", g.view(np.uint32)),
        mask_addr=image.place("mask", keep),
        w16_addr=image.alloc_lines("w", count),
        use_mask=bool(rng.random() < 0.7),
        lr=float(rng.choice([0.1, 0.01, 0.05])),
        momentum=float(rng.choice([0.0, 0.9])),
        decay=float(rng.choice([0.0, 2e-4, 0.5])),
    )
    return Program(f"update {count} lines", image.words, [desc])


def bad_programs(config: SatConfig) -> list[tuple[isa.ErrorCode, Program]]:
    """A valid GEMM, then one descriptor breaking each rule, then another GEMM that must not run."""
    rng = np.random.default_rng(7)
    good = gemm_case(config, rng, dataflow=isa.Dataflow.OS, pattern=(config.m_max, config.m_max), ragged=False)
    rows, cols = config.rows, config.cols
    bad = [
        (isa.ErrorCode.BAD_PATTERN, isa.Gemm(n=3, m=6, rows=1, cols=1, steps=1)),
        (isa.ErrorCode.BAD_PATTERN, isa.Gemm(n=5, m=4, rows=1, cols=1, steps=1)),
        (isa.ErrorCode.ZERO_DIM, isa.Gemm(n=2, m=4, rows=0, cols=1, steps=4)),
        (isa.ErrorCode.ZERO_DIM, isa.Gemm(n=2, m=4, rows=1, cols=1, steps=0)),
        (isa.ErrorCode.TILE_TOO_BIG, isa.Gemm(n=2, m=4, rows=rows + 1, cols=1, steps=2)),
        (isa.ErrorCode.TILE_TOO_BIG, isa.Gemm(n=2, m=4, rows=1, cols=cols + 1, steps=2)),
        (
            isa.ErrorCode.TILE_TOO_BIG,
            isa.Gemm(n=2, m=4, rows=1, cols=1, steps=rows + 1, dataflow=isa.Dataflow.WS),
        ),
        (isa.ErrorCode.BUFFER_OVERFLOW, isa.Gemm(n=1, m=1, rows=1, cols=1, steps=config.b_lines + 1)),
        (isa.ErrorCode.BUFFER_OVERFLOW, isa.Gemm(n=1, m=1, rows=2, cols=1, steps=1, acc_addr=config.acc_lines - 1)),
        (isa.ErrorCode.BAD_PATTERN, isa.Prune(n=4, m=4, lines=4)),
        (isa.ErrorCode.BAD_PATTERN, isa.Prune(n=2, m=8, lines=12)),
        (isa.ErrorCode.ZERO_DIM, isa.Prune(n=1, m=2, lines=0)),
        (isa.ErrorCode.ZERO_DIM, isa.Update(lines=0)),
    ]
    programs = []
    for code, desc in bad:
        if not config.supports(2, 4) and isinstance(desc, isa.Gemm) and desc.m == 4:
            continue
        assert isa.check(config, desc) == code, (desc, isa.check(config, desc))
        descriptors = [*good.descriptors, desc, *good.descriptors]
        programs.append((code, Program(f"bad {code.name}", good.image.copy(), descriptors)))
    return programs
