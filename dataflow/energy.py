"""Energy model of the SAT accelerator: a versioned table of pJ per action, and action counts -> joules.

The table (``dataflow/energy_tables/sat_45nm.yaml``, docs/energy.md) gives the energy of one
*action* of each kind (an FMA, one register bit clocked, one 64-bit SRAM access at a given
capacity, ...), each with its source or derivation. :class:`SatActions` counts the actions a piece
of work performs; :func:`sat_energy` multiplies the two, per component of the accelerator:

================ ===========================================================================
component        energy
================ ===========================================================================
``pe_array``     ``macs_issued * (fma + log2(m_max) * in_bits * mux) + pe_register_bits * register``
``a_buffer``     ``(a_reads + a_writes) * E_sram(A capacity, a-line bits)``; likewise ``b_buffer``,
                 ``acc_buffer``
``writeback``    ``acc_adds * fp32_add`` (the OS ``accumulate`` adders)
``dram``         ``(dram_bits_read + dram_bits_written) * dram / 64``
``prune``        ``prune_compares * (in_bits - 1) * compare + prune_register_bits * register``
``update``       ``update_fp32_mults * fp32_mult + update_fp32_adds * fp32_add + update_roundings * fp_round``
================ ===========================================================================

``E_sram(C, W)``: an access of ``W`` bits to a memory of ``C`` bytes is ``W / 64`` side-by-side
64-bit-wide slices of ``C * 64 / W`` bytes each; the per-bit energy of a 64-bit access at that slice
capacity is interpolated log-log between the table's ``sram_*`` points (extrapolated along the end
segments), never below one register bit (:func:`sram_access_pj`). No static (leakage) term: the
sources give none for these components.

Counts come from a descriptor (:func:`gemm_actions`, :func:`prune_actions`, :func:`update_actions`,
what the scheduler uses) or from a run's performance counters (:func:`actions_from_counters`).
Every count may be a NumPy array: the same call then evaluates a whole batch of design points.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pydantic
import yaml

from trainforge.errors import ConfigError, UsageError
from trainforge.hw.sat.config import SatConfig
from trainforge.hw.sat.isa import Dataflow

__all__ = [
    "ACTION_FIELDS",
    "COMPONENTS",
    "REQUIRED_ACTIONS",
    "SCHEMA_VERSION",
    "ActionEnergy",
    "EnergyBreakdown",
    "EnergyTable",
    "SatActions",
    "actions_from_counters",
    "buffer_geometry",
    "energy_matrix",
    "gemm_actions",
    "load_energy_table",
    "prune_actions",
    "sat_energy",
    "sram_access_pj",
    "update_actions",
]

#: The table schema version this module reads.
SCHEMA_VERSION = 1

_PER_OP, _PER_BIT, _PER_MUX = "per operation", "per bit", "per bit per mux level"
_ACCESS = re.compile(r"per access of ([1-9][0-9]*) bits")
_ACCESS_FORM = "per access of W bits"

#: Actions every table must give (besides two or more ``sram_*`` points), with the unit each is in.
REQUIRED_ACTIONS: dict[str, str] = {
    "fma": _PER_OP,
    "fp32_add": _PER_OP,
    "fp32_mult": _PER_OP,
    "fp_round": _PER_OP,
    "register": _PER_BIT,
    "mux": _PER_MUX,
    "compare": _PER_BIT,
    "dram": _ACCESS_FORM,
}
_KNOWN_UNITS = (_PER_OP, _PER_BIT, _PER_MUX, _ACCESS_FORM)

#: Components of :class:`EnergyBreakdown`, in order.
COMPONENTS: tuple[str, ...] = ("pe_array", "a_buffer", "b_buffer", "acc_buffer", "writeback", "dram", "prune", "update")


def _access_bits(unit: str) -> int | None:
    match = _ACCESS.fullmatch(unit)
    return int(match.group(1)) if match else None


# ---- the table ---------------------------------------------------------------------------------

_Positive = Annotated[float, pydantic.Field(gt=0, allow_inf_nan=False, strict=True)]
_Text = Annotated[str, pydantic.Field(min_length=1, strict=True)]


class ActionEnergy(pydantic.BaseModel):
    """One entry of the table: the energy of one action, with its unit and where it comes from.

    Attributes
    ----------
    pj : float
        Energy in picojoules per ``unit`` (positive, finite).
    unit : str
        ``per operation``, ``per bit``, ``per bit per mux level`` or ``per access of W bits``.
    technology_nm : float
        Node of the source figure.
    source : str
        Publication (and the figures taken from it), or the entry it is derived from.
    note : str, optional
        The derivation or assumption, where the number is not a published figure as is.
    capacity_bytes : int, optional
        SRAM capacity of an ``sram_*`` point (required there, not allowed elsewhere).
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    pj: _Positive
    unit: _Text
    technology_nm: _Positive
    source: _Text
    note: str | None = None
    capacity_bytes: Annotated[int, pydantic.Field(gt=0, strict=True)] | None = None

    @pydantic.field_validator("unit")
    @classmethod
    def _known_unit(cls, unit: str) -> str:
        if unit not in _KNOWN_UNITS and _access_bits(unit) is None:
            raise ValueError(f"unknown unit {unit!r}; valid: {', '.join(repr(u) for u in _KNOWN_UNITS)}")
        return unit

    @property
    def access_bits(self) -> int | None:
        """``W`` of a ``per access of W bits`` unit, else None."""
        return _access_bits(self.unit)


