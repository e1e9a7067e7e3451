# amaranth: UnusedElaboratable=no
"""FMA in the Amaranth simulator against the exact oracle, and its configuration checks."""

from __future__ import annotations

import numpy as np
import pytest

from trainforge.errors import ConfigError
from trainforge.hw.fp.fma import FMA, FMAConfig
from trainforge.models import fp
from trainforge.sim.testbenches.fp_fma_vectors import FMAVectors, VectorBatch, ops_for
from trainforge.sim.testbenches.fp_unit_vectors import run_amaranth


def sample_batches(config: FMAConfig, per_pair: int, seed: int) -> list[VectorBatch]:
    src = config.src_fmt if config.src != config.dst else None
    batches = []
    for op in ops_for(config):
        family = "add" if op in ("add", "sub") else "mul" if op == "mul" else "fma"
        corners = fp.corner_vectors(family, config.fmt, src_fmt=src, seed=seed)
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(corners[0]), size=min(per_pair, len(corners[0])), replace=False)
        operands = [x[pick] for x in corners]
        zeros = np.zeros(len(pick), dtype=np.uint64)
        if family == "fma":
            a, b, c = operands
        elif family == "add":
            (a, c), b = operands, zeros
        else:
            (a, b), c = operands, zeros
        batches += [VectorBatch(op, rounding, a, b, c) for rounding in fp.ROUNDING_MODES]
    return batches


@pytest.mark.parametrize(
    "config",
    [
        FMAConfig(fmt="fp16", pipeline_stages=2),
        FMAConfig(fmt="bf16", pipeline_stages=0),
        FMAConfig(fmt="fp32", pipeline_stages=3),
        FMAConfig(fmt="fp32", src_fmt="fp16", pipeline_stages=1),
    ],
    ids=lambda c: f"{c.src_fmt or c.fmt}->{c.fmt}-{c.pipeline_stages}",
)
def test_corner_sample_matches_oracle(config):
    batches = sample_batches(config, per_pair=40, seed=5)
    vectors = FMAVectors(config)
    count, lines = vectors.mismatches(batches, run_amaranth(FMA(config=config), vectors, batches))
    assert count == 0, "\n".join(lines)


def test_pipeline_holds_results_under_stalls_and_gaps():
    config = FMAConfig(fmt="fp16", pipeline_stages=3)
    batches = sample_batches(config, per_pair=10, seed=9)
    vectors = FMAVectors(config)
    count, lines = vectors.mismatches(batches, run_amaranth(FMA(config=config), vectors, batches, stall_every=3))
    assert count == 0, "\n".join(lines)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fmt": "fp64"}, "fmt='fp64'"),
        ({"fmt": "fp16", "src_fmt": "fp32"}, "src_fmt=fp32 must not be wider than fmt=fp16"),
        ({"fmt": "fp16", "src_fmt": "bf16"}, "src_fmt=bf16 must not be wider than fmt=fp16"),
        ({"pipeline_stages": 4}, "pipeline_stages must be in 0..3, not 4"),
        ({"ops": "div"}, "ops='div'"),
    ],
)
def test_invalid_config_names_the_value(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        FMAConfig.from_mapping(kwargs)


def test_latency_is_the_stage_count():
    assert FMA(config=FMAConfig(pipeline_stages=3)).latency == 3
