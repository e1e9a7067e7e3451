"""The SAT accelerator's command descriptors: layout, encoding and validation.

A program is a list of descriptors streamed into the controller (``cmd`` stream). Each is one
``descriptor_layout(config)`` record; its ``op`` selects how the ``args`` union is read. The
semantics of every field are in docs/sat-architecture.md ("Command descriptors"); :func:`check` states the
same validity rules the controller enforces in hardware (a descriptor that fails them raises
the error flag with the matching :class:`ErrorCode` and stops the program).

Host side, :class:`Gemm`, :class:`Prune` and :class:`Update` are plain frozen dataclasses;
:func:`encode` turns one into the integer the ``cmd`` payload carries, :func:`decode` back.
"""

from __future__ import annotations

import dataclasses
import enum
import struct

from amaranth.lib import data

from trainforge.hw.sat.config import SatConfig

__all__ = [
    "Dataflow",
    "ErrorCode",
    "Gemm",
    "Op",
    "Prune",
    "Tag",
    "Update",
    "check",
    "decode",
    "descriptor_layout",
    "encode",
    "float_bits",
]


class Op(enum.IntEnum):
    """Descriptor opcode (3 bits). ``0`` is invalid, so an all-zero record is an error."""

    GEMM = 1
    PRUNE = 2
    UPDATE = 3


class Tag(enum.IntEnum):
    """Which training GEMM a descriptor belongs to: only counted (``cycles_by_op``), not executed differently."""

    FF = 0
    BP = 1
    WU = 2
    OTHER = 3


class Dataflow(enum.IntEnum):
    OS = 0  #: output-stationary: a tile of rows x cols outputs, the reduction streams through
    WS = 1  #: weight-stationary: up to ``rows`` reduction steps held in the PEs, A rows stream through


class ErrorCode(enum.IntEnum):
    """Why the controller raised its error flag (``status.error_code``)."""

    NONE = 0
    BAD_OP = 1  #: opcode not GEMM, PRUNE or UPDATE
    BAD_PATTERN = 2  #: n:m not supported (``SatConfig.supports``; PRUNE also needs n < m)
    ZERO_DIM = 3  #: a dimension is zero
    TILE_TOO_BIG = 4  #: more rows, columns or steps than the array has
    BUFFER_OVERFLOW = 5  #: operand or accumulator lines beyond a buffer


#: Field widths of the host-visible descriptor (the layout below is built from them).
ADDR_BITS = 32
DIM_BITS = 16


def descriptor_layout(config: SatConfig) -> data.StructLayout:
    """The ``cmd`` stream payload: ``op``, ``tag`` and the per-op ``args`` union."""
    pattern = {"n": 5, "m": 5}
    gemm = data.StructLayout(
        {
            "dataflow": 1,
            **pattern,
            "load_a": 1,
            "load_b": 1,
            "accumulate": 1,
            "store": 1,
            "rows": DIM_BITS,
            "cols": DIM_BITS,
            "steps": DIM_BITS,
            "acc_addr": DIM_BITS,
            "a_addr": ADDR_BITS,
            "b_addr": ADDR_BITS,
            "c_addr": ADDR_BITS,
        }
    )
    prune = data.StructLayout(
        {
            **pattern,
            "transpose": 1,
            "write_mask": 1,
            "lines": DIM_BITS,
            "panel_stride": DIM_BITS,
            "src_addr": ADDR_BITS,
            "dst_addr": ADDR_BITS,
            "mask_addr": ADDR_BITS,
        }
    )
    update = data.StructLayout(
        {
            "use_mask": 1,
            "lines": DIM_BITS,
            "w_addr": ADDR_BITS,
            "v_addr": ADDR_BITS,
            "g_addr": ADDR_BITS,
            "mask_addr": ADDR_BITS,
            "w16_addr": ADDR_BITS,
            "lr": 32,
            "momentum": 32,
            "decay": 32,
        }
    )
    return data.StructLayout(
        {"op": 3, "tag": 2, "args": data.UnionLayout({"gemm": gemm, "prune": prune, "update": update})}
    )


