"""Run a sweep: look up stored points, evaluate the rest in parallel, store each batch of results.

:func:`run_sweep` walks the search's batches. For each it asks the database which points are
already stored (done or failed) and sends only the others to the workers, in chunks of points with
equal affinity (so a model's per-process caches hit). Results come back to the main process, which
writes them in one transaction every ~0.5 s: a ``kill -9`` loses at most the results since the last
write, and a rerun computes exactly the points that are not stored.

Executors: in-process (``workers=1``), a local process pool (default; forked workers inherit the
prepared workloads), or Dask distributed (``cluster="local-dask"`` starts a ``LocalCluster`` of
``workers`` processes; ``cluster="tcp://HOST:PORT"`` attaches to a running scheduler whose workers
have trainforge installed). The evaluators are the same functions everywhere, so every executor
stores the same numbers.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import dataclasses
import math
import multiprocessing
import os
import platform
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from trainforge import __version__
from trainforge.dataflow.sweep.evaluators import get_evaluator
from trainforge.dataflow.sweep.search import make_searcher
from trainforge.dataflow.sweep.spec import Point, SweepSpec
from trainforge.dataflow.sweep.store import PointResult, ResultStore
from trainforge.errors import UsageError

__all__ = ["SweepSummary", "default_workers", "evaluate_tasks", "run_sweep"]

Task = tuple[str, str, str, dict[str, Any]]  # key, workload, method, config

# results are written at least this often, and whenever this many are waiting
_FLUSH_SECONDS = 0.5
_FLUSH_POINTS = 2048


@dataclasses.dataclass(frozen=True, kw_only=True)
class SweepSummary:
    """What a sweep did (the ``--json`` line).

    Attributes
    ----------
    points_total : int
        Points the search visited (the whole grid, the random sample, or NSGA-II's distinct trials).
    points_done : int
        Of those, stored in the database (ok or failed), including earlier runs and other sweeps.
    points_failed : int
        Of those, stored as failed.
    points_computed_this_run : int
        Evaluated and stored by this run.
    seconds : float
    points_per_minute : float
        ``points_computed_this_run`` over the run's wall time.
    spec_hash, sweep, db, executor : str
    """

    points_total: int
    points_done: int
    points_failed: int
    points_computed_this_run: int
    seconds: float
    points_per_minute: float
    spec_hash: str
    sweep: str
    db: str
    executor: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def default_workers() -> int:
    """The CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def tool_versions(evaluator: str) -> dict[str, str]:
    """What each row records as ``versions``."""
    ev = get_evaluator(evaluator)
    return {"trainforge": __version__, "evaluator": f"{ev.name}/{ev.version}", "python": platform.python_version()}


# -- worker side -------------------------------------------------------------------------------------
_PAYLOAD: dict[str, Any] | None = None


def _init_local_worker(payload: dict[str, Any]) -> None:
    """Pool initializer: keep the payload, and die with the parent (a killed sweep leaves no orphans)."""
    global _PAYLOAD
    _PAYLOAD = payload
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    # Ctrl-C goes to the parent, which shuts the pool down
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def evaluate_tasks(tasks: Sequence[Task], payload: dict[str, Any] | None = None) -> list[PointResult]:
    """Evaluate points in this process; a point that raises is returned as failed with its error.

    Parameters
    ----------
    tasks : sequence of (key, workload, method, config)
    payload : dict, optional
        ``{"evaluator": name, "area": bool, "workloads": {(workload, method): prepared}}``; default:
        the one the pool initializer stored.
    """
    payload = _PAYLOAD if payload is None else payload
    assert payload is not None, "evaluate_tasks needs a payload"
    ev = get_evaluator(payload["evaluator"])
    prepared = payload["workloads"]
    worker = f"{socket.gethostname()}:{os.getpid()}"
    results = []
    for key, workload, method, config in tasks:
        start = time.perf_counter()
        try:
            objectives = ev.evaluate(config, prepared[(workload, method)], method, area=payload["area"])
            status, error = "ok", None
        except Exception as exc:  # a failing point is recorded and the sweep goes on
            objectives, status = {}, "failed"
            error = f"{type(exc).__name__}: {exc}"
        results.append(
            PointResult(
                key=key,
                status=status,
                objectives=objectives,
                error=error,
                seconds=time.perf_counter() - start,
                finished=time.time(),
                worker=worker,
            )
        )
    return results


# -- executors ---------------------------------------------------------------------------------------
class _Executor:
    name = "serial"

    def __init__(self, payload: dict[str, Any]) -> None:
        self.payload = payload

    def run(self, chunks: list[list[Task]]) -> Iterator[list[PointResult]]:
        for chunk in chunks:
            yield evaluate_tasks(chunk, self.payload)

    def close(self) -> None:
        pass


class _PoolExecutor(_Executor):
    def __init__(self, payload: dict[str, Any], workers: int) -> None:
        super().__init__(payload)
        self.name = f"process pool ({workers} workers)"
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        self.pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context(method),
            initializer=_init_local_worker,
            initargs=(payload,),
        )

    def run(self, chunks: list[list[Task]]) -> Iterator[list[PointResult]]:
        futures = {self.pool.submit(evaluate_tasks, chunk) for chunk in chunks}
        try:
            for future in concurrent.futures.as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class _DaskExecutor(_Executor):
    def __init__(self, payload: dict[str, Any], workers: int, address: str) -> None:
        super().__init__(payload)
        import logging

        from distributed import Client, LocalCluster

        self.cluster = None
        try:
            if address == "local-dask":
                self.cluster = LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                )
                self.client = Client(self.cluster)
                self.name = f"dask LocalCluster ({workers} workers)"
            else:
                self.client = Client(address, timeout="30s")
                self.name = f"dask {address}"
        except OSError as exc:
            raise UsageError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
        # shipped once to every worker, not once per chunk
        (self.payload_future,) = self.client.scatter([payload], broadcast=True)

    def run(self, chunks: list[list[Task]]) -> Iterator[list[PointResult]]:
        from distributed import as_completed

        futures = [self.client.submit(evaluate_tasks, chunk, self.payload_future, pure=False) for chunk in chunks]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            self.client.cancel(futures)

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _make_executor(payload: dict[str, Any], workers: int, cluster: str | None) -> _Executor:
    if cluster is not None:
        if cluster != "local-dask" and not cluster.startswith("tcp://"):
            raise UsageError(f"--cluster must be local-dask or tcp://HOST:PORT, not {cluster!r}")
        return _DaskExecutor(payload, workers, cluster)
    if workers == 1:
        return _Executor(payload)
    return _PoolExecutor(payload, workers)


