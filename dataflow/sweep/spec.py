"""The sweep specification: a YAML file validated with pydantic before anything runs.

A spec names an evaluator (:mod:`.evaluators`), the workloads and training methods, the parameter
ranges to sweep, the values to keep fixed, the search and the objectives::

    name: mcu-quick
    evaluator: mcu
    workloads: [resnet8, dscnn]
    methods: [dense]
    parameters:
      cores: [2, 4, 8, 16]          # a list of values
      l1_banks: {pow2: [8, 32]}     # 8, 16, 32
      clock_hz: {range: [200000000, 600000000], step: 200000000}
    fixed: {dtype: fp16}
    search: {kind: grid}            # or {kind: random, samples: 500, seed: 1}
                                    # or {kind: nsga2, trials: 400, population: 40, seed: 1}
    objectives: [latency_ms, fpus]  # the Pareto front's axes (NSGA-II optimises all of them)

Every parameter is a finite set of values, so grid, random and NSGA-II draw from the same space
and a point's identity is its configuration. Any mistake (an unknown key, a parameter the
evaluator does not have, a value it rejects, an unknown objective) is a :class:`SpecError` whose
message names the field, e.g. ``parameters.l1_bank: not a parameter of evaluator 'mcu' (did you
mean 'l1_banks'?)``.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import yaml
from pydantic import StrictBool, StrictFloat, StrictInt, StrictStr

from trainforge.dataflow.sweep.evaluators import check_workload, get_evaluator
from trainforge.errors import UsageError

__all__ = [
    "GridSearch",
    "NsgaSearch",
    "Point",
    "RandomSearch",
    "SpecError",
    "SweepSpec",
    "load_spec",
    "parse_spec",
]

Scalar = StrictBool | StrictInt | StrictFloat | StrictStr


class SpecError(UsageError):
    """The sweep spec is invalid; the message names the field (``parameters.cores``, ``search.trials``)."""


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class IntRange(_Strict):
    """``{range: [lo, hi], step: s}``: ``lo, lo + s, ...`` up to and including ``hi``."""

    range: tuple[StrictInt, StrictInt]
    step: Annotated[StrictInt, pydantic.Field(gt=0)] = 1

    @pydantic.model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if self.range[0] > self.range[1]:
            raise ValueError(f"range needs lo <= hi, not {list(self.range)}")
        return self

    def values(self) -> list[int]:
        return list(range(self.range[0], self.range[1] + 1, self.step))


class Pow2Range(_Strict):
    """``{pow2: [lo, hi]}``: the powers of two from ``lo`` to ``hi`` (both powers of two)."""

    pow2: tuple[Annotated[StrictInt, pydantic.Field(gt=0)], Annotated[StrictInt, pydantic.Field(gt=0)]]

    @pydantic.model_validator(mode="after")
    def _powers(self) -> Pow2Range:
        lo, hi = self.pow2
        if lo & (lo - 1) or hi & (hi - 1) or lo > hi:
            raise ValueError(f"pow2 needs two powers of two lo <= hi, not {list(self.pow2)}")
        return self

    def values(self) -> list[int]:
        lo, hi = self.pow2
        return [1 << e for e in range(lo.bit_length() - 1, hi.bit_length())]


ParameterValues = Annotated[list[Scalar], pydantic.Field(min_length=1)] | IntRange | Pow2Range


class GridSearch(_Strict):
    """Every combination of workload, method and parameter values."""

    kind: Literal["grid"] = "grid"


class RandomSearch(_Strict):
    """``samples`` distinct combinations drawn uniformly (all of them if the grid is smaller)."""

    kind: Literal["random"]
    samples: Annotated[StrictInt, pydantic.Field(gt=0)]
    seed: StrictInt = 0


class NsgaSearch(_Strict):
    """Optuna's NSGA-II on the spec's objectives: ``trials`` points per (workload, method).

    The search is deterministic for a seed, so a rerun replays it from the database and only
    computes the points it has not stored yet.
    """

    kind: Literal["nsga2"]
    trials: Annotated[StrictInt, pydantic.Field(gt=0)]
    population: Annotated[StrictInt, pydantic.Field(ge=2)] = 20
    seed: StrictInt = 0


Search = Annotated[GridSearch | RandomSearch | NsgaSearch, pydantic.Field(discriminator="kind")]


class SweepSpec(_Strict):
    """A validated sweep spec (see the module docstring).

    Attributes
    ----------
    name : str
    evaluator : str
        A key of :data:`~trainforge.dataflow.sweep.evaluators.EVALUATORS`.
    workloads : list of str
        Zoo names or workload files (paths relative to the spec file).
    methods : list of {"dense", "srste", "bdwp"}
    parameters : dict of str to values
    fixed : dict of str to scalar
    search : GridSearch, RandomSearch or NsgaSearch
    objectives : list of str
        The Pareto axes (default: the evaluator's first two objectives).
    area : bool
        Add the evaluator's synthesis area objectives (slow: one synthesis per generated design).
    description : str
    """

    name: Annotated[StrictStr, pydantic.Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    evaluator: StrictStr
    workloads: Annotated[list[StrictStr], pydantic.Field(min_length=1)]
    methods: Annotated[list[Literal["dense", "srste", "bdwp"]], pydantic.Field(min_length=1)] = ["dense"]
    parameters: Annotated[dict[StrictStr, ParameterValues], pydantic.Field(min_length=1)]
    fixed: dict[StrictStr, Scalar] = {}
    search: Search = GridSearch()
    objectives: list[StrictStr] | None = None
    area: StrictBool = False
    description: StrictStr = ""

    @pydantic.model_validator(mode="after")
    def _against_evaluator(self) -> SweepSpec:
        try:
            ev = get_evaluator(self.evaluator)
        except UsageError as exc:
            raise _FieldError("evaluator", str(exc)) from None
        for i, workload in enumerate(self.workloads):
            try:
                check_workload(workload)
            except UsageError as exc:
                raise _FieldError(f"workloads.{i}", str(exc)) from None
        for section, names in (("parameters", self.parameters), ("fixed", self.fixed)):
            for name in names:
                if name not in ev.parameters:
                    hint = difflib.get_close_matches(name, ev.parameters, n=1)
                    did = f" (did you mean {hint[0]!r}?)" if hint else f"; valid: {', '.join(ev.parameters)}"
                    raise _FieldError(f"{section}.{name}", f"not a parameter of evaluator {ev.name!r}{did}")
        for name in set(self.parameters) & set(self.fixed):
            raise _FieldError(f"fixed.{name}", "is also swept under parameters")
        if ev.check is not None:
            for name, values in self.choices().items():
                for value in values:
                    try:
                        ev.check(name, value)
                    except UsageError as exc:
                        raise _FieldError(f"parameters.{name}", str(exc)) from None
            for name, value in self.fixed.items():
                try:
                    ev.check(name, value)
                except UsageError as exc:
                    raise _FieldError(f"fixed.{name}", str(exc)) from None
        for name, values in self.choices().items():
            if len(set(map(repr, values))) != len(values):
                raise _FieldError(f"parameters.{name}", f"repeats a value: {values}")
        known = dict(ev.objectives)
        if self.area and ev.area is None:
            raise _FieldError("area", f"evaluator {ev.name!r} has no area hook")
        for i, name in enumerate(self.objectives or ()):
            if name not in known and not self.area:
                hint = difflib.get_close_matches(name, known, n=1)
                did = f" (did you mean {hint[0]!r}?)" if hint else f"; valid: {', '.join(known)}"
                raise _FieldError(f"objectives.{i}", f"{name!r} is not an objective of {ev.name!r}{did}")
        if self.objectives is not None and len(self.objectives) < (2 if self.search.kind == "nsga2" else 1):
            raise _FieldError("objectives", "NSGA-II needs at least two objectives")
        return self

    # -- derived ------------------------------------------------------------------------------------
    def choices(self) -> dict[str, list[Any]]:
        """Every swept parameter's values, in spec order."""
        return {k: (v.values() if isinstance(v, IntRange | Pow2Range) else list(v)) for k, v in self.parameters.items()}

    def grid_size(self) -> int:
        """Points of the full grid: workloads x methods x every parameter's values."""
        return len(self.workloads) * len(self.methods) * math.prod(len(v) for v in self.choices().values())

    def pareto_objectives(self) -> list[str]:
        """The spec's objectives, or the evaluator's first two."""
        if self.objectives:
            return list(self.objectives)
        return list(get_evaluator(self.evaluator).objectives)[:2]

    def directions(self) -> dict[str, str]:
        """``min`` or ``max`` for each of the evaluator's objectives."""
        return dict(get_evaluator(self.evaluator).objectives)

    def spec_hash(self) -> str:
        """SHA-256 of the canonical JSON of the validated spec (what each row records)."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


class _FieldError(ValueError):
    """A validator's error that names its own field (pydantic would name only the model)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def _format(exc: pydantic.ValidationError, fields: tuple[str, ...]) -> str:
    lines = []
    for err in exc.errors():
        ctx_err = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_err, _FieldError):
            lines.append(str(ctx_err))
            continue
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("function-", "list[", "tagged-union")))
        # a union of forms reports each branch: name the field once, with what it got
        loc = loc.replace(".IntRange", "").replace(".Pow2Range", "")
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            hint = difflib.get_close_matches(str(err["loc"][-1]), fields, n=1)
            msg = "unknown field" + (f" (did you mean {hint[0]!r}?)" if hint else "")
        line = f"{loc or '(top level)'}: {msg}"
        if line not in lines:
            lines.append(line)
    return "\n".join(lines)


