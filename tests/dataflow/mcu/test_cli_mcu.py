"""``trainforge mcu`` (``mcu_app``): exit codes, one-line errors, JSON keys.

Most cases run in-process through Typer's runner (stdout and stderr kept apart); one runs the app
in a fresh interpreter, as a user's shell would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trainforge.cli_mcu import mcu_app
from trainforge.dataflow.mcu.kernels import kernel_cycles
from trainforge.models.workloads import Layer, VectorLayer, assemble_workload

LAUNCH = "from trainforge.cli_mcu import mcu_app; mcu_app(prog_name='trainforge mcu')"


def process(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", LAUNCH, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def run(*args: str):
    result = CliRunner().invoke(mcu_app, list(args))
    result.returncode = result.exit_code
    return result


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["kernel", "nope", "--n", "1", "--k", "1", "--m", "1"], "trainforge: error: unknown kernel 'nope'; valid: "),
        (
            ["kernel", "mm_fp16", "--n", "0", "--k", "1", "--m", "1"],
            "trainforge: error: n must be a positive integer, not 0",
        ),
        (["kernel", "mm_fp16", "--n", "4", "--k", "4"], "trainforge: error: mcu kernel needs --m"),
        (["kernel"], "trainforge: error: mcu kernel needs a kernel NAME"),
        (
            ["kernel", "mm_fp16", "--n", "4", "--k", "4", "--m", "4", "--dtype", "fp8"],
            "trainforge: error: dtype must be",
        ),
        (["kernel", "mm", "--n", "4", "--k", "4", "--m", "4"], "trainforge: error: kernel 'mm' is a fp32 kernel"),
        (
            ["kernel", "mm_fp16", "--n", "4", "--k", "4", "--m", "4", "--set", "l1_banks=12"],
            "trainforge: error: l1_banks must be a power of two, not 12",
        ),
        (
            ["kernel", "mm_fp16", "--n", "4", "--k", "4", "--m", "4", "--set", "banks"],
            "trainforge: error: --set expects KEY=VALUE, not 'banks'",
        ),
        (
            ["kernel", "mm_fp16", "--n", "4", "--k", "4", "--m", "4", "--preset", "gap9"],
            "trainforge: error: unknown cluster preset 'gap9'",
        ),
        (
            ["kernel", "mm_fp16", "--n", "4", "--k", "4", "--m", "4", "--cores", "0"],
            "trainforge: error: --cores must be",
        ),
        (["estimate", "--model", "nope"], "trainforge: error: unknown model 'nope'"),
        (["estimate", "--model", "missing.onnx"], "trainforge: error: model file 'missing.onnx' does not exist"),
        (["estimate", "--model", "dscnn", "--kernels", "fast"], "trainforge: error: --kernels must be all or library"),
        (["estimate", "--model", "dscnn", "--dtype", "int8"], "trainforge: error: --dtype must be fp16, bf16 or fp32"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(args, message):
    proc = run(*args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(message)


def test_runs_as_a_process():
    proc = process("kernel", "mm_fp16", "--n", "0", "--k", "1", "--m", "1")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "trainforge: error: n must be a positive integer, not 0"
    proc = process("kernel", "mm_fp16_SIMD_4x8", "--n", "16", "--k", "16", "--m", "16", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["kernel"] == "mm_fp16_SIMD_4x8"


def test_kernel_json_matches_the_model():
    proc = run(
        "kernel", "vm_T_SIMD", "--n", "1", "--k", "128", "--m", "128", "--cores", "1", "--transposed-b", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert {"cycles", "mac_per_cycle", "kernel", "inner_loop", "cluster"} <= set(d)
    expected = kernel_cycles("vm_T_SIMD", n=1, k=128, m=128, cores=1, trans_b=True)
    assert d["cycles"] == expected.cycles
    assert d["mac_per_cycle"] == pytest.approx(16384 / expected.cycles)
    assert d["cluster"]["cores"] == 1


def test_kernel_table_and_list():
    proc = run("kernel", "mm_unroll_2x4", "--n", "16", "--k", "16", "--m", "64", "--dtype", "fp32")
    assert proc.returncode == 0, proc.stderr
    assert "cycles" in proc.stdout
    assert "mac_per_cycle" in proc.stdout
    assert "fmadd.s" in proc.stdout
    listing = run("kernel", "--list", "--json")
    assert listing.returncode == 0
    names = {k["name"] for k in json.loads(listing.stdout)}
    assert {"mm_fp16_SIMD_4x8", "mm_unroll_2x4", "vm_T_SIMD", "mm_fp16_dotpex_4x8"} <= names


def test_estimate_json_keys():
    proc = run(
        "estimate", "--model", "dscnn", "--dtype", "fp16", "--cores", "8", "--trained-layers", "last:3", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert {"mac_per_cycle", "cycles", "ms", "layers"} <= set(d)
    assert d["trained_layers"] == "last:3"
    assert d["cores"] == 8
    assert d["ms"] == pytest.approx(d["cycles"] / d["clock_hz"] * 1e3)
    assert d["macs"] == sum(layer["macs"] for layer in d["layers"])
    assert all({"name", "kind", "macs", "cycles", "mac_per_cycle", "steps"} <= set(layer) for layer in d["layers"])


def test_estimate_from_a_workload_file(tmp_path):
    forward = [
        Layer(
            name="conv",
            kind="conv",
            rows=64,
            c_in=8,
            c_out=16,
            kernel=(3, 3),
            weight="conv.w",
            in_spatial=(8, 8),
            out_spatial=(8, 8),
            stride=(1, 1),
            padding=(1, 1),
            dilation=(1, 1),
            grad_a=False,
        ),
        VectorLayer(name="relu", kind="activation", elements=1024),
        Layer(name="fc", kind="linear", rows=1, c_in=1024, c_out=10, weight="fc.w"),
    ]
    w = assemble_workload(forward, name="tiny", method="dense")
    path = tmp_path / "tiny.json"
    path.write_text(w.to_json())
    proc = run("estimate", "--model", str(path), "--dtype", "fp32")
    assert proc.returncode == 0, proc.stderr
    assert "tiny" in proc.stdout
    assert "MAC/clk" in proc.stdout
    assert "total:" in proc.stdout
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    proc = run("estimate", "--model", str(bad))
    assert proc.returncode == 2
    assert proc.stderr.startswith("trainforge: error: not a workload dict")
