"""The MCU core's instruction set: ONE table read by the assembler, the decoder RTL and the tests.

The subset of ``docs/mcu-core.md``: RV32I, ``mul``, ``csrrs`` (``csrr``), Xpulp post-increment
memory accesses, ``p.mac``, ``p.minu``, the FP16 SIMD shuffles, the hardware loops, Zfinx/Zhinx FP
and the smallFloat SIMD FP16 operations. Encodings are the real ones:

* RV32IM / Zicsr: the base ISA.
* Zfinx / Zhinx: the F/Zfh encodings (``fmt`` bits 26:25: ``00`` = S, ``10`` = H), operands in the
  integer registers. The rounding-mode field is encoded as ``dyn`` (``111``, GNU as' default) where
  the instruction has one; the core rounds to nearest even whatever the field holds.
* Xpulp (PULP GCC / RI5CY = CV32E40P v1 "Xpulpv2"), values from ``include/opcode/riscv-opc.h`` of
  ``pulp-platform/riscv-binutils-gdb``: post-increment loads ``MATCH_LWPOST 0x200b`` (custom-0,
  I-type), stores ``MATCH_SWPOST 0x202b`` (custom-1, S-type), ``MATCH_MINU 0x04005033``,
  ``MATCH_MAC32 0x42000033`` (``p.mac``), vector ops on opcode ``0x57`` (``pv.shuffle.h`` =
  ``MATCH_V_OP_SHUFFLE | MATCH_V_OP_H_VV`` = ``0xc0000057``, ``pv.shuffle2.h`` ``0xc8000057``,
  ``pv.pack.h`` ``0xd0000057``) and hardware loops on opcode ``0x7b`` (``MATCH_HWLP_STARTI`` ..
  ``MATCH_HWLP_SETUPI`` = funct3 0..5, loop index ``L`` in bit 7).
* smallFloat (same header family): ``vfadd.h 0x82002033``, ``vfmul.h 0x86002033``,
  ``vfmac.h 0x90002033``, ``vfdotpex.s.h 0x96000033``.

Hardware-loop immediates, as RI5CY decodes them: ``lp.setup L, rs1, end`` has the end offset
``(end - pc) / 2`` in bits 31:20 (zero-extended) and the count in ``rs1``; ``lp.setupi L, count, end``
has the count in bits 31:20 and the end offset ``(end - pc) / 2`` in bits 19:15 (so the loop's last
instruction is at most 62 bytes after it); ``lp.starti`` / ``lp.endi`` have ``(target - pc) / 2`` in
bits 31:20, ``lp.counti`` the count there, ``lp.count`` the count in ``rs1``. The loop end is the
address of the loop's **last** instruction (RI5CY / CV32E40P v1 semantics).

Nothing here deviates from PULP's encodings. One naming note: CV32E40P's v1 manual calls the
``{rs1[15:0], rs2[15:0]}`` pack ``pv.pack`` and uses ``pv.pack.h`` (bit 25 set) for the upper
halves; PULP binutils, the contract and this table call ``0xd0000057`` ``pv.pack.h`` with the
lower-halves meaning.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

__all__ = [
    "CSR_MHARTID",
    "FORMATS",
    "INSTRUCTIONS",
    "UNITS",
    "Decoded",
    "InsnSpec",
    "decode",
    "encode",
    "spec",
]

CSR_MHARTID = 0xF14

UNITS = ("alu", "load", "store", "fpu", "ctrl")
"""Timing classes, as :data:`trainforge.dataflow.mcu.core.UNITS`: the destination's latency."""

FORMATS = ("R", "R4", "RF", "RF1", "I", "SH", "S", "B", "U", "J", "CSR", "LPR", "LPI", "LPIMM", "LPC")
"""Field layouts: ``R`` rd/rs1/rs2; ``R4`` + rs3 (bits 31:27); ``RF`` R with a rounding-mode field;
``RF1`` rd/rs1 with rs2 fixed by the match; ``I`` 12-bit signed immediate; ``SH`` 5-bit shift
amount; ``S`` store; ``B`` branch; ``U`` upper immediate; ``J`` jump; ``CSR`` csr number in 31:20;
``LPR`` loop index + rs1 + 12-bit unsigned immediate (``lp.setup``); ``LPI`` loop index + 12-bit
count + 5-bit offset (``lp.setupi``); ``LPIMM`` loop index + 12-bit unsigned immediate; ``LPC`` loop
index + rs1 (``lp.count``)."""

