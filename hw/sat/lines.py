"""Host side of the SAT accelerator's memory: line packing, tensor layouts and whole-GEMM programs.

docs/sat-architecture.md ("Memory and line formats") fixes how every tensor the accelerator moves is
laid out in memory; this module is its executable form, shared by the golden program executor
(``models/sat_golden.py``), the testbenches and the scheduler.

Memory image
    A 2-D ``uint32`` NumPy array of shape ``(n_words, mem_bits // 32)``: row ``w`` is the memory
    word at address ``w``, column ``c`` holds bits ``32 c .. 32 c + 31`` of that word.
Packed lines
    A run of ``L`` lines of one kind is ``L * words`` consecutive memory words (line ``i`` at word
    ``i * words``), so every ``pack_*_lines`` returns a ``(L * words, mem_bits // 32)`` array that
    can be written to an image as it is, and every ``unpack_*_lines`` takes such an array. Bit 0 of a
    line is bit 0 of its first word; its fields are packed LSB first in the documented order and the
    bits past the last field are zero.
Layouts
    :func:`panel_lines` / :func:`panel_matrix` (dense weights, FP32 masters, gradients, masks and GEMM
    results), :func:`os_a_lines` and :func:`ws_a_lines` (GEMM operand A), :func:`b_lines` (GEMM
    operand B, N:M compressed along the reduction).
Programs
    :class:`MemoryImage` (a growing image with a bump allocator) and :func:`gemm_program`, which tiles
    a whole GEMM into :class:`~trainforge.hw.sat.isa.Gemm` descriptors and places its operands.

Everything here is NumPy bit manipulation over whole arrays (``packbits`` / ``unpackbits``), no
Python loop per element; values are raw bit patterns (``uint16`` for FP16 / BF16, ``uint32`` for
FP32).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from trainforge.errors import UsageError
from trainforge.hw.fp.formats import FORMATS
from trainforge.hw.sat.config import SatConfig
from trainforge.hw.sat.isa import Dataflow, Gemm, Tag
from trainforge.models.nm import nm_compress, zero_pad_to_multiple

__all__ = [
    "LINE_KINDS",
    "GemmProgram",
    "MemoryImage",
    "b_lines",
    "gemm_program",
    "line_words",
    "os_a_lines",
    "pack_a_lines",
    "pack_acc_lines",
    "pack_b_lines",
    "pack_lines",
    "pack_mask_lines",
    "pack_w_lines",
    "panel_lines",
    "panel_matrix",
    "read_lines_at",
    "unpack_a_lines",
    "unpack_acc_lines",
    "unpack_b_lines",
    "unpack_lines",
    "unpack_mask_lines",
    "unpack_w_lines",
    "write_lines_at",
    "ws_a_lines",
]

LINE_KINDS = ("a", "b", "acc", "w", "mask")
"""The line formats, as named by :func:`pack_lines`, :func:`unpack_lines` and :class:`MemoryImage`."""


# --------------------------------------------------------------------------------------------
# generic bit packing
# --------------------------------------------------------------------------------------------


def _columns(x: np.ndarray) -> int:
    return x.shape[-1] if x.ndim else 0


def _as_uint(x: object, width: int, arg: str) -> np.ndarray:
    """``x`` as unsigned bit patterns of ``width`` bits (floats of that width are reinterpreted)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.is_floating_point() and x.element_size() * 8 == width:
            x = x.view({16: torch.int16, 32: torch.int32}[width])
        x = x.numpy()
    arr = np.asarray(x)
    if arr.dtype.kind == "f" and arr.dtype.itemsize * 8 == width:
        arr = arr.view({16: np.uint16, 32: np.uint32}[width])
    elif arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
    elif arr.dtype.kind in "iu" and arr.dtype.itemsize * 8 == width:
        arr = arr.view({16: np.uint16, 32: np.uint32}[width])
    elif arr.dtype.kind in "iu":
        if arr.size and (arr.min() < 0 or arr.max() >= 1 << width):
            raise UsageError(f"{arg} holds values outside 0 .. 2^{width} - 1")
    else:
        raise UsageError(f"{arg} must hold {width}-bit patterns (integers), not dtype {arr.dtype}")
    return arr.astype(np.uint64)


