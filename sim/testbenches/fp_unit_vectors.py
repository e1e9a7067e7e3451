"""Vector-level view of the convert (``fp-conv``) and non-computational (``fp-cmp``) units.

Operand arrays become request records, response records become results and flags, and both are
judged against the exact oracle :mod:`trainforge.models.fp`. Shared by the cocotb regressions
(``tb_fp_conv``, ``tb_fp_cmp``) and the Amaranth-simulator tests, so all of them pack and judge the
units the same way; :func:`run_amaranth` is the Amaranth-simulator driver those tests use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trainforge.hw.fp.convert import ConvertConfig, convert_request_layout, convert_response_layout
from trainforge.hw.fp.ieee import ROUNDING_MODE_NAMES
from trainforge.hw.fp.noncomp import NonCompConfig, NonCompOp, noncomp_request_layout, noncomp_response_layout
from trainforge.models import fp
from trainforge.sim.packing import PayloadCodec

__all__ = [
    "NONCOMP_OPS",
    "ConvertVectors",
    "NonCompVectors",
    "UnitBatch",
    "noncomp_family",
    "run_amaranth",
    "sweep_patterns",
]

#: Operation names of the non-computational unit (as the oracle spells them) and their op codes.
NONCOMP_OPS: dict[str, NonCompOp] = {
    "min": NonCompOp.MIN,
    "max": NonCompOp.MAX,
    "eq": NonCompOp.FEQ,
    "lt": NonCompOp.FLT,
    "le": NonCompOp.FLE,
    "class": NonCompOp.CLASS,
}


def noncomp_family(op: str) -> str:
    """The oracle's stimulus family (:data:`trainforge.models.fp.GENERATOR_OPS`) of a NONCOMP op."""
    return {"min": "min_max", "max": "min_max", "class": "classify"}.get(op, "compare")


@dataclass
class UnitBatch:
    """Operands (bit patterns) of one operation in one rounding mode.

    ``op`` is ``"convert"`` or a key of :data:`NONCOMP_OPS`; ``rounding`` is a name of
    :data:`trainforge.models.fp.ROUNDING_MODES` (the NONCOMP ops have none: ``"-"``); ``b`` is
    unused by unary operations.
    """

    op: str
    rounding: str
    a: np.ndarray
    b: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.a)


def sweep_patterns(width: int, seed: int) -> tuple[np.ndarray, bool]:
    """Every bit pattern of a format up to 16 bits wide; for a wider one, every value of its top 16 bits.

    A wider format's top 16 bits (sign, exponent, leading mantissa bits: the BF16 grid of FP32) are
    each combined with four low halves: zero, all ones, the half-way bit and a random one.

    Returns
    -------
    patterns : numpy.ndarray of uint64
    exhaustive : bool
        Whether ``patterns`` is every pattern of the format.
    """
    if width <= 16:
        return np.arange(1 << width, dtype=np.uint64), True
    low_bits = width - 16
    upper = np.arange(1 << 16, dtype=np.uint64) << np.uint64(low_bits)
    rng = np.random.default_rng(seed)
    lows = [
        np.zeros(1 << 16, dtype=np.uint64),
        np.full(1 << 16, (1 << low_bits) - 1, dtype=np.uint64),
        np.full(1 << 16, 1 << (low_bits - 1), dtype=np.uint64),
        rng.integers(0, 1 << low_bits, size=1 << 16, dtype=np.uint64),
    ]
    return np.concatenate([upper | low for low in lows]), False


