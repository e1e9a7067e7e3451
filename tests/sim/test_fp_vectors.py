"""`trainforge sim fp-* --vectors FILE`: TestFloat-format files checked on the RTL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainforge.models.testfloat import generate_vectors

pytestmark = pytest.mark.verilator

TRAINFORGE = str(Path(sys.executable).parent / "trainforge")

# f16_mulAdd cases whose answers follow from IEEE 754 by hand (flags: 01 NX, 02 UF, 04 OF, 10 NV).
HAND_CHECKED_F16_MULADD_RNE = """\
3C00 3C00 3C00 4000 00
7BFF 3C00 7BFF 7C00 05
0001 3800 0000 0000 03
0001 3C00 0000 0001 00
7C00 0000 0000 7E00 10
7C00 3C00 FC00 7E00 10
3C00 3C00 BC00 0000 00
7E00 3C00 3C00 7E00 00
7D00 3C00 3C00 7E00 10
0400 3800 8000 0200 00
03FF 3C00 0001 0400 00
"""


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([TRAINFORGE, *args], capture_output=True, text=True, timeout=900, env=os.environ)


def test_hand_checked_f16_cases_pass(tmp_path):
    path = tmp_path / "f16_mulAdd_rne.tv"
    path.write_text(HAND_CHECKED_F16_MULADD_RNE)
    proc = run("sim", "fp-fma", "--set", "fmt=fp16", "--vectors", str(path), "--rounding", "rne", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert (result["vectors"], result["mismatches"]) == (11, 0)
    assert result["vectors_per_s"] > 0


@pytest.mark.parametrize(
    ("design", "fmt", "op", "rounding"),
    [("fp-fma", "bf16", "fnmsub", "rdn"), ("fp-add", "fp32", "sub", "rmm"), ("fp-mul", "fp16", "mul", "rup")],
)
def test_generated_files_pass_and_a_wrong_line_is_reported(tmp_path, design, fmt, op, rounding):
    path = tmp_path / "cases.tv"
    generate_vectors(op, fmt, rounding, 20_000, 11, path=path)
    lines = path.read_text().splitlines()
    ok = run("sim", design, "--set", f"fmt={fmt}", "--vectors", str(path), "--rounding", rounding, "--op", op, "--json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["mismatches"] == 0
    # corrupt the expected result of line 7: the RTL is right, so the file's answer is reported
    fields = lines[6].split()
    fields[-2] = f"{int(fields[-2], 16) ^ 1:0{len(fields[-2])}X}"
    lines[6] = " ".join(fields)
    path.write_text("\n".join(lines) + "\n")
    bad = run(
        "sim", design, "--set", f"fmt={fmt}", "--vectors", str(path), "--rounding", rounding, "--op", op, "--json"
    )
    assert bad.returncode == 1
    result = json.loads(bad.stdout)
    assert result["mismatches"] == 1
    assert result["first_mismatches"][0].startswith("line 7:")


def test_bad_vector_requests_are_one_line_errors(tmp_path):
    path = tmp_path / "broken.tv"
    path.write_text("3C00 3C00 3C00 4000 00\n3C00 3C00 zz 4000 00\n")
    cases = [
        (["--vectors", str(path), "--rounding", "rne"], "broken.tv:2: unexpected character 'z'"),
        (["--vectors", str(tmp_path / "missing.tv"), "--rounding", "rne"], "cannot read TestFloat vectors"),
        (["--vectors", str(path)], "--vectors needs --rounding"),
        (["--vectors", str(path), "--rounding", "nearest"], "--rounding must be one of rne, rtz, rdn, rup, rmm"),
        (["--vectors", str(path), "--rounding", "rne", "--op", "mul"], "checks operations fmadd"),
        (["--rounding", "rne"], "--rounding and --op apply only with --vectors FILE"),
    ]
    for extra, message in cases:
        proc = run("sim", "fp-fma", *extra)
        assert proc.returncode == 2, (extra, proc.stderr)
        assert message in proc.stderr, (extra, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1
    proc = run("sim", "nm-prune", "--vectors", str(path), "--rounding", "rne")
    assert proc.returncode == 2
    assert "does not take vector files" in proc.stderr
