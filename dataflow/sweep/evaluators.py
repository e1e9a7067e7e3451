"""The evaluators a sweep can call: a registry of functions ``(config, workload, method) -> objectives``.

An evaluator turns one design point into numbers. It is a plain function registered with
:func:`evaluator`::

    @evaluator(
        "sat",
        version="1",
        parameters=SatConfig.field_names(),
        objectives={"latency_s": "min", "energy_j": "min", "edp": "min", "utilisation": "max"},
    )
    def sat(config: dict, workload: Workload, method: str) -> dict[str, float]:
        ...

``config`` holds the swept parameters and the spec's fixed values (names from ``parameters``),
``workload`` is the prepared workload (by default a zoo name or a workload file built for
``method`` with :func:`prepare_workload`, once per sweep, shipped to every worker), ``method`` the
training method (``dense``, ``srste``, ``bdwp``). It returns a mapping of objective name to number;
an exception marks the point failed (its message is recorded, the sweep goes on). ``version`` is
part of every point's key: bump it when the model's numbers change so old results are not reused.

Built in: ``mcu`` (the PULP cluster's training-step model, :func:`trainforge.dataflow.mcu.estimate`) and
``sat`` (the SAT accelerator, a mapping-level estimate of :func:`trainforge.dataflow.schedule.schedule`'s
iteration: :func:`sat`).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from trainforge.errors import ConfigError, UsageError

__all__ = [
    "EVALUATORS",
    "Evaluator",
    "SatWorkload",
    "check_workload",
    "evaluator",
    "get_evaluator",
    "prepare_workload",
    "sat_point",
]

Direction = Literal["min", "max"]
EvalFn = Callable[[dict[str, Any], Any, str], Mapping[str, float]]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Evaluator:
    """One registered evaluator.

    Attributes
    ----------
    name : str
        The spec's ``evaluator:`` value.
    version : str
        Part of every point's key (bump it when the numbers change).
    fn : callable
        ``fn(config, workload, method) -> {objective: number}``.
    parameters : tuple of str
        Names a spec may sweep or fix; anything else is a spec error naming the field.
    objectives : dict of str to {"min", "max"}
        What ``fn`` returns and which way is better (the Pareto front and NSGA-II read it).
    prepare : callable
        ``prepare(workload_name, method) -> workload``, run once per (workload, method) in the main
        process; its result must pickle (it is sent to every worker).
    check : callable or None
        ``check(name, value)`` raises :class:`~trainforge.errors.ConfigError` for a value that can
        never be valid, so the spec is rejected before anything runs.
    affinity : callable or None
        ``affinity(config) -> hashable``: points with equal affinity are sent to the same worker
        next to each other (so a model's per-process caches hit).
    area : callable or None
        Optional ``area(config) -> {objective: number}`` from synthesis (``trainforge synth``),
        added when the spec asks for ``area: true``; cached per generated design by the synth cache.
    """

    name: str
    version: str
    fn: EvalFn
    parameters: tuple[str, ...]
    objectives: dict[str, Direction]
    prepare: Callable[[str, str], Any]
    check: Callable[[str, Any], None] | None = None
    affinity: Callable[[dict[str, Any]], Any] | None = None
    area: Callable[[dict[str, Any]], Mapping[str, float]] | None = None
    summary: str = ""

    def evaluate(self, config: dict[str, Any], workload: Any, method: str, *, area: bool = False) -> dict[str, float]:
        """Run the function (and the area hook when asked) and check what it returned.

        Raises
        ------
        TypeError
            A value that is not a finite-or-infinite real number.
        """
        result = dict(self.fn(dict(config), workload, method))
        if area:
            if self.area is None:
                raise UsageError(f"evaluator {self.name!r} has no area hook")
            result.update(self.area(dict(config)))
        for key, value in result.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"objective {key!r} must be a number, not {type(value).__name__}")
            result[key] = float(value)
        return result


EVALUATORS: dict[str, Evaluator] = {}
"""The registry: evaluator name -> :class:`Evaluator`."""


def prepare_workload(name: str, method: str) -> Any:
    """A training workload (batch 1): a zoo model built for ``method``, or a workload file.

    Parameters
    ----------
    name : str
        A zoo name (``resnet18``, ``resnet8``, ``dscnn``, ...) or an ``.onnx``/``.json``/``.csv`` file.
    method : {"dense", "srste", "bdwp"}
        The training method: which weight copies are N:M compressed. Files carry their own.

    Raises
    ------
    trainforge.errors.UsageError
        Unknown name or method.
    """
    from trainforge.dataflow.mcu.estimate import MODEL_ALIASES, load_workload
    from trainforge.models.workloads import METHODS, workload
    from trainforge.models.zoo import ZOO, zoo_model

    if method not in METHODS:
        raise UsageError(f"unknown training method {method!r}; valid: {', '.join(METHODS)}")
    zoo_name = MODEL_ALIASES.get(name, name)
    if zoo_name in ZOO:
        net, x = zoo_model(zoo_name)
        return workload(net, x, method=method, name=name)
    return load_workload(name)


def check_workload(name: str) -> None:
    """Raise :class:`~trainforge.errors.UsageError` unless ``name`` is a zoo model or an existing file."""
    from trainforge.dataflow.mcu.estimate import MODEL_ALIASES

    if Path(name).suffix:
        if not Path(name).is_file():
            raise UsageError(f"workload file {name!r} does not exist")
        return
    from trainforge.models.zoo import ZOO

    if MODEL_ALIASES.get(name, name) not in ZOO:
        hint = difflib.get_close_matches(name, [*ZOO, *MODEL_ALIASES], n=1)
        did = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise UsageError(f"unknown workload {name!r}{did}; valid: {', '.join(ZOO)} or an .onnx/.json/.csv file")


def evaluator(
    name: str,
    *,
    version: str,
    parameters: Iterable[str],
    objectives: Mapping[str, Direction],
    prepare: Callable[[str, str], Any] = prepare_workload,
    check: Callable[[str, Any], None] | None = None,
    affinity: Callable[[dict[str, Any]], Any] | None = None,
    area: Callable[[dict[str, Any]], Mapping[str, float]] | None = None,
) -> Callable[[EvalFn], EvalFn]:
    """Register the decorated function as evaluator ``name`` (see the module docstring).

    Raises
    ------
    ValueError
        ``name`` already registered, or a direction other than ``min``/``max``.
    """
    bad = {k: v for k, v in objectives.items() if v not in ("min", "max")}
    if bad:
        raise ValueError(f"objective directions must be 'min' or 'max', not {bad}")

    def register(fn: EvalFn) -> EvalFn:
        if name in EVALUATORS:
            raise ValueError(f"evaluator {name!r} is already registered")
        EVALUATORS[name] = Evaluator(
            name=name,
            version=version,
            fn=fn,
            parameters=tuple(parameters),
            objectives=dict(objectives),
            prepare=prepare,
            check=check,
            affinity=affinity,
            area=area,
            summary=(fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else "",
        )
        return fn

    return register


def get_evaluator(name: str) -> Evaluator:
    """The registered evaluator ``name``.

    Raises
    ------
    trainforge.errors.UsageError
        Unknown name (the message lists the valid ones).
    """
    try:
        return EVALUATORS[name]
    except KeyError:
        raise UsageError(f"unknown evaluator {name!r}; valid: {', '.join(sorted(EVALUATORS))}") from None


# -- mcu: the PULP cluster model ---------------------------------------------------------------------

#: Parameters of the ``mcu`` evaluator besides :class:`ClusterConfig`'s fields.
_MCU_EXTRA = ("dtype", "trained", "kernels", "vector_ops", "fpu_sharing")
# only convert cycles to time: the cycle model's caches must not see them
_MCU_TIME_ONLY = ("clock_hz", "l2_bytes")


def _mcu_fields() -> tuple[str, ...]:
    from trainforge.dataflow.mcu.cluster import ClusterConfig

    return tuple(ClusterConfig.field_names())


def _mcu_parameters() -> tuple[str, ...]:
    return _mcu_fields() + _MCU_EXTRA


def _mcu_cluster(config: Mapping[str, Any]):
    from trainforge.dataflow.mcu.cluster import ClusterConfig

    fields = {k: v for k, v in config.items() if k not in _MCU_EXTRA}
    sharing = config.get("fpu_sharing")
    if sharing is not None:
        if "fpus" in fields:
            raise ConfigError("give fpus or fpu_sharing, not both")
        cores = fields.get("cores", ClusterConfig.cores)
        # fpu_sharing cores per FPU: 1 is private FPUs, 2 is the RTL's NB_FPNEW = NB_CORES / 2
        fields["fpus"] = None if sharing == 1 else max(1, math.ceil(cores / sharing))
    # the dataclass validates itself; from_mapping's type coercion is for strings, the spec's values are typed
    return ClusterConfig(**fields)


# per worker process: one Estimate per (workload, cycle-relevant configuration), reused across clocks
_MCU_ESTIMATES: dict[tuple, Any] = {}


def _mcu_estimate(workload: Any, config: Mapping[str, Any], cluster: Any) -> Any:
    from trainforge.dataflow.mcu.estimate import estimate

    # cycles do not depend on the clock or the L2 size: one model run serves every value of them
    timing = {k: v for k, v in config.items() if k not in _MCU_TIME_ONLY}
    key = (id(workload), tuple(sorted((k, repr(v)) for k, v in timing.items())))
    found = _MCU_ESTIMATES.get(key)
    if found is None or found[0] is not workload:
        if len(_MCU_ESTIMATES) >= 4096:
            _MCU_ESTIMATES.clear()
        timing_cluster = dataclasses.replace(cluster, clock_hz=400_000_000, l2_bytes=1536 * 1024)
        result = estimate(
            workload,
            dtype=config.get("dtype", "fp16"),
            cluster=timing_cluster,
            trained=config.get("trained", "all"),
            kernels=config.get("kernels", "all"),
            vector_ops=config.get("vector_ops", True),
        )
        found = _MCU_ESTIMATES[key] = (workload, result)
    return found[1]


def _mcu_check(name: str, value: Any) -> None:
    from trainforge.dataflow.mcu.cluster import DTYPES, ClusterConfig

    if name == "dtype":
        if value not in DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, not {value!r}")
    elif name == "kernels":
        if value not in ("all", "library"):
            raise ConfigError(f"kernels must be all or library, not {value!r}")
    elif name == "vector_ops":
        if not isinstance(value, bool):
            raise ConfigError(f"vector_ops must be true or false, not {value!r}")
    elif name == "trained":
        if not isinstance(value, str) or not (value == "all" or value.startswith("last:")):
            raise ConfigError(f"trained must be 'all' or 'last:K', not {value!r}")
    elif name == "fpu_sharing":
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 32:
            raise ConfigError(f"fpu_sharing (cores per FPU) must be an integer in 1..32, not {value!r}")
    elif name == "cores":
        ClusterConfig(cores=value)
    else:
        # the widest cluster, so fpus alone is checked against its own range, not the default cores;
        # the dataclass checks types and ranges itself (from_mapping would build a validator per call)
        ClusterConfig(**{"cores": 32, name: value})


def _mcu_affinity(config: Mapping[str, Any]) -> Any:
    return tuple(sorted((k, repr(v)) for k, v in config.items() if k not in _MCU_TIME_ONLY))


@evaluator(
    "mcu",
    version="1",
    parameters=_mcu_parameters(),
    objectives={
        "latency_ms": "min",
        "cycles": "min",
        "mac_per_cycle": "max",
        "utilisation": "max",
        "fpus": "min",
        "l1_kib": "min",
    },
    check=_mcu_check,
    affinity=_mcu_affinity,
)
def mcu(config: dict[str, Any], workload: Any, method: str) -> dict[str, float]:
    """One training step (batch 1) on the PULP MCU cluster (`trainforge mcu estimate`), autotuned kernels.

    ``method`` does not change the MCU's work (it runs dense kernels), so it only labels the point.
    Objectives: ``latency_ms`` at ``clock_hz``, ``cycles``, ``mac_per_cycle``, ``utilisation``
    (MAC/cycle over the cluster's peak), and two resource counts for Pareto fronts: ``fpus`` and
    ``l1_kib``.
    """
    cluster = _mcu_cluster(config)
    dtype = config.get("dtype", "fp16")
    result = _mcu_estimate(workload, config, cluster)
    return {
        "latency_ms": result.cycles / cluster.clock_hz * 1e3,
        "cycles": result.cycles,
        "mac_per_cycle": result.mac_per_cycle,
        "utilisation": result.mac_per_cycle / cluster.peak_mac_per_cycle(dtype),
        "fpus": cluster.fpu_count,
        "l1_kib": cluster.l1_bytes / 1024,
    }


# -- sat: the SAT accelerator, mapping-level estimate ------------------------------------------------

#: Parameters of the ``sat`` evaluator besides :class:`SatConfig`'s fields.
_SAT_EXTRA = ("nm",)
# fields the GEMM mapping tables (candidates, tile classes, energies) depend on; the rest only time them
_SAT_STRUCTURE = ("rows", "cols", "m_max", "in_fmt", "a_lines", "b_lines", "acc_lines", "mem_bits")
_SAT_TIMING = ("mem_latency", "mem_interval")
# fields the line streamer's (PRUNE, UPDATE) cycles depend on (dataflow/sat_timing.py run_streamer)
_SAT_STREAMER = ("cols", "m_max", "in_fmt", "mem_bits", "mem_latency", "mem_interval")


def _sat_fields() -> tuple[str, ...]:
    from trainforge.hw.sat.config import SatConfig

    return tuple(SatConfig.field_names())


@dataclasses.dataclass
class SatWorkload:
    """What the ``sat`` evaluator's ``prepare`` ships to the workers: the workload built for ``method``
    at 2:8 (or a file's own N:M), and the zoo name other N:M patterns are rebuilt from (``None`` for
    a file)."""

    name: str
    method: str
    base: Any
    zoo: str | None


def _sat_prepare(name: str, method: str) -> SatWorkload:
    from trainforge.dataflow.mcu.estimate import MODEL_ALIASES
    from trainforge.models.zoo import ZOO

    zoo = MODEL_ALIASES.get(name, name)
    return SatWorkload(name=name, method=method, base=prepare_workload(name, method), zoo=zoo if zoo in ZOO else None)


def _sat_nm(value: Any) -> tuple[int, int]:
    """``"N:M"`` -> ``(N, M)``; :class:`ConfigError` unless ``1 <= N < M`` and ``M`` in 2, 4, 8, 16."""
    try:
        n_s, m_s = str(value).split(":")
        n, m = int(n_s), int(m_s)
    except ValueError:
        n = m = 0
    if not (1 <= n < m and m in (2, 4, 8, 16)):
        raise ConfigError(f"nm must look like 'N:M' with 1 <= N < M and M in 2, 4, 8, 16, not {value!r}")
    return n, m


def _sat_check(name: str, value: Any) -> None:
    from trainforge.hw.sat.config import PRESETS, SatConfig

    if name == "nm":
        _sat_nm(value)
    elif name == "preset":
        if value not in (*PRESETS, "custom"):
            raise ConfigError(f"unknown preset {value!r}; valid: {', '.join(PRESETS)}, custom")
    else:
        # the field's own range: the largest buffers and the smallest array, so no other field objects
        base = {"rows": 1, "cols": 1, "a_lines": 65536, "b_lines": 65536, "acc_lines": 65536}
        SatConfig.from_mapping({**base, name: value, "preset": "custom"})


def _sat_affinity(config: Mapping[str, Any]) -> Any:
    # the mapping tables are per structure, then per timing: keep both runs on one worker
    structure = tuple(sorted((k, repr(v)) for k, v in config.items() if k not in (*_SAT_TIMING, "clock_mhz")))
    return structure, tuple(repr(config.get(k)) for k in _SAT_TIMING)


# per worker process, bounded: parsed configurations, workloads per N:M, mapping tables per structure,
# GEMM and streamer costs per timing
_SAT_CACHE: dict[tuple, Any] = {}


def _sat_cached(key: tuple, build: Callable[[], Any]) -> Any:
    found = _SAT_CACHE.get(key, _SAT_CACHE)
    if found is _SAT_CACHE:
        if len(_SAT_CACHE) >= 20_000:
            _SAT_CACHE.clear()
        found = _SAT_CACHE[key] = build()
    return found


def _sat_config(config: Mapping[str, Any]):
    """The point's :class:`SatConfig` (``from_mapping`` validates it; cached without the clock)."""
    fields = {k: v for k, v in config.items() if k not in _SAT_EXTRA}
    clock = fields.pop("clock_mhz", None)
    cfg = _sat_cached(("config", tuple(sorted((k, repr(v)) for k, v in fields.items()))), lambda: _from_mapping(fields))
    # replace() re-runs validate(): the clock's range is still checked
    return cfg if clock is None else dataclasses.replace(cfg, clock_mhz=clock)


def _from_mapping(fields: Mapping[str, Any]):
    from trainforge.hw.sat.config import SatConfig

    return SatConfig.from_mapping(fields)


def _sat_workload(prepared: SatWorkload, nm: tuple[int, int] | None) -> Any:
    """The workload at ``nm`` (the prepared one when it already is; ``dense`` ignores ``nm``)."""
    base = prepared.base
    if nm is None or prepared.method == "dense" or nm == (base.n, base.m):
        return base
    if prepared.zoo is None:
        raise UsageError(
            f"workload file {prepared.name!r} carries its own N:M ({base.n}:{base.m}); "
            f"nm={nm[0]}:{nm[1]} needs a zoo model"
        )

    def build() -> Any:
        from trainforge.models.workloads import workload
        from trainforge.models.zoo import zoo_model

        net, x = zoo_model(prepared.zoo)
        return workload(net, x, method=prepared.method, n=nm[0], m=nm[1], name=prepared.name)

    return _sat_cached(("workload", prepared.zoo, prepared.method, nm), build)


def _dense_twin(workload: Any) -> Any:
    """The same iteration with every weight copy dense (no PRUNE): ``speedup_vs_dense``'s reference."""
    from trainforge.models.workloads import GemmOp, MaskOp

    ops = tuple(
        dataclasses.replace(op, nm=None, sparse_along=None) if isinstance(op, GemmOp) and op.nm else op
        for op in workload.ops
        if not isinstance(op, MaskOp)
    )
    return dataclasses.replace(workload, method="dense", ops=ops)


def _sat_gemms(cfg: Any, workload: Any) -> tuple[list, int, int]:
    """The workload's distinct GEMM shapes (``count`` = total products), its MACs and useful MACs."""
    from trainforge.dataflow.mapping import GemmShape
    from trainforge.models.workloads import GemmOp

    counts: dict[tuple, int] = {}
    for op in workload.ops:
        if isinstance(op, GemmOp):
            n, m = op.nm if op.nm else (cfg.m_max, cfg.m_max)
            if not cfg.supports(n, m):
                raise UsageError(
                    f"{op.name}: {n}:{m} is not supported by this configuration (m must divide m_max={cfg.m_max})"
                )
            key = (op.m, op.n, op.k, n, m)
            counts[key] = counts.get(key, 0) + op.count
    shapes = [GemmShape(*key, count) for key, count in counts.items()]
    return shapes, workload.macs(), workload.useful_macs()


class _GemmTable:
    """Everything of the mapping search that does not depend on the DRAM timing, for one structure.

    The steps of :func:`~trainforge.dataflow.mapping.estimate_mapping`, split so that a point that
    changes only ``mem_latency`` / ``mem_interval`` re-runs :func:`tile_costs` on the distinct tile
    classes and nothing else.
    """

    def __init__(self, cfg: Any, shapes: list) -> None:
        from trainforge.dataflow.energy import ACTION_FIELDS, energy_matrix, gemm_actions
        from trainforge.dataflow.mapping import _candidate_arrays, _class_table, candidates

        self.shapes = shapes
        cands = [candidates(cfg, g) for g in shapes]
        self.sizes = [len(c) for c in cands]
        f, owner = _class_table(cfg, _candidate_arrays(cfg, shapes, cands))
        key = f["steps"]
        fields = (("rows", 17), ("n", 6), ("ws", 1), ("load_a", 1), ("load_b", 1), ("store", 1), ("chained", 1))
        for name, bits in fields:  # one int64 per class, as estimate_mapping packs it
            key = (key << bits) | f[name]
        _, first, self.inverse = np.unique(key, return_index=True, return_inverse=True)
        self.classes = {k: f[k][first] for k in ("ws", "rows", "steps", "n", "load_a", "load_b", "store", "chained")}
        self.owner, self.count = owner, f["count"]
        n_cands = sum(self.sizes)
        self.order = np.argsort(owner, kind="stable")
        self.starts = np.searchsorted(owner[self.order], np.arange(n_cands))
        matrix = energy_matrix(cfg).sum(axis=1)
        ws = f["ws"].astype(bool)
        joules = np.zeros(len(self.count))
        for dataflow, sel in (("os", ~ws), ("ws", ws)):
            if sel.any():
                acts = gemm_actions(
                    cfg,
                    dataflow=dataflow,
                    **{k: f[k][sel] for k in ("n", "rows", "cols", "steps")},
                    **{k: f[k][sel].astype(bool) for k in ("load_a", "load_b", "accumulate", "store")},
                )
                total = np.zeros(int(sel.sum()))
                for k, name in enumerate(ACTION_FIELDS):
                    if matrix[k]:
                        total += np.asarray(getattr(acts, name), dtype=np.float64) * matrix[k]
                joules[sel] = total
        self.energy = np.bincount(owner, weights=self.count * joules, minlength=n_cands)
        self.bounds = np.cumsum([0, *self.sizes])
        self.products = np.array([g.count for g in shapes], dtype=np.float64)

    def cost(self, cfg: Any) -> tuple[float, float]:
        """Cycles and joules of every GEMM at its best-latency mapping (``search``'s choice), summed."""
        from trainforge.dataflow.mapping import tile_costs

        u = self.classes
        cost = tile_costs(
            cfg,
            dataflow=u["ws"],
            rows=u["rows"],
            steps=u["steps"],
            n=u["n"],
            load_a=u["load_a"].astype(bool),
            load_b=u["load_b"].astype(bool),
            store=u["store"].astype(bool),
            chained=u["chained"].astype(bool),
            copies=8,
        )
        steady = cost["steady"][self.inverse]
        overhead = np.maximum(cost["overhead0"], cost["overhead1"])[self.inverse]
        cyc = np.bincount(self.owner, weights=self.count * steady, minlength=int(self.bounds[-1]))
        cyc = cyc + np.maximum.reduceat(overhead[self.order], self.starts)
        cycles = energy = 0.0
        for g, (lo, hi) in enumerate(zip(self.bounds[:-1], self.bounds[1:], strict=True)):
            # search(objective="latency"): the lowest cycles, the first candidate on a tie
            k = lo + int(np.argmin(cyc[lo:hi]))
            cycles += cyc[k] * self.products[g]
            energy += self.energy[k] * self.products[g]
        return cycles, energy


def _sat_streamer_ops(cfg: Any, workload: Any) -> dict[Any, int]:
    """The iteration's PRUNE and UPDATE descriptors (as the scheduler emits them) and their counts."""
    from trainforge.dataflow.schedule import _prune_descs, _update_descs, _weight_rows
    from trainforge.models.workloads import MaskOp, UpdateOp

    rows = _weight_rows(workload)
    masked = {op.param for op in workload.ops if isinstance(op, MaskOp)}
    out: dict[Any, int] = {}
    for op in workload.ops:
        if isinstance(op, MaskOp):
            descs = _prune_descs(cfg, op, rows.get(op.param, 1))
        elif isinstance(op, UpdateOp):
            descs = _update_descs(cfg, op, rows.get(op.param), op.param in masked)
        else:
            continue
        for d in descs:
            out[d] = out.get(d, 0) + 1
    return out


def _sat_streamer_energy(cfg: Any, ops: Mapping[Any, int]) -> float:
    from trainforge.dataflow.energy import prune_actions, sat_energy, update_actions
    from trainforge.hw.sat import isa

    total = 0.0
    for d, k in ops.items():
        if isinstance(d, isa.Prune):
            acts = prune_actions(cfg, n=d.n, m=d.m, lines=d.lines, transpose=d.transpose, write_mask=d.write_mask)
        else:
            acts = update_actions(cfg, lines=d.lines, use_mask=d.use_mask)
        total += float(sat_energy(cfg, acts).total) * k
    return total


def _sat_streamer_cycles(cfg: Any, ops: Mapping[Any, int]) -> int:
    """Exact cycles of the descriptors run back to back: each one's stand-alone time, cached per descriptor."""
    fields = tuple(getattr(cfg, k) for k in _SAT_STREAMER)
    total = 0
    for d, k in ops.items():
        # the streamer starts once the GEMM pipeline drained: its time is program_timing([d]) - 2 wherever it sits
        total += k * _sat_cached(("streamer", fields, d), lambda d=d: _streamer_time(cfg, d))
    return total


def _streamer_time(cfg: Any, desc: Any) -> int:
    """``program_timing([desc]).cycles - 2``; a long descriptor from three short ones when they are linear.

    The streamer works in chunks (8 acc-lines of UPDATE, ``prune_chunk_lines`` of PRUNE) whose cost
    repeats once the memory port is in its steady state: the same descriptor with 3, 4 and 5 full
    chunks (and the same last chunk) gives the per-chunk cycles, used when the three agree (else
    the whole descriptor is timed). Tested equal to the full timing.
    """
    from trainforge.dataflow.sat_timing import program_timing
    from trainforge.hw.sat import isa
    from trainforge.hw.sat.streamer import UPDATE_CHUNK, prune_chunk_lines

    def time(lines: int) -> int:
        return program_timing(cfg, [dataclasses.replace(desc, lines=lines)]).cycles - 2

    if isinstance(desc, isa.Update):
        unit = UPDATE_CHUNK
    else:
        unit = prune_chunk_lines(cfg, desc.m, desc.transpose)
        unit = unit // cfg.cols if desc.transpose else unit
    full, rest = divmod(desc.lines, unit)
    if full >= 8:
        t3, t4, t5 = (time(j * unit + rest) for j in (3, 4, 5))
        if t5 - t4 == t4 - t3:
            return t3 + (full - 3) * (t4 - t3)
    return time(desc.lines)


def _sat_iteration(prepared_key: tuple, workload: Any, cfg: Any) -> tuple[float, float, int]:
    """Cycles, joules and useful MACs of one iteration of ``workload`` on ``cfg`` (mapping-level)."""
    structure = tuple(getattr(cfg, k) for k in _SAT_STRUCTURE)
    timing = tuple(getattr(cfg, k) for k in _SAT_TIMING)

    def table() -> tuple[_GemmTable, dict[Any, int], float, int]:
        shapes, _macs, useful = _sat_gemms(cfg, workload)
        ops = _sat_streamer_ops(cfg, workload)
        return _GemmTable(cfg, shapes), ops, _sat_streamer_energy(cfg, ops), useful

    gemms, ops, streamer_j, useful = _sat_cached(("table", prepared_key, structure), table)

    def cost() -> tuple[float, float]:
        cycles, joules = gemms.cost(cfg)
        return cycles + _sat_streamer_cycles(cfg, ops), joules + streamer_j

    cycles, joules = _sat_cached(("cost", prepared_key, structure, timing), cost)
    return cycles, joules, useful


def sat_point(config: Mapping[str, Any], prepared: SatWorkload) -> dict[str, float]:
    """The ``sat`` evaluator's numbers for one point (see :func:`sat`), usable outside a sweep."""
    cfg = _sat_config(config)
    nm = _sat_nm(config["nm"]) if "nm" in config else None
    workload = _sat_workload(prepared, nm)
    # the prepared object is per process; its identity and the N:M name the workload in the caches
    key = (id(prepared), prepared.name, prepared.method, (workload.n, workload.m))
    _sat_cached(("keepalive", key), lambda: prepared)  # id() stays unique while cached
    cycles, joules, useful = _sat_iteration(key, workload, cfg)
    if prepared.method == "dense":
        dense_cycles = cycles
    else:
        twin = _sat_cached(("dense", key), lambda: _dense_twin(workload))
        dense_cycles = _sat_iteration((*key, "dense"), twin, cfg)[0]
    seconds = cycles / (cfg.clock_mhz * 1e6)
    return {
        "latency_s": seconds,
        "energy_j": joules,
        "edp": seconds * joules,
        "utilisation": useful / (cfg.pe_count * cycles),
        "speedup_vs_dense": dense_cycles / cycles,
        "cycles": cycles,
    }


@evaluator(
    "sat",
    version="1",
    parameters=(*_sat_fields(), *_SAT_EXTRA),
    objectives={
        "latency_s": "min",
        "energy_j": "min",
        "edp": "min",
        "utilisation": "max",
        "speedup_vs_dense": "max",
        "cycles": "min",
    },
    prepare=_sat_prepare,
    check=_sat_check,
    affinity=_sat_affinity,
)
def sat(config: dict[str, Any], workload: Any, method: str) -> dict[str, float]:
    """One training iteration on the SAT accelerator, mapping-level estimate (fast; `trainforge estimate` is exact).

    Per distinct GEMM of the workload the mapping search's best-latency mapping
    (:func:`~trainforge.dataflow.mapping.search`'s estimate ``sum(count * steady) + overhead``), plus the
    exact stand-alone cycles of every PRUNE and UPDATE descriptor the scheduler emits (offline order:
    the streamer runs after the GEMMs), summed. Energy: the chosen mappings' GEMM actions plus the
    PRUNE / UPDATE actions (no cycle-dependent term). ``nm`` (``"2:8"``) is the N:M of the compressed
    weight copies (ignored by ``dense``); ``speedup_vs_dense`` divides the dense twin's cycles (same
    configuration, every copy dense, no PRUNE) by the point's. ``utilisation`` is useful MACs per
    PE-cycle. Configuration fields as :meth:`SatConfig.from_mapping` (``preset`` plus overrides; no
    preset: the dataclass defaults, i.e. ``tiny``).
    """
    del method  # the prepared workload was built for it
    return sat_point(config, workload)
