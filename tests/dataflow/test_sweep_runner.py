"""Running sweeps: the MCU evaluator against the model, failures, resumption, pool vs Dask, speed."""

from __future__ import annotations

import sqlite3
import time

import pytest

from trainforge.dataflow.mcu.cluster import ClusterConfig
from trainforge.dataflow.mcu.estimate import estimate, load_workload
from trainforge.dataflow.sweep.evaluators import EVALUATORS, evaluator, get_evaluator, prepare_workload
from trainforge.dataflow.sweep.runner import run_sweep
from trainforge.dataflow.sweep.spec import parse_spec
from trainforge.dataflow.sweep.store import ResultStore


def _objectives(db) -> dict[str, dict[str, float]]:
    with ResultStore(db) as store:
        return {p.key: p.objectives for p in store.points()}


def test_mcu_evaluator_is_the_cluster_model():
    workload = prepare_workload("dscnn", "dense")
    ev = get_evaluator("mcu")
    got = ev.evaluate({"cores": 4, "fpu_sharing": 2, "clock_hz": 250_000_000, "dtype": "fp16"}, workload, "dense")
    # the reference: `trainforge mcu estimate --model dscnn --cores 4 --set fpus=2` through the model's own API
    ref = estimate(load_workload("dscnn"), dtype="fp16", cluster=ClusterConfig(cores=4, fpus=2))
    assert got["cycles"] == ref.cycles
    assert got["latency_ms"] == pytest.approx(ref.cycles / 250e6 * 1e3, rel=1e-12)
    assert got["mac_per_cycle"] == pytest.approx(ref.macs / ref.cycles)
    assert got["utilisation"] == pytest.approx(ref.macs / ref.cycles / (2 * 2))  # 2 FPUs x 2 FP16 lanes
    assert got["fpus"] == 2
    assert got["l1_kib"] == 128
    # the clock only rescales time: same cycles at another clock, and private FPUs are faster
    other = ev.evaluate({"cores": 4, "fpu_sharing": 2, "clock_hz": 500_000_000}, workload, "dense")
    assert other["cycles"] == got["cycles"]
    assert other["latency_ms"] == pytest.approx(got["latency_ms"] / 2)
    private = ev.evaluate({"cores": 4, "fpu_sharing": 1}, workload, "dense")
    assert private["cycles"] < got["cycles"]
    assert private["fpus"] == 4


def _mcu_spec(**changes):
    raw = {
        "name": "runner-test",
        "evaluator": "mcu",
        "workloads": ["dscnn"],
        "parameters": {"cores": [2, 4], "fpus": [2, 8], "clock_hz": [200_000_000, 400_000_000]},
        "fixed": {"dtype": "fp16"},
    }
    raw.update(changes)
    return parse_spec(raw)


def test_failures_are_recorded_and_the_sweep_goes_on(tmp_path):
    db = tmp_path / "r.db"
    spec = _mcu_spec()
    first = run_sweep(spec, db, workers=1)
    # fpus=8 with 2 or 4 cores is not a cluster: 4 of the 8 points fail, the others are computed
    assert (first.points_total, first.points_done, first.points_failed) == (8, 8, 4)
    assert first.points_computed_this_run == 8
    with ResultStore(db) as store:
        failed = [p for p in store.points() if p.status == "failed"]
        ok = [p for p in store.points() if p.status == "ok"]
    assert {p.config["fpus"] for p in failed} == {8}
    assert all("ConfigError: fpus must be <= cores" in p.error and p.objectives == {} for p in failed)
    assert all(p.error is None and p.objectives["fpus"] == 2 for p in ok)
    assert all(p.versions["evaluator"] == "mcu/1" and p.seconds >= 0 for p in ok)
    # a failure is a result: a rerun computes nothing, --retry-failed only the failures
    assert run_sweep(spec, db, workers=1).points_computed_this_run == 0
    again = run_sweep(spec, db, workers=1, retry_failed=True)
    assert (again.points_computed_this_run, again.points_failed) == (4, 4)