def _fit(x: np.ndarray, shape: tuple[int, ...], arg: str) -> np.ndarray:
    """Zero-pad the trailing dimensions of ``x`` (leading: lines) to ``shape``; never truncate."""
    if x.ndim != len(shape) + 1:
        raise UsageError(f"{arg} must have {len(shape) + 1} dimensions (lines, {len(shape)} more), not {x.shape}")
    if any(have > want for have, want in zip(x.shape[1:], shape, strict=True)):
        raise UsageError(f"{arg} has shape {x.shape}: a line holds at most {shape}")
    return np.pad(x, [(0, 0)] + [(0, want - have) for have, want in zip(x.shape[1:], shape, strict=True)])


def _pack(fields: Sequence[np.ndarray], widths: Sequence[int], words: int, mem_bits: int) -> np.ndarray:
    """Pack records of ``fields`` (each ``(L, count)``; field bits LSB first, records in order) into words."""
    lines = fields[0].shape[0]
    parts = [
        ((f[..., None] >> np.arange(w, dtype=np.uint64)) & 1).astype(np.uint8)
        for f, w in zip(fields, widths, strict=True)
    ]
    bits = np.concatenate(parts, axis=-1).reshape(lines, -1)
    bits = np.pad(bits, ((0, 0), (0, words * mem_bits - bits.shape[1])))
    packed = np.packbits(bits, axis=-1, bitorder="little")
    return np.ascontiguousarray(packed).view("<u4").astype(np.uint32).reshape(lines * words, mem_bits // 32)


def _unpack(image: object, widths: Sequence[int], count: int, words: int, mem_bits: int) -> list[np.ndarray]:
    """Inverse of :func:`_pack`: ``(L, count)`` uint64 arrays, one per field."""
    arr = np.asarray(image)
    if arr.dtype != np.uint32:
        raise UsageError(f"packed lines must be a uint32 array, not dtype {arr.dtype}")
    per_line = words * mem_bits // 32
    if arr.size % per_line:
        raise UsageError(f"{arr.size} uint32 values are not a whole number of {words}-word lines")
    raw = np.ascontiguousarray(arr, dtype="<u4").reshape(-1, per_line).view(np.uint8)
    record = sum(widths)
    bits = np.unpackbits(raw, axis=-1, bitorder="little")[:, : count * record].reshape(-1, count, record)
    out, offset = [], 0
    for w in widths:
        weights = np.left_shift(np.uint64(1), np.arange(w, dtype=np.uint64))
        out.append((bits[..., offset : offset + w].astype(np.uint64) * weights).sum(axis=-1, dtype=np.uint64))
        offset += w
    return out


# --------------------------------------------------------------------------------------------
# the five line formats
# --------------------------------------------------------------------------------------------


def pack_a_lines(groups: object, config: SatConfig) -> np.ndarray:
    """Pack a-lines: ``rows`` groups of ``m_max`` ``in_fmt`` values each, group 0 value 0 at bit 0.

    Parameters
    ----------
    groups : array_like of uint16
        ``(lines, rows, m_max)`` bit patterns; fewer rows or values per group are zero-padded.
    config : SatConfig

    Returns
    -------
    numpy.ndarray of uint32
        ``(lines * a_words, mem_bits // 32)`` memory words.
    """
    x = _fit(_as_uint(groups, config.in_bits, "groups"), (config.rows, config.m_max), "groups")
    return _pack([x.reshape(x.shape[0], -1)], [config.in_bits], config.a_words, config.mem_bits)


def unpack_a_lines(words: object, config: SatConfig) -> np.ndarray:
    """Inverse of :func:`pack_a_lines`: ``(lines, rows, m_max)`` uint16."""
    (x,) = _unpack(words, [config.in_bits], config.rows * config.m_max, config.a_words, config.mem_bits)
    return x.astype(np.uint16).reshape(-1, config.rows, config.m_max)


def pack_b_lines(values: object, indices: object, config: SatConfig) -> np.ndarray:
    """Pack b-lines: ``cols`` weights, each its ``in_fmt`` value then its ``index_bits`` in-group index.

    Parameters
    ----------
    values : array_like of uint16
        ``(lines, cols)`` bit patterns (fewer columns are zero-padded).
    indices : array_like of int
        ``(lines, cols)`` in-group positions, ``0 <= index < m_max``.
    config : SatConfig

    Returns
    -------
    numpy.ndarray of uint32
        ``(lines * b_words, mem_bits // 32)`` memory words.
    """
    v = _fit(_as_uint(values, config.in_bits, "values"), (config.cols,), "values")
    i = _fit(np.asarray(indices), (config.cols,), "indices")
    if i.dtype.kind not in "iu":
        raise UsageError(f"indices must be integers, not dtype {i.dtype}")
    if i.shape != v.shape:
        raise UsageError(f"values {v.shape} and indices {i.shape} must have the same shape")
    if i.size and (i.min() < 0 or i.max() >= config.m_max):
        raise UsageError(f"indices must lie in [0, {config.m_max}), found [{int(i.min())}, {int(i.max())}]")
    return _pack([v, i.astype(np.uint64)], [config.in_bits, config.index_bits], config.b_words, config.mem_bits)


def unpack_b_lines(words: object, config: SatConfig) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`pack_b_lines`: ``values`` ``(lines, cols)`` uint16, ``indices`` ``(lines, cols)`` uint8."""
    v, i = _unpack(words, [config.in_bits, config.index_bits], config.cols, config.b_words, config.mem_bits)
    return v.astype(np.uint16), i.astype(np.uint8)


def pack_acc_lines(values: object, config: SatConfig) -> np.ndarray:
    """Pack acc-lines: ``cols`` FP32 values (uint32 bit patterns or float32), column 0 at bit 0."""
    x = _fit(_as_uint(values, 32, "values"), (config.cols,), "values")
    return _pack([x], [32], config.acc_words, config.mem_bits)


def unpack_acc_lines(words: object, config: SatConfig) -> np.ndarray:
    """Inverse of :func:`pack_acc_lines`: ``(lines, cols)`` uint32 bit patterns."""
    (x,) = _unpack(words, [32], config.cols, config.acc_words, config.mem_bits)
    return x.astype(np.uint32)


def pack_w_lines(values: object, config: SatConfig) -> np.ndarray:
    """Pack w-lines: ``cols`` ``in_fmt`` values (uint16 bit patterns), column 0 at bit 0."""
    x = _fit(_as_uint(values, config.in_bits, "values"), (config.cols,), "values")
    return _pack([x], [config.in_bits], config.w_words, config.mem_bits)


def unpack_w_lines(words: object, config: SatConfig) -> np.ndarray:
    """Inverse of :func:`pack_w_lines`: ``(lines, cols)`` uint16 bit patterns."""
    (x,) = _unpack(words, [config.in_bits], config.cols, config.w_words, config.mem_bits)
    return x.astype(np.uint16)


def pack_mask_lines(keep: object, config: SatConfig) -> np.ndarray:
    """Pack mask-lines: ``cols`` keep bits, column 0 at bit 0."""
    x = _fit(_as_uint(keep, 1, "keep"), (config.cols,), "keep")
    return _pack([x], [1], config.mask_words, config.mem_bits)


def unpack_mask_lines(words: object, config: SatConfig) -> np.ndarray:
    """Inverse of :func:`pack_mask_lines`: ``(lines, cols)`` bool."""
    (x,) = _unpack(words, [1], config.cols, config.mask_words, config.mem_bits)
    return x.astype(bool)


_PACK: dict[str, Callable[..., np.ndarray]] = {
    "a": pack_a_lines,
    "b": pack_b_lines,
    "acc": pack_acc_lines,
    "w": pack_w_lines,
    "mask": pack_mask_lines,
}
_UNPACK: dict[str, Callable[..., object]] = {
    "a": unpack_a_lines,
    "b": unpack_b_lines,
    "acc": unpack_acc_lines,
    "w": unpack_w_lines,
    "mask": unpack_mask_lines,
}


def _kind(kind: str) -> str:
    if kind not in LINE_KINDS:
        raise UsageError(f"line kind must be one of {', '.join(LINE_KINDS)}, not {kind!r}")
    return kind


def line_words(config: SatConfig, kind: str) -> int:
    """Memory words one line of ``kind`` (``"a"``, ``"b"``, ``"acc"``, ``"w"``, ``"mask"``) occupies."""
    return getattr(config, f"{_kind(kind)}_words")


def pack_lines(config: SatConfig, kind: str, *data: object) -> np.ndarray:
    """``pack_<kind>_lines(*data, config)``: the b-line kind takes ``values, indices``, the others one array."""
    return _PACK[_kind(kind)](*data, config)


def unpack_lines(config: SatConfig, kind: str, words: object):
    """``unpack_<kind>_lines(words, config)`` (a tuple ``(values, indices)`` for b-lines, else one array)."""
    return _UNPACK[_kind(kind)](words, config)


def _line_rows(image: np.ndarray, addrs: object, words: int) -> np.ndarray:
    """Image row numbers of the lines starting at ``addrs`` (``(len(addrs) * words,)``), bounds-checked."""
    a = np.asarray(addrs, dtype=np.int64).reshape(-1)
    rows = (a[:, None] + np.arange(words, dtype=np.int64)).reshape(-1)
    if rows.size and (rows.min() < 0 or rows.max() >= image.shape[0]):
        raise UsageError(
            f"lines at words {int(rows.min())} .. {int(rows.max())} lie outside the {image.shape[0]}-word image"
        )
    return rows


def read_lines_at(image: np.ndarray, config: SatConfig, kind: str, addrs: object):
    """Unpack the lines of ``kind`` starting at each word address in ``addrs`` (any order, any stride)."""
    return unpack_lines(config, kind, image[_line_rows(image, addrs, line_words(config, kind))])


def write_lines_at(image: np.ndarray, config: SatConfig, kind: str, addrs: object, *data: object) -> None:
    """Pack ``data`` (one line per address) and write line ``i`` at word address ``addrs[i]`` of ``image``."""
    packed = pack_lines(config, kind, *data)
    rows = _line_rows(image, addrs, line_words(config, kind))
    if rows.size != packed.shape[0]:
        raise UsageError(f"{rows.size // line_words(config, kind)} addresses for {packed.shape[0]} words of lines")
    image[rows] = packed


# --------------------------------------------------------------------------------------------
# layouts
# --------------------------------------------------------------------------------------------


def panel_lines(matrix: object, config: SatConfig, *, panel_stride: int | None = None) -> np.ndarray:
    """The panel layout of a ``(rows, cols)`` matrix: line ``p * panel_stride + r`` is row ``r`` of panel ``p``.

    Panel ``p`` holds columns ``p * C .. p * C + C - 1`` (``C = config.cols``); columns past the
    matrix and lines ``rows .. panel_stride - 1`` of each panel are zero.

    Parameters
    ----------
    matrix : array_like
        ``(rows, cols)`` of any dtype (bit patterns, or bool for masks).
    config : SatConfig
    panel_stride : int, optional
        Lines from one panel to the next (default, and at least, ``rows``).

    Returns
    -------
    numpy.ndarray
        ``(panels * panel_stride, C)`` of ``matrix``'s dtype, ``panels = ceil(cols / C)`` (at least 1).
    """
    x = np.asarray(matrix)
    if x.ndim != 2:
        raise UsageError(f"matrix must be 2-d, not of shape {x.shape}")
    rows, cols = x.shape
    stride = rows if panel_stride is None else panel_stride
    if stride < rows:
        raise UsageError(f"panel_stride {stride} is less than the matrix's {rows} rows")
    c = config.cols
    panels = max(1, -(-cols // c))
    padded = np.zeros((stride, panels * c), dtype=x.dtype)
    padded[:rows, :cols] = x
    return padded.reshape(stride, panels, c).transpose(1, 0, 2).reshape(panels * stride, c)


def panel_matrix(lines: object, rows: int, cols: int, config: SatConfig, *, panel_stride: int | None = None):
    """Inverse of :func:`panel_lines`: the ``(rows, cols)`` matrix held by panel-layout ``lines``."""
    x = np.asarray(lines)
    stride = rows if panel_stride is None else panel_stride
    c = config.cols
    panels = max(1, -(-cols // c))
    if x.ndim != 2 or x.shape[1] != c or x.shape[0] < (panels - 1) * stride + rows:
        raise UsageError(f"{x.shape} lines do not hold a {rows} x {cols} matrix with panel stride {stride}")
    x = np.pad(x, ((0, panels * stride - x.shape[0]), (0, 0))) if x.shape[0] < panels * stride else x
    full = x[: panels * stride].reshape(panels, stride, c).transpose(1, 0, 2).reshape(stride, panels * c)
    return np.ascontiguousarray(full[:rows, :cols])


def _check_pattern(n: int, m: int, config: SatConfig) -> None:
    if not config.supports(n, m):
        raise UsageError(f"{n}:{m} is not a pattern of this array (1 <= n <= m, m dividing m_max={config.m_max})")


def _bits16(x: object, arg: str) -> np.ndarray:
    arr = _as_uint(x, 16, arg)
    if arr.ndim != 2:
        raise UsageError(f"{arg} must be 2-d, not of shape {arr.shape}")
    return arr.astype(np.uint16)


def _groups(a: np.ndarray, m: int, m_max: int) -> np.ndarray:
    """``(rows, ceil(K / m), m_max)``: the groups of ``m`` along K of each row, zero-padded."""
    rows, k = a.shape
    count = -(-k // m)
    padded = np.zeros((rows, count * m), dtype=np.uint16)
    padded[:, :k] = a
    return np.pad(padded.reshape(rows, count, m), ((0, 0), (0, 0), (0, m_max - m)))


def os_a_lines(a_tile: object, n: int, m: int, config: SatConfig) -> np.ndarray:
    """A-lines of an OS tile: line ``g`` holds group ``g`` (elements ``g*m .. g*m+m-1``) of each row.

    Parameters
    ----------
    a_tile : array_like of uint16
        ``(rows, K)`` activations, ``rows <= config.rows``; K need not be a multiple of ``m`` (the
        last group is zero-padded).
    n, m : int
        The tile's pattern (only ``m`` shapes the lines).
    config : SatConfig

    Returns
    -------
    numpy.ndarray of uint16
        ``(ceil(K / m), config.rows, m_max)``; rows past the tile and slots past ``m`` are zero.
    """
    _check_pattern(n, m, config)
    a = _bits16(a_tile, "a_tile")
    if a.shape[0] > config.rows:
        raise UsageError(f"an OS tile has at most {config.rows} rows, not {a.shape[0]}")
    g = _groups(a, m, config.m_max).transpose(1, 0, 2)
    return np.pad(g, ((0, 0), (0, config.rows - a.shape[0]), (0, 0)))


def ws_a_lines(a: object, k0: int, steps: int, n: int, m: int, config: SatConfig) -> np.ndarray:
    """A-lines of a WS tile holding compressed steps ``k0 .. k0 + steps - 1``: line ``r`` serves A row ``r``.

    For array row ``i < steps`` the line holds the group that step ``k0 + i`` belongs to (group
    ``(k0 + i) // n``, elements ``g*m .. g*m+m-1`` of the row), so a group appears once per kept
    weight of it (``n`` times); array rows ``i >= steps`` are zero.

    Parameters
    ----------
    a : array_like of uint16
        ``(rows, K)`` activations: every A row of the tile (any number; the descriptor's ``rows``).
    k0, steps : int
        First compressed step (b-line) of the tile and the number of steps, ``1 <= steps <= config.rows``.
    n, m : int
        The pattern (dense: ``n == m``).
    config : SatConfig

    Returns
    -------
    numpy.ndarray of uint16
        ``(rows, config.rows, m_max)``.
    """
    _check_pattern(n, m, config)
    x = _bits16(a, "a")
    if not 1 <= steps <= config.rows or k0 < 0:
        raise UsageError(f"a WS tile holds 1 .. {config.rows} steps from k0 >= 0, not {steps} from {k0}")
    g = _groups(x, m, config.m_max)
    wanted = (k0 + np.arange(steps)) // n
    if wanted.max() >= g.shape[1]:
        raise UsageError(f"steps {k0} .. {k0 + steps - 1} of {n}:{m} reach past K = {x.shape[1]}")
    out = np.zeros((x.shape[0], config.rows, config.m_max), dtype=np.uint16)
    out[:, :steps] = g[:, wanted]
    return out


def b_lines(b_tile: object, n: int, m: int, config: SatConfig) -> tuple[np.ndarray, np.ndarray]:
    """B-lines of a ``(K, cols)`` weight tile compressed along K: line ``s`` holds step ``s`` of each column.

    Sparse (``n < m``): K is zero-padded to a multiple of ``m`` and compressed with
    ``nm_compress(dim=0)`` (``n`` kept per group, ascending index): ``ceil(K / m) * n`` lines. Dense
    (``n == m``): every element kept, step ``s`` is ``k = s`` with index ``k mod m``: ``K`` lines.

    Parameters
    ----------
    b_tile : array_like of uint16
        ``(K, cols)`` bit patterns in ``config.in_fmt``, ``cols <= config.cols``.
    n, m : int
    config : SatConfig

    Returns
    -------
    values : numpy.ndarray of uint16
        ``(steps, config.cols)``; columns past the tile are zero.
    indices : numpy.ndarray of uint8
        ``(steps, config.cols)``.
    """
    _check_pattern(n, m, config)
    b = _bits16(b_tile, "b_tile")
    k, cols = b.shape
    if cols > config.cols:
        raise UsageError(f"a b-line holds at most {config.cols} columns, not {cols}")
    if n == m:
        values = b
        indices = np.broadcast_to((np.arange(k) % m)[:, None], (k, cols)).astype(np.uint8)
    else:
        w = torch.from_numpy(b.view(np.int16).copy()).view(FORMATS[config.in_fmt].torch_dtype)
        v, i = nm_compress(zero_pad_to_multiple(w, m, 0), n, m, dim=0)
        values, indices = v.view(torch.int16).numpy().view(np.uint16), i.numpy()
    pad = ((0, 0), (0, config.cols - cols))
    return np.pad(values, pad), np.pad(indices, pad)


# --------------------------------------------------------------------------------------------
# memory image
# --------------------------------------------------------------------------------------------


class MemoryImage:
    """A word-addressed memory image that grows as regions are allocated (a bump allocator).

    Parameters
    ----------
    config : SatConfig
    n_words : int
        Initial size in words (all zero). Allocation starts at address 0 and grows the image when a
        region reaches past its end.

    Attributes
    ----------
    words : numpy.ndarray of uint32
        The whole image, ``(n_words, mem_bits // 32)`` (the live array, not a copy).
    """

    def __init__(self, config: SatConfig, n_words: int = 0) -> None:
        if n_words < 0:
            raise UsageError(f"n_words must be >= 0, not {n_words}")
        self.config = config
        self.words = np.zeros((n_words, config.mem_bits // 32), dtype=np.uint32)
        self.top = 0

    @classmethod
    def from_array(cls, config: SatConfig, words: object) -> MemoryImage:
        """Wrap a copy of an existing image; later allocations start after its end."""
        arr = np.array(words, dtype=np.uint32)
        if arr.ndim != 2 or arr.shape[1] != config.mem_bits // 32:
            raise UsageError(f"an image is (n_words, {config.mem_bits // 32}) uint32, not {arr.shape}")
        image = cls(config)
        image.words, image.top = arr, arr.shape[0]
        return image

    @property
    def n_words(self) -> int:
        return self.words.shape[0]

    def _grow(self, end: int) -> None:
        if end > self.n_words:
            extra = np.zeros((end - self.n_words, self.words.shape[1]), dtype=np.uint32)
            self.words = np.concatenate([self.words, extra])

    def alloc(self, n_words: int, *, align: int = 1) -> int:
        """Reserve ``n_words`` words (aligned to ``align``); returns the first word address."""
        if n_words < 0 or align < 1:
            raise UsageError(f"alloc needs n_words >= 0 and align >= 1, not {n_words}, {align}")
        addr = -(-self.top // align) * align
        self.top = addr + n_words
        self._grow(self.top)
        return addr

    def alloc_lines(self, kind: str, count: int) -> int:
        """Reserve room for ``count`` lines of ``kind``; returns the word address of the first."""
        return self.alloc(count * line_words(self.config, kind))

    def write_lines(self, addr: int, kind: str, *data: object) -> None:
        """Pack ``data`` as lines of ``kind`` and write them consecutively from word ``addr``."""
        packed = pack_lines(self.config, kind, *data)
        self._grow(addr + packed.shape[0])
        self.words[addr : addr + packed.shape[0]] = packed

    def read_lines(self, addr: int, kind: str, count: int):
        """Unpack ``count`` consecutive lines of ``kind`` from word ``addr``."""
        words = line_words(self.config, kind)
        return read_lines_at(self.words, self.config, kind, addr + words * np.arange(count))

    def place(self, kind: str, *data: object) -> int:
        """Allocate and write lines of ``kind``; returns their word address."""
        packed = pack_lines(self.config, kind, *data)
        addr = self.alloc(packed.shape[0])
        self.words[addr : addr + packed.shape[0]] = packed
        return addr


# --------------------------------------------------------------------------------------------
# a whole GEMM as a tile program
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GemmProgram:
    """The tiles of ``C = A . B`` and where the operands and the result are.

    Attributes
    ----------
    config : SatConfig
    descriptors : list of Gemm
        The tile program, in order.
    shape : (int, int)
        ``(M, N)`` of the result.
    c_addr : int
        Word address of C, stored as acc-lines in the panel layout with ``panel_stride = M``
        (panel ``p`` holds columns ``p*C ..``): :meth:`result_bits` reads it back.
    steps_per_tile : int
        Compressed reduction steps of every tile but possibly the last of each output (OS: a
        K-chunk; WS: the steps held in the array).
    a_addrs, b_addrs : dict
        Word address of each placed A and B region (keys: row block / K-tile, column block).
    """

    config: SatConfig
    descriptors: list[Gemm]
    shape: tuple[int, int]
    c_addr: int
    steps_per_tile: int
    a_addrs: dict
    b_addrs: dict

    def result_bits(self, image: MemoryImage | np.ndarray) -> np.ndarray:
        """C as ``(M, N)`` FP32 bit patterns (uint32), read from ``image``."""
        words = image.words if isinstance(image, MemoryImage) else np.asarray(image)
        rows, cols = self.shape
        panels = max(1, -(-cols // self.config.cols))
        step = self.config.acc_words
        lines = read_lines_at(words, self.config, "acc", self.c_addr + step * np.arange(panels * rows))
        return panel_matrix(lines, rows, cols, self.config)

    def result(self, image: MemoryImage | np.ndarray) -> np.ndarray:
        """C as an ``(M, N)`` float32 array."""
        return self.result_bits(image).view(np.float32)


def gemm_program(
    config: SatConfig,
    a: object,
    b: object | None,
    n: int,
    m: int,
    *,
    dataflow: Dataflow,
    image: MemoryImage,
    tag: Tag = Tag.OTHER,
    max_steps: int | None = None,
    max_rows: int | None = None,
    b_addrs: Mapping[int, int] | None = None,
    b_cols: int | None = None,
) -> GemmProgram:
    """Tile ``C = A . B`` into GEMM descriptors and place its operands in ``image``.

    ``B`` is N:M compressed along K (:func:`b_lines`, ``K`` zero-padded to a multiple of ``m``) when
    ``n < m``; dense (``n == m``) uses every element. A tile loads an operand only when it differs
    from the one the previous load brought in (so runs of tiles share A or B).

    OS: ``R x C`` output tiles (row block outer, column block inner), each the full reduction in one
    tile when it fits the A and B buffers (``steps <= b_lines``, ``ceil(steps / n) <= a_lines``),
    else K-chunks of ``steps_per_tile`` steps (a multiple of ``n``) accumulated in the acc buffer
    (the golden ``chunked`` order with ``init = -0``, i.e. the first chunk taken as it is); the last
    chunk stores. Consecutive output tiles alternate between acc lines ``0`` and ``R`` when the
    buffer holds two tiles.

    WS: column block, then A-row blocks of at most ``min(acc_lines, a_lines)`` rows, then K-tiles of
    ``R`` compressed steps chained through the acc buffer (``accumulate`` from the second on), the
    last one storing: bit-identical to the golden ``sequential`` (``systolic``) order.

    Parameters
    ----------
    config : SatConfig
    a : array_like of uint16
        ``(M, K)`` bit patterns in ``config.in_fmt``.
    b : array_like of uint16
        ``(K, N)`` bit patterns.
    n, m : int
        The pattern (dense: ``n == m``); must be supported by ``config``.
    dataflow : Dataflow
    image : MemoryImage
        Operands and the result region are allocated here.
    tag : Tag
        Tag of every descriptor.
    max_steps : int, optional
        OS only: cap on the steps of a K-chunk (rounded down to a multiple of ``n``; tests use it to
        force accumulation on small matrices).
    max_rows : int, optional
        WS only: cap on the A rows of a tile.
    b_addrs : mapping of int to int, optional
        Use B lines already in ``image`` instead of placing ``b`` (which must then be ``None``):
        word address of the b-lines of column block ``p`` (columns ``p*C .. p*C+C-1``) for every
        ``p < ceil(b_cols / C)``, each run holding all the steps of the reduction as :func:`b_lines`
        would lay them out (``ceil(K / m) * n`` lines, ``K`` lines when dense), e.g. written by a
        PRUNE (FF copy: one band of ``C`` output rows; BP copy: one panel).
    b_cols : int, optional
        With ``b_addrs``: ``N``, the columns of B (of C).

    Returns
    -------
    GemmProgram
    """
    _check_pattern(n, m, config)
    a_bits = _bits16(a, "a")
    mm, k = a_bits.shape
    r, c = config.rows, config.cols
    if b_addrs is None:
        if b is None or b_cols is not None:
            raise UsageError("gemm_program needs b, or b=None with b_addrs and b_cols (pre-placed B lines)")
        b_bits = _bits16(b, "b")
        kb, nn = b_bits.shape
    else:
        if b is not None or b_cols is None:
            raise UsageError("with b_addrs, pass b=None and the number of B columns as b_cols")
        kb, nn = k, int(b_cols)
    if k != kb or min(mm, k, nn) == 0:
        raise UsageError(f"a is {mm} x {k} and b is {kb} x {nn}: need non-empty operands with a's K == b's K")
    dataflow = Dataflow(dataflow)
    col_blocks = -(-nn // c)

    # B: one run of b-lines per column block, all steps (placed here, or already in the image).
    if b_addrs is None:
        b_addrs, total_steps = {}, 0
        for p in range(col_blocks):
            values, indices = b_lines(b_bits[:, p * c : (p + 1) * c], n, m, config)
            b_addrs[p] = image.place("b", values, indices)
            total_steps = values.shape[0]
    else:
        missing = sorted(set(range(col_blocks)) - set(b_addrs))
        if missing:
            raise UsageError(f"b_addrs has no B lines for column blocks {missing} of {nn} columns")
        b_addrs = {p: int(b_addrs[p]) for p in range(col_blocks)}
        total_steps = k if n == m else -(-k // m) * n
    c_addr = image.alloc_lines("acc", col_blocks * mm)

    def c_line(p: int, row: int) -> int:
        return c_addr + (p * mm + row) * config.acc_words

    descriptors: list[Gemm] = []
    loaded = {"a": None, "b": None}

    def emit(**fields) -> None:
        key_a = (fields["a_addr"], fields["rows"] if dataflow == Dataflow.WS else -(-fields["steps"] // n))
        key_b = (fields["b_addr"], fields["steps"])
        desc = Gemm(
            tag=tag,
            dataflow=dataflow,
            n=n,
            m=m,
            load_a=key_a != loaded["a"],
            load_b=key_b != loaded["b"],
            **fields,
        )
        loaded["a"], loaded["b"] = key_a, key_b
        descriptors.append(desc)

    a_addrs: dict = {}
    if dataflow == Dataflow.OS:
        per_tile = min(config.b_lines, config.a_lines * n, max_steps or total_steps)
        per_tile = max(n, per_tile // n * n)
        if per_tile > config.b_lines or -(-per_tile // n) > config.a_lines:
            raise UsageError(f"{n}:{m} needs more than the buffers hold for one group")
        row_blocks = -(-mm // r)
        for rb in range(row_blocks):
            a_addrs[rb] = image.place("a", os_a_lines(a_bits[rb * r : (rb + 1) * r], n, m, config))
        tile = 0
        for rb in range(row_blocks):
            rows = min(r, mm - rb * r)
            for p in range(col_blocks):
                acc_addr = r * (tile % 2) if config.acc_lines >= 2 * r else 0
                tile += 1
                for s0 in range(0, total_steps, per_tile):
                    steps = min(per_tile, total_steps - s0)
                    emit(
                        rows=rows,
                        cols=min(c, nn - p * c),
                        steps=steps,
                        a_addr=a_addrs[rb] + s0 // n * config.a_words,
                        b_addr=b_addrs[p] + s0 * config.b_words,
                        c_addr=c_line(p, rb * r),
                        acc_addr=acc_addr,
                        accumulate=s0 > 0,
                        store=s0 + steps == total_steps,
                    )
    else:
        per_tile = r
        block = min(config.acc_lines, config.a_lines, max_rows or mm)
        for s0 in range(0, total_steps, per_tile):
            steps = min(per_tile, total_steps - s0)
            a_addrs[s0] = image.place("a", ws_a_lines(a_bits, s0, steps, n, m, config))
        for p in range(col_blocks):
            for r0 in range(0, mm, block):
                rows = min(block, mm - r0)
                for s0 in range(0, total_steps, per_tile):
                    steps = min(per_tile, total_steps - s0)
                    emit(
                        rows=rows,
                        cols=min(c, nn - p * c),
                        steps=steps,
                        a_addr=a_addrs[s0] + r0 * config.a_words,
                        b_addr=b_addrs[p] + s0 * config.b_words,
                        c_addr=c_line(p, r0),
                        acc_addr=0,
                        accumulate=s0 > 0,
                        store=s0 + steps == total_steps,
                    )
    return GemmProgram(config, descriptors, (mm, nn), c_addr, per_tile, a_addrs, b_addrs)
