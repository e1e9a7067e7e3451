"""The Verilator harness end to end: nm-prune's regression on the RTL, the build cache, waves, failures."""

from __future__ import annotations

import time

import pytest

from trainforge.errors import GoldenMismatchError, SimulationError
from trainforge.sim import verilator
from trainforge.sim.harness import generate, simulate

pytestmark = pytest.mark.verilator

CONFIGS = [
    pytest.param({"lanes": 4, "m_max": 8, "fmt": "fp16"}, id="fp16-4lanes-m8"),
    pytest.param({"lanes": 2, "m_max": 8, "fmt": "fp32"}, id="fp32-2lanes-m8"),
    pytest.param({"lanes": 3, "m_max": 16, "n_max": 4, "fmt": "bf16"}, id="bf16-3lanes-m16-n4"),
]


@pytest.mark.parametrize("overrides", CONFIGS)
def test_nm_prune_rtl_matches_pytorch_golden(overrides):
    result = simulate("nm-prune", overrides, seed=11)
    assert result.passed, f"see {result.log}"
    assert result.tests == 3
    assert result.failures == 0
    by_test = {m["test"]: m for m in result.metrics}
    full_rate = by_test["every_pattern_at_full_rate"]
    # one weight per lane per cycle, the single cycle of latency aside
    assert full_rate["weights_per_cycle"] == pytest.approx(overrides["lanes"], rel=0.01)
    assert result.cycles == sum(m["cycles"] for m in result.metrics) > 0
    assert result.cycles_per_s > 0


def test_second_build_is_cached_and_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINFORGE_CACHE_DIR", str(tmp_path / "cache"))
    generated = generate("nm-prune", {"lanes": 1, "m_max": 2})
    ports = [p["name"] for p in generated.ports]
    first = verilator.build(generated.text, top="nm_prune", ports=ports)
    start = time.perf_counter()
    second = verilator.build(generated.text, top="nm_prune", ports=ports)
    assert not first.cached
    assert second.cached
    assert second.executable == first.executable
    assert time.perf_counter() - start < 1.0
    # another configuration is another design: different Verilog, so a different cache key
    other = generate("nm-prune", {"lanes": 2, "m_max": 2})
    assert other.sha256 != generated.sha256


def test_waves_are_written_on_request(tmp_path):
    result = simulate("nm-prune", {"lanes": 1, "m_max": 4}, waves=True, run_dir=tmp_path, testcase="weight_matrix")
    assert result.passed
    assert result.tests == 1
    assert result.waves is not None
    with open(result.waves, "rb") as fst:
        assert len(fst.read()) > 1000


def test_a_failing_testbench_is_reported_not_raised(tmp_path):
    generated = generate("nm-prune", {"lanes": 2, "m_max": 4})
    model = verilator.build(generated.text, top="nm_prune", ports=[p["name"] for p in generated.ports])
    run = verilator.run_cocotb(
        model,
        top="nm_prune",
        test_module="tb_nm_prune_wrong_golden",
        run_dir=tmp_path,
        seed=1,
        testcase="compares_against_the_wrong_pattern",
        env={"TRAINFORGE_CONFIG": generated.config.to_json()},
    )
    assert (run.tests, run.failures) == (1, 1)
    assert "differs from the (wrong) 2:4 golden" in run.log.read_text()


def test_simulate_raises_on_failure_unless_asked_not_to():
    kwargs = {"test_module": "tb_nm_prune_wrong_golden", "testcase": "compares_against_the_wrong_pattern"}
    with pytest.raises(GoldenMismatchError, match=r"1 of 1 cocotb tests failed") as info:
        simulate("nm-prune", {"lanes": 2, "m_max": 4}, **kwargs)
    assert info.value.result.failures == 1
    result = simulate("nm-prune", {"lanes": 2, "m_max": 4}, check=False, **kwargs)
    assert (result.passed, result.tests, result.failures) == (False, 1, 1)


def test_a_hung_simulation_times_out_with_a_clear_error(tmp_path):
    generated = generate("nm-prune", {"lanes": 2, "m_max": 4})
    model = verilator.build(generated.text, top="nm_prune", ports=[p["name"] for p in generated.ports])
    with pytest.raises(SimulationError, match="did not finish within 5 s"):
        verilator.run_cocotb(
            model,
            top="nm_prune",
            test_module="tb_nm_prune_wrong_golden",
            run_dir=tmp_path,
            seed=1,
            testcase="never_finishes",
            timeout=5,
        )


def test_generated_verilog_is_cached_by_design_and_configuration(tmp_path, monkeypatch):
    from trainforge.sim import harness

    monkeypatch.setenv("TRAINFORGE_CACHE_DIR", str(tmp_path))
    first = harness.generate("nm-prune", {"lanes": 2})
    files = list((tmp_path / "verilog").glob("nm-prune-*.v"))
    assert len(files) == 1
    assert files[0].read_text() == first.text
    # A cached file is what a fresh elaboration gives, and another configuration is another entry.
    from trainforge.designs import get_design

    design = get_design("nm-prune")
    fresh = harness.to_verilog(design.make_component(first.config), name=design.top)
    assert harness.generate("nm-prune", {"lanes": 2}).text == fresh
    harness.generate("nm-prune", {"lanes": 3})
    assert len(list((tmp_path / "verilog").glob("nm-prune-*.v"))) == 2