def test_resume_computes_only_what_is_missing(tmp_path):
    db = tmp_path / "r.db"
    spec = _mcu_spec(parameters={"cores": [1, 2, 4], "clock_hz": [200_000_000, 400_000_000]})
    full = run_sweep(spec, db, workers=1)
    assert full.points_computed_this_run == 6
    before = _objectives(db)
    con = sqlite3.connect(db)
    with con:
        con.execute("DELETE FROM points WHERE key IN (SELECT key FROM points ORDER BY key LIMIT 2)")
    con.close()
    resumed = run_sweep(spec, db, workers=1)
    assert (resumed.points_computed_this_run, resumed.points_done, resumed.points_total) == (2, 6, 6)
    assert _objectives(db) == before


def test_pool_and_dask_local_cluster_give_the_same_results(tmp_path):
    spec = _mcu_spec(parameters={"cores": [1, 2, 4], "fpu_sharing": [1, 2], "clock_hz": [200_000_000, 300_000_000]})
    serial = run_sweep(spec, tmp_path / "serial.db", workers=1)
    pool = run_sweep(spec, tmp_path / "pool.db", workers=2)
    dask = run_sweep(spec, tmp_path / "dask.db", workers=2, cluster="local-dask")
    assert pool.executor.startswith("process pool")
    assert dask.executor.startswith("dask LocalCluster")
    assert serial.points_done == pool.points_done == dask.points_done == 12
    reference = _objectives(tmp_path / "serial.db")
    assert _objectives(tmp_path / "pool.db") == reference
    assert _objectives(tmp_path / "dask.db") == reference
    with ResultStore(tmp_path / "dask.db") as store:
        workers = {p.worker for p in store.points()}
    assert len(workers) >= 1
    assert all(":" in w for w in workers)


@pytest.fixture
def toy_evaluator():
    @evaluator(
        "toy-sweep-runner",
        version="1",
        parameters=("x", "y"),
        objectives={"f1": "min", "f2": "min"},
        prepare=lambda workload, method: workload,
    )
    def toy(config, workload, method):
        if config["x"] == 3 and config["y"] == 3:
            raise RuntimeError("no such design")
        return {"f1": config["x"] ** 2 + config["y"], "f2": (config["x"] - 4) ** 2 + 10 - config["y"]}

    yield
    del EVALUATORS["toy-sweep-runner"]


def test_nsga2_resumes_by_replaying_stored_trials(tmp_path, toy_evaluator):
    spec = parse_spec(
        {
            "name": "toy",
            "evaluator": "toy-sweep-runner",
            "workloads": ["dscnn"],
            "parameters": {"x": {"range": [0, 8]}, "y": {"range": [0, 10]}},
            "search": {"kind": "nsga2", "trials": 40, "population": 8, "seed": 2},
        }
    )
    db = tmp_path / "n.db"
    first = run_sweep(spec, db, workers=1)
    assert first.points_computed_this_run == first.points_total == first.points_done <= 40
    before = _objectives(db)
    con = sqlite3.connect(db)
    with con:
        con.execute("DELETE FROM points WHERE key IN (SELECT key FROM points ORDER BY finished DESC LIMIT 5)")
    con.close()
    resumed = run_sweep(spec, db, workers=1)
    assert resumed.points_computed_this_run == 5
    assert _objectives(db) == before
    assert run_sweep(spec, db, workers=1).points_computed_this_run == 0


def test_speed_of_analytical_points(tmp_path):
    """The issue's goal: >= 10k analytical points per minute on 2 cores (the MCU evaluator for now).

    The clock and L2 axes only rescale a model run, so after one model run per cluster these points
    cost what the sweep machinery costs: key, dispatch, evaluation, SQLite.
    """
    spec = parse_spec(
        {
            "name": "speed",
            "evaluator": "mcu",
            "workloads": ["dscnn"],
            "parameters": {
                "cores": [8],
                "fpu_sharing": [1, 2],
                "clock_hz": {"range": [100_000_000, 399_800_000], "step": 200_000},
            },
        }
    )
    start = time.perf_counter()
    summary = run_sweep(spec, tmp_path / "speed.db", workers=2)
    wall = time.perf_counter() - start
    rate = summary.points_computed_this_run / wall * 60
    print(f"\nsweep speed: {summary.points_computed_this_run} points in {wall:.2f} s = {rate:,.0f} points/min")
    assert summary.points_done == summary.points_total == 3000
    assert rate >= 10_000