class _UnitVectors:
    """Shared packing and judging; subclasses give the request fields and the oracle's answer."""

    request: PayloadCodec
    response: PayloadCodec

    def _fields(self, batch: UnitBatch) -> dict:
        raise NotImplementedError

    def expected(self, batch: UnitBatch) -> tuple[np.ndarray, np.ndarray]:
        """Result bits and flags from the exact oracle :mod:`trainforge.models.fp`."""
        raise NotImplementedError

    def records(self, batches: list[UnitBatch]) -> np.ndarray:
        """One request record per vector, batches in order."""
        return np.concatenate([self.request.pack_records(self._fields(batch), len(batch)) for batch in batches])

    def results(self, records: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Result bits and flags from response records."""
        result, flags = self.response.unpack_records(records, [("result",), ("flags",)])
        return result, flags

    def mismatches(self, batches: list[UnitBatch], records: np.ndarray, limit: int = 5) -> tuple[int, list[str]]:
        """Count of vectors whose result or flags differ from the oracle, and up to ``limit`` described."""
        got_result, got_flags = self.results(records)
        count, lines, offset = 0, [], 0
        for batch in batches:
            want_result, want_flags = self.expected(batch)
            sl = slice(offset, offset + len(batch))
            bad = np.flatnonzero((got_result[sl] != want_result) | (got_flags[sl] != want_flags))
            count += len(bad)
            for i in bad[: max(0, limit - len(lines))]:
                operands = f"a={int(batch.a[i]):#x}" + (f" b={int(batch.b[i]):#x}" if batch.b is not None else "")
                lines.append(
                    f"{batch.op} {batch.rounding} {operands}: expected {int(want_result[i]):#x} "
                    f"flags {fp.flag_names(int(want_flags[i]))}, got {int(got_result[sl][i]):#x} "
                    f"flags {fp.flag_names(int(got_flags[sl][i]))}"
                )
            offset += len(batch)
        return count, lines


class ConvertVectors(_UnitVectors):
    """Pack and judge batches of the convert unit (``op`` is always ``"convert"``)."""

    def __init__(self, config: ConvertConfig) -> None:
        self.config = config
        self.request = PayloadCodec(convert_request_layout(config))
        self.response = PayloadCodec(convert_response_layout(config))

    def _fields(self, batch: UnitBatch) -> dict:
        return {("a",): batch.a, ("rm",): np.uint64(ROUNDING_MODE_NAMES[batch.rounding].value)}

    def expected(self, batch: UnitBatch) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        return fp.convert(batch.a, src_fmt=cfg.src_fmt, dst_fmt=cfg.dst_fmt, rounding=batch.rounding)


class NonCompVectors(_UnitVectors):
    """Pack and judge batches of the non-computational unit."""

    def __init__(self, config: NonCompConfig) -> None:
        self.config = config
        self.request = PayloadCodec(noncomp_request_layout(config))
        self.response = PayloadCodec(noncomp_response_layout(config))

    def _fields(self, batch: UnitBatch) -> dict:
        b = batch.b if batch.b is not None else np.uint64(0)
        return {("a",): batch.a, ("b",): b, ("op",): np.uint64(NONCOMP_OPS[batch.op].value)}

    def expected(self, batch: UnitBatch) -> tuple[np.ndarray, np.ndarray]:
        fmt = self.config.fmt
        if batch.op in ("min", "max"):
            return fp.min_max(batch.a, batch.b, fmt=fmt, op=batch.op)
        if batch.op == "class":
            return fp.classify(batch.a, fmt=fmt), np.zeros(len(batch), dtype=np.uint8)
        result, flags = fp.compare(batch.a, batch.b, fmt=fmt, op=batch.op)
        return result.astype(np.uint64), flags


def run_amaranth(dut, vectors, batches: list, *, stall_every: int = 0) -> np.ndarray:
    """Push the batches through ``dut`` in the Amaranth simulator; return the response records.

    Parameters
    ----------
    dut : a stream FP unit (Convert, NonComp, FMA)
    vectors : ConvertVectors, NonCompVectors or FMAVectors
        The codec of ``dut``'s configuration: anything with ``records(batches)`` and ``response``.
    batches : list of UnitBatch
    stall_every : int
        When non-zero, the input idles and the output stalls on every ``stall_every``-th cycle
        (at different phases), to exercise the pipeline's hold logic.

    Raises
    ------
    AssertionError
        Fewer responses than requests came out within a generous cycle budget (a lost result).
    """
    from amaranth.sim import Simulator

    requests = vectors.records(batches)
    words = [int.from_bytes(r.astype("<u4").tobytes(), "little") for r in requests]
    paths = [("result",), ("flags",)]
    responses: list[int] = []

    # every stall/gap cycle costs at most one more cycle per vector, plus the pipeline's latency
    budget = 3 * len(words) + 4 * dut.latency + 16

    async def clocked(ctx):
        i, cycle = 0, 0
        while len(responses) < len(words):
            assert cycle < budget, f"{len(responses)} of {len(words)} responses after {cycle} cycles"
            gap = stall_every and cycle % stall_every == 0
            stall = stall_every and cycle % stall_every == stall_every // 2
            offer = i < len(words) and not gap
            ctx.set(dut.response.ready, not stall)
            ctx.set(dut.request.valid, offer)
            if offer:
                ctx.set(dut.request.payload.as_value(), words[i])
            _, _, ready, valid, payload = await ctx.tick().sample(
                dut.request.ready, dut.response.valid, dut.response.payload.as_value()
            )
            i += bool(offer and ready)
            if valid and not stall:
                responses.append(payload)
            cycle += 1

    async def combinational(ctx):
        for word in words:
            ctx.set(dut.request.payload.as_value(), word)
            await ctx.delay(1e-9)
            responses.append(ctx.get(dut.response.payload.as_value()))

    sim = Simulator(dut)
    if dut.latency:
        sim.add_clock(1e-8)
        sim.add_testbench(clocked)
    else:
        sim.add_testbench(combinational)
    sim.run()
    fields = vectors.response.unpack(responses, paths)
    return vectors.response.pack_records(dict(zip(paths, fields, strict=True)), len(responses))
