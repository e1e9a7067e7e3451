# amaranth: UnusedElaboratable=no
"""The SAT update engine in the Amaranth simulator: bit-exact against the PyTorch reference, latency, stalls."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Shape

from trainforge.hw.sat.config import SatConfig
from trainforge.hw.sat.update_engine import UpdateEngine, update_request_layout, update_response_layout
from trainforge.sim.testbenches.update_lines import UpdateLines, UpdateParams, random_lines, run_amaranth

TWO_LANES = SatConfig.preset_named("tiny").replace(cols=2)


def check(config: SatConfig, params: UpdateParams, count: int, *, seed: int, **run) -> tuple[list[int], int]:
    engine = UpdateEngine(config=config)
    lines = random_lines(config, count, np.random.default_rng(seed), special=0.3)
    out, accepted, first = run_amaranth(engine, lines, params, last_every=5, seed=seed, **run)
    bad, messages = UpdateLines(config).mismatches(lines, params, out, last_every=5)
    assert bad == 0, "\n".join(messages)
    return accepted, first


def test_full_rate_one_line_per_cycle_after_the_latency():
    params = UpdateParams(lr=0.1, momentum=0.9, decay=2e-4, use_mask=True)
    accepted, first = check(TWO_LANES, params, 24, seed=1)
    assert accepted == list(range(24))  # never refuses a line while the output is taken
    assert first - accepted[0] == UpdateEngine(config=TWO_LANES).latency == 5


def test_gaps_and_back_pressure_bf16_without_mask():
    config = TWO_LANES.replace(in_fmt="bf16")
    params = UpdateParams(lr=1 / 3, momentum=-0.5, decay=3.0, use_mask=False)
    check(config, params, 32, seed=2, gap_pct=30, stall_pct=40)


@pytest.mark.parametrize(
    "params",
    [
        UpdateParams(lr=3e38, momentum=0.99, decay=1e38, use_mask=True),  # overflow to inf, inf - inf
        UpdateParams(lr=1e-3, momentum=1e-40, decay=1.4e-45, use_mask=True),  # subnormal hyper-parameters
    ],
    ids=["overflow", "subnormal"],
)
def test_extreme_hyperparameters(params):
    check(TWO_LANES, params, 16, seed=3, gap_pct=20, stall_pct=20)


def test_interface_follows_the_config():
    config = SatConfig.preset_named("tiny")
    engine = UpdateEngine(config=config)
    assert engine.cols == 4
    assert Shape.cast(update_request_layout(config)).width == 3 * 32 * 4 + 4 + 1
    assert Shape.cast(update_response_layout(config)).width == 2 * 32 * 4 + 16 * 4 + 1
    assert engine.signature.members["params"].shape.size == 97


def test_config_must_be_a_sat_config():
    with pytest.raises(TypeError, match="config must be a SatConfig, not 4"):
        UpdateEngine(config=4)
