"""The SAT update engine on Verilator: ~100k random lines (tiny preset, 4 lanes) bit-exact, then stalls and gaps.

The engine is wrapped by the bulk stream driver (:mod:`trainforge.sim.bulk`); its ``params`` input,
which the driver would tie to a constant, is brought out as a port of the wrapper so that the
cocotb test sets each hyper-parameter set on the same model.
"""

from __future__ import annotations

import json

import pytest
from amaranth.hdl import Shape

from trainforge.hw.sat.config import SatConfig
from trainforge.hw.sat.update_engine import (
    UpdateEngine,
    update_params_layout,
    update_request_layout,
    update_response_layout,
)
from trainforge.sim import bulk, verilator
from trainforge.sim.harness import to_verilog
from trainforge.sim.testbenches.common import CONFIG_ENV, METRICS_ENV
from trainforge.sim.testbenches.tb_update_engine import DEFAULT_LINES, LATENCY

pytestmark = pytest.mark.verilator

TOP = "sat_update_engine"


def _wrapper(ports: list[dict]) -> str:
    """The bulk wrapper with ``params`` as an input of ``tf_bulk_top`` instead of a constant."""
    width = next(p["width"] for p in ports if p["name"] == "params")
    text = bulk.bulk_wrapper(TOP, ports, bulk.BulkPorts(source="request", sink="response", constants={"params": 0}))
    tied = f".params({width}'d0)"
    header = "  output reg done\n);"
    assert tied in text, "the bulk wrapper's text changed; update this test"
    assert header in text, "the bulk wrapper's text changed; update this test"
    return text.replace(tied, ".params(params)").replace(
        header, f"  output reg done,\n  input wire [{width - 1}:0] params\n);"
    )


def test_update_engine_random_lines_bit_exact(tmp_path):
    config = SatConfig.preset_named("tiny")
    engine = UpdateEngine(config=config)
    assert engine.latency == LATENCY
    text = to_verilog(engine, name=TOP)
    # the ports the wrapper connects, from the engine's own layouts
    widths = {
        "clk": 1,
        "rst": 1,
        "params": Shape.cast(update_params_layout()).width,
        "request__payload": Shape.cast(update_request_layout(config)).width,
        "response__payload": Shape.cast(update_response_layout(config)).width,
    }
    port_list = [{"name": name, "width": width} for name, width in widths.items()]
    model = verilator.build(
        text,
        top=bulk.BULK_TOP,
        ports=["clk", "rst", "done", "params"],
        extra_args=bulk.BUILD_ARGS,
        extra_sources={"tf_bulk_top.sv": _wrapper(port_list), "bulk_dpi.cpp": bulk.DPI_SOURCE.read_text()},
    )
    metrics = tmp_path / "metrics.jsonl"
    run = verilator.run_cocotb(
        model,
        top=bulk.BULK_TOP,
        test_module="trainforge.sim.testbenches.tb_update_engine",
        run_dir=tmp_path,
        seed=4,
        env={
            CONFIG_ENV: config.to_json(),
            METRICS_ENV: str(metrics),
            bulk.IN_ENV: str(tmp_path / "bulk_in.bin"),
            bulk.OUT_ENV: str(tmp_path / "bulk_out.bin"),
        },
        timeout=600,
    )
    assert run.failures == 0, f"{run.failures} of {run.tests} cocotb tests failed; log: {run.log}"
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    random_lines = sum(r["lines"] for r in records if r["test"].startswith("random"))
    assert random_lines >= DEFAULT_LINES - 5
    assert any(r["test"] == "stalls_and_gaps" for r in records)
