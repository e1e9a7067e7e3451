"""``trainforge cosim train-step`` on the Verilator model: every GEMM, PRUNE and UPDATE of 2 steps on the RTL.

Run as a user runs it (the console script, ``--json``). The RTL must match the golden executor bit
for bit (weights after each step and losses); against plain PyTorch float32 the bound on the
weights is ``2^-7`` of the distance training moved them (FP16 operands, unit roundoff 2^-11, give a
few units of it: see tests/sim/test_cosim_golden.py), on the losses 1e-3 (logits from FP16
operands carry a relative error of a few 2^-11).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.verilator

TRAINFORGE = str(Path(sys.executable).parent / "trainforge")


def test_mlp_bdwp_two_steps_bit_exact_and_close_to_pytorch():
    args = ["cosim", "train-step", "--model", "mlp", "--method", "bdwp", "--nm", "2:4", "--steps", "2"]
    proc = subprocess.run(
        [TRAINFORGE, *args, "--preset", "tiny", "--json"], capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["steps"] == 2
    assert r["bit_exact"] is True
    assert r["loss_rtl"] == r["loss_golden"]
    assert all(math.isfinite(v) for v in r["loss_rtl"])
    assert len(r["loss_torch"]) == 2
    assert all(abs(a - b) <= 1e-3 for a, b in zip(r["loss_rtl"], r["loss_torch"], strict=True))
    assert r["max_abs_weight_change"] > 1e-3
    assert r["max_abs_weight_diff"] <= 2**-7 * r["max_abs_weight_change"]
    by_op = r["cycles_by_op"]
    assert set(by_op) == {"ff", "bp", "wu", "prune", "update"}
    assert all(v > 0 for v in by_op.values())
    assert sum(by_op.values()) <= r["cycles"]
    # 1 initial PRUNE + per step 2 FF, 1 BP and 2 WU/UPDATE/PRUNE programs
    assert r["programs"] == 1 + 2 * 5
    assert r["waves"] is None