_MASKS = {
    "R": 0xFE00707F,
    "R4": 0x0600007F,
    "RF": 0xFE00007F,
    "RF1": 0xFFF0007F,
    "I": 0x0000707F,
    "SH": 0xFE00707F,
    "S": 0x0000707F,
    "B": 0x0000707F,
    "U": 0x0000007F,
    "J": 0x0000007F,
    "CSR": 0x0000707F,
    "LPR": 0x0000707F,
    "LPI": 0x0000707F,
    "LPIMM": 0x000FF07F,
    "LPC": 0xFFF0707F,
}

# The fields each format carries (the encode()/decode() keyword names).
_FIELDS = {
    "R": ("rd", "rs1", "rs2"),
    "R4": ("rd", "rs1", "rs2", "rs3"),
    "RF": ("rd", "rs1", "rs2"),
    "RF1": ("rd", "rs1"),
    "I": ("rd", "rs1", "imm"),
    "SH": ("rd", "rs1", "imm"),
    "S": ("rs1", "rs2", "imm"),
    "B": ("rs1", "rs2", "imm"),
    "U": ("rd", "imm"),
    "J": ("rd", "imm"),
    "CSR": ("rd", "rs1", "imm"),
    "LPR": ("L", "rs1", "imm"),
    "LPI": ("L", "count", "imm"),
    "LPIMM": ("L", "imm"),
    "LPC": ("L", "rs1"),
}

_RM_DYN = 7 << 12


@dataclasses.dataclass(frozen=True)
class InsnSpec:
    """One instruction of the table.

    Attributes
    ----------
    mnemonic : str
    fmt : str
        One of :data:`FORMATS`.
    match : int
        The fixed bits (with the rounding-mode field set to ``dyn`` where it is free).
    operands : tuple of str
        Assembly operands in order: ``rd``, ``rs1``, ``rs2``, ``rs3``, ``imm`` (signed), ``uimm``,
        ``shamt``, ``mem`` (``imm(rs1)``), ``memi`` (``imm(rs1!)``), ``label`` (PC-relative target),
        ``L`` (loop index 0/1), ``count`` (``lp.setupi``'s immediate count), ``csr``.
    unit : str
        Timing class (:data:`UNITS`).
    reads_rd : bool
        The instruction also reads ``rd`` (``p.mac``, ``pv.shuffle2.h``, ``vfmac.h``, ``vfdotpex.s.h``).
    source : str
        Where the encoding comes from.
    deviates : str
        Empty, or how the encoding deviates from PULP's (none does).
    """

    mnemonic: str
    fmt: str
    match: int
    operands: tuple[str, ...]
    unit: str = "alu"
    reads_rd: bool = False
    source: str = "RV32IM"
    deviates: str = ""

    @property
    def mask(self) -> int:
        """Bits of the word fixed by the instruction (the rest are operand fields)."""
        return _MASKS[self.fmt]

    @property
    def fields(self) -> tuple[str, ...]:
        """Keyword fields of :func:`encode` / :attr:`Decoded.fields`."""
        return _FIELDS[self.fmt]


def _r(f7: int, f3: int, op: int) -> int:
    return f7 << 25 | f3 << 12 | op


_PULP = "pulp riscv-binutils-gdb riscv-opc.h (Xpulpv2)"
_SF = "pulp riscv-opc.h (smallFloat Xf16/Xfvec)"
_ZF = "RISC-V F/Zfh encodings, Zfinx/Zhinx operands"

