"""Berkeley TestFloat ``testfloat_gen`` vector files: read, write, and generate them with the oracle.

The format is one test case per line, hexadecimal fields separated by spaces::

    a b c result flags     (f16_mulAdd, ...: three operands)
    a b result flags       (f16_add, f16_mul, f16_eq, ...: two operands)
    a result flags         (f16_to_f32, ...: one operand)

Operands and results are bit patterns, zero-padded to the width of their format (4 digits for
fp16, 8 for fp32); comparisons give a 1-digit 0/1 result. ``flags`` is 2 hex digits with bit 0
inexact, bit 1 underflow, bit 2 overflow, bit 3 infinite (divide by zero) and bit 4 invalid: the
RISC-V ``fflags`` order, so the values compare directly with :mod:`trainforge.models.fp` flags.
``testfloat_gen -tininessafter`` matches RISC-V; its rounding options ``-rnear_even``,
``-rminMag``, ``-rmin``, ``-rmax``, ``-rnear_maxMag`` are ``rne``, ``rtz``, ``rdn``, ``rup``,
``rmm``.

:func:`generate_vectors` makes such files from the exact oracle (corner cases first, then biased
random operands), so a testbench can consume TestFloat-format vectors without the
``testfloat_gen`` binary, and the same testbench can later read files made by the real tool.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from trainforge.errors import UsageError
from trainforge.hw.fp.formats import float_format
from trainforge.models import fp

__all__ = ["OPERAND_NAMES", "VECTOR_OPS", "evaluate", "generate_vectors", "read_vectors", "write_vectors"]

OPERAND_NAMES = ("a", "b", "c")
"""Keys of the operand columns in the dictionaries returned by :func:`read_vectors`."""

VECTOR_OPS = {
    "fmadd": 3,
    "fmsub": 3,
    "fnmsub": 3,
    "fnmadd": 3,
    "add": 2,
    "sub": 2,
    "mul": 2,
    "min": 2,
    "max": 2,
    "eq": 2,
    "lt": 2,
    "le": 2,
    "convert": 1,
}
"""Operations :func:`generate_vectors` and :func:`evaluate` know, and their operand counts.

