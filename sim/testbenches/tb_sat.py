"""cocotb regression of the SAT accelerator: whole programs on the RTL against the golden executor.

Every test builds programs (random GEMM tiles in both dataflows, dense and every supported n:m with
ragged edges; PRUNE of both copies; UPDATE; bad descriptors), runs each on the Verilator model in the
program bench (command feeder and DRAM model in C++, no Python per cycle) and on
:func:`trainforge.models.sat_golden.execute`, and requires the final memory images to be identical
word for word, the status to match, and the counters to agree with an explicit count.
"""

from __future__ import annotations

import time

import cocotb
import numpy as np

from trainforge.hw.sat import isa
from trainforge.hw.sat.config import SatConfig
from trainforge.models.sat_golden import execute
from trainforge.sim.sat_bench import run_program
from trainforge.sim.testbenches.common import load_config, random_seed, record_metrics
from trainforge.sim.testbenches.sat_programs import (
    Program,
    bad_programs,
    gemm_case,
    patterns,
    prune_case,
    update_case,
)


def _budget(program: Program) -> int:
    # Generous: every word moved ten times over plus a fill per descriptor.
    return 50_000 + 40 * program.image.shape[0] + 5_000 * len(program.descriptors)


def useful_macs(descriptors) -> int:
    """Kept products of the used rows and columns, counted from the descriptors alone."""
    total = 0
    for d in descriptors:
        if isinstance(d, isa.Gemm):
            total += d.rows * d.cols * d.steps
    return total


async def run_and_compare(dut, config: SatConfig, program: Program, *, encoded: list[int] | None = None):
    golden = execute(config, program.descriptors, program.image)
    run = await run_program(
        dut,
        config=config,
        image=program.image,
        program=encoded if encoded is not None else program.encoded(config),
        budget=_budget(program),
    )
    assert run.reason != "timeout", f"{program.label}: timed out after {run.cycles} cycles"
    assert run.status["error_code"] == golden.error_code, (
        f"{program.label}: error code {run.status['error_code']}, golden {golden.error_code!r}"
    )
    diff = np.nonzero(np.any(run.image != golden.image, axis=1))[0]
    if len(diff):
        first = int(diff[0])
        raise AssertionError(
            f"{program.label}: {len(diff)} memory words differ from the golden executor, first at "
            f"{diff[:8].tolist()}: RTL {[hex(x) for x in run.image[first]]}, "
            f"golden {[hex(x) for x in golden.image[first]]}; program {program.descriptors}"
        )
    if golden.error_code == isa.ErrorCode.NONE:
        executed = program.descriptors
        assert run.counters["macs_useful"] == useful_macs(executed), program.label
        assert run.counters["busy"] <= run.cycles, program.label
    return run


class Totals:
    def __init__(self) -> None:
        self.cycles = 0
        self.sim_s = 0.0
        self.programs = 0

    def add(self, run) -> None:
        self.cycles += run.cycles
        self.sim_s += run.sim_s
        self.programs += 1


@cocotb.test()
async def gemm_tiles_every_pattern_both_dataflows(dut):
    """Random GEMMs with ragged edges, OS and WS, dense and every supported n:m: images equal."""
    config = load_config(SatConfig)
    rng = np.random.default_rng(random_seed())
    totals, macs = Totals(), 0
    wall = time.perf_counter()
    for dataflow in (isa.Dataflow.OS, isa.Dataflow.WS):
        for pattern in patterns(config):
            for _ in range(2):
                program = gemm_case(config, rng, dataflow=dataflow, pattern=pattern)
                run = await run_and_compare(dut, config, program)
                totals.add(run)
                macs += run.counters["macs_issued"]
    record_metrics(
        "gemm_tiles_every_pattern_both_dataflows",
        programs=totals.programs,
        cycles=totals.cycles,
        sim_s=totals.sim_s,
        pe_cycles_per_s=totals.cycles * config.pe_count / max(totals.sim_s, 1e-9),
        wall_s=time.perf_counter() - wall,
    )