_TABLE: tuple[InsnSpec, ...] = (
    # ---- RV32I
    InsnSpec("lui", "U", 0x37, ("rd", "uimm")),
    InsnSpec("auipc", "U", 0x17, ("rd", "uimm")),
    InsnSpec("addi", "I", _r(0, 0, 0x13), ("rd", "rs1", "imm")),
    InsnSpec("slti", "I", _r(0, 2, 0x13), ("rd", "rs1", "imm")),
    InsnSpec("sltiu", "I", _r(0, 3, 0x13), ("rd", "rs1", "imm")),
    InsnSpec("xori", "I", _r(0, 4, 0x13), ("rd", "rs1", "imm")),
    InsnSpec("ori", "I", _r(0, 6, 0x13), ("rd", "rs1", "imm")),
    InsnSpec("andi", "I", _r(0, 7, 0x13), ("rd", "rs1", "imm")),
    InsnSpec("slli", "SH", _r(0, 1, 0x13), ("rd", "rs1", "shamt")),
    InsnSpec("srli", "SH", _r(0, 5, 0x13), ("rd", "rs1", "shamt")),
    InsnSpec("srai", "SH", _r(0x20, 5, 0x13), ("rd", "rs1", "shamt")),
    InsnSpec("add", "R", _r(0, 0, 0x33), ("rd", "rs1", "rs2")),
    InsnSpec("sub", "R", _r(0x20, 0, 0x33), ("rd", "rs1", "rs2")),
    InsnSpec("sll", "R", _r(0, 1, 0x33), ("rd", "rs1", "rs2")),
    InsnSpec("slt", "R", _r(0, 2, 0x33), ("rd", "rs1", "rs2")),
    InsnSpec("sltu", "R", _r(0, 3, 0x33), ("rd", "rs1", "rs2")),
    InsnSpec("xor", "R", _r(0, 4, 0x33), ("rd", "rs1", "rs2")),
    InsnSpec("srl", "R", _r(0, 5, 0x33), ("rd", "rs1", "rs2")),
    InsnSpec("sra", "R", _r(0x20, 5, 0x33), ("rd", "rs1", "rs2")),
    InsnSpec("or", "R", _r(0, 6, 0x33), ("rd", "rs1", "rs2")),
    InsnSpec("and", "R", _r(0, 7, 0x33), ("rd", "rs1", "rs2")),
    InsnSpec("lb", "I", _r(0, 0, 0x03), ("rd", "mem"), "load"),
    InsnSpec("lh", "I", _r(0, 1, 0x03), ("rd", "mem"), "load"),
    InsnSpec("lw", "I", _r(0, 2, 0x03), ("rd", "mem"), "load"),
    InsnSpec("lbu", "I", _r(0, 4, 0x03), ("rd", "mem"), "load"),
    InsnSpec("lhu", "I", _r(0, 5, 0x03), ("rd", "mem"), "load"),
    InsnSpec("sb", "S", _r(0, 0, 0x23), ("rs2", "mem"), "store"),
    InsnSpec("sh", "S", _r(0, 1, 0x23), ("rs2", "mem"), "store"),
    InsnSpec("sw", "S", _r(0, 2, 0x23), ("rs2", "mem"), "store"),
    InsnSpec("beq", "B", _r(0, 0, 0x63), ("rs1", "rs2", "label"), "ctrl"),
    InsnSpec("bne", "B", _r(0, 1, 0x63), ("rs1", "rs2", "label"), "ctrl"),
    InsnSpec("blt", "B", _r(0, 4, 0x63), ("rs1", "rs2", "label"), "ctrl"),
    InsnSpec("bge", "B", _r(0, 5, 0x63), ("rs1", "rs2", "label"), "ctrl"),
    InsnSpec("bltu", "B", _r(0, 6, 0x63), ("rs1", "rs2", "label"), "ctrl"),
    InsnSpec("bgeu", "B", _r(0, 7, 0x63), ("rs1", "rs2", "label"), "ctrl"),
    InsnSpec("jal", "J", 0x6F, ("rd", "label"), "ctrl"),
    InsnSpec("jalr", "I", _r(0, 0, 0x67), ("rd", "mem"), "ctrl"),
    # ---- RV32M, Zicsr
    InsnSpec("mul", "R", _r(1, 0, 0x33), ("rd", "rs1", "rs2")),
    InsnSpec("csrrs", "CSR", _r(0, 2, 0x73), ("rd", "csr", "rs1"), source="Zicsr"),
    # ---- Xpulp
    InsnSpec("p.lw", "I", _r(0, 2, 0x0B), ("rd", "memi"), "load", source=_PULP),
    InsnSpec("p.lh", "I", _r(0, 1, 0x0B), ("rd", "memi"), "load", source=_PULP),
    InsnSpec("p.lhu", "I", _r(0, 5, 0x0B), ("rd", "memi"), "load", source=_PULP),
    InsnSpec("p.sw", "S", _r(0, 2, 0x2B), ("rs2", "memi"), "store", source=_PULP),
    InsnSpec("p.sh", "S", _r(0, 1, 0x2B), ("rs2", "memi"), "store", source=_PULP),
    InsnSpec("p.mac", "R", _r(0x21, 0, 0x33), ("rd", "rs1", "rs2"), reads_rd=True, source=_PULP),
    InsnSpec("p.minu", "R", _r(0x02, 5, 0x33), ("rd", "rs1", "rs2"), source=_PULP),
    InsnSpec("pv.shuffle.h", "R", _r(0x60, 0, 0x57), ("rd", "rs1", "rs2"), source=_PULP),
    InsnSpec("pv.shuffle2.h", "R", _r(0x64, 0, 0x57), ("rd", "rs1", "rs2"), reads_rd=True, source=_PULP),
    InsnSpec("pv.pack.h", "R", _r(0x68, 0, 0x57), ("rd", "rs1", "rs2"), source=_PULP),
    InsnSpec("lp.starti", "LPIMM", _r(0, 0, 0x7B), ("L", "label"), "ctrl", source=_PULP),
    InsnSpec("lp.endi", "LPIMM", _r(0, 1, 0x7B), ("L", "label"), "ctrl", source=_PULP),
    InsnSpec("lp.count", "LPC", _r(0, 2, 0x7B), ("L", "rs1"), "ctrl", source=_PULP),
    InsnSpec("lp.counti", "LPIMM", _r(0, 3, 0x7B), ("L", "uimm"), "ctrl", source=_PULP),
    InsnSpec("lp.setup", "LPR", _r(0, 4, 0x7B), ("L", "rs1", "label"), "ctrl", source=_PULP),
    InsnSpec("lp.setupi", "LPI", _r(0, 5, 0x7B), ("L", "count", "label"), "ctrl", source=_PULP),
    # ---- Zfinx / Zhinx
    InsnSpec("fmadd.s", "R4", 0x43 | _RM_DYN, ("rd", "rs1", "rs2", "rs3"), "fpu", source=_ZF),
    InsnSpec("fmadd.h", "R4", 0x04000043 | _RM_DYN, ("rd", "rs1", "rs2", "rs3"), "fpu", source=_ZF),
    InsnSpec("fadd.s", "RF", 0x53 | _RM_DYN, ("rd", "rs1", "rs2"), "fpu", source=_ZF),
    InsnSpec("fadd.h", "RF", 0x04000053 | _RM_DYN, ("rd", "rs1", "rs2"), "fpu", source=_ZF),
    InsnSpec("fmul.h", "RF", 0x14000053 | _RM_DYN, ("rd", "rs1", "rs2"), "fpu", source=_ZF),
    InsnSpec("fcvt.h.s", "RF1", 0x44000053 | _RM_DYN, ("rd", "rs1"), "fpu", source=_ZF),
    InsnSpec("fcvt.s.h", "RF1", 0x40200053, ("rd", "rs1"), "fpu", source=_ZF),
    InsnSpec("fcvt.s.wu", "RF1", 0xD0100053 | _RM_DYN, ("rd", "rs1"), "fpu", source=_ZF),
    # ---- smallFloat SIMD
    InsnSpec("vfadd.h", "R", 0x82002033, ("rd", "rs1", "rs2"), "fpu", source=_SF),
    InsnSpec("vfmul.h", "R", 0x86002033, ("rd", "rs1", "rs2"), "fpu", source=_SF),
    InsnSpec("vfmac.h", "R", 0x90002033, ("rd", "rs1", "rs2"), "fpu", reads_rd=True, source=_SF),
    InsnSpec("vfdotpex.s.h", "R", 0x96000033, ("rd", "rs1", "rs2"), "fpu", reads_rd=True, source=_SF),
)

