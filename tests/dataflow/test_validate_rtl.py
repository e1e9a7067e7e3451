"""``trainforge validate`` on the tiny build: the cycle model matches the RTL exactly (Verilator)."""

from __future__ import annotations

import json

import pytest

from trainforge.cli import main

pytestmark = pytest.mark.verilator


def test_validate_tiny_twelve_cases_exact(capsys):
    assert main(["validate", "--hw", "tiny", "--cases", "12", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["cases"] == 12
    assert len(report["rows"]) == 12
    assert report["max_cycle_error"] == 0
    assert report["mean_abs_pct_error"] == 0.0
    assert report["counters_exact"] == 12
    kinds = {row["kind"] for row in report["rows"]}
    assert kinds == {"gemm", "prune", "update", "mixed"}
    assert all(row["measured"] == row["predicted"] > 0 for row in report["rows"])


def test_bad_hardware_is_a_usage_error(tmp_path, capsys):
    assert main(["validate", "--hw", "huge"]) == 2
    bad = tmp_path / "hw.yaml"
    bad.write_text("rows: 0\n")
    assert main(["validate", "--hw", str(bad)]) == 2
    assert "rows must be in 1..64" in capsys.readouterr().err
