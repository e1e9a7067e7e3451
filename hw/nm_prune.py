"""The online N:M pruning unit ("SORE" in the SAT paper): dense weights in, compressed N:M out.

Each of ``lanes`` lanes receives one dense weight per cycle. A group is ``m`` consecutive
weights of one lane; when its last weight arrives the lane emits the ``n`` largest magnitudes
(ties towards the lower index, NaN above infinity; see :mod:`trainforge.models.nm`) as values in
ascending index order, their indices inside the group, and the group's keep mask. All lanes
move in lock-step, so the unit prunes ``lanes`` weights per cycle: one group per lane every
``m`` cycles.

Micro-architecture, per lane
----------------------------
Instead of a sorter, each stored weight keeps a count of the weights of its group that beat
it. When weight ``j`` arrives it is compared, magnitude against magnitude, with the ``j``
weights already stored (``m_max - 1`` comparators): each one it beats gains a count, and its
own count is the number of stored weights that are at least as large (the earlier index wins a
tie). After the last weight, ``keep[i] = count[i] < n``: exactly ``n`` survivors. The counts and
weights then move to an output register (so the next group streams in without a bubble), from
which a prefix-count compaction network places the survivors in ascending index order.

Magnitudes are compared as raw bit patterns with the sign cleared, which orders every
non-NaN value exactly as ``|x|`` and needs no floating-point logic at all.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from amaranth.hdl import Cat, Const, Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, ceil_log2

from trainforge.config import GeneratorConfig
from trainforge.errors import ConfigError
from trainforge.hw.fp.formats import FloatFormat, float_format

__all__ = ["NMPattern", "NMPrune", "NMPruneConfig", "dense_layout", "group_layout", "sparse_layout"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class NMPruneConfig(GeneratorConfig):
    """Parameters of the ``nm-prune`` generator.

    Parameters
    ----------
    lanes : int
        Parallel pruning lanes (the SAT paper uses 32); 1 to 256.
    m_max : int
        Largest group size the unit accepts at run time; a power of two from 2 to 32.
    n_max : int or None
        Most values kept per group, the number of value slots in each output group;
        ``1 <= n_max < m_max``. ``None`` means ``m_max - 1`` (every pattern up to (m-1):m).
    fmt : {"fp16", "bf16", "fp32"}
        Format of the weights.
    """

    lanes: int = 4
    m_max: int = 8
    n_max: int | None = None
    fmt: Literal["fp16", "bf16", "fp32"] = "fp16"

    def validate(self) -> None:
        if not 1 <= self.lanes <= 256:
            raise ConfigError(f"lanes must be in 1..256, not {self.lanes}")
        if self.m_max not in (2, 4, 8, 16, 32):
            raise ConfigError(f"m_max must be a power of two in 2..32, not {self.m_max}")
        if self.n_max is not None and not 1 <= self.n_max < self.m_max:
            raise ConfigError(f"n_max must be in 1..{self.m_max - 1} (below m_max={self.m_max}), not {self.n_max}")
        float_format(self.fmt)

    @property
    def slots(self) -> int:
        """Value slots per output group: ``n_max``, or ``m_max - 1`` when unset."""
        return self.m_max - 1 if self.n_max is None else self.n_max

    @property
    def index_bits(self) -> int:
        """Width of one index inside a group: ``ceil(log2(m_max))``."""
        return ceil_log2(self.m_max)

    @property
    def float_format(self) -> FloatFormat:
        return float_format(self.fmt)

    def supports(self, n: int, m: int) -> bool:
        """Whether the run-time pattern ``n:m`` is within this unit's range."""
        return 1 <= n <= self.slots and n < m <= self.m_max


def NMPattern(m_max: int) -> data.StructLayout:  # noqa: N802 (a layout constructor, named like a class)
    """Layout of the run-time N:M pattern: ``n`` then ``m``, each wide enough for ``m_max``."""
    return data.StructLayout({"n": unsigned(bits_for(m_max)), "m": unsigned(bits_for(m_max))})


def dense_layout(config: NMPruneConfig) -> data.ArrayLayout:
    """Payload of the ``dense`` stream: one weight per lane."""
    return data.ArrayLayout(config.float_format.layout, config.lanes)


def sparse_layout(config: NMPruneConfig) -> data.ArrayLayout:
    """Payload of the ``sparse`` stream: one compressed group per lane."""
    return data.ArrayLayout(group_layout(config), config.lanes)


def group_layout(config: NMPruneConfig) -> data.StructLayout:
    """Layout of one lane's compressed group: kept values, their indices, and the keep mask."""
    return data.StructLayout(
        {
            "values": data.ArrayLayout(config.float_format.layout, config.slots),
            "indices": data.ArrayLayout(unsigned(config.index_bits), config.slots),
            "mask": unsigned(config.m_max),
        }
    )