def float_bits(value: float) -> int:
    """FP32 bit pattern of ``value`` (round to nearest even), for the UPDATE hyper-parameters."""
    return struct.unpack("<I", struct.pack("<f", value))[0]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Gemm:
    """One GEMM tile: ``acc[acc_addr + i] (+)= A_tile . B_tile`` (docs/sat-architecture.md has the exact semantics)."""

    tag: Tag = Tag.OTHER
    dataflow: Dataflow = Dataflow.OS
    n: int
    m: int
    rows: int
    cols: int
    steps: int
    a_addr: int = 0
    b_addr: int = 0
    c_addr: int = 0
    acc_addr: int = 0
    load_a: bool = True
    load_b: bool = True
    accumulate: bool = False
    store: bool = True

    op = Op.GEMM

    def a_lines(self) -> int:
        """A lines the tile reads: one per group of ``n`` steps (OS) or one per A row (WS)."""
        return -(-self.steps // self.n) if self.dataflow == Dataflow.OS else self.rows


@dataclasses.dataclass(frozen=True, kw_only=True)
class Prune:
    """Prune w-lines to compressed b-lines: groups along the lines (BP copy) or, transposed, along columns (FF)."""

    tag: Tag = Tag.OTHER
    n: int
    m: int
    lines: int
    src_addr: int = 0
    dst_addr: int = 0
    mask_addr: int = 0
    transpose: bool = False
    write_mask: bool = False
    panel_stride: int = 0

    op = Op.PRUNE

    def reduction(self, config: SatConfig) -> int:
        """Length of each lane's weight sequence: ``lines``, or ``lines`` panels of ``cols`` when transposed."""
        return self.lines * config.cols if self.transpose else self.lines


@dataclasses.dataclass(frozen=True, kw_only=True)
class Update:
    """SGD with momentum and the SR-STE decay on ``lines`` acc-lines of FP32 master weights."""

    tag: Tag = Tag.OTHER
    lines: int
    w_addr: int = 0
    v_addr: int = 0
    g_addr: int = 0
    mask_addr: int = 0
    w16_addr: int = 0
    use_mask: bool = False
    lr: float = 0.0
    momentum: float = 0.0
    decay: float = 0.0

    op = Op.UPDATE


Descriptor = Gemm | Prune | Update


def check(config: SatConfig, desc: Descriptor) -> ErrorCode:
    """The controller's validity rules, in the order it applies them; ``ErrorCode.NONE`` if valid."""
    if isinstance(desc, Gemm):
        if not config.supports(desc.n, desc.m):
            return ErrorCode.BAD_PATTERN
        if min(desc.rows, desc.cols, desc.steps) == 0:
            return ErrorCode.ZERO_DIM
        if desc.cols > config.cols:
            return ErrorCode.TILE_TOO_BIG
        if desc.dataflow == Dataflow.OS and desc.rows > config.rows:
            return ErrorCode.TILE_TOO_BIG
        if desc.dataflow == Dataflow.WS and desc.steps > config.rows:
            return ErrorCode.TILE_TOO_BIG
        if desc.a_lines() > config.a_lines or (desc.dataflow == Dataflow.OS and desc.steps > config.b_lines):
            return ErrorCode.BUFFER_OVERFLOW
        acc_rows = desc.rows
        if desc.acc_addr + acc_rows > config.acc_lines:
            return ErrorCode.BUFFER_OVERFLOW
        return ErrorCode.NONE
    if isinstance(desc, Prune):
        if not (config.supports(desc.n, desc.m) and desc.n < desc.m):
            return ErrorCode.BAD_PATTERN
        if desc.lines == 0:
            return ErrorCode.ZERO_DIM
        if desc.reduction(config) % desc.m:
            return ErrorCode.BAD_PATTERN
        return ErrorCode.NONE
    if isinstance(desc, Update):
        return ErrorCode.ZERO_DIM if desc.lines == 0 else ErrorCode.NONE
    return ErrorCode.BAD_OP


_FIELDS = {
    Op.GEMM: ("gemm", Gemm),
    Op.PRUNE: ("prune", Prune),
    Op.UPDATE: ("update", Update),
}
_FLOAT_FIELDS = ("lr", "momentum", "decay")


def encode(config: SatConfig, desc: Descriptor) -> int:
    """The ``cmd`` payload bits of ``desc`` as an integer (validity is not checked: see :func:`check`)."""
    layout = descriptor_layout(config)
    arm, _ = _FIELDS[desc.op]
    args = layout["args"].shape[arm].shape
    value = int(desc.op) | int(desc.tag) << 3
    base = layout["args"].offset
    for name, field in args:
        raw = getattr(desc, name)
        raw = float_bits(raw) if name in _FLOAT_FIELDS else int(raw)
        width = field.width
        if not 0 <= raw < 1 << width:
            raise ValueError(f"{type(desc).__name__}.{name}={raw} does not fit in {width} bits")
        value |= raw << (base + field.offset)
    return value


def decode(config: SatConfig, value: int) -> Descriptor:
    """Inverse of :func:`encode` (raises ``ValueError`` for an invalid opcode)."""
    layout = descriptor_layout(config)
    op = Op(value & 0b111)
    arm, cls = _FIELDS[op]
    args = layout["args"].shape[arm].shape
    base = layout["args"].offset
    kwargs: dict[str, object] = {"tag": Tag((value >> 3) & 0b11)}
    for name, field in args:
        raw = (value >> (base + field.offset)) & ((1 << field.width) - 1)
        if name in _FLOAT_FIELDS:
            kwargs[name] = struct.unpack("<f", struct.pack("<I", raw))[0]
        elif name == "dataflow":
            kwargs[name] = Dataflow(raw)
        elif field.width == 1:
            kwargs[name] = bool(raw)
        else:
            kwargs[name] = raw
    return cls(**kwargs)