TestFloat's ``mulAdd`` is ``fmadd``; ``eq`` is its quiet ``eq``, ``lt``/``le`` its signalling
``lt``/``le``; ``convert`` is ``<src>_to_<dst>``. ``min``/``max`` (RISC-V semantics) and the negated
FMAs have no TestFloat function but use the same file layout.
"""

_HEX_UPPER = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)
_DIGIT = np.full(256, -1, dtype=np.int8)
for _i, _ch in enumerate(b"0123456789abcdef"):
    _DIGIT[_ch] = _i
    _DIGIT[ord(chr(_ch).upper())] = _i
_SPACE = np.zeros(256, dtype=bool)
_SPACE[[ord(" "), ord("\t"), ord("\r")]] = True
_READ_BLOCK = 1 << 23  # bytes parsed at a time: bounds the memory of the per-byte temporaries
_WRITE_BLOCK = 1 << 20  # lines formatted at a time


def _check_arity(arity: object) -> int:
    if isinstance(arity, bool) or not isinstance(arity, int) or not 1 <= arity <= 3:
        raise UsageError(f"arity must be 1, 2 or 3 (operands per case), not {arity!r}")
    return arity


def read_vectors(path: str | os.PathLike, arity: int) -> dict[str, np.ndarray]:
    """Read a TestFloat file into columns of bit patterns.

    Parameters
    ----------
    path : str or os.PathLike
        A file in ``testfloat_gen`` format. Upper- or lower-case hex digits, any run of spaces or
        tabs between fields, LF or CRLF line ends and blank lines are accepted.
    arity : {1, 2, 3}
        Number of operands per case: every non-blank line must have ``arity + 2`` fields.

    Returns
    -------
    dict of str to numpy.ndarray of uint64
        ``"a"`` (and ``"b"``, ``"c"`` as ``arity`` says), ``"result"`` and ``"flags"``, one
        element per case in file order.

    Raises
    ------
    trainforge.errors.UsageError
        The file does not exist, or a line is malformed (the message names the file and the
        1-based line number).
    """
    arity = _check_arity(arity)
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read TestFloat vectors from {str(path)!r}: {e.strerror}") from None
    fields = arity + 2
    table = _parse_fixed_width(data, fields)
    if table is None:
        table = _parse_general(data, fields, path)
    names = [*OPERAND_NAMES[:arity], "result", "flags"]
    return {name: np.ascontiguousarray(table[:, i]) for i, name in enumerate(names)}


def _parse_fixed_width(data: bytes, fields: int) -> np.ndarray | None:
    """Fast path for files whose lines all have the layout of the first (what testfloat_gen and
    :func:`write_vectors` produce): parse column-wise. None when the file is not like that."""
    length = data.find(b"\n") + 1
    if length < 2 or len(data) % length:
        return None
    rows = np.frombuffer(data, dtype=np.uint8).reshape(-1, length)
    first = rows[0, :-1]
    is_hex = _DIGIT[first] >= 0
    if not (is_hex | (first == ord(" "))).all():
        return None
    edges = np.diff(is_hex.astype(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    if len(starts) != fields or (ends - starts > 16).any():
        return None
    if not (rows[:, -1] == ord("\n")).all() or not (rows[:, :-1][:, ~is_hex] == ord(" ")).all():
        return None
    table = np.empty((rows.shape[0], fields), dtype=np.uint64)
    for i, (lo, hi) in enumerate(zip(starts, ends, strict=True)):
        digits = _DIGIT[rows[:, lo:hi]]
        if (digits < 0).any():
            return None
        value = np.zeros(rows.shape[0], dtype=np.uint64)
        for j in range(hi - lo):  # Horner over the digit columns
            value = (value << np.uint64(4)) | digits[:, j].astype(np.uint64)
        table[:, i] = value
    return table


def _parse_general(data: bytes, fields: int, path: Path) -> np.ndarray:
    """Any layout: tokenise blocks of whole lines; errors name the line."""
    blocks, line0, start = [], 1, 0
    while start < len(data):
        end = min(len(data), start + _READ_BLOCK)
        if end < len(data):
            nl = data.rfind(b"\n", start, end)
            end = nl + 1 if nl >= start else data.find(b"\n", end) + 1 or len(data)
        chunk = np.frombuffer(data, dtype=np.uint8, count=end - start, offset=start)
        blocks.append(_parse_block(chunk, fields, path, line0))
        line0 += int(np.count_nonzero(chunk == ord("\n")))
        start = end
    return np.concatenate(blocks) if blocks else np.zeros((0, fields), dtype=np.uint64)


def _parse_block(buf: np.ndarray, fields: int, path: Path, line0: int) -> np.ndarray:
    """Parse whole lines: returns an (n_cases, fields) uint64 table."""
    digit = _DIGIT[buf]
    is_hex = digit >= 0
    is_nl = buf == ord("\n")
    bad = ~(is_hex | is_nl | _SPACE[buf])
    if bad.any():
        pos = int(np.argmax(bad))
        line = line0 + int(np.count_nonzero(is_nl[:pos]))
        raise UsageError(
            f"{path}:{line}: unexpected character {chr(buf[pos])!r}; "
            "TestFloat lines hold hex fields separated by spaces"
        )
    edges = np.diff(is_hex.astype(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    lengths = ends - starts
    newlines = np.flatnonzero(is_nl)
    token_line = np.searchsorted(newlines, starts)  # 0-based line inside the block
    counts = np.bincount(token_line, minlength=len(newlines) + 1)
    wrong = (counts != 0) & (counts != fields)
    if wrong.any():
        line = int(np.argmax(wrong))
        raise UsageError(
            f"{path}:{line0 + line}: expected {fields} hex fields ({fields - 2} operands, result, flags), "
            f"found {int(counts[line])}"
        )
    if (lengths > 16).any():
        line = int(token_line[np.argmax(lengths > 16)])
        raise UsageError(f"{path}:{line0 + line}: a field has more than 16 hex digits")
    if not len(starts):
        return np.zeros((0, fields), dtype=np.uint64)
    hex_pos = np.flatnonzero(is_hex)
    token_of = np.repeat(np.arange(len(starts)), lengths)
    shift = ((ends[token_of] - 1 - hex_pos) * 4).astype(np.uint64)
    parts = digit[hex_pos].astype(np.uint64) << shift
    offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    return np.bitwise_or.reduceat(parts, offsets).reshape(-1, fields)


def write_vectors(
    path: str | os.PathLike,
    *operands: np.ndarray,
    results: np.ndarray,
    flags: np.ndarray,
    widths: int | Sequence[int],
) -> None:
    """Write cases in TestFloat format: ``operands... result flags`` per line, upper-case hex.

    Parameters
    ----------
    path : str or os.PathLike
        The file to (over)write.
    *operands : array_like of int
        One to three columns of operand bit patterns, all of the same length.
    results : array_like of int
        Expected result bit patterns.
    flags : array_like of int
        Expected flags (0-31), written as 2 hex digits.
    widths : int or sequence of int
        Bit width of every column (one int) or of each operand column followed by the result
        column; a column of width ``w`` is written as ``ceil(w / 4)`` zero-padded digits.

    Raises
    ------
    trainforge.errors.UsageError
        A wrong number of columns or widths, columns of different lengths, or a value that does
        not fit its width.
    """
    if not 1 <= len(operands) <= 3:
        raise UsageError(f"write_vectors needs 1 to 3 operand columns, not {len(operands)}")
    columns = [*operands, results, flags]
    if isinstance(widths, int) and not isinstance(widths, bool):
        widths = [widths] * (len(operands) + 1)
    widths = list(widths)
    if len(widths) != len(operands) + 1 or not all(isinstance(w, int) and 1 <= w <= 64 for w in widths):
        raise UsageError(
            f"widths must be one bit width (1-64) or one per operand column plus the result, "
            f"{len(operands) + 1} in all, not {widths!r}"
        )
    widths.append(5)
    names = [*OPERAND_NAMES[: len(operands)], "results", "flags"]
    arrays = []
    for name, col, width in zip(names, columns, widths, strict=True):
        arr = np.asarray(col)
        if arr.dtype.kind not in "iu":
            raise UsageError(f"{name} must be an integer array, not dtype {arr.dtype}")
        arr = arr.reshape(-1)
        if arr.size and (arr.min() < 0 or (width < 64 and int(arr.max()) >= 1 << width)):
            raise UsageError(
                f"{name} holds values that do not fit in {width} bits (range {arr.min():#x} to {arr.max():#x})"
            )
        arrays.append(arr.astype(np.uint64))
    if len({a.size for a in arrays}) != 1:
        sizes = ", ".join(f"{n}={a.size}" for n, a in zip(names, arrays, strict=True))
        raise UsageError(f"all columns must have the same length, not {sizes}")
    digits = [(w + 3) // 4 for w in widths[:-1]] + [2]
    line_len = sum(digits) + len(digits)  # fields, separating spaces and the newline
    with open(path, "wb") as out:
        for lo in range(0, arrays[0].size, _WRITE_BLOCK):
            block = [a[lo : lo + _WRITE_BLOCK] for a in arrays]
            text = np.full((block[0].size, line_len), ord(" "), dtype=np.uint8)
            text[:, -1] = ord("\n")
            col = 0
            for values, nd in zip(block, digits, strict=True):
                shifts = np.arange(4 * (nd - 1), -1, -4, dtype=np.uint64)
                text[:, col : col + nd] = _HEX_UPPER[(values[:, None] >> shifts[None, :]) & np.uint64(15)]
                col += nd + 1
            out.write(text.tobytes())


def evaluate(
    op: str,
    operands: Sequence[np.ndarray],
    *,
    fmt: str,
    rounding: str | int,
    src_fmt: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run the oracle on ``operands`` for an operation named as in :data:`VECTOR_OPS`.

    Parameters
    ----------
    op : str
        A key of :data:`VECTOR_OPS`.
    operands : sequence of numpy.ndarray
        ``VECTOR_OPS[op]`` columns of bit patterns.
    fmt : str
        Result format (the destination of ``convert``, the addend of an FMA).
    rounding : str or int
        A name of :data:`trainforge.models.fp.ROUNDING_MODES` or the RISC-V ``frm`` 0-4; ignored
        by min/max and comparisons.
    src_fmt : str, optional
        Source of ``convert`` (required) or factor format of a mixed-format FMA.

    Returns
    -------
    result, flags : numpy.ndarray
    """
    if not isinstance(op, str) or op not in VECTOR_OPS:
        raise UsageError(f"op must be one of {', '.join(map(repr, VECTOR_OPS))}, not {op!r}")
    if len(operands) != VECTOR_OPS[op]:
        raise UsageError(f"{op} takes {VECTOR_OPS[op]} operand columns, not {len(operands)}")
    if op in fp.FMA_OPS:
        return fp.fma(*operands, fmt=fmt, src_fmt=src_fmt, rounding=rounding, op=op)
    if op in ("add", "sub"):
        return fp.add(*operands, fmt=fmt, rounding=rounding, subtract=op == "sub")
    if op == "mul":
        return fp.mul(*operands, fmt=fmt, rounding=rounding)
    if op in ("min", "max"):
        return fp.min_max(*operands, fmt=fmt, op=op)
    if op in ("eq", "lt", "le"):
        return fp.compare(*operands, fmt=fmt, op=op)
    if src_fmt is None:
        raise UsageError("convert needs src_fmt, the format of the operand")
    return fp.convert(*operands, src_fmt=src_fmt, dst_fmt=fmt, rounding=rounding)


