"""Validation of the SAT cycle model (:mod:`trainforge.dataflow.sat_timing`) against the RTL.

:func:`make_cases` draws random SAT programs: GEMM tile programs (dense and sparse, OS and WS,
ragged edges, K split over several tiles), PRUNE (both copies, with and without masks), UPDATE
(with and without the SR-STE mask) and mixed programs, each with its own DRAM timing
(``mem_latency``, ``mem_interval``) set through the configuration. :func:`validate` runs them on the
Verilator model through the program bench (cocotb module ``trainforge.sim.testbenches.tb_validate``
via :func:`trainforge.sim.harness.simulate`), predicts each with
:func:`~trainforge.dataflow.sat_timing.program_timing` and compares the total cycle counts and every
performance counter.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from trainforge.errors import UsageError
from trainforge.hw.sat import isa
from trainforge.hw.sat.config import SatConfig
from trainforge.hw.sat.lines import MemoryImage, gemm_program

__all__ = [
    "TRACE_ENV",
    "VALIDATE_ENV",
    "Case",
    "CaseResult",
    "ValidationReport",
    "compare",
    "make_cases",
    "validate",
]

#: Environment of the cocotb module: JSON ``{"cases": N, "seed": S}``.
VALIDATE_ENV = "TRAINFORGE_VALIDATE"
#: Optional folder for the per-case memory request traces.
TRACE_ENV = "TRAINFORGE_VALIDATE_TRACE"

#: DRAM timings the cases draw from (the first case keeps the configuration's own).
_LATENCIES = (0, 1, 2, 3, 5, 8, 13, 24)
_INTERVALS = (1, 1, 1, 2, 3, 5)
_KINDS = ("gemm-os", "gemm-ws", "gemm-os-ksplit", "gemm-ws", "prune", "update", "gemm-os", "mixed")


@dataclasses.dataclass
class Case:
    """One validation program.

    Attributes
    ----------
    kind : str
        ``gemm``, ``prune``, ``update`` or ``mixed``.
    shape : str
        ``MxKxN`` of a GEMM, the lines of a PRUNE / UPDATE, the parts of a mixed program.
    pattern : str
        ``n:m`` (``-`` for UPDATE).
    dataflow : str
        ``OS`` / ``WS`` for GEMMs, ``BP`` / ``FF`` for PRUNE, ``-`` otherwise.
    config : SatConfig
        The configuration with this case's ``mem_latency`` and ``mem_interval``.
    descriptors : list
    image : numpy.ndarray
    """

    kind: str
    shape: str
    pattern: str
    dataflow: str
    config: SatConfig
    descriptors: list[isa.Descriptor]
    image: np.ndarray

    @property
    def label(self) -> str:
        return f"{self.kind} {self.dataflow} {self.pattern} {self.shape}"

    def fields(self) -> dict[str, Any]:
        """The label fields and DRAM timing, as written to the metrics file."""
        return {
            "kind": self.kind,
            "shape": self.shape,
            "pattern": self.pattern,
            "dataflow": self.dataflow,
            "mem_latency": self.config.mem_latency,
            "mem_interval": self.config.mem_interval,
        }


def _patterns(config: SatConfig) -> list[tuple[int, int]]:
    wanted = [(1, 2), (2, 4), (1, 4), (2, 8), (1, 8), (4, 8), (3, 4), (4, 16), (8, 16)]
    return [(config.m_max, config.m_max)] + [p for p in wanted if config.supports(*p)]


def _gemm(config: SatConfig, rng: np.random.Generator, image: MemoryImage, dataflow: isa.Dataflow, split: bool):
    patterns = _patterns(config)
    n, m = patterns[int(rng.integers(len(patterns)))]
    r, c = config.rows, config.cols
    big_m = int(rng.integers(1, 3 * r + 2))
    big_n = int(rng.integers(1, 2 * c + 2))
    big_k = int(rng.integers(1, 6 * m + 1))
    a = rng.integers(0, 1 << 14, size=(big_m, big_k), dtype=np.uint16)  # finite values; timing ignores them
    b = rng.integers(0, 1 << 14, size=(big_k, big_n), dtype=np.uint16)
    max_steps = n * int(rng.integers(1, 3)) if split and dataflow == isa.Dataflow.OS else None
    max_rows = int(rng.integers(1, 2 * r + 1)) if rng.random() < 0.3 and dataflow == isa.Dataflow.WS else None
    tag = isa.Tag(int(rng.integers(4)))
    program = gemm_program(
        config, a, b, n, m, dataflow=dataflow, image=image, tag=tag, max_steps=max_steps, max_rows=max_rows
    )
    return list(program.descriptors), f"{n}:{m}", f"{big_m}x{big_k}x{big_n}"


def _prune(config: SatConfig, rng: np.random.Generator, image: MemoryImage, transpose: bool):
    sparse = [p for p in _patterns(config)[1:] if p[0] < p[1]]
    n, m = sparse[int(rng.integers(len(sparse)))]
    cols = config.cols
    if transpose:
        unit = int(np.lcm(cols, m)) // cols
        panels = unit * int(rng.integers(1, max(2, 80 // (unit * cols)) + 1))
        stride = cols + int(rng.integers(0, 3))
        count, total, reduction = panels, panels * stride, panels * cols
    else:
        count = m * int(rng.integers(1, 80 // m + 1))
        stride, total, reduction = 0, count, count
    src = image.place("w", rng.integers(0, 1 << 15, size=(total, cols), dtype=np.uint16))
    dst = image.alloc_lines("b", reduction // m * n)
    mask = image.alloc_lines("mask", total)
    desc = isa.Prune(
        n=n,
        m=m,
        lines=count,
        src_addr=src,
        dst_addr=dst,
        mask_addr=mask,
        transpose=transpose,
        write_mask=bool(rng.random() < 0.7),
        panel_stride=stride,
        tag=isa.Tag.FF if transpose else isa.Tag.BP,
    )
    return [desc], f"{n}:{m}", f"{count} {'panels' if transpose else 'lines'}"


def _update(config: SatConfig, rng: np.random.Generator, image: MemoryImage):
    count = int(rng.integers(1, 30))
    shape = (count, config.cols)
    desc = isa.Update(
        lines=count,
        w_addr=image.place("acc", rng.standard_normal(shape).astype(np.float32).view(np.uint32)),
        v_addr=image.place("acc", rng.standard_normal(shape).astype(np.float32).view(np.uint32)),
        g_addr=image.place("acc", rng.standard_normal(shape).astype(np.float32).view(np.uint32)),
        mask_addr=image.place("mask", rng.random(shape) < 0.5),
        w16_addr=image.alloc_lines("w", count),
        use_mask=bool(rng.random() < 0.6),
        lr=0.01,
        momentum=0.9,
        decay=2e-4,
        tag=isa.Tag.WU,
    )
    return [desc], "-", f"{count} lines"


def make_cases(config: SatConfig, count: int, seed: int) -> list[Case]:
    """``count`` random validation programs for ``config`` (deterministic in ``seed``).

    Kinds rotate through OS and WS GEMM tile programs (an OS one with K forced into several
    accumulated tiles), PRUNE (BP and FF copies), UPDATE and mixed programs (GEMMs, a PRUNE and
    an UPDATE in one program). Every case but the first draws its own ``mem_latency`` and
    ``mem_interval``; the first keeps those of ``config``.
    """
    if count < 1:
        raise UsageError(f"the number of cases must be at least 1, not {count}")
    rng = np.random.default_rng(seed)
    cases = []
    for index in range(count):
        kind = _KINDS[index % len(_KINDS)]
        if index == 0:
            cfg = config
        else:
            cfg = config.replace(mem_latency=int(rng.choice(_LATENCIES)), mem_interval=int(rng.choice(_INTERVALS)))
        image = MemoryImage(cfg)
        if kind.startswith("gemm"):
            dataflow = isa.Dataflow.WS if kind == "gemm-ws" else isa.Dataflow.OS
            descs, pattern, shape = _gemm(cfg, rng, image, dataflow, split=kind.endswith("ksplit"))
            case = Case("gemm", shape, pattern, dataflow.name, cfg, descs, image.words)
        elif kind == "prune":
            transpose = bool((index // len(_KINDS)) % 2)
            descs, pattern, shape = _prune(cfg, rng, image, transpose)
            case = Case("prune", shape, pattern, "FF" if transpose else "BP", cfg, descs, image.words)
        elif kind == "update":
            descs, pattern, shape = _update(cfg, rng, image)
            case = Case("update", shape, pattern, "-", cfg, descs, image.words)
        else:
            parts = [
                _gemm(cfg, rng, image, isa.Dataflow.OS, split=False),
                _prune(cfg, rng, image, bool(rng.random() < 0.5)),
                _gemm(cfg, rng, image, isa.Dataflow.WS, split=False),
                _update(cfg, rng, image),
                _gemm(cfg, rng, image, isa.Dataflow.OS, split=True),
            ]
            descs = [d for part in parts for d in part[0]]
            case = Case(
                "mixed", f"{len(descs)} descriptors", "/".join(p[1] for p in parts), "-", cfg, descs, image.words
            )
        case.image = np.array(image.words, dtype=np.uint32)
        cases.append(case)
    return cases


# --------------------------------------------------------------------------------------------
# comparison with the model
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CaseResult:
    """One case: the RTL's measurement beside the model's prediction.

    Attributes
    ----------
    index : int
    kind, shape, pattern, dataflow : str
        As :class:`Case`.
    mem_latency, mem_interval : int
    descriptors : int
        Length of the program.
    measured, predicted : int
        Total cycles: the bench's ``cycles`` and :func:`~trainforge.dataflow.sat_timing.program_timing`'s.
    error : int
        ``predicted - measured``.
    pct_error : float
        ``100 * |error| / measured``.
    counter_errors : dict
        Counters whose prediction differs: name to ``[measured, predicted]``; empty when all agree.
    accept_errors : int
        Descriptors whose predicted cmd acceptance cycle differs from the measured one.
    """

    index: int
    kind: str
    shape: str
    pattern: str
    dataflow: str
    mem_latency: int
    mem_interval: int
    descriptors: int
    measured: int
    predicted: int
    error: int
    pct_error: float
    counter_errors: dict[str, list[int]]
    accept_errors: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class ValidationReport:
    """Accuracy of the cycle model over a set of cases.

    Attributes
    ----------
    cases : int
    max_cycle_error : int
        Largest ``|predicted - measured|`` total cycle count.
    mean_abs_pct_error : float
    counters_exact : int
        Cases whose every counter and every acceptance cycle was predicted exactly.
    rows : list of CaseResult
    model_s : float
        Wall time of all the predictions.
    sim_s : float
        Wall time of the simulator process (0 when the measurements were given).
    """

    cases: int
    max_cycle_error: int
    mean_abs_pct_error: float
    counters_exact: int
    rows: list[CaseResult]
    model_s: float = 0.0
    sim_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "max_cycle_error": self.max_cycle_error,
            "mean_abs_pct_error": self.mean_abs_pct_error,
            "counters_exact": self.counters_exact,
            "model_s": self.model_s,
            "sim_s": self.sim_s,
            "rows": [row.to_dict() for row in self.rows],
        }


def compare(config: SatConfig, measurements: Sequence[dict[str, Any]]) -> ValidationReport:
    """Predict every measured case with the model and compare.

    Parameters
    ----------
    config : SatConfig
        The configuration the RTL was built with; each case's ``mem_latency`` / ``mem_interval``
        replace its own.
    measurements : sequence of dict
        Metrics lines of ``tb_validate`` (``test == "validate_case"``; others are skipped).
    """
    import time

    from trainforge.dataflow.sat_timing import program_timing

    rows: list[CaseResult] = []
    model_s = 0.0
    for m in measurements:
        if m.get("test") != "validate_case":
            continue
        cfg = config.replace(mem_latency=int(m["mem_latency"]), mem_interval=int(m["mem_interval"]))
        descriptors = [isa.decode(cfg, int(word, 16)) for word in m["program"]]
        start = time.perf_counter()
        timing = program_timing(cfg, descriptors)
        model_s += time.perf_counter() - start
        counter_errors = {
            name: [int(value), timing.counters[name]]
            for name, value in m["counters"].items()
            if int(value) != timing.counters[name]
        }
        predicted_accepts = [d.accepted for d in timing.descriptors]
        accept_errors = sum(a != b for a, b in zip(predicted_accepts, m["accepted"], strict=False)) + abs(
            len(predicted_accepts) - len(m["accepted"])
        )
        measured = int(m["cycles"])
        error = timing.cycles - measured
        rows.append(
            CaseResult(
                index=int(m["index"]),
                kind=m["kind"],
                shape=m["shape"],
                pattern=m["pattern"],
                dataflow=m["dataflow"],
                mem_latency=cfg.mem_latency,
                mem_interval=cfg.mem_interval,
                descriptors=len(descriptors),
                measured=measured,
                predicted=timing.cycles,
                error=error,
                pct_error=100.0 * abs(error) / measured,
                counter_errors=counter_errors,
                accept_errors=accept_errors,
            )
        )
    if not rows:
        raise UsageError("no validation cases among the measurements")
    return ValidationReport(
        cases=len(rows),
        max_cycle_error=max(abs(r.error) for r in rows),
        mean_abs_pct_error=sum(r.pct_error for r in rows) / len(rows),
        counters_exact=sum(not r.counter_errors and not r.accept_errors for r in rows),
        rows=rows,
        model_s=model_s,
    )


def validate(config: SatConfig, cases: int = 50, seed: int = 1) -> ValidationReport:
    """Run ``cases`` random programs on the RTL (Verilator) and compare the cycle model with them.

    Parameters
    ----------
    config : SatConfig
        The accelerator to build (cached by its Verilog) and the base DRAM timing.
    cases : int
        Number of programs (:func:`make_cases`).
    seed : int
        Seed of the programs.

    Raises
    ------
    UsageError
        ``cases < 1`` or ``seed < 0``.
    trainforge.errors.SimulationError
        A program did not run to its normal end on the RTL.
    """
    from trainforge.errors import SimulationError
    from trainforge.sim.harness import simulate

    if not isinstance(config, SatConfig):
        raise TypeError(f"config must be a SatConfig, not {config!r}")
    if cases < 1:
        raise UsageError(f"cases must be at least 1, not {cases}")
    if seed < 0:
        raise UsageError(f"seed must be >= 0, not {seed}")
    result = simulate(
        "sat",
        config,
        test_module="trainforge.sim.testbenches.tb_validate",
        extra_env={VALIDATE_ENV: json.dumps({"cases": cases, "seed": seed})},
        check=False,
    )
    if not result.passed:
        raise SimulationError(f"the validation programs did not run to their end on the RTL; log: {result.log}")
    report = compare(config, result.metrics)
    return dataclasses.replace(report, sim_s=result.wall_s)
