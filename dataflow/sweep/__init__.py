"""Design-space exploration: resumable parallel sweeps, Pareto fronts and reports (``trainforge sweep``).

* :mod:`.evaluators` -- the registry of functions ``(config, workload, method) -> objectives``.
* :mod:`.spec` -- the YAML sweep spec, validated with pydantic before anything runs.
* :mod:`.search` -- grid, random and Optuna NSGA-II searches.
* :mod:`.store` -- the SQLite results database (WAL, one transaction per batch, a unique key per point).
* :mod:`.runner` -- :func:`run_sweep` on a local process pool or Dask distributed.
* :mod:`.report` -- Pareto fronts, sensitivity plots, CSV/Parquet and a self-contained HTML page.

See ``docs/sweeps.md``.
"""

from trainforge.dataflow.sweep.evaluators import EVALUATORS, Evaluator, evaluator, get_evaluator, prepare_workload
from trainforge.dataflow.sweep.runner import SweepSummary, run_sweep
from trainforge.dataflow.sweep.spec import Point, SpecError, SweepSpec, load_spec, parse_spec
from trainforge.dataflow.sweep.store import PointResult, ResultStore, StoredPoint

__all__ = [
    "EVALUATORS",
    "Evaluator",
    "Point",
    "PointResult",
    "ResultStore",
    "SpecError",
    "StoredPoint",
    "SweepSpec",
    "SweepSummary",
    "evaluator",
    "get_evaluator",
    "load_spec",
    "parse_spec",
    "prepare_workload",
    "run_sweep",
]
