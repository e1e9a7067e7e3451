"""Vector-level view of the FMA unit: operand arrays to request records, response records to results.

Shared by the cocotb regression (``tb_fp_fma``), the TestFloat file runner (``tb_fp_vectors``) and
the Amaranth-simulator tests, so all of them pack and judge the unit the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trainforge.hw.fp.fma import FMAConfig, fma_request_layout, fma_response_layout
from trainforge.hw.fp.ieee import ROUNDING_MODE_NAMES, FMAOp
from trainforge.models import fp
from trainforge.sim.packing import PayloadCodec

__all__ = ["OPS", "FMAVectors", "VectorBatch", "expected", "ops_for"]

#: Operation names (as the golden model and the CLI spell them) and their op codes.
OPS: dict[str, FMAOp] = {
    "fmadd": FMAOp.FMADD,
    "fmsub": FMAOp.FMSUB,
    "fnmsub": FMAOp.FNMSUB,
    "fnmadd": FMAOp.FNMADD,
    "add": FMAOp.ADD,
    "sub": FMAOp.SUB,
    "mul": FMAOp.MUL,
}
_FMA_FAMILY = ("fmadd", "fmsub", "fnmsub", "fnmadd")


def ops_for(config: FMAConfig) -> tuple[str, ...]:
    """The operations a configuration performs and is verified for."""
    if config.ops == "add":
        return ("add", "sub")
    if config.ops == "mul":
        return ("mul",)
    if config.src != config.dst:
        return _FMA_FAMILY
    return tuple(OPS)


@dataclass
class VectorBatch:
    """Operands (bit patterns) of one operation in one rounding mode; ``b``/``c`` unused by add/mul."""

    op: str
    rounding: str
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray

    def __len__(self) -> int:
        return len(self.a)


def expected(batch: VectorBatch, config: FMAConfig) -> tuple[np.ndarray, np.ndarray]:
    """Result bits and flags from the exact oracle :mod:`trainforge.models.fp`."""
    fmt, rounding = config.fmt, batch.rounding
    if batch.op in _FMA_FAMILY:
        src = config.src_fmt if config.src != config.dst else None
        return fp.fma(batch.a, batch.b, batch.c, fmt=fmt, rounding=rounding, op=batch.op, src_fmt=src)
    if batch.op in ("add", "sub"):
        return fp.add(batch.a, batch.c, fmt=fmt, rounding=rounding, subtract=batch.op == "sub")
    return fp.mul(batch.a, batch.b, fmt=fmt, rounding=rounding)


class FMAVectors:
    """Pack batches into request records and unpack response records."""

    def __init__(self, config: FMAConfig) -> None:
        self.config = config
        self.request = PayloadCodec(fma_request_layout(config))
        self.response = PayloadCodec(fma_response_layout(config))

    def records(self, batches: list[VectorBatch]) -> np.ndarray:
        """One request record per vector, batches in order."""
        parts = []
        for batch in batches:
            fields = {
                ("a",): batch.a,
                ("b",): batch.b,
                ("c",): batch.c,
                ("op",): np.uint64(OPS[batch.op].value),
                ("rm",): np.uint64(ROUNDING_MODE_NAMES[batch.rounding].value),
            }
            parts.append(self.request.pack_records(fields, len(batch)))
        return np.concatenate(parts)

    def results(self, records: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Result bits and flags from response records."""
        result, flags = self.response.unpack_records(records, [("result",), ("flags",)])
        return result, flags

    def mismatches(self, batches: list[VectorBatch], records: np.ndarray, limit: int = 5) -> tuple[int, list[str]]:
        """Count of vectors whose result or flags differ from the oracle, and up to ``limit`` described."""
        got_result, got_flags = self.results(records)
        count, lines, offset = 0, [], 0
        for batch in batches:
            want_result, want_flags = expected(batch, self.config)
            sl = slice(offset, offset + len(batch))
            bad = np.flatnonzero((got_result[sl] != want_result) | (got_flags[sl] != want_flags))
            count += len(bad)
            for i in bad[: max(0, limit - len(lines))]:
                operands = f"a={int(batch.a[i]):#x} b={int(batch.b[i]):#x} c={int(batch.c[i]):#x}"
                lines.append(
                    f"{batch.op} {batch.rounding} {operands}: expected {int(want_result[i]):#x} "
                    f"flags {fp.flag_names(int(want_flags[i])) or '-'}, got {int(got_result[sl][i]):#x} "
                    f"flags {fp.flag_names(int(got_flags[sl][i])) or '-'}"
                )
            offset += len(batch)
        return count, lines
