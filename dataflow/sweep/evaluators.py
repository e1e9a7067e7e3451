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

Built in today: ``mcu`` (the PULP cluster's training-step model, :func:`trainforge.dataflow.mcu.estimate`).
The SAT performance estimator registers as ``sat`` when it lands (one function as above).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from trainforge.errors import ConfigError, UsageError

__all__ = [
    "EVALUATORS",
    "Evaluator",
    "check_workload",
    "evaluator",
    "get_evaluator",
    "prepare_workload",
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
