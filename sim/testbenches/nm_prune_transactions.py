"""Transaction-level view of ``nm-prune``: groups of weights in, compressed groups out, and the golden.

Shared by the cocotb testbench (Verilator) and the Amaranth-simulator unit tests, so both
drive the unit and judge it the same way. Group ``g`` of a batch goes to lane ``g % lanes`` in
round ``g // lanes``; a round is ``m`` beats, beat ``j`` carrying weight ``j`` of every lane's
group.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from trainforge.hw.nm_prune import NMPattern, NMPruneConfig, dense_layout, sparse_layout
from trainforge.models.nm import nm_compress, nm_mask
from trainforge.sim.packing import PayloadCodec

__all__ = ["CompressedGroups", "NMPruneTransactions"]


@dataclass
class CompressedGroups:
    """Compressed groups as raw bits: values and indices are (G, slots), mask is (G,)."""

    values: np.ndarray
    indices: np.ndarray
    mask: np.ndarray

    def mismatches(self, expected: CompressedGroups, limit: int = 5) -> list[str]:
        """Describe up to ``limit`` groups that differ from ``expected``; empty when equal."""
        if self.values.shape != expected.values.shape:
            return [f"got {self.values.shape[0]} groups, expected {expected.values.shape[0]}"]
        bad = (
            (self.values != expected.values).any(axis=1)
            | (self.indices != expected.indices).any(axis=1)
            | (self.mask != expected.mask)
        )
        return [
            f"group {g}: values {[hex(v) for v in self.values[g]]} indices {self.indices[g].tolist()} "
            f"mask {int(self.mask[g]):#x}; expected values {[hex(v) for v in expected.values[g]]} "
            f"indices {expected.indices[g].tolist()} mask {int(expected.mask[g]):#x}"
            for g in np.flatnonzero(bad)[:limit]
        ]


class NMPruneTransactions:
    """Encode groups into ``dense`` beats, decode ``sparse`` beats, and compute the golden output."""

    def __init__(self, config: NMPruneConfig) -> None:
        self.config = config
        self.width = config.float_format.width
        self.dense = PayloadCodec(dense_layout(config))
        self.sparse = PayloadCodec(sparse_layout(config))
        self.pattern = PayloadCodec(NMPattern(config.m_max))

    def pattern_word(self, n: int, m: int) -> int:
        """The ``pattern`` port value for run-time ``n:m``."""
        return self.pattern.pack({("n",): np.array([n]), ("m",): np.array([m])}, 1)[0]

    def raw_bits(self, weights: torch.Tensor) -> np.ndarray:
        """The weights' bit patterns as uint64."""
        int_dtype = {16: torch.int16, 32: torch.int32}[self.width]
        raw = weights.contiguous().view(int_dtype).to(torch.int64) & ((1 << self.width) - 1)
        return raw.numpy().astype(np.uint64)

    def rounds(self, groups: int) -> int:
        return -(-groups // self.config.lanes)

    def beats(self, groups: torch.Tensor) -> list[int]:
        """``dense`` payload words for (G, m) weights; G is padded with zero groups to a multiple of lanes."""
        count, m = groups.shape
        lanes = self.config.lanes
        padded = np.zeros((self.rounds(count) * lanes, m), dtype=np.uint64)
        padded[:count] = self.raw_bits(groups)
        # (rounds, lanes, m) -> (rounds, m, lanes): beat j of a round carries weight j of each lane.
        per_beat = padded.reshape(-1, lanes, m).transpose(0, 2, 1).reshape(-1, lanes)
        return self.dense.pack({(lane,): per_beat[:, lane] for lane in range(lanes)}, len(per_beat))

    def decode(self, words: list[int], groups: int) -> CompressedGroups:
        """Compressed groups from ``sparse`` payload words (one word per round), dropping padding."""
        lanes, slots = self.config.lanes, self.config.slots
        paths = [(lane, "values", k) for lane in range(lanes) for k in range(slots)]
        paths += [(lane, "indices", k) for lane in range(lanes) for k in range(slots)]
        paths += [(lane, "mask") for lane in range(lanes)]
        fields = self.sparse.unpack(words, paths)
        rounds = len(words)
        values = np.stack(fields[: lanes * slots], axis=1).reshape(rounds * lanes, slots)
        indices = np.stack(fields[lanes * slots : 2 * lanes * slots], axis=1).reshape(rounds * lanes, slots)
        mask = np.stack(fields[2 * lanes * slots :], axis=1).reshape(rounds * lanes)
        return CompressedGroups(values[:groups], indices[:groups], mask[:groups])

    def expected(self, groups: torch.Tensor, n: int, m: int) -> CompressedGroups:
        """The golden output from :func:`nm_compress` and :func:`nm_mask`, padded to the slot count."""
        count, slots = groups.shape[0], self.config.slots
        kept_values, kept_indices = nm_compress(groups, n, m, dim=-1)
        values = np.zeros((count, slots), dtype=np.uint64)
        indices = np.zeros((count, slots), dtype=np.uint64)
        values[:, :n] = self.raw_bits(kept_values)
        indices[:, :n] = kept_indices.numpy()
        mask_bits = nm_mask(groups, n, m, dim=-1).to(torch.int64) << torch.arange(m)
        return CompressedGroups(values, indices, mask_bits.sum(dim=1).numpy().astype(np.uint64))