@cocotb.test()
async def prune_both_copies(dut):
    """PRUNE: the BP copy (groups along lines) and the FF copy (transposed panels), masks included."""
    config = load_config(SatConfig)
    rng = np.random.default_rng(random_seed())
    totals = Totals()
    for pattern in patterns(config)[1:]:
        if pattern[0] >= pattern[1]:
            continue
        for transpose in (False, True):
            run = await run_and_compare(dut, config, prune_case(config, rng, pattern=pattern, transpose=transpose))
            totals.add(run)
            assert run.counters["prune"] > 0
    record_metrics("prune_both_copies", programs=totals.programs, cycles=totals.cycles, sim_s=totals.sim_s)


@cocotb.test()
async def update_sgd_momentum_srste(dut):
    """UPDATE: FP32 master weights, momentum and SR-STE decay, FP16 working copy: bit-exact."""
    config = load_config(SatConfig)
    rng = np.random.default_rng(random_seed())
    totals = Totals()
    for lines in (1, 7, 8, 9, 23):
        run = await run_and_compare(dut, config, update_case(config, rng, lines=lines))
        totals.add(run)
        assert run.counters["update"] > 0
    record_metrics("update_sgd_momentum_srste", programs=totals.programs, cycles=totals.cycles, sim_s=totals.sim_s)


@cocotb.test()
async def mixed_program(dut):
    """GEMMs of all three tags, a PRUNE and an UPDATE in one program, as a training step issues them."""
    config = load_config(SatConfig)
    rng = np.random.default_rng(random_seed())
    parts = [
        gemm_case(config, rng, dataflow=isa.Dataflow.OS, pattern=(2, 4), tag=isa.Tag.FF),
        gemm_case(config, rng, dataflow=isa.Dataflow.WS, pattern=(2, 4), tag=isa.Tag.BP),
        gemm_case(config, rng, dataflow=isa.Dataflow.OS, pattern=(config.m_max, config.m_max), tag=isa.Tag.WU),
        update_case(config, rng),
        prune_case(config, rng, pattern=(2, 4), transpose=True),
    ]
    # Concatenate the parts' images, relocating each part's addresses.
    images, descriptors, base = [], [], 0
    for part in parts:
        for desc in part.descriptors:
            descriptors.append(_relocate(desc, base))
        images.append(part.image)
        base += part.image.shape[0]
    program = Program("mixed", np.concatenate(images), descriptors)
    run = await run_and_compare(dut, config, program)
    for counter in ("ff", "bp", "wu", "prune", "update"):
        assert run.counters[counter] > 0, counter
    record_metrics("mixed_program", programs=1, cycles=run.cycles, sim_s=run.sim_s)


def _relocate(desc, base: int):
    fields = {f: getattr(desc, f) + base for f in desc.__dataclass_fields__ if f.endswith("_addr") and f != "acc_addr"}
    return desc.__class__(**{**{f: getattr(desc, f) for f in desc.__dataclass_fields__}, **fields})


@cocotb.test()
async def bad_descriptors_raise_the_error_flag(dut):
    """Each invalid descriptor stops the program with its error code; nothing after it runs."""
    config = load_config(SatConfig)
    checked = 0
    totals = Totals()
    for code, program in bad_programs(config):
        run = await run_and_compare(dut, config, program)
        totals.add(run)
        assert run.status["error"] == 1, program.label
        assert run.status["error_code"] == code, program.label
        checked += 1
    # An all-zero descriptor has no valid opcode.
    good = bad_programs(config)[0][1]
    encoded = [isa.encode(config, good.descriptors[0]), 0, isa.encode(config, good.descriptors[0])]
    program = Program("bad op", good.image, [good.descriptors[0], isa.Update(lines=0), good.descriptors[0]])
    run = await run_program(dut, config=config, image=program.image, program=encoded, budget=_budget(program))
    assert run.status["error_code"] == isa.ErrorCode.BAD_OP
    golden = execute(config, program.descriptors[:1], program.image)
    assert np.array_equal(run.image, golden.image)
    totals.add(run)
    record_metrics(
        "bad_descriptors_raise_the_error_flag", programs=checked + 1, cycles=totals.cycles, sim_s=totals.sim_s
    )
