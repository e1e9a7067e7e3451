"""Drive PRUNE ops through the SAT prune engine on Verilator and record what comes out.

A transaction-level driver, not a judge: the pytest side (``tests/sim/test_prune_engine_rtl.py``)
prepares the ops, compares the outputs with :func:`trainforge.models.nm_compress` /
:func:`trainforge.models.nm_mask` and the cycle counts with
:func:`trainforge.hw.sat.prune_engine.prune_cycles`.

Environment
-----------
``TRAINFORGE_CONFIG``
    The :class:`~trainforge.hw.sat.config.SatConfig` as JSON (the harness convention).
``TRAINFORGE_REQUEST``
    An ``.npz`` file: ``count`` (number of ops), ``rates`` (valid, b-line ready, mask ready
    probabilities) and ``seed``; per op ``k``: ``op{k}_pattern`` (``n, m, transpose``) and
    ``op{k}_words`` (``lines x cols`` uint16 w-lines in stream order).
``TRAINFORGE_RESPONSE``
    Written as an ``.npz`` file: per op ``op{k}_values``, ``op{k}_indices`` (``b-lines x cols``),
    ``op{k}_masks`` (``mask-lines x cols`` bool) and ``op{k}_timing`` (cycles from the first
    accepted w-line to the last output transfer, inclusive; cycles between the first and last
    accepted w-line).

Ops run back to back; ``params`` switch in the cycle after an op's last output transfer.
"""

from __future__ import annotations

import os
import random
import time

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from trainforge.hw.sat.config import SatConfig
from trainforge.hw.sat.prune_engine import (
    prune_bline_layout,
    prune_mask_layout,
    prune_params_layout,
    prune_request_layout,
)
from trainforge.sim.packing import PayloadCodec
from trainforge.sim.testbenches.common import load_config, record_metrics, start_clock_and_reset

REQUEST_ENV = "TRAINFORGE_REQUEST"
RESPONSE_ENV = "TRAINFORGE_RESPONSE"


class PruneDriver:
    """Feeds one op's w-lines into ``request`` and collects ``blines`` and ``masks`` until both end."""

    def __init__(self, dut, config: SatConfig, rng: random.Random, rates: tuple[float, float, float]) -> None:
        self.dut, self.config, self.rng = dut, config, rng
        self.valid_rate, self.bl_rate, self.mk_rate = rates
        self.params = PayloadCodec(prune_params_layout())
        self.request = PayloadCodec(prune_request_layout(config))
        self.blines = PayloadCodec(prune_bline_layout(config))
        self.masks = PayloadCodec(prune_mask_layout(config))
        self.cycles = 0

    def _draw(self, rate: float) -> bool:
        return rate >= 1 or self.rng.random() < rate

    async def run(self, n: int, m: int, transpose: bool, words: np.ndarray) -> dict[str, np.ndarray]:
        dut, cols = self.dut, self.config.cols
        lines = len(words)
        last = np.zeros(lines, np.uint64)
        last[-1] = 1
        payloads = self.request.pack({**{("line", j): words[:, j] for j in range(cols)}, ("last",): last}, lines)
        dut.params.value = self.params.pack({("n",): n, ("m",): m, ("transpose",): int(transpose)}, 1)[0]
        q_valid, q_ready, q_payload = dut.request__valid, dut.request__ready, dut.request__payload
        b_valid, b_ready, b_payload = dut.blines__valid, dut.blines__ready, dut.blines__payload
        k_valid, k_ready, k_payload = dut.masks__valid, dut.masks__ready, dut.masks__payload
        b_last, k_last = 1 << (self.blines.width - 1), 1 << (self.masks.width - 1)
        i, valid, first, last_accept, b_end, k_end = 0, False, None, None, None, None
        bwords, kwords = [], []
        driven_index = driven_valid = driven_b = driven_k = None
        limit = self.cycles + 20 * lines + 200
        while b_end is None or k_end is None:
            if not valid:  # a presented line stays valid until it is taken
                valid = i < lines and self._draw(self.valid_rate)
            b_take, k_take = self._draw(self.bl_rate), self._draw(self.mk_rate)
            # Handles are written only when their value changes: each write is a VPI call.
            if i < lines and i != driven_index:
                q_payload.value, driven_index = payloads[i], i
            if valid != driven_valid:
                q_valid.value, driven_valid = int(valid), valid
            if b_take != driven_b:
                b_ready.value, driven_b = int(b_take), b_take
            if k_take != driven_k:
                k_ready.value, driven_k = int(k_take), k_take
            await ReadOnly()
            if valid and q_ready.value:
                first = self.cycles if first is None else first
                last_accept = self.cycles
                i, valid = i + 1, False
            if b_take and b_valid.value:
                assert b_end is None, "a b-line after the op's last one"
                word = b_payload.value.to_unsigned()
                bwords.append(word)
                b_end = self.cycles if word & b_last else None
            if k_take and k_valid.value:
                assert k_end is None, "a mask-line after the op's last one"
                word = k_payload.value.to_unsigned()
                kwords.append(word)
                k_end = self.cycles if word & k_last else None
            await RisingEdge(dut.clk)
            self.cycles += 1
            assert self.cycles < limit, f"the prune engine stalled: {i} of {lines} w-lines taken"
        q_valid.value = 0
        assert i == lines, f"the op ended after {i} of {lines} w-lines"
        values = self.blines.unpack(bwords, [("w", j, "value") for j in range(cols)])
        indices = self.blines.unpack(bwords, [("w", j, "index") for j in range(cols)])
        (keep,) = self.masks.unpack(kwords, [("keep",)])
        return {
            "values": np.stack(values, axis=1).astype(np.uint16).reshape(-1, cols),
            "indices": np.stack(indices, axis=1).astype(np.uint8).reshape(-1, cols),
            "masks": ((keep[:, None] >> np.arange(cols, dtype=np.uint64)) & np.uint64(1)).astype(bool),
            "timing": np.array([max(b_end, k_end) - first + 1, last_accept - first + 1]),
        }


@cocotb.test()
async def prune_ops(dut):
    """Every op of the request, back to back; the outputs go to the response file."""
    config = load_config(SatConfig)
    request = np.load(os.environ[REQUEST_ENV])
    rates = tuple(float(r) for r in request["rates"])
    driver = PruneDriver(dut, config, random.Random(int(request["seed"])), rates)
    dut.blines__ready.value = 0
    dut.masks__ready.value = 0
    dut.request__valid.value = 0
    await start_clock_and_reset(dut)
    start = time.perf_counter()
    response, lines = {}, 0
    for k in range(int(request["count"])):
        n, m, transpose = (int(x) for x in request[f"op{k}_pattern"])
        words = request[f"op{k}_words"]
        lines += len(words)
        for key, value in (await driver.run(n, m, bool(transpose), words)).items():
            response[f"op{k}_{key}"] = value
    sim_s = time.perf_counter() - start
    np.savez(os.environ[RESPONSE_ENV], **response)
    record_metrics("prune_ops", cycles=driver.cycles, sim_s=sim_s, w_lines=lines)
