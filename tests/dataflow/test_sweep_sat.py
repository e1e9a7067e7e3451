"""The ``sat`` sweep evaluator: its numbers against the mapping search's API, its errors, sat-quick.yaml."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest

from trainforge.cli import main
from trainforge.dataflow.energy import prune_actions, sat_energy, update_actions
from trainforge.dataflow.mapping import GemmShape, search
from trainforge.dataflow.sat_timing import program_timing
from trainforge.dataflow.schedule import Options, iteration_program, schedule
from trainforge.dataflow.sweep import parse_spec
from trainforge.dataflow.sweep.evaluators import _sat_streamer_ops, _streamer_time, get_evaluator
from trainforge.dataflow.sweep.runner import evaluate_tasks
from trainforge.dataflow.sweep.spec import SpecError
from trainforge.errors import ConfigError, UsageError
from trainforge.hw.sat import isa
from trainforge.hw.sat.config import SatConfig
from trainforge.models.workloads import GemmOp, workload
from trainforge.models.zoo import zoo_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def resnet8():
    return zoo_model("resnet8")


@pytest.fixture(scope="module")
def sat():
    return get_evaluator("sat")


def _reference(cfg: SatConfig, wl) -> tuple[float, float, int]:
    """Cycles and joules from the public API: ``search`` per GEMM (one shape per op, not merged), then
    the scheduler's own PRUNE / UPDATE descriptors (``iteration_program``, offline order) timed back to
    back in one ``program_timing`` and costed with ``prune_actions`` / ``update_actions``."""
    ops = [op for op in wl.ops if isinstance(op, GemmOp)]
    shapes = [GemmShape(op.m, op.n, op.k, *(op.nm or (cfg.m_max, cfg.m_max)), op.count) for op in ops]
    found = search(cfg, shapes, objective="latency")
    cycles = sum(float(c[k]) for c, k in zip(found.cycles, found.best_index, strict=True))
    joules = sum(float(e[k]) for e, k in zip(found.energy_j, found.best_index, strict=True))
    program, _, _ = iteration_program(cfg, wl, Options(offline=True))
    streamer = [d for d in program if not isinstance(d, isa.Gemm)]
    if streamer:
        cycles += program_timing(cfg, streamer).cycles - 2
    for d in streamer:
        if isinstance(d, isa.Prune):
            acts = prune_actions(cfg, n=d.n, m=d.m, lines=d.lines, transpose=d.transpose, write_mask=d.write_mask)
        else:
            acts = update_actions(cfg, lines=d.lines, use_mask=d.use_mask)
        joules += float(sat_energy(cfg, acts).total)
    return cycles, joules, wl.useful_macs()


@pytest.mark.parametrize(
    ("method", "point"),
    [
        ("bdwp", {"preset": "paper", "rows": 16, "mem_bits": 256, "mem_latency": 12, "nm": "1:4", "clock_mhz": 350}),
        ("srste", {"preset": "default", "cols": 8, "mem_interval": 2, "nm": "2:8"}),
        ("dense", {"preset": "paper", "mem_bits": 128, "nm": "2:8"}),
    ],
)
def test_point_equals_the_mapping_search(sat, resnet8, method, point):
    net, x = resnet8
    n, m = map(int, point["nm"].split(":"))
    cfg = SatConfig.from_mapping({k: v for k, v in point.items() if k != "nm"})
    wl = workload(net, x, method=method, n=n, m=m, name="resnet8")
    cycles, joules, useful = _reference(cfg, wl)
    dense_cycles = _reference(cfg, workload(net, x, method="dense", name="resnet8"))[0]
    got = sat.evaluate(point, sat.prepare("resnet8", method), method)
    seconds = cycles / (cfg.clock_mhz * 1e6)
    assert got["cycles"] == pytest.approx(cycles, rel=1e-12)
    assert got["latency_s"] == pytest.approx(seconds, rel=1e-12)
    assert got["energy_j"] == pytest.approx(joules, rel=1e-9)
    assert got["edp"] == pytest.approx(seconds * joules, rel=1e-9)
    assert got["utilisation"] == pytest.approx(useful / (cfg.rows * cfg.cols * cycles), rel=1e-12)
    assert got["speedup_vs_dense"] == pytest.approx(dense_cycles / cycles, rel=1e-12)
    # the mapping-level estimate stays near the exact schedule (docs/sweeps.md reports the error)
    exact = schedule(cfg, wl, Options(offline=True))
    assert abs(got["cycles"] / exact.cycles - 1) < 0.08
    assert got["energy_j"] == pytest.approx(float(exact.energy.total), rel=1e-9)


def test_cached_timings_follow_the_timing_fields(sat, resnet8):
    """A second point on the same structure (only the DRAM timing changed) reuses the tables, not the numbers."""
    prepared = sat.prepare("resnet8", "bdwp")
    net, x = resnet8
    wl = workload(net, x, method="bdwp", n=2, m=8, name="resnet8")
    for latency in (8, 40):
        point = {"preset": "default", "mem_latency": latency, "nm": "2:8"}
        cfg = SatConfig.from_mapping({"preset": "default", "mem_latency": latency})
        assert sat.evaluate(point, prepared, "bdwp")["cycles"] == pytest.approx(_reference(cfg, wl)[0], rel=1e-12)


def test_streamer_extrapolation_is_exact(resnet8):
    """Long PRUNE / UPDATE descriptors timed from three short ones equal the full program_timing."""
    net, x = resnet8
    rng = random.Random(3)
    for _ in range(4):
        cfg = SatConfig.from_mapping(
            {
                "preset": "paper",
                "cols": rng.choice([4, 16, 64]),
                "mem_bits": rng.choice([64, 256, 1024]),
                "mem_latency": rng.choice([0, 8, 50]),
                "mem_interval": rng.choice([1, 3]),
            }
        )
        wl = workload(net, x, method="bdwp", n=2, m=rng.choice([4, 8]))
        for d in _sat_streamer_ops(cfg, wl):
            assert _streamer_time(cfg, d) == program_timing(cfg, [d]).cycles - 2
        long = isa.Update(lines=8 * 40 + 3)
        assert _streamer_time(cfg, long) == program_timing(cfg, [long]).cycles - 2


def _spec(parameters: dict, fixed: dict | None = None) -> dict:
    return {"name": "t", "evaluator": "sat", "workloads": ["resnet8"], "parameters": parameters, "fixed": fixed or {}}


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"nm": ["2:8", "3:6"]}, "parameters.nm: nm must look like 'N:M' with 1 <= N < M and M in 2, 4, 8, 16"),
        ({"nm": ["8:8"]}, "nm must look like 'N:M'"),
        ({"rows": [16, 65]}, "parameters.rows: rows must be in 1..64, not 65"),
        ({"mem_bits": [100]}, "mem_bits must be a power of two in 32..1024, not 100"),
        ({"preset": ["paper", "huge"]}, "unknown preset 'huge'"),
        ({"row": [16]}, "parameters.row: not a parameter of evaluator 'sat' (did you mean 'rows'?)"),
    ],
)
def test_never_valid_values_are_spec_errors(parameters, message):
    with pytest.raises(SpecError) as info:
        parse_spec(_spec(parameters))
    assert message in str(info.value)


def test_invalid_combinations_fail_the_point_with_the_message(sat):
    prepared = sat.prepare("resnet8", "bdwp")
    # each value is valid alone; together they are not: SatConfig.from_mapping's message
    with pytest.raises(ConfigError, match=r"b_lines must hold a weight-stationary tile \(rows=64\), not 32"):
        sat.evaluate({"preset": "paper", "rows": 64, "b_lines": 32, "nm": "2:8"}, prepared, "bdwp")
    with pytest.raises(UsageError, match=r"2:16 is not supported by this configuration \(m must divide m_max=8\)"):
        sat.evaluate({"preset": "paper", "nm": "2:16"}, prepared, "bdwp")
    payload = {"evaluator": "sat", "area": False, "workloads": {("resnet8", "bdwp"): prepared}}
    tasks = [
        ("k1", "resnet8", "bdwp", {"preset": "paper", "acc_lines": 16, "nm": "2:8"}),
        ("k2", "resnet8", "bdwp", {"preset": "paper", "nm": "2:8"}),
    ]
    bad, good = evaluate_tasks(tasks, payload)
    assert bad.status == "failed"
    assert bad.error == "ConfigError: acc_lines must hold at least one tile (rows=32), not 16"
    assert good.status == "ok"
    assert good.objectives["speedup_vs_dense"] > 0


def test_a_workload_file_keeps_its_own_nm(sat, tmp_path, resnet8):
    net, x = resnet8
    path = tmp_path / "r8.json"
    path.write_text(workload(net, x, method="bdwp", n=2, m=8, name="r8").to_json())
    prepared = sat.prepare(str(path), "bdwp")
    assert sat.evaluate({"preset": "paper", "nm": "2:8"}, prepared, "bdwp")["cycles"] > 0
    with pytest.raises(UsageError, match=r"carries its own N:M \(2:8\); nm=1:8 needs a zoo model"):
        sat.evaluate({"preset": "paper", "nm": "1:8"}, prepared, "bdwp")


def test_sat_quick_runs_end_to_end(tmp_path, capsys):
    spec = ROOT / "examples" / "sweeps" / "sat-quick.yaml"
    db = tmp_path / "sat-quick.db"
    assert main(["sweep", str(spec), "--out", str(db), "--json", "--workers", "2"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["points_total"] <= 200
    assert summary["points_done"] == summary["points_total"]
    assert summary["points_failed"] == 0


def test_dense_twin_matches_the_dense_workload(resnet8):
    from trainforge.dataflow.sweep.evaluators import _dense_twin

    net, x = resnet8
    twin = _dense_twin(workload(net, x, method="bdwp", n=2, m=8))
    dense = workload(net, x, method="dense")

    def shape(wl):
        return [dataclasses.astuple(op) if isinstance(op, GemmOp) else (type(op).__name__, op.name) for op in wl.ops]

    assert shape(twin) == shape(dense)
