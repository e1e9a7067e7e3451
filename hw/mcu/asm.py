"""A two-pass assembler for the MCU core's subset, in PULP GCC's syntax.

>>> from trainforge.hw.mcu.asm import assemble
>>> prog = assemble('''
...     li   t0, 4            # a software loop
... loop:
...     addi t0, t0, -1
...     bnez t0, loop
...     ret
... ''')
>>> len(prog.words), prog.labels["loop"]
(4, 4)

Syntax: one instruction per line, any number of ``name:`` labels before it (or alone on a line),
``#`` comments; registers ``x0``-``x31`` or ABI names (``zero ra sp gp tp t0-t6 s0-s11 fp a0-a7``);
immediates decimal or hex (``0x..``), signed; memory operands ``imm(rs1)``, post-increment
``imm(rs1!)`` (Xpulp ``p.lw rd, 4(a0!)``). Pseudo-instructions: ``li`` (``addi``, or ``lui`` +
``addi`` when the value does not fit 12 bits), ``mv``, ``j``, ``jal label`` (rd = ``ra``), ``jr``,
``ret``, ``nop``, ``bnez``, ``beqz``, ``csrr rd, mhartid``.

Hardware loops: ``lp.setup L, rs1, end`` and ``lp.setupi L, count, end`` where ``end`` is the label
of the loop's **last** instruction (the RI5CY / CV32E40P v1 convention; the loop starts at the
instruction after the ``lp.setup``). ``lp.starti L, label`` / ``lp.endi L, label`` take the label of
the first / last instruction.

Every mistake raises :class:`AsmError`, one line naming the line number, its text, the problem and
what is valid.
"""

from __future__ import annotations

import dataclasses
import re

from trainforge.errors import UsageError
from trainforge.hw.mcu import isa

__all__ = ["ABI_NAMES", "PSEUDO", "AsmError", "Program", "assemble", "parse_register"]

ABI_NAMES: dict[str, int] = {
    "zero": 0,
    "ra": 1,
    "sp": 2,
    "gp": 3,
    "tp": 4,
    "t0": 5,
    "t1": 6,
    "t2": 7,
    "s0": 8,
    "fp": 8,
    "s1": 9,
    **{f"a{i}": 10 + i for i in range(8)},
    **{f"s{i}": 16 + i for i in range(2, 12)},
    **{f"t{i}": 25 + i for i in range(3, 7)},
}
"""ABI register names to register numbers."""

PSEUDO = ("li", "mv", "j", "jr", "ret", "nop", "bnez", "beqz", "csrr")
"""Pseudo-instructions the assembler expands."""

_CSRS = {"mhartid": isa.CSR_MHARTID}
_LABEL_RE = re.compile(r"^([A-Za-z_.$][\w.$]*)\s*:")
_NAME_RE = re.compile(r"^[A-Za-z_.$][\w.$]*$")
_MEM_RE = re.compile(r"^(.*)\((\s*[\w$]+\s*)(!?)\)$")


class AsmError(UsageError):
    """An assembly mistake; the message names the line, its text and what is valid."""


@dataclasses.dataclass(frozen=True)
class Program:
    """An assembled program.

    Attributes
    ----------
    words : list of int
        Instruction words; word ``i`` is at byte address ``4 * i``.
    labels : dict of str to int
        Byte address of every label.
    listing : list of str
        ``address: word  source`` per instruction (pseudo-instructions show their expansion).
    source_lines : list of int
        The 1-based source line of each word.
    """

    words: list[int]
    labels: dict[str, int]
    listing: list[str]
    source_lines: list[int]

    def __len__(self) -> int:
        return len(self.words)

    def to_bytes(self) -> bytes:
        """The image as little-endian bytes (for the instruction memory)."""
        return b"".join(w.to_bytes(4, "little") for w in self.words)


def parse_register(text: str) -> int:
    """Register number of ``x0``..``x31`` or an ABI name; ``ValueError`` otherwise."""
    name = text.strip().lower()
    if name in ABI_NAMES:
        return ABI_NAMES[name]
    if re.fullmatch(r"x([0-9]|[12][0-9]|3[01])", name):
        return int(name[1:])
    raise ValueError(f"{text.strip()!r} is not a register (x0-x31 or an ABI name such as a0, t1, sp)")


