"""The results database: one SQLite file, one row per design point, safe to kill and to share.

Table ``points`` (one row per point, ``key`` unique):

========== =====================================================================================
column     meaning
========== =====================================================================================
key        the point's hash (:class:`~trainforge.dataflow.sweep.spec.Point`), the primary key
spec_hash  SHA-256 of the spec that computed it (table ``sweeps`` holds the spec itself)
sweep      the spec's name
evaluator  evaluator name
workload   workload name or file
method     training method
config     the configuration, JSON object (swept and fixed parameters)
status     ``ok`` or ``failed``
objectives JSON object of objective -> number (``{}`` when failed)
error      the failure's type and message (``NULL`` when ok)
versions   JSON: trainforge, the evaluator's version, Python
seconds    wall time of the evaluation in the worker
finished   Unix time the worker finished it
worker     host and process id of the worker
========== =====================================================================================

Safety: WAL journal (readers never block the writer), every batch of results is one ``BEGIN
IMMEDIATE`` transaction (a ``kill -9`` loses at most the batch being written, never corrupts), and
``INSERT ... ON CONFLICT(key) DO NOTHING`` (two sweeps that compute the same point store it once).
Only the sweep's main process writes; workers return results to it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainforge.errors import UsageError

__all__ = ["SCHEMA_VERSION", "PointResult", "ResultStore", "StoredPoint"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sweeps (
    spec_hash TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    evaluator TEXT NOT NULL,
    spec TEXT NOT NULL,
    directions TEXT NOT NULL,
    objectives TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS points (
    key TEXT PRIMARY KEY,
    spec_hash TEXT NOT NULL,
    sweep TEXT NOT NULL,
    evaluator TEXT NOT NULL,
    workload TEXT NOT NULL,
    method TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    objectives TEXT NOT NULL,
    error TEXT,
    versions TEXT NOT NULL,
    seconds REAL NOT NULL,
    finished REAL NOT NULL,
    worker TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS points_by_sweep ON points (spec_hash);
"""


@dataclass(frozen=True, slots=True)
class PointResult:
    """What a worker returns for one point."""

    key: str
    status: str
    objectives: dict[str, float]
    error: str | None
    seconds: float
    finished: float
    worker: str


@dataclass(frozen=True, slots=True)
class StoredPoint:
    """A row of ``points`` as read back."""

    key: str
    spec_hash: str
    sweep: str
    evaluator: str
    workload: str
    method: str
    config: dict[str, Any]
    status: str
    objectives: dict[str, float]
    error: str | None
    versions: dict[str, str]
    seconds: float
    finished: float
    worker: str


