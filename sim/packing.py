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

    @property
    def record_words(self) -> int:
        """32-bit words per record (see :meth:`pack_records`)."""
        return (self.width + 31) // 32 or 1

    def _fields_from_bits(self, bits: np.ndarray, paths: Sequence[Path]) -> list[np.ndarray]:
        out = []
        for path in paths:
            offset, width = self.field(path)
            if width > 64:
                raise ValueError(f"field {path!r} is {width} bits wide; unpack its sub-fields instead")
            weights = np.left_shift(np.uint64(1), np.arange(width, dtype=np.uint64))
            column = bits[:, offset : offset + width].astype(np.uint64)
            out.append(column @ weights if width else np.zeros(len(bits), np.uint64))
        return out

    def _bits_from_fields(self, fields: dict[Path, np.ndarray], count: int, nbits: int) -> np.ndarray:
        bits = np.zeros((count, nbits), dtype=np.uint8)
        for path, values in fields.items():
            offset, width = self.field(path)
            values = np.broadcast_to(np.asarray(values, dtype=np.uint64), (count,))
            shifts = np.arange(width, dtype=np.uint64)
            bits[:, offset : offset + width] = (values[:, None] >> shifts) & np.uint64(1)
        return bits

    def unpack(self, words: Sequence[int], paths: Sequence[Path]) -> list[np.ndarray]:
        """Extract each field in ``paths`` from every word; one uint64 array per path."""
        raw = b"".join(int(w).to_bytes(self._nbytes, "little") for w in words)
        as_bytes = np.frombuffer(raw, dtype=np.uint8).reshape(len(words), self._nbytes)
        return self._fields_from_bits(np.unpackbits(as_bytes, axis=1, bitorder="little"), paths)

    def pack(self, fields: dict[Path, np.ndarray], count: int) -> list[int]:
        """Build ``count`` words from fields (absent fields are zero); values are truncated to width."""
        packed = np.packbits(self._bits_from_fields(fields, count, self._nbytes * 8), axis=1, bitorder="little")
        return [int.from_bytes(row.tobytes(), "little") for row in packed]

    def pack_records(self, fields: dict[Path, np.ndarray], count: int) -> np.ndarray:
        """Like :meth:`pack`, as a (count, record_words) uint32 array, by word arithmetic.

        No Python work per record and no bit matrix: each field (at most 64 bits) is shifted
        into the two or three 32-bit words it spans.
        """
        records = np.zeros((count, self.record_words), dtype=np.uint32)
        for path, values in fields.items():
            offset, width = self.field(path)
            if width > 64:
                raise ValueError(f"field {path!r} is {width} bits wide; pack its sub-fields instead")
            v = np.broadcast_to(np.asarray(values, dtype=np.uint64), (count,))
            if width < 64:
                v = v & np.uint64((1 << width) - 1)
            for word in range(offset // 32, (offset + width - 1) // 32 + 1):
                shift = offset - 32 * word
                part = (v << np.uint64(shift)) if shift >= 0 else (v >> np.uint64(-shift))
                records[:, word] |= (part & np.uint64(0xFFFF_FFFF)).astype(np.uint32)
        return records

    def unpack_records(self, records: np.ndarray, paths: Sequence[Path]) -> list[np.ndarray]:
        """Like :meth:`unpack`, from a (count, record_words) uint32 array, by word arithmetic."""
        records = np.asarray(records, dtype=np.uint32)
        out = []
        for path in paths:
            offset, width = self.field(path)
            if width > 64:
                raise ValueError(f"field {path!r} is {width} bits wide; unpack its sub-fields instead")
            value = np.zeros(len(records), dtype=np.uint64)
            for word in range(offset // 32, (offset + width - 1) // 32 + 1):
                shift = 32 * word - offset
                part = records[:, word].astype(np.uint64)
                value |= (part << np.uint64(shift)) if shift >= 0 else (part >> np.uint64(-shift))
            if width < 64:
                value &= np.uint64((1 << width) - 1)
            out.append(value)
        return out