def _int(text: str) -> int:
    t = text.strip().lower().replace("_", "")
    try:
        return int(t, 0)
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not an integer (decimal or 0x hex)") from None


def _split_operands(text: str) -> list[str]:
    return [] if not text.strip() else [p.strip() for p in text.split(",")]


@dataclasses.dataclass
class _Line:
    number: int
    text: str
    mnemonic: str
    operands: list[str]
    address: int = 0


def _li_size(value: int) -> int:
    return 1 if -2048 <= value <= 2047 else 2


def _size(line: _Line) -> int:
    if line.mnemonic == "li":
        if len(line.operands) != 2:
            raise ValueError("li takes 2 operands: rd, imm")
        value = _int(line.operands[1])
        if not -(1 << 31) <= value < 1 << 32:
            raise ValueError(f"li immediate must fit 32 bits, not {value}")
        return _li_size(value if value < 1 << 31 else value - (1 << 32))
    return 1


def assemble(text: str) -> Program:
    """Assemble ``text`` (see the module docstring for the syntax) into a :class:`Program`.

    Raises
    ------
    AsmError
        Unknown mnemonic, bad operand, undefined or duplicate label, out-of-range immediate.
    """
    lines: list[_Line] = []
    labels: dict[str, int] = {}
    address = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        body = raw.split("#", 1)[0].strip()

        def fail(problem: str, number: int = number, raw: str = raw) -> AsmError:
            return AsmError(f"line {number}: {raw.strip()!r}: {problem}")

        while (m := _LABEL_RE.match(body)) is not None:
            name = m.group(1)
            if name in labels:
                raise fail(f"label {name!r} is already defined")
            labels[name] = address
            body = body[m.end() :].strip()
        if not body:
            continue
        mnemonic, _, rest = body.partition(" ")
        if "\t" in mnemonic:
            mnemonic, _, more = mnemonic.partition("\t")
            rest = more + " " + rest
        mnemonic = mnemonic.lower()
        if mnemonic not in isa.INSTRUCTIONS and mnemonic not in PSEUDO:
            raise fail(
                f"unknown instruction {mnemonic!r}; valid: {', '.join(isa.INSTRUCTIONS)} "
                f"and the pseudo-instructions {', '.join(PSEUDO)}"
            )
        line = _Line(number, raw.strip(), mnemonic, _split_operands(rest), address)
        try:
            address += 4 * _size(line)
        except ValueError as exc:
            raise fail(str(exc)) from None
        lines.append(line)

    words: list[int] = []
    listing: list[str] = []
    source_lines: list[int] = []
    for line in lines:
        try:
            expanded = _expand(line, labels)
        except ValueError as exc:
            raise AsmError(f"line {line.number}: {line.text!r}: {exc}") from None
        for k, (mnemonic, fields) in enumerate(expanded):
            try:
                word = isa.encode(mnemonic, **fields)
            except ValueError as exc:
                raise AsmError(f"line {line.number}: {line.text!r}: {exc}") from None
            pc = line.address + 4 * k
            words.append(word)
            source_lines.append(line.number)
            shown = line.text if k == 0 else f"  ({mnemonic})"
            listing.append(f"{pc:06x}: {word:08x}  {shown}")
    return Program(words, labels, listing, source_lines)


def _expected(mnemonic: str, operands: tuple[str, ...]) -> str:
    names = {"mem": "imm(rs1)", "memi": "imm(rs1!)", "label": "label", "shamt": "shamt"}
    return f"{mnemonic} {', '.join(names.get(o, o) for o in operands)}"


def _target(text: str, labels: dict[str, int], pc: int) -> int:
    name = text.strip()
    if name in labels:
        return labels[name] - pc
    if _NAME_RE.match(name):
        raise ValueError(f"undefined label {name!r}; defined: {', '.join(labels) or 'none'}")
    return _int(name)  # a literal PC offset


def _mem(text: str, post: bool) -> tuple[int, int]:
    m = _MEM_RE.match(text.strip())
    want = "imm(rs1!)" if post else "imm(rs1)"
    if m is None or bool(m.group(3)) != post:
        raise ValueError(f"memory operand must be {want}, not {text.strip()!r}")
    offset = m.group(1).strip()
    return (_int(offset) if offset else 0), parse_register(m.group(2))


