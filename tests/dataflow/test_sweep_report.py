"""``trainforge report``: CSV and Parquet equal the database, Pareto flags, and the page in Chromium."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from trainforge.dataflow.sweep.evaluators import EVALUATORS, evaluator
from trainforge.dataflow.sweep.report import write_report
from trainforge.dataflow.sweep.runner import run_sweep
from trainforge.dataflow.sweep.spec import parse_spec
from trainforge.dataflow.sweep.store import ResultStore

CHROMIUM = "/usr/bin/chromium"
# the flags of the machine notes: no network, no first-run work, a fresh profile
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _f1(x: int, y: int) -> float:
    return x * x + y


def _f2(x: int, y: int) -> float:
    return (x - 6) ** 2 + 12 - y


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A two-workload sweep of an explicit formula (one failing point), and its report."""

    @evaluator(
        "toy-sweep-report",
        version="1",
        parameters=("x", "y"),
        objectives={"f1": "min", "f2": "min"},
        prepare=lambda workload, method: workload,
    )
    def toy(config, workload, method):
        if (config["x"], config["y"]) == (0, 0):
            raise ValueError("x = y = 0 is not a design")
        scale = 1.0 if workload == "dscnn" else 2.0
        return {"f1": scale * _f1(config["x"], config["y"]), "f2": scale * _f2(config["x"], config["y"])}

    try:
        spec = parse_spec(
            {
                "name": "report-test",
                "description": "explicit formulas",
                "evaluator": "toy-sweep-report",
                "workloads": ["dscnn", "resnet8"],
                "parameters": {"x": {"range": [0, 9]}, "y": {"range": [0, 12], "step": 2}},
            }
        )
        tmp = tmp_path_factory.mktemp("report")
        db = tmp / "r.db"
        summary = run_sweep(spec, db, workers=1)
        info = write_report(db, tmp / "out")
        yield db, tmp / "out", info, summary
    finally:
        del EVALUATORS["toy-sweep-report"]


def _reference_front(values: np.ndarray) -> set[int]:
    return {
        i
        for i, a in enumerate(values)
        if not any((b <= a).all() and (b < a).any() for j, b in enumerate(values) if j != i)
    }


def test_files_and_tables_equal_the_database(results):
    db, out, info, summary = results
    assert summary.points_total == 2 * 10 * 7
    assert info["points"] == 140
    assert info["failed"] == 2
    assert info["objectives"] == ["f1", "f2"]
    for name in info["files"]:
        assert (out / name).stat().st_size > 0
    assert {"pareto_f1_vs_f2.png", "sensitivity_x.png", "sensitivity_y.png", "index.html"} <= set(info["files"])
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with (out / "points.csv").open() as f:
        rows = list(csv.DictReader(f))
    with ResultStore(db) as store:
        stored = {p.key: p for p in store.points()}
    assert len(rows) == len(stored) == 140
    for row in rows:
        p = stored[row["key"]]
        x, y = int(row["param.x"]), int(row["param.y"])
        assert p.config == {"x": x, "y": y}
        if row["status"] == "failed":
            assert (x, y) == (0, 0)
            assert "ValueError: x = y = 0" in row["error"]
            continue
        scale = 1.0 if row["workload"] == "dscnn" else 2.0
        assert float(row["obj.f1"]) == scale * _f1(x, y)
        assert float(row["obj.f2"]) == scale * _f2(x, y)
    import pyarrow.parquet as pq

    table = pq.read_table(out / "points.parquet").to_pylist()
    assert [r["key"] for r in table] == [r["key"] for r in rows]
    assert [r["obj.f1"] for r in table] == [float(r["obj.f1"]) if r["obj.f1"] else None for r in rows]
    # the pareto column is the front of each workload, by the definition of dominance
    for workload in ("dscnn", "resnet8"):
        ok = [r for r in rows if r["workload"] == workload and r["status"] == "ok"]
        values = np.array([[float(r["obj.f1"]), float(r["obj.f2"])] for r in ok])
        assert {i for i, r in enumerate(ok) if r["pareto"] == "True"} == _reference_front(values)


def test_page_is_self_contained(results):
    _, out, _, _ = results
    page = (out / "index.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<link" not in page
    assert "@import" not in page
    data = json.loads(re.search(r'<script type="application/json" id="sweep-data">(.*?)</script>', page, re.S)[1])
    assert len(data["points"]) == 138
    assert data["groups"] == ["dscnn", "resnet8"]


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (make test installs it)")
def test_page_renders_in_headless_chromium(results, tmp_path):
    _, out, _, _ = results
    url = (out / "index.html").resolve().as_uri()

    def chromium(*args: str) -> subprocess.CompletedProcess:
        profile = tmp_path / f"profile{len(list(tmp_path.iterdir()))}"
        profile.mkdir()
        return subprocess.run(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args, url],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    dom = chromium("--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert 'data-rendered="ok"' in html  # the script ran to the end without an exception
    # every evaluated point is a circle; each workload's front is a path; the axes are labelled
    assert len(re.findall(r'<circle class="pt"', html)) == 138
    assert len(re.findall(r'<path class="pareto"', html)) == 2
    assert "f1 (min)</text>" in html
    assert html.count("<tr>") >= 1 + 2  # the Pareto table: a header and at least a point per workload

    shot = tmp_path / "shot.png"
    run = chromium("--window-size=1000,900", f"--screenshot={shot}")
    assert run.returncode == 0, run.stderr[-2000:]
    from PIL import Image

    image = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert image.shape[:2] == (900, 1000)
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 50  # not blank
    # the plot area holds the first workload's colour (#1f77b4) and the second's (#d62728)
    for rgb in ((0x1F, 0x77, 0xB4), (0xD6, 0x27, 0x28)):
        close = (np.abs(image - np.array(rgb)).sum(axis=2) < 30).sum()
        assert close > 50, f"colour {rgb} drawn on {close} pixels"


def test_chromium_test_is_not_silently_skipped_in_ci():
    """`make test` installs Debian's chromium, so in CI the browser test must run, not skip."""
    import os

    if os.environ.get("CI") == "true":
        assert shutil.which("chromium") or Path(CHROMIUM).exists(), "CI must install chromium (see the Makefile)"
