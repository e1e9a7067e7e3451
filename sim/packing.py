"""Vectorised packing of Amaranth ``data`` layouts to and from the flat port integers of Verilog.

Generated Verilog flattens a stream payload into one wide port (``dense__payload``). The
testbench moves whole batches of transactions through this module: fields are NumPy arrays
with one entry per transaction, words are Python ints, one per transaction. Offsets come
from the same Amaranth layout objects the RTL was built from, so the testbench cannot
disagree with the hardware about where a field lies.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from amaranth.hdl import Shape
from amaranth.lib import data

__all__ = ["PayloadCodec"]

Path = tuple[int | str, ...]


class PayloadCodec:
    """Pack and unpack batches of transactions of one layout.

    Parameters
    ----------
    layout : amaranth.lib.data.Layout or int
        The payload layout (or a plain width).
    """

    def __init__(self, layout: data.Layout | int) -> None:
        self._layout = layout
        self.width = Shape.cast(layout).width
        self._nbytes = max(1, (self.width + 7) // 8)

    def field(self, path: Path) -> tuple[int, int]:
        """Offset and width of the sub-field at ``path`` (e.g. ``(lane, "values", slot)``)."""
        layout, offset = self._layout, 0
        for key in path:
            if not isinstance(layout, data.Layout):
                raise KeyError(f"path {path!r} goes below a leaf field")
            fld = layout[key]
            offset += fld.offset
            layout = fld.shape
        return offset, Shape.cast(layout).width

    def _bits(self, words: Sequence[int]) -> np.ndarray:
        raw = b"".join(int(w).to_bytes(self._nbytes, "little") for w in words)
        as_bytes = np.frombuffer(raw, dtype=np.uint8).reshape(len(words), self._nbytes)
        return np.unpackbits(as_bytes, axis=1, bitorder="little")[:, : self.width]

    def unpack(self, words: Sequence[int], paths: Sequence[Path]) -> list[np.ndarray]:
        """Extract each field in ``paths`` from every word; one uint64 array per path."""
        bits = self._bits(words).astype(np.uint64)
        out = []
        for path in paths:
            offset, width = self.field(path)
            if width > 64:
                raise ValueError(f"field {path!r} is {width} bits wide; unpack its sub-fields instead")
            weights = np.left_shift(np.uint64(1), np.arange(width, dtype=np.uint64))
            out.append(bits[:, offset : offset + width] @ weights if width else np.zeros(len(words), np.uint64))
        return out

    def pack(self, fields: dict[Path, np.ndarray], count: int) -> list[int]:
        """Build ``count`` words from fields (absent fields are zero); values are truncated to width."""
        bits = np.zeros((count, self._nbytes * 8), dtype=np.uint8)
        for path, values in fields.items():
            offset, width = self.field(path)
            values = np.asarray(values, dtype=np.uint64).reshape(count)
            shifts = np.arange(width, dtype=np.uint64)
            bits[:, offset : offset + width] = (values[:, None] >> shifts) & np.uint64(1)
        packed = np.packbits(bits, axis=1, bitorder="little")
        return [int.from_bytes(row.tobytes(), "little") for row in packed]
