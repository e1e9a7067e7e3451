"""A deliberately wrong testbench: judges nm-prune against an n+1 golden, so it must fail.

Used by test_harness.py to prove that a failing cocotb test reaches ``SimResult.passed``.
"""

import cocotb

from trainforge.hw.nm_prune import NMPruneConfig
from trainforge.sim.testbenches.common import load_config, record_metrics, start_clock_and_reset
from trainforge.sim.testbenches.nm_prune_transactions import NMPruneTransactions
from trainforge.sim.testbenches.tb_nm_prune import stream


@cocotb.test()
async def compares_against_the_wrong_pattern(dut):
    import torch

    config = load_config(NMPruneConfig)
    txn = NMPruneTransactions(config)
    await start_clock_and_reset(dut)
    groups = torch.randn(4 * config.lanes, 4, generator=torch.Generator().manual_seed(3)).half()
    outputs, cycles, sim_s = await stream(dut, txn, [(1, 4, w) for w in txn.beats(groups)])
    record_metrics("compares_against_the_wrong_pattern", cycles=cycles, sim_s=sim_s)
    got = txn.decode(outputs, len(groups))
    assert not got.mismatches(txn.expected(groups, 2, 4)), "nm-prune output differs from the (wrong) 2:4 golden"


@cocotb.test()
async def never_finishes(dut):
    """Selected only by the timeout test."""
    from cocotb.triggers import Timer

    while True:
        await Timer(1, unit="ms")
