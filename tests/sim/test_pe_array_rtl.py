"""The SAT PE array (OS and WS mixed) on Verilator: bit-exact, cycle-exact, and at bulk speed.

Built straight through :mod:`trainforge.sim.verilator` (no registered design): once with the array's
own ports for the cycle-by-cycle test, once inside the bulk DPI driver for the rate.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from amaranth.hdl import Shape

from trainforge.hw.sat.config import SatConfig
from trainforge.hw.sat.pe_array import PEArray, pe_request_layout, pe_response_layout
from trainforge.sim import bulk, verilator
from trainforge.sim.harness import to_verilog
from trainforge.sim.testbenches.common import CONFIG_ENV, METRICS_ENV

pytestmark = pytest.mark.verilator

TOP = "pe_array"
TESTBENCH = "trainforge.sim.testbenches.tb_pe_array"


def run_pe_array(config: SatConfig, run_dir: Path, *, use_bulk: bool, testcase: str, seed: int = 3) -> list[dict]:
    """Build (cached) and run ``testcase`` of ``tb_pe_array``; return the recorded metrics."""
    text = to_verilog(PEArray(config=config), name=TOP)
    env = {CONFIG_ENV: config.to_json(), METRICS_ENV: str(run_dir / "metrics.jsonl")}
    if use_bulk:
        ports = [
            {"name": "clk", "width": 1},
            {"name": "rst", "width": 1},
            {"name": "request__payload", "width": Shape.cast(pe_request_layout(config)).width},
            {"name": "response__payload", "width": Shape.cast(pe_response_layout(config)).width},
        ]
        streams = bulk.BulkPorts(source="request", sink="response")
        top = bulk.BULK_TOP
        model = verilator.build(
            text,
            top=top,
            ports=["clk", "rst", "done"],
            extra_args=bulk.BUILD_ARGS,
            extra_sources={
                "tf_bulk_top.sv": bulk.bulk_wrapper(TOP, ports, streams),
                "bulk_dpi.cpp": bulk.DPI_SOURCE.read_text(),
            },
        )
        env.update({bulk.IN_ENV: str(run_dir / "bulk_in.bin"), bulk.OUT_ENV: str(run_dir / "bulk_out.bin")})
    else:
        top = TOP
        ports = ["clk", "rst", *(f"{s}__{p}" for s in ("request", "response") for p in ("valid", "ready", "payload"))]
        model = verilator.build(text, top=top, ports=ports)
    run = verilator.run_cocotb(
        model, top=top, test_module=TESTBENCH, run_dir=run_dir, seed=seed, env=env, testcase=testcase
    )
    assert run.failures == 0, f"{run.failures} of {run.tests} cocotb tests failed; log: {run.log}"
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_mixed_os_ws_beats_bit_and_cycle_exact(tmp_path):
    metrics = run_pe_array(SatConfig.preset_named("tiny"), tmp_path, use_bulk=False, testcase="mixed_beats_cycle_exact")
    assert metrics[0]["beats"] >= 300


def test_bulk_bit_exact_with_stalls_and_rate(tmp_path):
    config = SatConfig.preset_named("tiny")
    metrics = {m["test"]: m for m in run_pe_array(config, tmp_path, use_bulk=True, testcase="bulk_")}
    rate = metrics["bulk_rate"]
    print(f"\n4x4 bulk: {rate['cycles_per_s']:.0f} cycles/s, {rate['pe_cycles_per_s']:.3g} PE-cycles/s")
    assert rate["beats"] > 3000
    assert metrics["bulk_stalls"]["rows"] > 0
