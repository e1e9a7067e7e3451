"""Whole-iteration schedule of a training workload on the SAT accelerator, and its cost.

:func:`iteration_program` turns a :class:`~trainforge.models.workloads.Workload` into one SAT
program (a list of :mod:`~trainforge.hw.sat.isa` descriptors): the FF GEMMs of every layer, then
per layer in reverse the BP and WU GEMMs, the UPDATE of each trainable parameter and the PRUNE of
each N:M weight copy, each GEMM tiled by its searched mapping (:mod:`trainforge.dataflow.mapping`).
:func:`schedule` times it with the exact model (:func:`~trainforge.dataflow.sat_timing.program_timing`,
0 cycles of error against the RTL): the schedule *is* a program the RTL runs.

Dataflow optimisations (the SAT paper's three, switchable, :class:`Options`):

``pregen``     pre-generation: the N:M copies of a weight are pruned right after its UPDATE (ready for
               the next iteration) instead of right before the FF / BP GEMMs that read them. On the RTL
               as built this only moves the PRUNE (it still drains the GEMM pipeline).
``interleave`` interleave mapping: the BP and WU tile streams of a layer are merged into one
               descriptor stream (each in its own half of the accumulator), so one stream's operand
               loads overlap the other's compute. An RTL program: exact.
``offline``    offline scheduling: a static order that runs every UPDATE and PRUNE after the last GEMM
               of the iteration (one pipeline drain instead of one per parameter). An RTL program: exact.
``overlap``    **modelled hardware extension** (not in the RTL, whose line streamer waits for the GEMM
               pipeline to drain): UPDATE and PRUNE run on their engines concurrently with GEMMs, a
               static list schedule over the PE array, the pruning unit, the update engine and the
               DMA. Its cycles are the exact GEMM-only program plus the streamer's DRAM words on the
               shared port (scaled by the GEMM DMA's busy fraction) plus the streamer work that cannot
               start before the last GEMM ends.

Non-GEMM element-wise work (activations, normalisation, pooling, the loss) has no unit on SAT and is
not scheduled (docs/scheduler.md).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from trainforge.dataflow.energy import EnergyTable, gemm_actions, prune_actions, sat_energy, update_actions
from trainforge.dataflow.mapping import GemmShape, Mapping, candidates, gemm_tiles, search
from trainforge.dataflow.sat_timing import program_timing
from trainforge.errors import UsageError
from trainforge.hw.sat import isa
from trainforge.hw.sat.config import SatConfig
from trainforge.models.workloads import GemmOp, MaskOp, UpdateOp, Workload

__all__ = ["Options", "Schedule", "iteration_program", "schedule", "workload_for"]

_TAGS = {"ff": isa.Tag.FF, "bp": isa.Tag.BP, "wu": isa.Tag.WU}
_MAX_LINES = (1 << isa.DIM_BITS) - 1


@dataclasses.dataclass(frozen=True)
class Options:
    """Switches of the scheduler (module docstring). ``search=False`` uses ``gemm_program``'s mapping."""

    search: bool = True
    pregen: bool = False
    interleave: bool = False
    offline: bool = False
    overlap: bool = False
    objective: str = "latency"

    def label(self) -> str:
        on = [k for k in ("search", "pregen", "interleave", "offline", "overlap") if getattr(self, k)]
        return "+".join(on) or "baseline"


@dataclasses.dataclass
class Schedule:
    """A scheduled iteration and its exact cost.

    Attributes
    ----------
    program : list of descriptors
    owners : list of str
        Per descriptor, the workload op it belongs to (``<layer>:<stage>``, ``<param>:update``, ...).
    cycles : int
        Exact cycles of ``program`` (``program_timing``), or with ``overlap`` the modelled cycles.
    rtl_cycles : int
        Exact cycles of ``program`` as the RTL runs it (equal to ``cycles`` without ``overlap``).
    timing : ProgramTiming
    energy : EnergyBreakdown
    mappings : dict of str to Mapping
    layers : list of dict
        Per layer: ``name``, per-stage cycles (``ff``, ``bp``, ``wu``, ``update``, ``prune``: cycles
        from each op's first to its last descriptor milestone, so overlapping pipelines may double
        count a few cycles), MACs, useful MACs and mapping labels.
    """

    program: list[isa.Descriptor]
    owners: list[str]
    cycles: int
    rtl_cycles: int
    timing: Any
    energy: Any
    mappings: dict[str, Mapping]
    layers: list[dict[str, Any]]
    options: Options
    macs: int
    useful_macs: int
    dram_bytes: int
    overlap_detail: dict[str, int] | None = None