def parse_spec(data: Any, *, origin: str = "spec", base: Path | None = None) -> SweepSpec:
    """Validate a spec mapping (from YAML or Python).

    Parameters
    ----------
    data : mapping
    origin : str
        Named in error messages (the file name).
    base : Path, optional
        Folder that relative workload file paths are relative to.

    Raises
    ------
    SpecError
        The first line names the field.
    """
    if not isinstance(data, Mapping):
        raise SpecError(f"{origin}: a sweep spec is a mapping of fields, not {type(data).__name__}")
    data = dict(data)
    if base is not None and isinstance(data.get("workloads"), list):
        data["workloads"] = [_resolve(w, base) for w in data["workloads"]]
    try:
        return SweepSpec.model_validate(data)
    except pydantic.ValidationError as exc:
        raise SpecError(f"{origin}: {_format(exc, tuple(SweepSpec.model_fields))}") from None


def _resolve(workload: Any, base: Path) -> Any:
    if isinstance(workload, str) and Path(workload).suffix and not Path(workload).is_absolute():
        candidate = base / workload
        if candidate.exists():
            return str(candidate)
    return workload


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a YAML spec file.

    Raises
    ------
    SpecError
        Missing file, YAML syntax error, or an invalid field (named in the message).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"cannot read sweep spec {str(path)!r}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}".splitlines()[0]) from None
    return parse_spec(data, origin=str(path), base=path.parent)


