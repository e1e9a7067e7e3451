"""Benchmark: simulation speed of the SAT PE array alone on Verilator (bulk DPI driver, no Python per cycle).

Builds ``hw/sat/pe_array.py``'s ``PEArray`` for a preset, streams random OS and WS tiles through it with
``tb_pe_array``'s ``bulk_rate`` test (results checked bit-exact there) and prints cycles, cycles/s and
PE-cycles/s. The first run of a preset builds the model (cached by content hash; a 16 x 16 array takes
minutes).

Usage: ``.venv/bin/python scripts/bench_pe_array.py [--preset default] [--tiles 2000]``
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from amaranth.hdl import Shape

from trainforge.hw.sat.config import SatConfig
from trainforge.hw.sat.pe_array import PEArray, pe_request_layout, pe_response_layout
from trainforge.sim import bulk, verilator
from trainforge.sim.harness import to_verilog
from trainforge.sim.testbenches.common import CONFIG_ENV, METRICS_ENV

TOP = "pe_array"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default", choices=["tiny", "default", "paper"])
    parser.add_argument("--tiles", type=int, default=2000)
    args = parser.parse_args()
    config = SatConfig.preset_named(args.preset)
    start = time.perf_counter()
    ports = [
        {"name": "clk", "width": 1},
        {"name": "rst", "width": 1},
        {"name": "request__payload", "width": Shape.cast(pe_request_layout(config)).width},
        {"name": "response__payload", "width": Shape.cast(pe_response_layout(config)).width},
    ]
    model = verilator.build(
        to_verilog(PEArray(config=config), name=TOP),
        top=bulk.BULK_TOP,
        ports=["clk", "rst", "done"],
        extra_args=bulk.BUILD_ARGS,
        extra_sources={
            "tf_bulk_top.sv": bulk.bulk_wrapper(TOP, ports, bulk.BulkPorts(source="request", sink="response")),
            "bulk_dpi.cpp": bulk.DPI_SOURCE.read_text(),
        },
        timeout=3600,
    )
    print(f"build {'cached' if model.cached else 'compiled'} in {time.perf_counter() - start:.0f} s")
    run_dir = Path(tempfile.mkdtemp(prefix="bench-pe-array-"))
    env = {
        CONFIG_ENV: config.to_json(),
        METRICS_ENV: str(run_dir / "metrics.jsonl"),
        bulk.IN_ENV: str(run_dir / "bulk_in.bin"),
        bulk.OUT_ENV: str(run_dir / "bulk_out.bin"),
        "TRAINFORGE_PE_BULK_TILES": str(args.tiles),
    }
    result = verilator.run_cocotb(
        model,
        top=bulk.BULK_TOP,
        test_module="trainforge.sim.testbenches.tb_pe_array",
        run_dir=run_dir,
        seed=3,
        env=env,
        testcase="bulk_rate",
    )
    if result.failures:
        raise SystemExit(f"bulk_rate failed (not bit-exact?); log: {result.log}")
    m = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    print(
        f"{config.rows} x {config.cols}: {m['cycles']:,} cycles in {m['sim_s']:.2f} s, "
        f"{m['cycles_per_s']:,.0f} cycles/s, {m['pe_cycles_per_s'] / 1e6:.2f} M PE-cycles/s (bit-exact)"
    )


if __name__ == "__main__":
    main()
