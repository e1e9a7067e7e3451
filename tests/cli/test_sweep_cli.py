"""``trainforge sweep`` and ``trainforge report`` end to end: exit codes, kill -9 and resume, two at once."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trainforge.cli import main

TRAINFORGE = [sys.executable, "-m", "trainforge.cli"]

# DS-CNN on the MCU model: each (cores, fpu_sharing) pair is a cold model run (~0.3 s),
# the clocks reuse it; 30 points, ~10 configurations
SPEC = """\
name: cli-test
evaluator: mcu
workloads: [dscnn]
parameters:
  cores: {cores}
  fpu_sharing: [1, 2]
  clock_hz: [200000000, 300000000, 400000000]
fixed: {{dtype: fp16}}
"""


def _write_spec(path: Path, cores: list[int]) -> Path:
    path.write_text(SPEC.format(cores=json.dumps(cores)))
    return path


def _last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def _rows(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM points").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0


def _live_group(pgid: int) -> list[int]:
    """Processes of process group ``pgid`` that are not zombies (a container's init may not reap)."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            live.append(int(stat.parent.name))
    return live


def test_spec_errors_exit_2_naming_the_field(tmp_path, capsys):
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: x\nevaluator: mcu\nworkloads: [dscnn]\nparameters: {l1_bank: [8]}\n")
    assert main(["sweep", str(spec), "--out", str(tmp_path / "r.db")]) == 2
    err = capsys.readouterr().err
    assert "trainforge: error:" in err
    assert "parameters.l1_bank: not a parameter of evaluator 'mcu' (did you mean 'l1_banks'?)" in err
    assert not (tmp_path / "r.db").exists()  # nothing ran
    good = _write_spec(tmp_path / "good.yaml", [1])
    assert main(["sweep", str(good), "--cluster", "slurm"]) == 2
    assert "--cluster must be local-dask or tcp://HOST:PORT" in capsys.readouterr().err
    assert main(["sweep", str(good), "--workers", "0"]) == 2
    assert main(["report", str(tmp_path / "missing.db")]) == 2


def test_kill_9_then_resume(tmp_path):
    spec = _write_spec(tmp_path / "s.yaml", [1, 2, 3, 4, 5])
    db = tmp_path / "r.db"
    cmd = [*TRAINFORGE, "sweep", str(spec), "--out", str(db), "--workers", "2", "--json", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while _rows(db) == 0 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the sweep finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)  # the sweep's own process, as `kill -9 PID`
        proc.wait(10)
    finally:
        # the pool's workers die with their parent (PR_SET_PDEATHSIG): wait for them, then clean up
        deadline = time.monotonic() + 10
        while (leftover := _live_group(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in leftover:
            os.kill(pid, signal.SIGKILL)
    assert not leftover, "worker processes outlived the killed sweep"
    stored = _rows(db)
    assert 0 < stored < 30

    second = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
    summary = _last_json(second.stdout)
    assert summary["points_total"] == summary["points_done"] == 30
    assert summary["points_failed"] == 0
    assert summary["points_computed_this_run"] == 30 - stored < summary["points_total"]
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM points").fetchone() == (30, 30)
    con.close()

    third = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
    summary = _last_json(third.stdout)
    assert summary["points_computed_this_run"] == 0
    assert summary["points_done"] == summary["points_total"] == 30
    assert set(summary) >= {"points_total", "points_done", "points_failed", "points_computed_this_run"}


def test_two_sweeps_on_one_database(tmp_path):
    db = tmp_path / "shared.db"
    # overlapping specs: cores 2 and 3 are in both
    a = _write_spec(tmp_path / "a.yaml", [1, 2, 3])
    b = _write_spec(tmp_path / "b.yaml", [2, 3, 4])
    procs = [
        subprocess.Popen(
            [*TRAINFORGE, "sweep", str(s), "--out", str(db), "--workers", "1", "--json", "--quiet"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for s in (a, b)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for _, e in outputs]
    summaries = [_last_json(out) for out, _ in outputs]
    assert all(s["points_done"] == s["points_total"] == 18 for s in summaries)
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    total, distinct = con.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM points").fetchone()
    cores = sorted(c for (c,) in con.execute("SELECT DISTINCT json_extract(config, '$.cores') FROM points"))
    con.close()
    assert total == distinct == 24  # 4 core counts x 2 sharings x 3 clocks, shared points stored once
    assert cores == [1, 2, 3, 4]
    # a point both computed is stored once and counted by the one that stored it
    assert sum(s["points_computed_this_run"] for s in summaries) == 24


def test_report_command(tmp_path, capsys):
    spec = _write_spec(tmp_path / "s.yaml", [1, 2])
    db = tmp_path / "r.db"
    assert main(["sweep", str(spec), "--out", str(db), "--workers", "1", "--json", "--quiet"]) == 0
    summary = _last_json(capsys.readouterr().out)
    assert summary["points_computed_this_run"] == summary["points_total"] == 12
    assert main(["report", str(db), "-o", str(tmp_path / "rep"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["points"] == 12
    assert info["objectives"] == ["latency_ms", "cycles"]  # the evaluator's first two
    assert {"points.csv", "points.parquet", "index.html", "sensitivity_cores.png"} <= set(info["files"])
    assert all((tmp_path / "rep" / name).is_file() for name in info["files"])


@pytest.mark.parametrize("example", ["quick.yaml", "mcu-tradeoff.yaml"])
def test_examples_validate(example):
    from trainforge.dataflow.sweep.spec import load_spec

    spec = load_spec(Path(__file__).resolve().parents[2] / "examples" / "sweeps" / example)
    assert spec.evaluator == "mcu"
