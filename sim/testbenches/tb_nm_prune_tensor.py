"""Prune one user tensor on the nm-prune RTL: the bulk-transaction entry of :mod:`trainforge.sim.nm_prune`.

Reads ``TRAINFORGE_REQUEST`` (a ``torch.save`` file with ``weight``, ``n``, ``m``, ``dim``),
streams the tensor's groups through the unit at full rate and writes ``TRAINFORGE_RESPONSE``
with the compressed values, indices and keep mask in the layout of
:func:`trainforge.models.nm_compress`, plus the cycle count.
"""

from __future__ import annotations

import os

import cocotb
import numpy as np
import torch

from trainforge.hw.nm_prune import NMPruneConfig
from trainforge.sim.testbenches.common import load_config, record_metrics, start_clock_and_reset
from trainforge.sim.testbenches.nm_prune_transactions import NMPruneTransactions
from trainforge.sim.testbenches.tb_nm_prune import stream


@cocotb.test()
async def prune_tensor(dut):
    config = load_config(NMPruneConfig)
    request = torch.load(os.environ["TRAINFORGE_REQUEST"])
    weight, n, m, dim = request["weight"], request["n"], request["m"], request["dim"]
    txn = NMPruneTransactions(config)
    moved = weight.movedim(dim, -1)
    groups = moved.reshape(-1, m)
    await start_clock_and_reset(dut)
    outputs, cycles, sim_s = await stream(dut, txn, [(n, m, word) for word in txn.beats(groups)])
    got = txn.decode(outputs, len(groups))
    int_dtype = {16: torch.int16, 32: torch.int32}[txn.width]
    raw = got.values[:, :n].astype(np.int64)
    raw = np.where(raw >= 1 << (txn.width - 1), raw - (1 << txn.width), raw)
    values = torch.from_numpy(raw).to(int_dtype).view(weight.dtype)
    compressed_shape = (*moved.shape[:-1], moved.shape[-1] // m * n)
    keep = (got.mask[:, None] >> np.arange(m, dtype=np.uint64)) & np.uint64(1)
    torch.save(
        {
            "values": values.reshape(compressed_shape).movedim(-1, dim).contiguous(),
            "indices": torch.from_numpy(got.indices[:, :n].astype(np.uint8)).reshape(compressed_shape).movedim(-1, dim),
            "mask": torch.from_numpy(keep.astype(bool)).reshape(moved.shape).movedim(-1, dim),
            "cycles": cycles,
        },
        os.environ["TRAINFORGE_RESPONSE"],
    )
    record_metrics("prune_tensor", cycles=cycles, sim_s=sim_s, weights=weight.numel())
