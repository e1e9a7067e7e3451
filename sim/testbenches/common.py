"""Helpers shared by cocotb testbenches: configuration in, metrics out, clock and reset.

The harness passes the design's configuration as JSON in ``TRAINFORGE_CONFIG`` and a path in
``TRAINFORGE_METRICS``, to which each test appends one JSON line (cycles and design-specific
figures). Generated Verilog has no parameters, so this is how the testbench learns them.
"""

from __future__ import annotations

import json
import os
from typing import Any, TypeVar

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

from trainforge.config import GeneratorConfig

__all__ = ["load_config", "random_seed", "record_metrics", "start_clock_and_reset"]

ConfigT = TypeVar("ConfigT", bound=GeneratorConfig)

CONFIG_ENV = "TRAINFORGE_CONFIG"
METRICS_ENV = "TRAINFORGE_METRICS"


def load_config(config_type: type[ConfigT]) -> ConfigT:
    """The configuration the harness built the design with (defaults outside the harness)."""
    text = os.environ.get(CONFIG_ENV)
    return config_type.from_json(text) if text else config_type()


def record_metrics(test: str, **figures: Any) -> None:
    """Append one JSON line of figures for ``test``.

    The harness sums ``cycles`` (simulated clock cycles) and ``sim_s`` (wall time spent
    simulating them, stimulus and golden-model work excluded) into the run's cycles per second.
    """
    path = os.environ.get(METRICS_ENV)
    if path:
        with open(path, "a") as out:
            out.write(json.dumps({"test": test, **figures}) + "\n")


async def start_clock_and_reset(dut, cycles: int = 2) -> None:
    """Start a 10 ns clock on ``clk`` and hold Amaranth's synchronous ``rst`` for ``cycles``."""
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    await ClockCycles(dut.clk, cycles)
    dut.rst.value = 0


def random_seed() -> int:
    """This test's seed: cocotb derives it from ``COCOTB_RANDOM_SEED`` and the test's name.

    Reduced to 63 bits, as ``torch.Generator.manual_seed`` accepts.
    """
    return int(cocotb.RANDOM_SEED) & 0x7FFF_FFFF_FFFF_FFFF
