"""`trainforge synth`: resource counts from yosys, classified per target, cached by Verilog hash."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainforge.errors import UsageError
from trainforge.sim.harness import generate
from trainforge.sim.synth import synthesize

pytestmark = pytest.mark.verilator  # the slow tier: runs yosys

TRAINFORGE = str(Path(sys.executable).parent / "trainforge")


def test_cmos_and_ice40_counts_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINFORGE_CACHE_DIR", str(tmp_path))
    generated = generate("nm-prune", {"lanes": 1, "m_max": 4})
    cmos = synthesize(generated.text, top="nm_prune", target="cmos")
    # flip-flops: per lane 4 weights x 16 bits, 4 counts x 2 bits, 4 held weights x 16, 4 keep bits,
    # plus position (2), n and m latches (3 + 3) and the output valid: 64+8+64+4+2+6+1
    assert cmos.ff == 149
    assert cmos.gates > 0
    # yosys' CMOS estimate counts 4 transistors per NAND/NOR and 2 per inverter (flip-flops uncounted)
    cells = cmos.cells
    assert cmos.transistors == 4 * (cells["$_NAND_"] + cells["$_NOR_"]) + 2 * cells["$_NOT_"]
    assert not cmos.cached
    again = synthesize(generated.text, top="nm_prune", target="cmos")
    assert again.cached
    assert again.to_dict() | {"cached": False, "seconds": 0} == cmos.to_dict() | {"cached": False, "seconds": 0}
    ice40 = synthesize(generated.text, top="nm_prune", target="ice40")
    assert ice40.ff == 149
    assert ice40.lut > 0
    assert ice40.cells.get("SB_LUT4") == ice40.lut


def test_unknown_target_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown synthesis target 'asic'; valid: xcup, xc7, ice40, cmos"):
        synthesize("module m(); endmodule", top="m", target="asic")


def test_cli_reports_xcup_resources_of_the_fp16_fma():
    proc = subprocess.run(
        [TRAINFORGE, "synth", "fp-fma", "--set", "fmt=fp16", "--target", "xcup", "--json"],
        capture_output=True,
        text=True,
        timeout=1200,
        env=os.environ,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["design"] == "fp-fma"
    assert result["target"] == "xcup"
    assert result["lut"] > 100
    # the 11x11-bit significand product maps to one DSP slice
    assert result["dsp"] == 1
    assert result["ff"] > 0