INSTRUCTIONS: Mapping[str, InsnSpec] = {s.mnemonic: s for s in _TABLE}
"""Every instruction of the subset by mnemonic, in table order."""


def spec(mnemonic: str) -> InsnSpec:
    """The table entry of ``mnemonic``.

    Raises
    ------
    ValueError
        Not an instruction of the subset (the message lists them).
    """
    try:
        return INSTRUCTIONS[mnemonic]
    except KeyError:
        raise ValueError(f"unknown instruction {mnemonic!r}; valid: {', '.join(INSTRUCTIONS)}") from None


@dataclasses.dataclass(frozen=True)
class Decoded:
    """A decoded instruction word: its mnemonic and operand fields (:attr:`InsnSpec.fields`)."""

    mnemonic: str
    fields: dict[str, int]

    @property
    def spec(self) -> InsnSpec:
        return INSTRUCTIONS[self.mnemonic]


def _check(name: str, value: int, lo: int, hi: int, mnemonic: str, step: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi or value % step:
        extra = f", a multiple of {step}" if step > 1 else ""
        raise ValueError(f"{mnemonic}: {name} must be an integer in {lo}..{hi}{extra}, not {value!r}")
    return value


def encode(mnemonic: str, **fields: int) -> int:
    """The 32-bit word of ``mnemonic`` with operand ``fields`` (see :attr:`InsnSpec.fields`).

    Immediates are byte values as the assembler computes them: ``imm`` of ``B``/``J`` is the
    (even) PC offset, of ``U`` the 20-bit upper immediate, of ``SH`` the shift amount, of ``CSR``
    the CSR number; for the loop formats ``imm`` is the *halfword* field value (byte offset / 2)
    and ``count`` the ``lp.setupi`` count.

    Raises
    ------
    ValueError
        Unknown mnemonic, missing or extra fields, or a value out of its field's range.
    """
    s = spec(mnemonic)
    if set(fields) != set(s.fields):
        raise ValueError(f"{mnemonic} takes fields {', '.join(s.fields)}, not {', '.join(sorted(fields)) or 'none'}")
    w = s.match
    f = {k: v for k, v in fields.items()}
    for reg in ("rd", "rs1", "rs2", "rs3"):
        if reg in f:
            _check(reg, f[reg], 0, 31, mnemonic)
    rd, rs1, rs2 = f.get("rd", 0), f.get("rs1", 0), f.get("rs2", 0)
    fmt = s.fmt
    if fmt in ("R", "RF"):
        w |= rd << 7 | rs1 << 15 | rs2 << 20
    elif fmt == "R4":
        w |= rd << 7 | rs1 << 15 | rs2 << 20 | f["rs3"] << 27
    elif fmt == "RF1":
        w |= rd << 7 | rs1 << 15
    elif fmt == "I":
        imm = _check("imm", f["imm"], -2048, 2047, mnemonic)
        w |= rd << 7 | rs1 << 15 | (imm & 0xFFF) << 20
    elif fmt == "SH":
        w |= rd << 7 | rs1 << 15 | _check("shamt", f["imm"], 0, 31, mnemonic) << 20
    elif fmt == "S":
        imm = _check("imm", f["imm"], -2048, 2047, mnemonic) & 0xFFF
        w |= (imm & 0x1F) << 7 | rs1 << 15 | rs2 << 20 | (imm >> 5) << 25
    elif fmt == "B":
        imm = _check("offset", f["imm"], -4096, 4094, mnemonic, 2) & 0x1FFF
        w |= (imm >> 11 & 1) << 7 | (imm >> 1 & 0xF) << 8 | rs1 << 15 | rs2 << 20
        w |= (imm >> 5 & 0x3F) << 25 | (imm >> 12 & 1) << 31
    elif fmt == "U":
        w |= rd << 7 | _check("upper immediate", f["imm"], 0, 0xFFFFF, mnemonic) << 12
    elif fmt == "J":
        imm = _check("offset", f["imm"], -(1 << 20), (1 << 20) - 2, mnemonic, 2) & 0x1FFFFF
        w |= rd << 7 | (imm >> 12 & 0xFF) << 12 | (imm >> 11 & 1) << 20 | (imm >> 1 & 0x3FF) << 21
        w |= (imm >> 20 & 1) << 31
    elif fmt == "CSR":
        w |= rd << 7 | rs1 << 15 | _check("csr", f["imm"], 0, 0xFFF, mnemonic) << 20
    else:  # hardware loops
        w |= _check("loop index L", f["L"], 0, 1, mnemonic) << 7
        if fmt == "LPR":
            w |= rs1 << 15 | _check("end offset / 2", f["imm"], 0, 0xFFF, mnemonic) << 20
        elif fmt == "LPI":
            w |= _check("end offset / 2", f["imm"], 0, 31, mnemonic) << 15
            w |= _check("count", f["count"], 0, 0xFFF, mnemonic) << 20
        elif fmt == "LPIMM":
            w |= _check("immediate", f["imm"], 0, 0xFFF, mnemonic) << 20
        else:  # LPC
            w |= rs1 << 15
    return w


def _sext(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) & 1 else value


def decode(word: int) -> Decoded:
    """The instruction of a 32-bit ``word`` and its fields (the inverse of :func:`encode`).

    Raises
    ------
    ValueError
        The word is no instruction of the subset.
    """
    if not 0 <= word < 1 << 32:
        raise ValueError(f"an instruction word is 32 bits, not {word!r}")
    for s in _TABLE:
        if word & s.mask == s.match & s.mask:
            break
    else:
        raise ValueError(f"{word:#010x} is not an instruction of the MCU subset")
    rd, rs1, rs2 = word >> 7 & 31, word >> 15 & 31, word >> 20 & 31
    fmt = s.fmt
    f: dict[str, int]
    if fmt in ("R", "RF"):
        f = {"rd": rd, "rs1": rs1, "rs2": rs2}
    elif fmt == "R4":
        f = {"rd": rd, "rs1": rs1, "rs2": rs2, "rs3": word >> 27}
    elif fmt == "RF1":
        f = {"rd": rd, "rs1": rs1}
    elif fmt == "I":
        f = {"rd": rd, "rs1": rs1, "imm": _sext(word >> 20, 12)}
    elif fmt == "SH":
        f = {"rd": rd, "rs1": rs1, "imm": rs2}
    elif fmt == "S":
        f = {"rs1": rs1, "rs2": rs2, "imm": _sext((word >> 25) << 5 | rd, 12)}
    elif fmt == "B":
        imm = (word >> 31 & 1) << 12 | (word >> 7 & 1) << 11 | (word >> 25 & 0x3F) << 5 | (word >> 8 & 0xF) << 1
        f = {"rs1": rs1, "rs2": rs2, "imm": _sext(imm, 13)}
    elif fmt == "U":
        f = {"rd": rd, "imm": word >> 12}
    elif fmt == "J":
        imm = (word >> 31 & 1) << 20 | (word >> 12 & 0xFF) << 12 | (word >> 20 & 1) << 11 | (word >> 21 & 0x3FF) << 1
        f = {"rd": rd, "imm": _sext(imm, 21)}
    elif fmt == "CSR":
        f = {"rd": rd, "rs1": rs1, "imm": word >> 20}
    else:
        loop = word >> 7 & 1
        if fmt == "LPR":
            f = {"L": loop, "rs1": rs1, "imm": word >> 20}
        elif fmt == "LPI":
            f = {"L": loop, "count": word >> 20, "imm": rs1}
        elif fmt == "LPIMM":
            f = {"L": loop, "imm": word >> 20}
        else:
            f = {"L": loop, "rs1": rs1}
    return Decoded(s.mnemonic, f)
