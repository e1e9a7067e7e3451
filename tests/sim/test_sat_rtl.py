"""The SAT accelerator on Verilator: whole programs bit-exact against the golden executor."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from trainforge.sim.harness import simulate

pytestmark = pytest.mark.verilator

# An odd configuration: 3 x 5 PEs, BF16, lines of several 64-bit words, slow DRAM.
ODD = {"preset": "tiny", "rows": 3, "cols": 5, "in_fmt": "bf16", "mem_bits": 64, "mem_latency": 13, "mem_interval": 2}


def check_counts(metrics: list[dict]) -> None:
    by_test = {m["test"]: m for m in metrics}
    # Two random GEMMs per dataflow and pattern (dense + 7 sparse patterns on m_max = 8).
    assert by_test["gemm_tiles_every_pattern_both_dataflows"]["programs"] == 2 * 2 * 8
    assert by_test["prune_both_copies"]["programs"] == 2 * 7
    assert by_test["update_sgd_momentum_srste"]["programs"] == 5
    assert by_test["bad_descriptors_raise_the_error_flag"]["programs"] >= 13


def test_cli_sim_sat_tiny_passes():
    """The issue's command: ``trainforge sim sat --set preset=tiny --json``."""
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("trainforge")), "sim", "sat", "--set", "preset=tiny", "--json"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["passed"] is True
    assert result["parameters"]["preset"] == "tiny"
    check_counts(result["metrics"])


def test_odd_configuration_passes():
    check_counts(simulate("sat", ODD, seed=3).metrics)
