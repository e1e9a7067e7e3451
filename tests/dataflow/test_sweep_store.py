"""The results database: one row per key, concurrent writers, SQLite integrity; the Pareto mask."""

from __future__ import annotations

import itertools
import multiprocessing
import sqlite3

import numpy as np
import pytest

from trainforge.dataflow.sweep.report import pareto_mask
from trainforge.dataflow.sweep.spec import Point
from trainforge.dataflow.sweep.store import PointResult, ResultStore
from trainforge.errors import UsageError


def _row(i: int, status: str = "ok") -> tuple[PointResult, Point]:
    key = f"k{i:06d}"
    result = PointResult(
        key=key,
        status=status,
        objectives={"f": float(i)} if status == "ok" else {},
        error=None if status == "ok" else "ValueError: boom",
        seconds=0.001,
        finished=1.0 + i,
        worker="test:1",
    )
    return result, Point(workload="w", method="dense", config=(("x", i),), key=key)


def _write(store: ResultStore, rows, **kw) -> int:
    return store.write(rows, spec_hash="h" * 64, sweep="s", evaluator="e", versions={"trainforge": "t"}, **kw)


def test_roundtrip_and_unique_keys(tmp_path):
    db = tmp_path / "r.db"
    with ResultStore(db) as store:
        assert _write(store, [_row(i) for i in range(10)]) == 10
        assert _write(store, [_row(i) for i in range(5, 15)]) == 5  # 5..9 are stored already
        assert store.count() == 15
        points = list(store.points())
        assert [p.objectives["f"] for p in points] == [float(i) for i in range(15)]
        assert points[3].config == {"x": 3}
        assert points[3].versions == {"trainforge": "t"}
        assert store.integrity() == "ok"
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT COUNT(DISTINCT key), COUNT(*) FROM points").fetchone() == (15, 15)


def test_failures_are_kept_and_replaced_only_on_request(tmp_path):
    with ResultStore(tmp_path / "r.db") as store:
        _write(store, [_row(1, "failed"), _row(2)])
        assert store.status_of(["k000001", "k000002", "k000003"]) == {"k000001": "failed", "k000002": "ok"}
        assert store.objectives_of(["k000001", "k000002"]) == {"k000001": None, "k000002": {"f": 2.0}}
        assert _write(store, [_row(1)]) == 0
        assert _write(store, [_row(1), _row(2)], replace_failed=True) == 1  # an ok row is never replaced
        assert store.status_of(["k000001"]) == {"k000001": "ok"}


def test_not_a_database(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(UsageError, match="not a sweep results database"):
        ResultStore(bad)


def _writer(path: str, start: int, stop: int, out) -> None:
    written = 0
    with ResultStore(path) as store:
        for i in range(start, stop, 25):
            written += _write(store, [_row(j) for j in range(i, min(i + 25, stop))])
    out.put(written)


def test_two_writers_on_one_database(tmp_path):
    db = str(tmp_path / "r.db")
    ResultStore(db).close()
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    # overlapping ranges: keys 1000..1999 are written by both, each stored once
    procs = [
        ctx.Process(target=_writer, args=(db, 0, 2000, out)),
        ctx.Process(target=_writer, args=(db, 1000, 3000, out)),
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    written = out.get(timeout=5) + out.get(timeout=5)
    with ResultStore(db) as store:
        assert store.integrity() == "ok"
        assert store.count() == 3000 == written
        assert [p.key for p in store.points()] == sorted(f"k{i:06d}" for i in range(3000))


def _dominated_reference(values: np.ndarray, directions) -> np.ndarray:
    signs = [1 if d == "min" else -1 for d in directions]
    keep = []
    for a in values:
        dominated = False
        for b in values:
            better_or_equal = all(s * bj <= s * aj for s, aj, bj in zip(signs, a, b, strict=True))
            strictly = any(s * bj < s * aj for s, aj, bj in zip(signs, a, b, strict=True))
            dominated |= better_or_equal and strictly
        keep.append(not dominated)
    return np.array(keep)


@pytest.mark.parametrize(
    ("directions", "seed"), list(itertools.product([("min", "min"), ("min", "max"), ("max", "min", "min")], [1, 2]))
)
def test_pareto_mask_against_the_definition(directions, seed):
    values = np.random.default_rng(seed).integers(0, 12, size=(150, len(directions))).astype(float)
    assert (pareto_mask(values, directions) == _dominated_reference(values, directions)).all()
