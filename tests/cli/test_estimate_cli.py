"""`trainforge estimate`: the JSON keys, the table, and one-line errors with exit code 2."""

from __future__ import annotations

import json

import pytest

from trainforge.cli import main

CSV = "Layer Name, M, N, K,\nfc1, 8, 32, 24,\nfc2, 8, 16, 32,\n"


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "net.csv"
    path.write_text(CSV)
    return str(path)


def test_json_keys(model, capsys):
    code = main(["estimate", "--hw", "tiny", "--model", model, "--method", "bdwp", "--nm", "2:8", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    for key in ("cycles", "seconds", "samples_per_s", "energy_j", "utilization", "speedup_vs_dense", "layers"):
        assert key in data
    assert data["seconds"] == pytest.approx(data["cycles"] / 200e6)
    assert 0 < data["utilization"] <= 1
    assert data["energy_j"] == pytest.approx(sum(data["energy_breakdown_j"].values()))
    assert 0 < data["speedup_vs_dense"] <= data["ideal_speedup"]
    assert {row["name"] for row in data["layers"]} >= {"fc1", "fc2"}


def test_table_and_hw_yaml(model, tmp_path, capsys):
    hw = tmp_path / "hw.yaml"
    hw.write_text("preset: tiny\nmem_latency: 4\n")
    assert main(["estimate", "--hw", str(hw), "--model", model, "--method", "dense", "--nm", "2:8"]) == 0
    assert "speed-up vs dense" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args",
    [
        ["--model", "no_such_net"],
        ["--nm", "8:8"],
        ["--nm", "3:2"],
        ["--nm", "two"],
        ["--method", "magic"],
        ["--hw", "huge"],
        ["--objective", "speed"],
    ],
)
def test_bad_input_exits_2(args, model, capsys):
    base = {"--hw": "tiny", "--model": model, "--method": "bdwp", "--nm": "2:8", "--objective": "latency"}
    for k, v in zip(args[::2], args[1::2], strict=True):
        base[k] = v
    argv = ["estimate"] + [x for kv in base.items() for x in kv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("trainforge: error:")


def test_bad_yaml_and_too_small_buffer_exit_2(model, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rows: [1, 2\n")
    small = tmp_path / "small.yaml"
    small.write_text("preset: tiny\nacc_lines: 2\n")
    for hw in (bad, small):
        assert main(["estimate", "--hw", str(hw), "--model", model]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1
        assert err[0].startswith("trainforge: error:")
