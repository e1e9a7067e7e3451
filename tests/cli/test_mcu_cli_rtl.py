"""``trainforge mcu kernel --rtl`` and ``--asm``: the CLI runs the kernel on the cluster RTL."""

import json

import pytest
from typer.testing import CliRunner

from trainforge.cli import app
from trainforge.dataflow.mcu.kernels import kernel_cycles
from trainforge.hw.mcu.asm import assemble

runner = CliRunner()


@pytest.mark.verilator
def test_rtl_run_reports_equal_cycles_and_exact_c(tmp_path):
    asm = tmp_path / "k.s"
    args = ["mcu", "kernel", "vm_T_SIMD", "--n", "2", "--k", "18", "--m", "6", "--cores", "1", "--transposed-b"]
    result = runner.invoke(app, [*args, "--rtl", "--json", "--asm", str(asm)])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    model = kernel_cycles("vm_T_SIMD", n=2, k=18, m=6, trans_b=True, dtype="fp16", cores=1)
    assert payload["cycles"] == model.cycles
    assert payload["rtl"]["rtl_cycles"] == model.cycles
    assert payload["rtl"]["cycles_match"]
    assert payload["rtl"]["bit_exact"]
    assert payload["rtl"]["max_abs_diff_vs_torch"] < 0.05
    assert len(assemble(asm.read_text()).words) > 20


def test_rtl_refuses_groups():
    args = ["mcu", "kernel", "mm_dw_fp16_SIMD_1x2", "--n", "4", "--k", "9", "--m", "4", "--groups", "2", "--rtl"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "--groups 1" in result.output


def test_asm_to_unwritable_path_is_a_usage_error(tmp_path):
    args = ["mcu", "kernel", "vm_naive", "--n", "1", "--k", "8", "--m", "8", "--asm", str(tmp_path / "no" / "k.s")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "cannot write" in result.output
