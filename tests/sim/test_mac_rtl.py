"""The PE multiply-accumulate (MacUnit) on Verilator, in bulk: corner triples + 2 M random vectors, bit-exact.

Built straight through :mod:`trainforge.sim.verilator` (no registered design), the unit wrapped in
:class:`~trainforge.sim.testbenches.tb_mac.MacStream` for the bulk DPI driver; judged by the exact
oracle ``models/fp.py`` in the testbench.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainforge.sim import bulk, verilator
from trainforge.sim.harness import to_verilog
from trainforge.sim.testbenches.tb_mac import RANDOM_ENV, SRC_ENV, MacStream

pytestmark = pytest.mark.verilator

TOP = "mac_stream"
TESTBENCH = "trainforge.sim.testbenches.tb_mac"


def run_mac(src_fmt: str, run_dir: Path, *, unit: str = "mac", random: int = 2_000_000, seed: int = 5) -> dict:
    """Build (cached) and run ``tb_mac`` on ``unit`` for ``src_fmt``; return the metrics by test name."""
    text = to_verilog(MacStream(src_fmt=src_fmt, unit=unit), name=TOP)
    ports = [
        {"name": "request__payload", "width": 64},
        {"name": "response__payload", "width": 32},
    ]
    model = verilator.build(
        text,
        top=bulk.BULK_TOP,
        ports=["clk", "rst", "done"],
        extra_args=bulk.BUILD_ARGS,
        extra_sources={
            "tf_bulk_top.sv": bulk.bulk_wrapper(TOP, ports, bulk.BulkPorts(source="request", sink="response")),
            "bulk_dpi.cpp": bulk.DPI_SOURCE.read_text(),
        },
    )
    metrics_path = run_dir / "metrics.jsonl"
    env = {
        SRC_ENV: src_fmt,
        RANDOM_ENV: str(random),
        "TRAINFORGE_METRICS": str(metrics_path),
        bulk.IN_ENV: str(run_dir / "bulk_in.bin"),
        bulk.OUT_ENV: str(run_dir / "bulk_out.bin"),
    }
    run = verilator.run_cocotb(model, top=bulk.BULK_TOP, test_module=TESTBENCH, run_dir=run_dir, seed=seed, env=env)
    assert run.failures == 0, f"{run.failures} of {run.tests} cocotb tests failed; log: {run.log}"
    return {m["test"]: m for m in map(json.loads, metrics_path.read_text().splitlines())}


@pytest.mark.parametrize("src_fmt", ["fp16", "bf16"])
def test_mac_is_bit_exact_in_bulk(tmp_path, src_fmt):
    # BF16 goes through the generic FMA (see hw/fp/mac.py): a smaller random run checks the wiring.
    count = 2_000_000 if src_fmt == "fp16" else 200_000
    metrics = run_mac(src_fmt, tmp_path, random=count)
    assert metrics["random"]["vectors"] == count
    assert metrics["corners"]["vectors"] >= 42**3
    print(f"\n{src_fmt} MacUnit bulk: {metrics['random']['vectors_per_s']:.3g} vectors/s")