def _chunks(pending: list[Point], spec: SweepSpec, workers: int) -> list[list[Task]]:
    ev = get_evaluator(spec.evaluator)

    def order(p: Point) -> tuple:
        return (p.workload, p.method, ev.affinity(p.config_dict) if ev.affinity else (), p.key)

    ordered = sorted(pending, key=order)
    size = max(1, min(256, math.ceil(len(ordered) / (workers * 8))))
    return [
        [(p.key, p.workload, p.method, p.config_dict) for p in ordered[i : i + size]]
        for i in range(0, len(ordered), size)
    ]


# -- the sweep ---------------------------------------------------------------------------------------
def run_sweep(
    spec: SweepSpec,
    db: str | Path,
    *,
    workers: int | None = None,
    cluster: str | None = None,
    retry_failed: bool = False,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int | None, int, str], None] | None = None,
) -> SweepSummary:
    """Run ``spec`` into the database ``db`` (see the module docstring).

    Parameters
    ----------
    spec : SweepSpec
    db : path-like
        The SQLite results file (created if missing).
    workers : int, optional
        Worker processes (default: the CPUs available).
    cluster : {"local-dask", "tcp://HOST:PORT"}, optional
        Run on Dask distributed instead of the local pool.
    retry_failed : bool
        Evaluate stored failures again (default: a failure is a result, and is not recomputed).
    progress : callable, optional
        ``progress(points)`` as points are computed or found stored (after the first batch).
    on_start : callable, optional
        ``on_start(total, found_stored, executor_name)`` once, after the first batch was looked up:
        ``total`` is the search's size when known in advance (NSGA-II: its trials).

    Returns
    -------
    SweepSummary
    """
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, not {workers}")
    start = time.perf_counter()
    searcher = make_searcher(spec)
    spec_hash = spec.spec_hash()
    versions = tool_versions(spec.evaluator)
    ev = get_evaluator(spec.evaluator)
    visited: dict[str, None] = {}
    retried: set[str] = set()
    computed = 0
    executor: _Executor | None = None
    first = True
    with ResultStore(db) as store:
        store.register_sweep(
            spec_hash=spec_hash,
            name=spec.name,
            evaluator=spec.evaluator,
            spec_json=spec.canonical_json(),
            directions=spec.directions(),
            objectives=spec.pareto_objectives(),
        )
        try:
            for batch in searcher.batches():
                unique = {p.key: p for p in batch}
                keys = list(unique)
                visited.update(dict.fromkeys(keys))
                stored = store.status_of(keys)
                pending = [
                    p
                    for k, p in unique.items()
                    if k not in stored or (retry_failed and stored[k] == "failed" and k not in retried)
                ]
                if pending and executor is None:
                    # prepared once here, shipped to every worker (forked workers inherit it)
                    payload = {
                        "evaluator": ev.name,
                        "area": spec.area,
                        "workloads": {(w, m): ev.prepare(w, m) for w in spec.workloads for m in spec.methods},
                    }
                    executor = _make_executor(payload, workers, cluster)
                found = len(batch) - len(pending)
                if first:
                    first = False
                    if on_start is not None:
                        on_start(searcher.total, found, executor.name if executor else "none")
                elif progress is not None and found:
                    progress(found)
                if pending:
                    computed += _compute(
                        pending, spec, executor, workers, store, spec_hash, versions, retry_failed, progress
                    )
                    retried.update(p.key for p in pending)
                searcher.tell(batch, store.objectives_of(keys))
        finally:
            if executor is not None:
                executor.close()
        keys = list(visited)
        status = store.status_of(keys)
    seconds = time.perf_counter() - start
    return SweepSummary(
        points_total=len(keys),
        points_done=len(status),
        points_failed=sum(1 for s in status.values() if s == "failed"),
        points_computed_this_run=computed,
        seconds=seconds,
        points_per_minute=computed / seconds * 60 if seconds else 0.0,
        spec_hash=spec_hash,
        sweep=spec.name,
        db=str(db),
        executor=executor.name if executor else "none (nothing to compute)",
    )


def _compute(
    pending: list[Point],
    spec: SweepSpec,
    executor: _Executor,
    workers: int,
    store: ResultStore,
    spec_hash: str,
    versions: dict[str, str],
    retry_failed: bool,
    progress: Callable[[int], None] | None,
) -> int:
    by_key = {p.key: p for p in pending}
    buffer: list[PointResult] = []
    written = 0
    last = time.monotonic()

    def flush() -> int:
        rows = [(r, by_key[r.key]) for r in buffer]
        buffer.clear()
        return store.write(
            rows,
            spec_hash=spec_hash,
            sweep=spec.name,
            evaluator=spec.evaluator,
            versions=versions,
            replace_failed=retry_failed,
        )

    try:
        for results in executor.run(_chunks(pending, spec, workers)):
            buffer.extend(results)
            if progress is not None:
                progress(len(results))
            now = time.monotonic()
            if len(buffer) >= _FLUSH_POINTS or now - last >= _FLUSH_SECONDS:
                written += flush()
                last = now
    finally:
        # whatever finished is kept, also when interrupted
        if buffer:
            written += flush()
    return written
