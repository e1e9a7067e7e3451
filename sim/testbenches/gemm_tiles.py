"""Tile-level view of the SAT PE array: GEMM tiles to request records, response records to results.

Shared by the cocotb regression and the Amaranth-simulator tests. A tile is ``A[rows x K]`` and
``B[K x cols]`` as bit patterns of the input format, dense or with B compressed N:M along K.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from trainforge.hw.sat.gemm_array import GemmArrayConfig, gemm_request_layout, gemm_response_layout
from trainforge.models.nm import nm_compress
from trainforge.sim.packing import PayloadCodec

__all__ = ["GemmTile", "GemmTiles", "run_amaranth", "sequential_fp32"]

_TORCH = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class GemmTile:
    """One tile: A (rows x K) and B (K x cols) as uint16 bit patterns; ``nm`` None for dense."""

    a: np.ndarray
    b: np.ndarray
    nm: tuple[int, int] | None = None

    def compressed(self, fmt: str) -> tuple[np.ndarray, np.ndarray]:
        """B compressed along K: values (K/m*n x cols) bits and indices, as nm_compress gives them."""
        n, m = self.nm
        weights = torch.from_numpy(self.b.astype(np.int16)).view(_TORCH[fmt])
        values, indices = nm_compress(weights, n, m, dim=0)
        return values.view(torch.int16).numpy().astype(np.uint16), indices.numpy()


class GemmTiles:
    """Encode tiles as reduction steps and decode output rows."""

    def __init__(self, config: GemmArrayConfig) -> None:
        self.config = config
        self.request = PayloadCodec(gemm_request_layout(config))
        self.response = PayloadCodec(gemm_response_layout(config))

    def steps(self, tile: GemmTile) -> int:
        k = tile.a.shape[1]
        if tile.nm is None:
            return k
        n, m = tile.nm
        return k // m * n

    def records(self, tiles: list[GemmTile]) -> np.ndarray:
        """Request records of every step of every tile, in order."""
        cfg = self.config
        parts = []
        for tile in tiles:
            rows, k = tile.a.shape
            if (rows, tile.b.shape[1]) != (cfg.rows, cfg.cols):
                raise ValueError(f"tile is {rows} x {tile.b.shape[1]}, the array {cfg.rows} x {cfg.cols}")
            if tile.nm is None:
                count = k
                a_groups = tile.a[:, :, None]  # (rows, steps, 1): a group of one per step
                w_values, w_index = tile.b, np.zeros_like(tile.b)
            else:
                n, m = tile.nm
                count = k // m * n
                groups = tile.a.reshape(cfg.rows, k // m, m)
                a_groups = np.repeat(groups, n, axis=1)  # group g presented for its n steps
                w_values, w_index = tile.compressed(cfg.in_fmt)
            fields = {}
            for i in range(cfg.rows):
                for s in range(a_groups.shape[2]):
                    fields[("a", i, s)] = a_groups[i, :, s]
            for j in range(cfg.cols):
                fields[("w", j, "value")] = w_values[:, j]
                fields[("w", j, "index")] = w_index[:, j]
            last = np.zeros(count, dtype=np.uint64)
            last[-1] = 1
            fields[("last",)] = last
            parts.append(self.request.pack_records(fields, count))
        return np.concatenate(parts)

    def results(self, records: np.ndarray, tiles: int) -> np.ndarray:
        """FP32 result bits, shape (tiles, rows, cols)."""
        cfg = self.config
        columns = self.response.unpack_records(records, [("row", j) for j in range(cfg.cols)])
        return np.stack(columns, axis=1).reshape(tiles, cfg.rows, cfg.cols).astype(np.uint32)


def sequential_fp32(tile: GemmTile, fmt: str) -> np.ndarray:
    """The PE's result computed independently with the exact oracle, step by step.

    Each step is ``acc = round32(acc + a*b)`` (:func:`trainforge.models.fp.fma` with ``src_fmt``: the
    product exact, one rounding), starting from +0, in K order; sparse tiles skip pruned positions
    entirely (the PE never sees them). Plain float32 arithmetic is not enough for BF16, whose
    products can overflow or underflow float32 before the addition.
    """
    from trainforge.models import fp
    from trainforge.models.nm import nm_mask

    a = tile.a.astype(np.uint64)
    b = tile.b.astype(np.uint64)
    keep = np.ones(b.shape, dtype=bool)
    if tile.nm is not None:
        weights = torch.from_numpy(tile.b.astype(np.int16)).view(_TORCH[fmt])
        keep = nm_mask(weights, *tile.nm, dim=0).numpy()
    acc = np.zeros((a.shape[0], b.shape[1]), dtype=np.uint64)  # +0
    for k in range(a.shape[1]):
        step, _ = fp.fma(a[:, k : k + 1], b[k : k + 1, :], acc, fmt="fp32", src_fmt=fmt, rounding="rne")
        acc = np.where(keep[k : k + 1, :], step, acc)
    return acc.astype(np.uint32)


def run_amaranth(config: GemmArrayConfig, tiles: list[GemmTile], *, gaps: int = 0) -> tuple[np.ndarray, int]:
    """Run the tiles through the array in the Amaranth simulator; return results and cycles.

    Cycles count from accepting the first step to presenting the last row, inclusive. With
    ``gaps``, every third cycle offers no step (to exercise the handshake).
    """
    from amaranth.sim import Simulator

    from trainforge.hw.sat.gemm_array import GemmArray

    codec = GemmTiles(config)
    records = codec.records(tiles)
    words = [int.from_bytes(r.astype("<u4").tobytes(), "little") for r in records]
    dut = GemmArray(config=config)
    rows_out, timing = [], {}

    async def testbench(ctx):
        ctx.set(dut.response.ready, 1)
        i, cycle = 0, 0
        while len(rows_out) < config.rows * len(tiles):
            offer = i < len(words) and not (gaps and cycle % 3 == 2)
            ctx.set(dut.request.valid, offer)
            if i < len(words):
                ctx.set(dut.request.payload.as_value(), words[i])
            _, _, ready, valid, payload = await ctx.tick().sample(
                dut.request.ready, dut.response.valid, dut.response.payload.as_value()
            )
            if offer and ready:
                timing.setdefault("first", cycle)
                i += 1
            if valid:
                rows_out.append(payload)
                timing["last"] = cycle
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    paths = [("row", j) for j in range(config.cols)]
    records_out = codec.response.pack_records(
        dict(zip(paths, codec.response.unpack(rows_out, paths), strict=True)), len(rows_out)
    )
    return codec.results(records_out, len(tiles)), timing["last"] - timing["first"] + 1
