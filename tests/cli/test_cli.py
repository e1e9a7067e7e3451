"""The `trainforge` console script, run as a user runs it: exit codes, one-line errors, outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TRAINFORGE = str(Path(sys.executable).parent / "trainforge")


def run(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [TRAINFORGE, *args], capture_output=True, text=True, cwd=cwd, timeout=900, env={**os.environ, **(env or {})}
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sim", "no-such-design"], "trainforge: error: unknown design 'no-such-design'; valid designs: "),
        (["verilog", "no-such-design"], "trainforge: error: unknown design 'no-such-design'; valid designs: "),
        (["sim", "nm-prune", "--set", "lanes=0"], "trainforge: error: lanes must be in 1..256, not 0"),
        (["sim", "nm-prune", "--set", "wings=2"], "trainforge: error: unknown parameter 'wings' for NMPruneConfig"),
        (["sim", "nm-prune", "--set", "lanes=four"], "trainforge: error: lanes='four'"),
        (["sim", "nm-prune", "--set", "fmt=fp64"], "trainforge: error: fmt='fp64'"),
        (["verilog", "nm-prune", "--set", "m_max"], "trainforge: error: --set expects KEY=VALUE, not 'm_max'"),
        (["sim", "nm-prune", "--seed", "-3"], "trainforge: error: --seed must be >= 0, not -3"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(args, message):
    proc = run(*args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(message)
    assert "Traceback" not in proc.stderr


def test_designs_lists_the_registry():
    proc = run("designs")
    assert proc.returncode == 0
    assert "nm-prune" in proc.stdout
    assert "lanes=4" in proc.stdout


@pytest.mark.verilator
def test_verilog_is_byte_identical_and_lints_clean(tmp_path):
    # Each run with its own empty cache, so both really elaborate (generated Verilog is cached).
    first = run(
        "verilog",
        "nm-prune",
        "--set",
        "lanes=4",
        "-o",
        "a",
        "--lint",
        cwd=tmp_path,
        env={"TRAINFORGE_CACHE_DIR": str(tmp_path / "cache-a")},
    )
    assert first.returncode == 0, first.stderr
    assert "verilator lint: clean" in first.stdout
    # a new process with another hash seed must not change a byte
    second = run(
        "verilog",
        "nm-prune",
        "--set",
        "lanes=4",
        "-o",
        "b",
        cwd=tmp_path,
        env={"PYTHONHASHSEED": "4242", "TRAINFORGE_CACHE_DIR": str(tmp_path / "cache-b")},
    )
    assert second.returncode == 0, second.stderr
    v_a, v_b = (tmp_path / d / "nm-prune.v" for d in ("a", "b"))
    assert v_a.read_bytes() == v_b.read_bytes()
    manifest = json.loads((tmp_path / "a" / "nm-prune.json").read_text())
    import hashlib

    assert manifest["verilog_sha256"] == hashlib.sha256(v_a.read_bytes()).hexdigest()
    assert manifest["parameters"] == {"lanes": 4, "m_max": 8, "n_max": None, "fmt": "fp16"}
    assert manifest["pipeline_latency_cycles"] == 1
    ports = {p["name"]: p for p in manifest["ports"]}
    assert ports["dense__payload"] == {"name": "dense__payload", "direction": "input", "width": 4 * 16}
    assert ports["sparse__valid"]["direction"] == "output"
    assert {"clk", "rst", "pattern"} <= set(ports)
    assert manifest["trainforge_version"]


@pytest.mark.verilator
def test_sim_json_reports_a_passing_regression():
    proc = run("sim", "nm-prune", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["design"] == "nm-prune"
    assert result["passed"] is True
    assert result["tests"] == 3
    assert result["failures"] == 0
    assert result["cycles"] > 1000
    assert result["cycles_per_s"] > 0


@pytest.mark.verilator
def test_doctor_checks_the_toolchain_end_to_end():
    proc = run("doctor")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for tool in ("amaranth", "yosys", "verilator", "cocotb", "torch", "build + simulate"):
        assert tool in proc.stdout
    assert "All checks passed" in proc.stdout