class NMPrune(wiring.Component):
    """Online N:M pruning unit.

    Parameters
    ----------
    config : NMPruneConfig
        Generator parameters.

    Members
    -------
    pattern : In(NMPattern)
        Run-time ``n`` and ``m``, sampled with the first weight of every group, so the pattern
        may change from one group to the next. ``1 <= n <= slots`` and ``n < m <= m_max``;
        ``m`` need not be a power of two. Other values give unspecified (but safe) output.
    dense : In(stream.Signature(ArrayLayout(float, lanes)))
        One weight per lane per transfer; ``m`` transfers make one group per lane.
    sparse : Out(stream.Signature(ArrayLayout(group_layout, lanes)))
        One compressed group per lane per transfer, one cycle after the group's last weight.
        Unused value and index slots (``>= n``) are zero, as are mask bits ``>= m``.
    """

    def __init__(self, *, config: NMPruneConfig) -> None:
        if not isinstance(config, NMPruneConfig):
            raise TypeError(f"config must be an NMPruneConfig, not {config!r}")
        self._config = config
        super().__init__(
            {
                "pattern": In(NMPattern(config.m_max)),
                "dense": In(stream.Signature(dense_layout(config))),
                "sparse": Out(stream.Signature(sparse_layout(config))),
            }
        )

    @property
    def config(self) -> NMPruneConfig:
        return self._config

    @property
    def latency(self) -> int:
        """Cycles from accepting a group's last weight to presenting its compressed result."""
        return 1

    def elaborate(self, platform) -> Module:
        cfg = self._config
        m_max, slots, width = cfg.m_max, cfg.slots, cfg.float_format.width
        count_shape = unsigned(bits_for(m_max - 1))
        m = Module()

        position = Signal(range(m_max), init=0)  # index of the next weight inside the group
        n_latched = Signal.like(self.pattern.n)
        m_latched = Signal.like(self.pattern.m)
        group_n = Signal.like(self.pattern.n)
        group_m = Signal.like(self.pattern.m)
        with m.If(position == 0):
            m.d.comb += [group_n.eq(self.pattern.n), group_m.eq(self.pattern.m)]
        with m.Else():
            m.d.comb += [group_n.eq(n_latched), group_m.eq(m_latched)]

        completing = Signal()
        m.d.comb += completing.eq(position == group_m - 1)
        out_free = ~self.sparse.valid | self.sparse.ready
        accept = Signal()
        m.d.comb += [
            self.dense.ready.eq(~completing | out_free),
            accept.eq(self.dense.valid & self.dense.ready),
        ]
        with m.If(self.sparse.ready):
            m.d.sync += self.sparse.valid.eq(0)

        with m.If(accept):
            with m.If(position == 0):
                m.d.sync += [n_latched.eq(self.pattern.n), m_latched.eq(self.pattern.m)]
            with m.If(completing):
                m.d.sync += [position.eq(0), self.sparse.valid.eq(1)]
            with m.Else():
                m.d.sync += position.eq(position + 1)

        for lane in range(cfg.lanes):
            incoming = self.dense.payload[lane].as_value()
            stored = [Signal(width, name=f"l{lane}_w{i}") for i in range(m_max)]
            beaten_by = [Signal(count_shape, name=f"l{lane}_c{i}") for i in range(m_max)]
            # Output register: the finished group's weights and keep mask.
            held = [Signal(width, name=f"l{lane}_out_w{i}") for i in range(m_max)]
            keep = Signal(m_max, name=f"l{lane}_keep")

            final_counts = []
            final_weights = []
            ahead_of_incoming = []  # stored[i] ranks at or above the incoming weight
            for i in range(m_max):
                # Bits without the sign: unsigned order == magnitude order (NaN above inf).
                incoming_wins = incoming[:-1] > stored[i][:-1]
                is_before = Const(i) < position
                ahead_of_incoming.append(is_before & ~incoming_wins)
                count = Signal(count_shape, name=f"l{lane}_next_c{i}")
                weight = Signal(width, name=f"l{lane}_next_w{i}")
                m.d.comb += [count.eq(beaten_by[i] + (is_before & incoming_wins)), weight.eq(stored[i])]
                final_counts.append(count)
                final_weights.append(weight)
            own_count = Signal(count_shape, name=f"l{lane}_own_c")
            m.d.comb += own_count.eq(sum(ahead_of_incoming))
            for i in range(m_max):
                with m.If(position == i):
                    m.d.comb += [final_counts[i].eq(own_count), final_weights[i].eq(incoming)]

            with m.If(accept):
                m.d.sync += [s.eq(c) for s, c in zip(beaten_by, final_counts, strict=True)]
                m.d.sync += [s.eq(w) for s, w in zip(stored, final_weights, strict=True)]
                with m.If(completing):
                    m.d.sync += [h.eq(w) for h, w in zip(held, final_weights, strict=True)]
                    m.d.sync += keep.eq(Cat((final_counts[i] < group_n) & (Const(i) <= position) for i in range(m_max)))

            # Compaction: survivor i goes to slot popcount(keep[:i]).
            out = self.sparse.payload[lane]
            m.d.comb += out.mask.eq(keep)
            rank = Const(0, count_shape)
            for i in range(m_max):
                slot_of_i = Signal(count_shape, name=f"l{lane}_slot{i}")
                m.d.comb += slot_of_i.eq(rank)
                for k in range(min(i + 1, slots)):
                    with m.If(keep[i] & (slot_of_i == k)):
                        m.d.comb += [out.values[k].eq(held[i]), out.indices[k].eq(i)]
                rank = rank + keep[i]
        return m