class EnergyTable(pydantic.BaseModel):
    """A versioned energy table (see ``dataflow/energy_tables/sat_45nm.yaml`` for the format).

    Attributes
    ----------
    version : int
        Schema version; must be :data:`SCHEMA_VERSION`.
    name, description : str
    technology_nm : float
        Node the table stands for (entries may cite figures from a nearby node; each says which).
    actions : dict of str to ActionEnergy
        Exactly the names of :data:`REQUIRED_ACTIONS`, each in its unit, plus two or more ``sram_*``
        points (``per access of W bits``, one ``W`` for all, distinct ``capacity_bytes``).
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    version: Annotated[int, pydantic.Field(strict=True)]
    name: _Text
    technology_nm: _Positive
    description: _Text
    actions: dict[str, ActionEnergy]
    _matrices: dict[SatConfig, np.ndarray] = pydantic.PrivateAttr(default_factory=dict)

    # Tables are equal when their numbers are: the per-configuration matrix cache does not count.
    def __eq__(self, other: object) -> bool:
        return isinstance(other, EnergyTable) and self.model_dump() == other.model_dump()

    def __hash__(self) -> int:
        return hash(self.model_dump_json())

    @pydantic.field_validator("version")
    @classmethod
    def _supported_version(cls, version: int) -> int:
        if version != SCHEMA_VERSION:
            raise ValueError(f"unsupported version {version}; this trainforge reads version {SCHEMA_VERSION}")
        return version

    @pydantic.model_validator(mode="after")
    def _check_actions(self) -> EnergyTable:
        for name in REQUIRED_ACTIONS:
            if name not in self.actions:
                raise ValueError(f"actions.{name}: required action missing")
        for name, entry in self.actions.items():
            is_sram = name.startswith("sram_")
            if name not in REQUIRED_ACTIONS and not is_sram:
                valid = ", ".join([*REQUIRED_ACTIONS, "sram_*"])
                raise ValueError(f"actions.{name}: unknown action; valid: {valid}")
            want = _ACCESS_FORM if is_sram else REQUIRED_ACTIONS[name]
            have = _ACCESS_FORM if entry.access_bits is not None else entry.unit
            if have != want:
                raise ValueError(f"actions.{name}.unit: {entry.unit!r} does not fit this action; it must be {want!r}")
            if is_sram and entry.capacity_bytes is None:
                raise ValueError(f"actions.{name}.capacity_bytes: required for an SRAM point")
            if not is_sram and entry.capacity_bytes is not None:
                raise ValueError(f"actions.{name}.capacity_bytes: only sram_* points have a capacity")
        points = self.sram_points
        if len(points) < 2:
            raise ValueError("actions: at least two sram_* points are needed for the SRAM curve")
        widths = {entry.access_bits for _, entry in points}
        if len(widths) > 1:
            raise ValueError(f"actions.sram_*: every SRAM point needs the same access width, not {sorted(widths)} bits")
        capacities = [entry.capacity_bytes for _, entry in points]
        if len(set(capacities)) != len(capacities):
            raise ValueError("actions.sram_*: two SRAM points have the same capacity_bytes")
        return self

    @property
    def sram_points(self) -> list[tuple[str, ActionEnergy]]:
        """The ``sram_*`` entries, by increasing capacity."""
        points = [(k, v) for k, v in self.actions.items() if k.startswith("sram_")]
        return sorted(points, key=lambda kv: kv[1].capacity_bytes or 0)

    def pj(self, action: str) -> float:
        """Energy of one ``action`` in pJ, in its unit."""
        return self.actions[action].pj


def _describe(err: Mapping[str, Any]) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        return f"{loc}: required field missing"
    if err["type"] == "extra_forbidden":
        return f"{loc}: unknown field"
    if err["type"] != "value_error":  # pydantic's own check: say what it got
        msg = f"{msg}, not {err.get('input')!r}"
    return f"{loc}: {msg}" if loc else msg


@functools.cache
def _shipped(name: str) -> EnergyTable:
    resource = importlib.resources.files("trainforge.dataflow.energy_tables") / name
    return _parse(resource.read_text(encoding="utf-8"), f"<trainforge>/dataflow/energy_tables/{name}")


def _parse(text: str, origin: str) -> EnergyTable:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" (line {where.line + 1}, column {where.column + 1})" if where is not None else ""
        raise ConfigError(f"{origin}: not valid YAML{at}: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: an energy table must be a YAML mapping, not {type(data).__name__}")
    try:
        return EnergyTable.model_validate(data)
    except pydantic.ValidationError as exc:
        errors = exc.errors()
        more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
        raise ConfigError(f"{origin}: {_describe(errors[0])}{more}") from None


def load_energy_table(path: str | Path | None = None) -> EnergyTable:
    """Load and validate an energy table.

    Parameters
    ----------
    path : str or Path, optional
        A YAML file; default the shipped ``sat_45nm.yaml`` (cached).

    Raises
    ------
    trainforge.errors.ConfigError
        One line naming the file, the entry and what is wrong: not YAML, a missing or unknown
        action or field, a non-positive or non-finite number, an unknown unit, a wrong version.
    """
    if path is None:
        return _shipped("sat_45nm.yaml")
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the energy table: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid YAML: not UTF-8 text") from None
    return _parse(text, str(path))


# ---- SRAM energy ------------------------------------------------------------------------------


def sram_access_pj(table: EnergyTable, capacity_bytes: float, width_bits: int) -> float:
    """Energy in pJ of one ``width_bits`` access to an SRAM of ``capacity_bytes``.

    The memory is taken as ``max(1, W / w)`` side-by-side slices of the table's access width ``w``
    (64 bits for Horowitz's points), each holding its share of the capacity. The per-bit energy
    ``e(c)`` of a ``w``-bit access at slice capacity ``c`` is piecewise linear in ``log c`` ->
    ``log e`` through the ``sram_*`` points (a power law between neighbours, continued along the
    first and last segments outside them), and never below one ``register`` bit. The access costs
    ``W * e(c)``.
    """
    if capacity_bytes <= 0 or width_bits <= 0:
        raise UsageError(f"an SRAM needs a positive capacity and width, not {capacity_bytes} B x {width_bits} bits")
    points = table.sram_points
    ref_bits = points[0][1].access_bits
    assert ref_bits is not None  # validated
    log_c = np.log([entry.capacity_bytes for _, entry in points])
    log_e = np.log([entry.pj / ref_bits for _, entry in points])
    x = math.log(capacity_bytes / max(1.0, width_bits / ref_bits))
    if x <= log_c[0]:
        slope = (log_e[1] - log_e[0]) / (log_c[1] - log_c[0])
        y = log_e[0] + slope * (x - log_c[0])
    elif x >= log_c[-1]:
        slope = (log_e[-1] - log_e[-2]) / (log_c[-1] - log_c[-2])
        y = log_e[-1] + slope * (x - log_c[-1])
    else:
        y = float(np.interp(x, log_c, log_e))
    return width_bits * max(math.exp(y), table.pj("register"))


@dataclasses.dataclass(frozen=True)
class BufferGeometry:
    """Capacity (bytes, both halves where double-buffered) and line width (bits) of one buffer."""

    capacity_bytes: int
    line_bits: int


def buffer_geometry(config: SatConfig) -> dict[str, BufferGeometry]:
    """The A, B (two halves each, one memory as in ``hw/sat/accelerator.py``) and accumulator buffers."""
    return {
        "a": BufferGeometry(2 * config.a_lines * config.a_line_bits // 8, config.a_line_bits),
        "b": BufferGeometry(2 * config.b_lines * config.b_line_bits // 8, config.b_line_bits),
        "acc": BufferGeometry(config.acc_lines * config.acc_line_bits // 8, config.acc_line_bits),
    }


# ---- action counts ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SatActions:
    """Counts of the actions a piece of work performs; each an int, a float or a NumPy array.

    Attributes
    ----------
    macs_issued : R x C per array beat (OS step or WS row): every PE's FMA and activation select runs.
    macs_useful : kept products of the used rows and columns (not charged; for energy per useful MAC).
    pe_register_bits : bits clocked into PE registers: per OS MAC the activation group
        (``m_max * in_bits``), the weight (``in_bits + index_bits``) and the accumulator (32); per WS
        MAC the activation group and the partial sum (32); a WS weight load writes ``(r + 1) * C``
        weight registers for PE row ``r``.
    a_reads, a_writes, b_reads, b_writes, acc_reads, acc_writes : line accesses of each buffer
        (writes: lines loaded from memory or written back; reads: lines whose data is used).
    acc_adds : FP32 additions of the writeback (OS with ``accumulate``: ``rows * cols`` per tile).
    dram_bits_read, dram_bits_written : bits of whole memory words moved.
    prune_compares : magnitude comparisons of ``in_bits - 1`` bits in the prune lanes.
    prune_register_bits : bits clocked into the prune lanes' group and output registers and the
        transposer.
    update_fp32_mults, update_fp32_adds, update_roundings : the update engine's operations.
    """

    macs_issued: Any = 0
    macs_useful: Any = 0
    pe_register_bits: Any = 0
    a_reads: Any = 0
    a_writes: Any = 0
    b_reads: Any = 0
    b_writes: Any = 0
    acc_reads: Any = 0
    acc_writes: Any = 0
    acc_adds: Any = 0
    dram_bits_read: Any = 0
    dram_bits_written: Any = 0
    prune_compares: Any = 0
    prune_register_bits: Any = 0
    update_fp32_mults: Any = 0
    update_fp32_adds: Any = 0
    update_roundings: Any = 0

    def __add__(self, other: SatActions) -> SatActions:
        if not isinstance(other, SatActions):
            return NotImplemented
        return SatActions(**{f: getattr(self, f) + getattr(other, f) for f in ACTION_FIELDS})

    def __mul__(self, k: Any) -> SatActions:
        """The counts of ``k`` repetitions (``k`` a number or an array)."""
        return SatActions(**{f: getattr(self, f) * k for f in ACTION_FIELDS})

    __rmul__ = __mul__

    def to_array(self) -> np.ndarray:
        """The counts as float64, stacked on a last axis in :data:`ACTION_FIELDS` order."""
        values = [getattr(self, f) for f in ACTION_FIELDS]
        if all(isinstance(v, int | float) for v in values):  # the common scalar case, 10x faster
            return np.array(values, dtype=np.float64)
        arrays = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in values))
        return np.stack(arrays, axis=-1)


#: The count fields of :class:`SatActions`, in order (the rows of :func:`energy_matrix`).
ACTION_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SatActions))


def _register_bits(config: SatConfig) -> tuple[int, int]:
    """Bits of a PE's activation group register and of its weight register."""
    return config.m_max * config.in_bits, config.in_bits + config.index_bits


def _ws_load_bits(config: SatConfig) -> int:
    # the load beat for PE row r is written into rows 0..r as it passes down the weight chain
    return config.cols * config.rows * (config.rows + 1) // 2 * _register_bits(config)[1]


def _positive(**values: Any) -> None:
    for name, value in values.items():
        if np.any(np.asarray(value) < 1):
            raise UsageError(f"{name} must be at least 1, not {np.min(value)}")


def gemm_actions(
    config: SatConfig,
    *,
    dataflow: Dataflow | Literal["os", "ws"],
    n: Any,
    rows: Any,
    cols: Any,
    steps: Any,
    load_a: Any = True,
    load_b: Any = True,
    accumulate: Any = False,
    store: Any = True,
) -> SatActions:
    """Actions of one GEMM descriptor (docs/sat-architecture.md, "GEMM: one tile").

    Fields as in the descriptor (``n`` of its ``n:m``; dense is ``n == m``); every one but ``dataflow``
    may be an array. OS: ``steps`` beats, each reading one a-line and one b-line; ``ceil(steps / n)``
    a-lines and ``steps`` b-lines loaded; ``rows`` acc-lines written (read and added first with
    ``accumulate``). WS: ``R`` weight-load beats (``steps`` b-lines used), then ``rows`` beats each
    reading one a-line (and its partial-sum acc-line with ``accumulate``) and writing one acc-line.
    ``store`` reads the ``rows`` acc-lines and writes them to memory.
    """
    _positive(n=n, rows=rows, cols=cols, steps=steps)
    if isinstance(dataflow, str):
        if dataflow.lower() not in ("os", "ws"):
            raise UsageError(f"dataflow must be 'os' or 'ws', not {dataflow!r}")
        ws = dataflow.lower() == "ws"
    else:
        ws = Dataflow(dataflow) == Dataflow.WS
    r_c = config.rows * config.cols
    act_bits, w_bits = _register_bits(config)
    rows, cols, steps = np.asarray(rows), np.asarray(cols), np.asarray(steps)
    load_a, load_b = np.asarray(load_a, dtype=bool), np.asarray(load_b, dtype=bool)
    accumulate, store = np.asarray(accumulate, dtype=bool), np.asarray(store, dtype=bool)
    beats = rows if ws else steps
    a_lines = rows if ws else -(-steps // np.asarray(n))
    macs = beats * r_c
    # WS weights stay in place during the rows; they are written by the tile's load instead
    register_bits = macs * (act_bits + 32) + _ws_load_bits(config) if ws else macs * (act_bits + w_bits + 32)
    acc_reads = accumulate * rows + store * rows
    return _squeeze(
        SatActions(
            macs_issued=macs,
            macs_useful=beats * (steps if ws else rows) * cols,
            pe_register_bits=register_bits,
            a_reads=beats,
            a_writes=load_a * a_lines,
            b_reads=steps,
            b_writes=load_b * steps,
            acc_reads=acc_reads,
            acc_writes=rows,
            acc_adds=0 * rows if ws else accumulate * rows * cols,
            dram_bits_read=config.mem_bits * (load_a * a_lines * config.a_words + load_b * steps * config.b_words),
            dram_bits_written=config.mem_bits * store * rows * config.acc_words,
        )
    )


def prune_actions(
    config: SatConfig, *, n: Any, m: Any, lines: Any, transpose: Any = False, write_mask: Any = True
) -> SatActions:
    """Actions of one PRUNE descriptor (docs/sat-architecture.md, "PRUNE").

    Weights through the lanes: ``lines * C`` (BP copy) or ``lines * C * C`` (FF copy, ``lines``
    panels); each entering weight is compared with ``m_max - 1`` stored ones (the unit's comparators,
    hw/nm_prune.py) and clocked, with its ``index_bits`` count, into the group register and then the
    output register; the FF copy also writes it (and later its keep bit) into the transposer. The
    compaction network is not counted. Memory: the w-lines in; ``n`` b-lines per ``m`` weights of a
    lane out, and one mask-line per w-line with ``write_mask``.
    """
    _positive(n=n, m=m, lines=lines)
    c = config.cols
    lines, transpose = np.asarray(lines), np.asarray(transpose, dtype=bool)
    w_lines = np.where(transpose, lines * c, lines)
    if np.any(w_lines % np.asarray(m)):
        raise UsageError(f"PRUNE needs whole groups: the {w_lines} weights per lane are not a multiple of m={m}")
    weights = w_lines * c
    b_lines = w_lines // np.asarray(m) * np.asarray(n)
    return _squeeze(
        SatActions(
            prune_compares=weights * (config.m_max - 1),
            prune_register_bits=weights * 2 * (config.in_bits + config.index_bits)
            + transpose * weights * (config.in_bits + 1),
            dram_bits_read=config.mem_bits * w_lines * config.w_words,
            dram_bits_written=config.mem_bits
            * (b_lines * config.b_words + np.asarray(write_mask, dtype=bool) * w_lines * config.mask_words),
        )
    )


def update_actions(config: SatConfig, *, lines: Any, use_mask: Any = True) -> SatActions:
    """Actions of one UPDATE descriptor (docs/sat-architecture.md, "UPDATE").

    Per element (``C`` per line): three FP32 multiplies (``decay * w``, ``momentum * v``,
    ``lr * v'``), three FP32 adds and one rounding to ``in_fmt``. Memory: per line the ``w``, ``v``,
    ``g`` acc-lines (and the mask-line with ``use_mask``) in; ``w'``, ``v'`` and the working-copy
    w-line out. The engine's pipeline registers are not counted.
    """
    _positive(lines=lines)
    lines = np.asarray(lines)
    elements = lines * config.cols
    mask = np.asarray(use_mask, dtype=bool)
    return _squeeze(
        SatActions(
            update_fp32_mults=3 * elements,
            update_fp32_adds=3 * elements,
            update_roundings=elements,
            dram_bits_read=config.mem_bits * lines * (3 * config.acc_words + mask * config.mask_words),
            dram_bits_written=config.mem_bits * lines * (2 * config.acc_words + config.w_words),
        )
    )


def _squeeze(actions: SatActions) -> SatActions:
    """0-d arrays back to Python ints, so scalar calls give scalar counts."""
    return SatActions(**{f: _scalar(getattr(actions, f)) for f in ACTION_FIELDS})


def _scalar(value: Any) -> Any:
    array = np.asarray(value)
    return array.item() if array.ndim == 0 else array


def actions_from_counters(
    config: SatConfig,
    counters: Mapping[str, Any],
    *,
    dram_words_read: Any,
    dram_words_written: Any,
    ws_rows: Any = 0,
    ws_tiles: Any = 0,
    ws_weight_rows: Any = 0,
    a_lines_loaded: Any = 0,
    b_lines_loaded: Any = 0,
    acc_line_reads: Any = 0,
    acc_line_writes: Any = 0,
    acc_adds: Any = 0,
    pruned_weights: Any = 0,
    transposed_weights: Any = 0,
    updated_elements: Any = 0,
) -> SatActions:
    """Actions of a run, from its performance counters (``hw/sat/ports.py``) plus what they do not hold.

    From the counters: ``macs_issued``, ``macs_useful``, and the array beats
    ``macs_issued / (R * C)``, each of which reads one a-line (OS step or WS row). The rest comes
    from the keyword arguments, all counts over the run (0 means none): ``dram_words_read`` /
    ``dram_words_written`` (``mem_bits`` words, e.g. from the DRAM model), ``ws_rows`` (WS beats; the
    other beats are OS steps, each reading a b-line), ``ws_tiles`` (WS weight loads),
    ``ws_weight_rows`` (b-lines read by WS loads: the sum of their ``steps``), ``a_lines_loaded``,
    ``b_lines_loaded``, ``acc_line_reads``, ``acc_line_writes``, ``acc_adds`` (writeback FP32 adds),
    ``pruned_weights`` and ``transposed_weights`` (through the prune lanes / the transposer) and
    ``updated_elements``; these are counted as in :func:`prune_actions` and :func:`update_actions`.
    """
    missing = [name for name in ("macs_issued", "macs_useful") if name not in counters]
    if missing:
        raise UsageError(f"counters lack {', '.join(missing)}; valid counter names are those of hw/sat/ports.py")
    r_c = config.rows * config.cols
    issued = np.asarray(counters["macs_issued"])
    if np.any(issued % r_c):
        raise UsageError(f"macs_issued={issued} is not a whole number of array beats of R x C = {r_c} MACs")
    beats = issued // r_c
    os_beats = beats - np.asarray(ws_rows)
    if np.any(os_beats < 0):
        raise UsageError(f"ws_rows={ws_rows} exceeds the array beats in the counters ({beats})")
    act_bits, w_bits = _register_bits(config)
    weights = np.asarray(pruned_weights)
    elements = np.asarray(updated_elements)
    return _squeeze(
        SatActions(
            macs_issued=issued,
            macs_useful=np.asarray(counters["macs_useful"]),
            pe_register_bits=issued * (act_bits + 32)
            + os_beats * r_c * w_bits
            + np.asarray(ws_tiles) * _ws_load_bits(config),
            a_reads=beats,
            a_writes=np.asarray(a_lines_loaded),
            b_reads=os_beats + np.asarray(ws_weight_rows),
            b_writes=np.asarray(b_lines_loaded),
            acc_reads=np.asarray(acc_line_reads),
            acc_writes=np.asarray(acc_line_writes),
            acc_adds=np.asarray(acc_adds),
            dram_bits_read=config.mem_bits * np.asarray(dram_words_read),
            dram_bits_written=config.mem_bits * np.asarray(dram_words_written),
            prune_compares=weights * (config.m_max - 1),
            prune_register_bits=weights * 2 * (config.in_bits + config.index_bits)
            + np.asarray(transposed_weights) * (config.in_bits + 1),
            update_fp32_mults=3 * elements,
            update_fp32_adds=3 * elements,
            update_roundings=elements,
        )
    )


# ---- energy -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EnergyBreakdown:
    """Energy in joules per component (:data:`COMPONENTS`) and their ``total``; floats or arrays."""

    pe_array: Any
    a_buffer: Any
    b_buffer: Any
    acc_buffer: Any
    writeback: Any
    dram: Any
    prune: Any
    update: Any
    total: Any

    @property
    def buffers(self) -> Any:
        """The three on-chip buffers together."""
        return self.a_buffer + self.b_buffer + self.acc_buffer

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def energy_matrix(config: SatConfig, table: EnergyTable | None = None) -> np.ndarray:
    """Joules per count: shape ``(len(ACTION_FIELDS), len(COMPONENTS))``, cached per table and config.

    ``counts @ energy_matrix(config, table)`` turns counts stacked on the last axis
    (:meth:`SatActions.to_array`) into joules per component, the fast path for batches.
    """
    table = load_energy_table() if table is None else table
    cached = table._matrices.get(config)
    if cached is not None:
        return cached
    pj = table.pj
    geometry = buffer_geometry(config)
    sram = {k: sram_access_pj(table, g.capacity_bytes, g.line_bits) for k, g in geometry.items()}
    dram_bits = table.actions["dram"].access_bits
    assert dram_bits is not None  # validated
    per_count: dict[str, tuple[str, float]] = {
        "macs_issued": ("pe_array", pj("fma") + config.index_bits * config.in_bits * pj("mux")),
        "macs_useful": ("pe_array", 0.0),
        "pe_register_bits": ("pe_array", pj("register")),
        "a_reads": ("a_buffer", sram["a"]),
        "a_writes": ("a_buffer", sram["a"]),
        "b_reads": ("b_buffer", sram["b"]),
        "b_writes": ("b_buffer", sram["b"]),
        "acc_reads": ("acc_buffer", sram["acc"]),
        "acc_writes": ("acc_buffer", sram["acc"]),
        "acc_adds": ("writeback", pj("fp32_add")),
        "dram_bits_read": ("dram", pj("dram") / dram_bits),
        "dram_bits_written": ("dram", pj("dram") / dram_bits),
        "prune_compares": ("prune", (config.in_bits - 1) * pj("compare")),
        "prune_register_bits": ("prune", pj("register")),
        "update_fp32_mults": ("update", pj("fp32_mult")),
        "update_fp32_adds": ("update", pj("fp32_add")),
        "update_roundings": ("update", pj("fp_round")),
    }
    matrix = np.zeros((len(ACTION_FIELDS), len(COMPONENTS)))
    for i, field in enumerate(ACTION_FIELDS):
        component, energy_pj = per_count[field]
        matrix[i, COMPONENTS.index(component)] = energy_pj * 1e-12
    matrix.setflags(write=False)
    table._matrices[config] = matrix
    return matrix


def sat_energy(config: SatConfig, actions: SatActions, table: EnergyTable | None = None) -> EnergyBreakdown:
    """Energy of ``actions`` on ``config`` in joules, per component and in total.

    Parameters
    ----------
    config : SatConfig
        The accelerator (array size, formats, buffer capacities and line widths).
    actions : SatActions
        Counts; scalars give floats, arrays (broadcast together) give arrays of that shape.
    table : EnergyTable, optional
        Default: the shipped ``sat_45nm`` table.
    """
    joules = actions.to_array() @ energy_matrix(config, table)
    parts = {name: _scalar(joules[..., i]) for i, name in enumerate(COMPONENTS)}
    return EnergyBreakdown(**parts, total=_scalar(joules.sum(axis=-1)))