# --------------------------------------------------------------------------------------------
# workloads of the supported methods
# --------------------------------------------------------------------------------------------


def workload_for(model: Any, example: Any, method: str, n: int, m: int, batch: int | None = None) -> Workload:
    """A workload of ``method`` (``dense``, ``srste``, ``bdwp`` or ``transposable``).

    ``transposable``: one transposable N:M mask serves both FF (groups along C_in) and BP (along
    C_out), so its GEMM mix is BDWP's; the mask itself is found off the accelerator (its top-n
    per group is not transposable) and the accelerator compresses the two copies with PRUNE.
    """
    from trainforge.models.workloads import workload

    base = "bdwp" if method == "transposable" else method
    return workload(model, example, method=base, n=n, m=m, batch=batch)


# --------------------------------------------------------------------------------------------
# the program
# --------------------------------------------------------------------------------------------


def _shape(config: SatConfig, op: GemmOp) -> GemmShape:
    n, m = op.nm if op.nm else (config.m_max, config.m_max)
    if not config.supports(n, m):
        raise UsageError(f"{op.name}: {n}:{m} is not supported by this configuration (m must divide {config.m_max})")
    return GemmShape(op.m, op.n, op.k, n, m, op.count)


def _default_mapping(config: SatConfig, gemm: GemmShape) -> Mapping:
    """:func:`~trainforge.hw.sat.lines.gemm_program`'s OS tiling: row blocks outer, K innermost."""
    per_tile = min(config.b_lines, config.a_lines * gemm.n, gemm.steps)
    if per_tile < gemm.steps:
        per_tile = max(gemm.n, per_tile // gemm.n * gemm.n)
    return Mapping("os", min(config.rows, gemm.m_rows), per_tile, "a", 1)


def _weight_rows(workload: Workload) -> dict[str, int]:
    """Rows (C_out per group) of each weight parameter, from the layers."""
    rows = {}
    for layer in workload.layers:
        if layer.weight:
            rows[layer.weight] = max(1, layer.c_out // max(layer.groups, 1))
    return rows


def _prune_descs(config: SatConfig, op: MaskOp, rows: int) -> list[isa.Prune]:
    c = config.cols
    cols = max(1, op.elements // rows)
    panels = -(-cols // c)
    if op.copy == "ff":  # groups along C_in: one transposed PRUNE per band of C rows
        bands = -(-rows // c)
        lines = panels if panels * c % op.m == 0 else -(-panels * c // op.m) * op.m // c
        return [
            isa.Prune(
                tag=isa.Tag.OTHER, n=op.n, m=op.m, lines=lines, transpose=True, write_mask=True, panel_stride=rows
            )
            for _ in range(bands)
        ]
    lines = -(-rows // op.m) * op.m  # groups along C_out: one PRUNE per panel
    return [isa.Prune(tag=isa.Tag.OTHER, n=op.n, m=op.m, lines=lines, write_mask=False) for _ in range(panels)]


def _update_descs(config: SatConfig, op: UpdateOp, rows: int | None, use_mask: bool) -> list[isa.Update]:
    c = config.cols
    lines = -(-(op.elements // rows) // c) * rows if rows else -(-op.elements // c)
    out = []
    while lines > 0:
        k = min(lines, _MAX_LINES)
        out.append(isa.Update(lines=k, use_mask=use_mask, lr=0.01, momentum=0.9, decay=2e-4))
        lines -= k
    return out


def _segments(tiles: list[isa.Gemm]) -> list[list[isa.Gemm]]:
    """Runs of a tile stream that start where nothing is chained through the accumulator."""
    segs: list[list[isa.Gemm]] = []
    for t in tiles:
        if not segs or (not t.accumulate and t.load_a and t.load_b):
            segs.append([])
        segs[-1].append(t)
    return segs


def _merge(a: list[isa.Gemm], b: list[isa.Gemm]) -> list[isa.Gemm]:
    """Interleave two tile streams segment by segment, in proportion to their lengths."""
    sa, sb = _segments(a), _segments(b)
    out: list[isa.Gemm] = []
    ia = ib = 0
    while ia < len(sa) or ib < len(sb):
        if ib >= len(sb) or (ia < len(sa) and ia / len(sa) <= ib / len(sb)):
            out.extend(sa[ia])
            ia += 1
        else:
            out.extend(sb[ib])
            ib += 1
    return out


def _relabel_loads(tiles: list[isa.Gemm], streams: list[int]) -> list[isa.Gemm]:
    """Recompute ``load_a`` / ``load_b`` from operand identity after interleaving (gemm_program's rule)."""
    out, prev_a, prev_b = [], None, None
    for t, s in zip(tiles, streams, strict=True):
        key_a = (s, t.a_addr, t.rows if t.dataflow == isa.Dataflow.WS else -(-t.steps // t.n))
        key_b = (s, t.b_addr, t.steps)
        out.append(dataclasses.replace(t, load_a=key_a != prev_a, load_b=key_b != prev_b))
        prev_a, prev_b = key_a, key_b
    return out


def iteration_program(
    config: SatConfig,
    workload: Workload,
    options: Options = Options(),
    *,
    energy_table: EnergyTable | None = None,
) -> tuple[list[isa.Descriptor], list[str], dict[str, Mapping]]:
    """The descriptor list of one training iteration, each descriptor's owner op and the mappings.

    Order: FF of every layer; per layer in reverse, BP and WU (merged with ``interleave``), then the
    layer's UPDATEs and (``pregen``) PRUNEs. Without ``pregen`` a weight's FF copy is pruned right
    before its FF GEMM and its BP copy right before its BP GEMM. ``offline`` moves every UPDATE and
    PRUNE after the last GEMM.
    """
    gemm_ops = [op for op in workload.ops if isinstance(op, GemmOp)]
    shapes = [_shape(config, op) for op in gemm_ops]
    half = config.acc_lines // 2 if options.interleave else None
    if half is not None and half < config.rows:
        raise UsageError(f"interleave needs acc_lines >= 2 R ({2 * config.rows}), not {config.acc_lines}")
    if options.search:
        cands = [
            candidates(config, g, acc_lines=half if op.stage in ("bp", "wu") else None)
            for op, g in zip(gemm_ops, shapes, strict=True)
        ]
        found = search(config, shapes, objective=options.objective, energy_table=energy_table, cands=cands)
        maps = found.best
    else:
        maps = [_default_mapping(config, g) for g in shapes]
    mapping_of = {op.name: mp for op, mp in zip(gemm_ops, maps, strict=True)}
    shape_of = {op.name: g for op, g in zip(gemm_ops, shapes, strict=True)}
    weight_rows = _weight_rows(workload)
    masked = {op.param for op in workload.ops if isinstance(op, MaskOp)}
    prunes_of: dict[str, list[MaskOp]] = {}
    for op in workload.ops:
        if isinstance(op, MaskOp):
            prunes_of.setdefault(f"{op.layer}:{op.copy}", []).append(op)

    program: list[isa.Descriptor] = []
    owners: list[str] = []
    deferred: list[tuple[isa.Descriptor, str]] = []

    def tiles(op: GemmOp, acc_base: int = 0) -> list[isa.Gemm]:
        g, mp = shape_of[op.name], mapping_of[op.name]
        one = gemm_tiles(config, g, mp, tag=_TAGS[op.stage], acc_base=acc_base, acc_lines=half)
        return one * g.count

    def emit(descs: Sequence[isa.Descriptor], owner: str, streamer: bool = False) -> None:
        if streamer and options.offline:
            deferred.extend((d, owner) for d in descs)
            return
        program.extend(descs)
        owners.extend([owner] * len(descs))

    def emit_prune(op: MaskOp) -> None:
        emit(_prune_descs(config, op, weight_rows.get(op.param, 1)), op.name, streamer=True)

    ops = list(workload.ops)
    k = 0
    while k < len(ops):
        op = ops[k]
        if isinstance(op, GemmOp):
            if not options.pregen:
                for mask in prunes_of.get(f"{op.layer}:{op.stage}", []):
                    emit_prune(mask)
            nxt = ops[k + 1] if k + 1 < len(ops) else None
            if (
                options.interleave
                and op.stage == "bp"
                and isinstance(nxt, GemmOp)
                and nxt.stage == "wu"
                and nxt.layer == op.layer
            ):
                ta, tb = tiles(op, 0), tiles(nxt, half)
                merged = _merge(ta, tb)
                ids = {id(t): 0 for t in ta} | {id(t): 1 for t in tb}
                streams = [ids[id(t)] for t in merged]
                merged = _relabel_loads(merged, streams)
                program.extend(merged)
                owners.extend(op.name if s == 0 else nxt.name for s in streams)
                k += 2
                continue
            emit(tiles(op), op.name)
        elif isinstance(op, UpdateOp):
            emit(_update_descs(config, op, weight_rows.get(op.param), op.param in masked), op.name, streamer=True)
        elif isinstance(op, MaskOp) and options.pregen:
            emit_prune(op)
        k += 1
    for d, owner in deferred:
        program.append(d)
        owners.append(owner)
    return program, owners, mapping_of


# --------------------------------------------------------------------------------------------
# cost
# --------------------------------------------------------------------------------------------


def _actions(config: SatConfig, program: Sequence[isa.Descriptor]):
    """Energy actions of a program: GEMMs grouped by dataflow, then PRUNE and UPDATE."""
    total = None
    gemms = [d for d in program if isinstance(d, isa.Gemm)]
    for ws in (False, True):
        sel = [d for d in gemms if (d.dataflow == isa.Dataflow.WS) == ws]
        if not sel:
            continue
        arr = {f: np.array([getattr(d, f) for d in sel]) for f in ("n", "rows", "cols", "steps")}
        flags = {
            f: np.array([getattr(d, f) for d in sel], dtype=bool) for f in ("load_a", "load_b", "accumulate", "store")
        }
        acts = gemm_actions(config, dataflow="ws" if ws else "os", **arr, **flags)
        acts = type(acts)(**{f: np.sum(getattr(acts, f)) for f in acts.__dataclass_fields__})
        total = acts if total is None else total + acts
    for d in program:
        if isinstance(d, isa.Prune):
            a = prune_actions(config, n=d.n, m=d.m, lines=d.lines, transpose=d.transpose, write_mask=d.write_mask)
        elif isinstance(d, isa.Update):
            a = update_actions(config, lines=d.lines, use_mask=d.use_mask)
        else:
            continue
        total = a if total is None else total + a
    return total


def schedule(
    config: SatConfig,
    workload: Workload,
    options: Options = Options(),
    *,
    energy_table: EnergyTable | None = None,
) -> Schedule:
    """Schedule one iteration of ``workload`` and cost it exactly (module docstring)."""
    program, owners, mappings = iteration_program(config, workload, options, energy_table=energy_table)
    timing = program_timing(config, program)
    actions = _actions(config, program)
    energy = sat_energy(config, actions, energy_table)
    cycles = timing.cycles
    detail = None
    if options.overlap:
        cycles, detail = _overlapped(config, workload, program, owners, timing)
    layers = _layer_table(workload, program, owners, timing, mappings)
    dram_bits = float(actions.dram_bits_read) + float(actions.dram_bits_written)
    return Schedule(
        program=program,
        owners=owners,
        cycles=int(cycles),
        rtl_cycles=timing.cycles,
        timing=timing,
        energy=energy,
        mappings=mappings,
        layers=layers,
        options=options,
        macs=workload.macs(),
        useful_macs=workload.useful_macs(),
        dram_bytes=int(dram_bits // 8),
        overlap_detail=detail,
    )


def _streamer_words(config: SatConfig, d: isa.Descriptor) -> int:
    if isinstance(d, isa.Update):
        per = 3 * config.acc_words + (config.mask_words if d.use_mask else 0) + 2 * config.acc_words + config.w_words
        return d.lines * per
    red = d.reduction(config)
    words = red * config.w_words + red // d.m * d.n * config.b_words
    return words + (red * config.mask_words if d.write_mask else 0)


def _overlapped(
    config: SatConfig, workload: Workload, program: list, owners: list[str], timing: Any
) -> tuple[int, dict[str, int]]:
    """**Modelled hardware extension**: the line streamer runs beside the GEMM pipeline.

    GEMM-only program timed exactly; each streamer op's duration is its exact stand-alone time; a
    list schedule starts each streamer op when its inputs exist (UPDATE after the layer's last WU
    tile, PRUNE after its UPDATE) and the engine is free, in program order; its DRAM words take
    port cycles from the GEMMs in proportion to the GEMM DMA's busy fraction.
    """
    gemm_idx = [k for k, d in enumerate(program) if isinstance(d, isa.Gemm)]
    if not gemm_idx:
        return timing.cycles, {"gemm": 0, "streamer": timing.cycles, "contention": 0, "tail": timing.cycles}
    gemms = [program[k] for k in gemm_idx]
    g_timing = program_timing(config, gemms)
    # each GEMM op's last tile done, in the GEMM-only program
    done_at: dict[str, int] = {}
    for j, k in enumerate(gemm_idx):
        done_at[owners[k]] = max(done_at.get(owners[k], 0), g_timing.descriptors[j].done)
    # a streamer op's inputs exist once the GEMM op before it in the workload order is done
    # (UPDATE after its layer's WU, its PRUNE after that), whatever its place in the program
    dep: dict[str, str] = {}
    last_gemm = None
    for op in workload.ops:
        if isinstance(op, GemmOp):
            last_gemm = op.name
        elif isinstance(op, UpdateOp | MaskOp):
            dep[op.name] = last_gemm
    ready_after = [done_at.get(dep.get(owners[k]) or "", 0) for k in range(len(program))]
    words_total = 0
    for d in gemms:
        words_total += (d.a_lines() * config.a_words if d.load_a else 0) + (d.steps * config.b_words if d.load_b else 0)
        words_total += d.rows * config.acc_words if d.store else 0
    busy = min(1.0, words_total * config.mem_interval / max(g_timing.cycles, 1))
    free = 0
    contention = 0.0
    streamer_total = 0
    order = sorted((k for k, d in enumerate(program) if not isinstance(d, isa.Gemm)), key=lambda k: ready_after[k])
    for k in order:
        d = program[k]
        dur = program_timing(config, [d]).cycles - 2
        streamer_total += dur
        start = max(free, ready_after[k])
        free = start + dur
        contention += _streamer_words(config, d) * config.mem_interval * busy
    gemm_cycles = g_timing.cycles + math.ceil(contention)
    total = max(gemm_cycles, free + 2)
    return total, {
        "gemm": g_timing.cycles,
        "streamer": streamer_total,
        "contention": math.ceil(contention),
        "tail": max(0, free + 2 - gemm_cycles),
    }


def _layer_table(workload: Workload, program: list, owners: list[str], timing: Any, mappings: dict) -> list[dict]:
    spans: dict[tuple[str, str], list[int]] = {}
    for d, owner, t in zip(program, owners, timing.descriptors, strict=True):
        if isinstance(d, isa.Gemm):
            layer, stage = owner.split(":")[0], owner.split(":")[1]
        else:
            stage = "update" if isinstance(d, isa.Update) else "prune"
            layer = next(
                (lay.name for lay in workload.layers if lay.weight and owner.startswith(lay.weight + ":")), None
            )
            layer = layer or owner.rsplit(".", 1)[0].split(":")[0]
        span = spans.setdefault((layer, stage), [t.accepted, t.done])
        span[0], span[1] = min(span[0], t.accepted), max(span[1], t.done)
    names: list[str] = []
    for lay in workload.layers:
        names.append(lay.name)
    for layer, _ in spans:
        if layer not in names:
            names.append(layer)
    rows = []
    for name in names:
        row: dict[str, Any] = {"name": name}
        present = False
        for stage in ("ff", "bp", "wu", "update", "prune"):
            span = spans.get((name, stage))
            row[stage] = 0 if span is None else span[1] - span[0] + 1
            present |= span is not None
        if not present:
            continue
        ops = [g for g in workload.gemms if g.layer == name]
        row["macs"] = sum(g.macs for g in ops)
        row["useful_macs"] = sum(g.useful_macs for g in ops)
        row["mapping"] = {g.stage: mappings[g.name].label() for g in ops if g.name in mappings}
        rows.append(row)
    return rows