def _expand(line: _Line, labels: dict[str, int]) -> list[tuple[str, dict[str, int]]]:
    """The (mnemonic, fields) words of one source line."""
    op, ops, pc = line.mnemonic, line.operands, line.address

    def need(n: int, form: str) -> None:
        if len(ops) != n:
            raise ValueError(f"{op} takes {n} operand{'s' * (n != 1)}: {form}")

    reg = parse_register
    if op == "li":
        rd, value = reg(ops[0]), _int(ops[1])
        value = value - (1 << 32) if value >= 1 << 31 else value
        if _li_size(value) == 1:
            return [("addi", {"rd": rd, "rs1": 0, "imm": value})]
        lo = (value & 0xFFF) - ((value & 0x800) << 1)
        hi = ((value - lo) >> 12) & 0xFFFFF
        return [("lui", {"rd": rd, "imm": hi}), ("addi", {"rd": rd, "rs1": rd, "imm": lo})]
    if op == "mv":
        need(2, "mv rd, rs")
        return [("addi", {"rd": reg(ops[0]), "rs1": reg(ops[1]), "imm": 0})]
    if op == "nop":
        need(0, "nop")
        return [("addi", {"rd": 0, "rs1": 0, "imm": 0})]
    if op == "ret":
        need(0, "ret")
        return [("jalr", {"rd": 0, "rs1": 1, "imm": 0})]
    if op == "jr":
        need(1, "jr rs")
        return [("jalr", {"rd": 0, "rs1": reg(ops[0]), "imm": 0})]
    if op == "j":
        need(1, "j label")
        return [("jal", {"rd": 0, "imm": _target(ops[0], labels, pc)})]
    if op in ("bnez", "beqz"):
        need(2, f"{op} rs, label")
        base = "bne" if op == "bnez" else "beq"
        return [(base, {"rs1": reg(ops[0]), "rs2": 0, "imm": _target(ops[1], labels, pc)})]
    if op == "csrr":
        need(2, "csrr rd, mhartid")
        csr = ops[1].strip().lower()
        number = _CSRS[csr] if csr in _CSRS else _int(csr)
        return [("csrrs", {"rd": reg(ops[0]), "rs1": 0, "imm": number})]
    if op == "jal" and len(ops) == 1:
        return [("jal", {"rd": 1, "imm": _target(ops[0], labels, pc)})]
    if op == "jalr" and len(ops) == 1:
        return [("jalr", {"rd": 1, "rs1": reg(ops[0]), "imm": 0})]

    s = isa.spec(op)
    form = _expected(op, s.operands)
    operands = s.operands
    if op == "csrrs":
        operands = ("rd", "csr", "rs1")
    need(len(operands), form)
    fields: dict[str, int] = {}
    for kind, text in zip(operands, ops, strict=True):
        if kind in ("rd", "rs1", "rs2", "rs3"):
            fields[kind] = reg(text)
        elif kind in ("imm", "uimm", "shamt"):
            fields["imm"] = _int(text)
        elif kind in ("mem", "memi"):
            fields["imm"], fields["rs1"] = _mem(text, kind == "memi")
        elif kind == "csr":
            t = text.strip().lower()
            fields["imm"] = _CSRS[t] if t in _CSRS else _int(t)
        elif kind == "L":
            fields["L"] = _int(text)
        elif kind == "count":
            fields["count"] = _int(text)
        elif kind == "label":
            offset = _target(text, labels, pc)
            if s.fmt in ("LPR", "LPI", "LPIMM"):
                if offset <= 0 or offset % 4:
                    raise ValueError(f"{op}: the target must be a later instruction, not {offset:+d} bytes away")
                if s.fmt == "LPI" and offset > 62:
                    raise ValueError(
                        f"lp.setupi reaches at most 62 bytes (15 instructions) ahead, not {offset}; use lp.setup"
                    )
                fields["imm"] = offset // 2
            else:
                fields["imm"] = offset
    if op == "lp.counti":
        fields = {"L": fields["L"], "imm": fields["imm"]}
    if op in ("p.sw", "p.sh", "sw", "sh", "sb") and "rd" in fields:
        fields.pop("rd")
    return [(op, fields)]