class ResultStore:
    """The results database at ``path`` (created on first use).

    Parameters
    ----------
    path : path-like
    timeout : float
        Seconds to wait for another writer's transaction before failing.

    Raises
    ------
    trainforge.errors.UsageError
        The file is not a SQLite database or is from a newer schema.
    """

    def __init__(self, path: str | Path, *, timeout: float = 120.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # autocommit mode: transactions are explicit BEGIN IMMEDIATE ... COMMIT
        self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        try:
            self._db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            self._db.execute("PRAGMA journal_mode = WAL")
            # NORMAL in WAL mode is durable against a killed process (only a power loss can drop the tail)
            self._db.execute("PRAGMA synchronous = NORMAL")
            with self.transaction():
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    self._db.execute(statement)
                self._db.execute(
                    "INSERT INTO meta (name, value) VALUES ('schema_version', ?) ON CONFLICT(name) DO NOTHING",
                    (str(SCHEMA_VERSION),),
                )
            (version,) = self._db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise UsageError(f"{self.path}: not a sweep results database ({exc})") from None
        if int(version) > SCHEMA_VERSION:
            self._db.close()
            raise UsageError(f"{self.path}: results schema {version} is newer than this trainforge's {SCHEMA_VERSION}")

    # -- plumbing ---------------------------------------------------------------------------------
    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    class _Tx:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> sqlite3.Connection:
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, exc_type: object, *rest: object) -> None:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")

    def transaction(self) -> _Tx:
        """``with store.transaction():`` one ``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on error)."""
        return self._Tx(self._db)

    # -- sweeps -----------------------------------------------------------------------------------
    def register_sweep(
        self, *, spec_hash: str, name: str, evaluator: str, spec_json: str, directions: dict, objectives: list
    ) -> None:
        """Record a spec (once per hash)."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO sweeps (spec_hash, name, evaluator, spec, directions, objectives, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(spec_hash) DO NOTHING",
                (spec_hash, name, evaluator, spec_json, json.dumps(directions), json.dumps(objectives), time.time()),
            )

    def sweeps(self) -> list[dict[str, Any]]:
        """Every recorded spec, oldest first: ``spec_hash``, ``name``, ``evaluator``, ``spec``, ``directions``..."""
        rows = self._db.execute(
            "SELECT spec_hash, name, evaluator, spec, directions, objectives, created FROM sweeps ORDER BY created"
        ).fetchall()
        return [
            {
                "spec_hash": r[0],
                "name": r[1],
                "evaluator": r[2],
                "spec": json.loads(r[3]),
                "directions": json.loads(r[4]),
                "objectives": json.loads(r[5]),
                "created": r[6],
            }
            for r in rows
        ]

    # -- points -----------------------------------------------------------------------------------
    def status_of(self, keys: Sequence[str]) -> dict[str, str]:
        """``{key: status}`` of the stored ones among ``keys``."""
        found: dict[str, str] = {}
        for i in range(0, len(keys), 900):  # SQLite's bound-parameter limit
            part = keys[i : i + 900]
            marks = ",".join("?" * len(part))
            found.update(self._db.execute(f"SELECT key, status FROM points WHERE key IN ({marks})", part).fetchall())
        return found

    def objectives_of(self, keys: Sequence[str]) -> dict[str, dict[str, float] | None]:
        """``{key: objectives}`` of the stored ones among ``keys`` (``None`` for a failed point)."""
        found: dict[str, dict[str, float] | None] = {}
        for i in range(0, len(keys), 900):
            part = keys[i : i + 900]
            marks = ",".join("?" * len(part))
            for key, status, objectives in self._db.execute(
                f"SELECT key, status, objectives FROM points WHERE key IN ({marks})", part
            ):
                found[key] = json.loads(objectives) if status == "ok" else None
        return found

    def write(
        self,
        rows: Iterable[tuple[PointResult, Any]],
        *,
        spec_hash: str,
        sweep: str,
        evaluator: str,
        versions: dict[str, str],
        replace_failed: bool = False,
    ) -> int:
        """Store results in one transaction; return how many rows were new (or replaced failures).

        Parameters
        ----------
        rows : iterable of (PointResult, Point)
        replace_failed : bool
            A computed point overwrites a stored failure of the same key (``--retry-failed``).
        """
        conflict = (
            "ON CONFLICT(key) DO UPDATE SET spec_hash = excluded.spec_hash, status = excluded.status, "
            "objectives = excluded.objectives, error = excluded.error, versions = excluded.versions, "
            "seconds = excluded.seconds, finished = excluded.finished, worker = excluded.worker "
            "WHERE points.status = 'failed'"
            if replace_failed
            else "ON CONFLICT(key) DO NOTHING"
        )
        versions_json = json.dumps(versions, sort_keys=True)
        written = 0
        with self.transaction() as db:
            for result, point in rows:
                cursor = db.execute(
                    "INSERT INTO points (key, spec_hash, sweep, evaluator, workload, method, config, status, "
                    f"objectives, error, versions, seconds, finished, worker) VALUES ({','.join('?' * 14)}) "
                    + conflict,
                    (
                        result.key,
                        spec_hash,
                        sweep,
                        evaluator,
                        point.workload,
                        point.method,
                        json.dumps(point.config_dict, sort_keys=True),
                        result.status,
                        json.dumps(result.objectives, sort_keys=True),
                        result.error,
                        versions_json,
                        result.seconds,
                        result.finished,
                        result.worker,
                    ),
                )
                written += cursor.rowcount
        return written

    def points(self, *, spec_hash: str | None = None, sweep: str | None = None) -> Iterator[StoredPoint]:
        """Every stored point, optionally of one spec hash (or hash prefix) or one sweep name."""
        query = (
            "SELECT key, spec_hash, sweep, evaluator, workload, method, config, status, objectives, error, "
            "versions, seconds, finished, worker FROM points"
        )
        args: list[Any] = []
        clauses = []
        if spec_hash is not None:
            clauses.append("spec_hash LIKE ?")
            args.append(spec_hash + "%")
        if sweep is not None:
            clauses.append("sweep = ?")
            args.append(sweep)
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        for r in self._db.execute(query + " ORDER BY finished, key", args):
            yield StoredPoint(
                key=r[0],
                spec_hash=r[1],
                sweep=r[2],
                evaluator=r[3],
                workload=r[4],
                method=r[5],
                config=json.loads(r[6]),
                status=r[7],
                objectives=json.loads(r[8]),
                error=r[9],
                versions=json.loads(r[10]),
                seconds=r[11],
                finished=r[12],
                worker=r[13],
            )

    def count(self) -> int:
        """Rows in ``points``."""
        return self._db.execute("SELECT COUNT(*) FROM points").fetchone()[0]

    def integrity(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` (``"ok"`` when the file is sound)."""
        return self._db.execute("PRAGMA integrity_check").fetchone()[0]
