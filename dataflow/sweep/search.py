"""Which points a sweep visits: the full grid, a random sample of it, or Optuna's NSGA-II.

A search yields *batches* of :class:`~trainforge.dataflow.sweep.spec.Point`; the runner evaluates a
batch (or reads it back from the database) and hands the objectives back with :meth:`tell` before
asking for the next batch. Grid and random searches are one pass over known points; NSGA-II asks
one population at a time per (workload, method) and is deterministic for its seed, so a rerun
replays the same trials from stored results and only computes what is missing.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from trainforge.dataflow.sweep.spec import Point, SweepSpec, make_point, workload_tag

__all__ = ["GridSearcher", "NsgaSearcher", "RandomSearcher", "Searcher", "make_searcher"]

# grid and random points are handed to the runner in slices of this many (bounded memory)
_SLICE = 50_000


class Searcher:
    """Base class: ``batches()`` yields lists of points; ``tell(batch, objectives)`` after each.

    Attributes
    ----------
    total : int or None
        Points the search will visit, when known in advance.
    """

    total: int | None = None

    def __init__(self, spec: SweepSpec) -> None:
        self.spec = spec
        self._tags = {w: workload_tag(w) for w in spec.workloads}

    def point(self, workload: str, method: str, params: Mapping[str, Any]) -> Point:
        return make_point(self.spec, workload, method, params, self._tags[workload])

    def batches(self) -> Iterator[list[Point]]:
        raise NotImplementedError

    def tell(self, batch: Sequence[Point], objectives: Mapping[str, dict[str, float] | None]) -> None:
        """Objectives of the batch's points by key (``None`` for a failed point)."""


class GridSearcher(Searcher):
    """Every combination, workloads outermost."""

    def __init__(self, spec: SweepSpec) -> None:
        super().__init__(spec)
        self.total = spec.grid_size()

    def batches(self) -> Iterator[list[Point]]:
        choices = self.spec.choices()
        names = list(choices)
        combos = (
            self.point(w, m, dict(zip(names, values, strict=True)))
            for w in self.spec.workloads
            for m in self.spec.methods
            for values in itertools.product(*choices.values())
        )
        while batch := list(itertools.islice(combos, _SLICE)):
            yield batch


class RandomSearcher(Searcher):
    """``samples`` distinct grid points, uniformly, without listing the grid (it may be huge)."""

    def __init__(self, spec: SweepSpec) -> None:
        super().__init__(spec)
        self.total = min(spec.search.samples, spec.grid_size())

    def batches(self) -> Iterator[list[Point]]:
        axes: list[tuple[str, list[Any]]] = [
            ("workload", self.spec.workloads),
            ("method", self.spec.methods),
            *self.spec.choices().items(),
        ]
        size = math.prod(len(v) for _, v in axes)
        indices = sorted(random.Random(self.spec.search.seed).sample(range(size), self.total))
        points = []
        for index in indices:
            picked = {}
            for name, values in reversed(axes):  # mixed radix, last axis fastest
                index, digit = divmod(index, len(values))
                picked[name] = values[digit]
            workload, method = picked.pop("workload"), picked.pop("method")
            points.append(self.point(workload, method, {k: picked[k] for k in self.spec.choices()}))
        for i in range(0, len(points), _SLICE):
            yield points[i : i + _SLICE]


class NsgaSearcher(Searcher):
    """Optuna NSGA-II over the spec's objectives, ``trials`` trials per (workload, method).

    Every parameter is categorical (its listed values). A failed point is told as a failed trial.
    """

    def __init__(self, spec: SweepSpec) -> None:
        super().__init__(spec)
        # trials, not distinct points: NSGA-II may ask for a configuration twice
        self.total = spec.search.trials * len(spec.workloads) * len(spec.methods)
        self._pending: list[tuple[Any, Point]] = []
        self._study: Any = None

    def batches(self) -> Iterator[list[Point]]:
        import optuna
        from optuna.distributions import CategoricalDistribution

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        search = self.spec.search
        objectives = self.spec.pareto_objectives()
        directions = self.spec.directions()
        dists = {name: CategoricalDistribution(values) for name, values in self.spec.choices().items()}
        for workload in self.spec.workloads:
            for method in self.spec.methods:
                sampler = optuna.samplers.NSGAIISampler(population_size=search.population, seed=search.seed)
                self._study = optuna.create_study(
                    directions=["minimize" if directions.get(o, "min") == "min" else "maximize" for o in objectives],
                    sampler=sampler,
                )
                asked = 0
                while asked < search.trials:
                    size = min(search.population, search.trials - asked)
                    self._pending = []
                    for _ in range(size):
                        trial = self._study.ask(dists)
                        self._pending.append((trial, self.point(workload, method, trial.params)))
                    asked += size
                    yield [p for _, p in self._pending]

    def tell(self, batch: Sequence[Point], objectives: Mapping[str, dict[str, float] | None]) -> None:
        import optuna

        names = self.spec.pareto_objectives()
        for trial, point in self._pending:
            values = objectives.get(point.key)
            if values is None or any(not math.isfinite(values.get(n, math.nan)) for n in names):
                self._study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                self._study.tell(trial, [values[n] for n in names])
        self._pending = []


def make_searcher(spec: SweepSpec) -> Searcher:
    """The searcher of ``spec.search.kind``."""
    return {"grid": GridSearcher, "random": RandomSearcher, "nsga2": NsgaSearcher}[spec.search.kind](spec)