@dataclasses.dataclass(frozen=True)
class Point:
    """One design point: a workload, a training method and a configuration.

    Attributes
    ----------
    workload, method : str
    config : tuple of (str, value)
        Swept and fixed parameters, sorted by name (hashable).
    key : str
        The point's unique key in the database: a hash of the evaluator, its version, the
        workload (and a workload file's content), the method, the configuration and the area flag.
    """

    workload: str
    method: str
    config: tuple[tuple[str, Any], ...]
    key: str

    @property
    def config_dict(self) -> dict[str, Any]:
        return dict(self.config)


def make_point(spec: SweepSpec, workload: str, method: str, params: Mapping[str, Any], tag: str) -> Point:
    """Build a :class:`Point` (``tag`` identifies the workload's content, see :func:`workload_tag`)."""
    config = tuple(sorted({**spec.fixed, **params}.items()))
    ev = get_evaluator(spec.evaluator)
    ident = {
        "evaluator": ev.name,
        "version": ev.version,
        "workload": tag,
        "method": method,
        "config": [list(item) for item in config],
        "area": spec.area,
    }
    key = hashlib.sha256(json.dumps(ident, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:32]
    return Point(workload=workload, method=method, config=config, key=key)


def workload_tag(workload: str) -> str:
    """The workload's name, plus a hash of the file's content when it is a file (edits are new points)."""
    path = Path(workload)
    if path.suffix and path.is_file():
        return f"{path.name}@{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}"
    return workload