_FAMILY = {"add": "add", "sub": "add", "mul": "mul", "min": "min_max", "max": "min_max", "convert": "convert"}


def generate_vectors(
    op: str,
    fmt: str,
    rounding: str | int,
    count: int,
    seed: int,
    *,
    path: str | os.PathLike | None = None,
    src_fmt: str | None = None,
) -> dict[str, np.ndarray]:
    """Make ``count`` TestFloat cases with the oracle: corner cases first, then biased random ones.

    The corner cases are :func:`trainforge.models.fp.corner_vectors` of the operation (shuffled,
    and thinned evenly when there are more than ``count``); the rest are
    :func:`trainforge.models.fp.random_operands`. Results and flags come from
    :mod:`trainforge.models.fp`.

    Parameters
    ----------
    op : str
        A key of :data:`VECTOR_OPS` (``"fmadd"`` is TestFloat's ``mulAdd``).
    fmt : str
        Result format (the destination of ``convert``).
    rounding : str or int
        A name of :data:`trainforge.models.fp.ROUNDING_MODES` or the RISC-V ``frm`` 0-4.
    count : int
        Number of cases.
    seed : int
        Seed of the random parts; the same arguments give the same file.
    path : str or os.PathLike, optional
        Where to write the cases in TestFloat format.
    src_fmt : str, optional
        Source of ``convert`` (required) or factor format of a mixed-format FMA.

    Returns
    -------
    dict of str to numpy.ndarray of uint64
        The same columns :func:`read_vectors` returns.
    """
    if not isinstance(op, str) or op not in VECTOR_OPS:
        raise UsageError(f"op must be one of {', '.join(map(repr, VECTOR_OPS))}, not {op!r}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise UsageError(f"count must be a non-negative integer, not {count!r}")
    if op == "convert" and src_fmt is None:
        raise UsageError("convert needs src_fmt, the format of the operand")
    family = "fma" if op in fp.FMA_OPS else _FAMILY.get(op, "compare")
    rng = np.random.default_rng(seed)
    corners = fp.corner_vectors(family, fmt, src_fmt=src_fmt, seed=seed)
    n_corner = len(corners[0])
    order = rng.permutation(n_corner)
    if n_corner > count:
        order = np.sort(order[:count])
    corners = tuple(x[order] for x in corners)
    extra = fp.random_operands(family, count - len(corners[0]), fmt=fmt, src_fmt=src_fmt, seed=seed + 1)
    operands = [np.concatenate([c, r]) for c, r in zip(corners, extra, strict=True)]
    result, flags = evaluate(op, operands, fmt=fmt, rounding=rounding, src_fmt=src_fmt)
    result = result.astype(np.uint64)
    flags = flags.astype(np.uint64)
    if path is not None:
        in_fmt = src_fmt if src_fmt is not None else fmt
        widths = [float_format(in_fmt).width] * len(operands)
        if op in fp.FMA_OPS:
            widths[2] = float_format(fmt).width
        widths.append(1 if op in ("eq", "lt", "le") else float_format(fmt).width)
        write_vectors(path, *operands, results=result, flags=flags, widths=widths)
    names = OPERAND_NAMES[: len(operands)]
    return {**dict(zip(names, operands, strict=True)), "result": result, "flags": flags}
