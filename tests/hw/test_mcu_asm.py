"""The MCU assembler: syntax, pseudo-instructions, the hardware-loop convention and its errors."""

from __future__ import annotations

import pytest

from trainforge.errors import UsageError
from trainforge.hw.mcu import isa
from trainforge.hw.mcu.asm import AsmError, assemble


def _decoded(program):
    return [(d.mnemonic, d.fields) for d in map(isa.decode, program.words)]


def test_pseudo_instructions_expand_as_gnu_as_does():
    p = assemble(
        """
        li t0, 5
        li t1, 0x12345FFF      # lui + addi with a negative low part
        mv a1, a0
        nop
        ret
    """
    )
    assert _decoded(p) == [
        ("addi", {"rd": 5, "rs1": 0, "imm": 5}),
        ("lui", {"rd": 6, "imm": 0x12346}),
        ("addi", {"rd": 6, "rs1": 6, "imm": -1}),
        ("addi", {"rd": 11, "rs1": 10, "imm": 0}),
        ("addi", {"rd": 0, "rs1": 0, "imm": 0}),
        ("jalr", {"rd": 0, "rs1": 1, "imm": 0}),
    ]
    assert (0x12346 << 12) - 1 == 0x12345FFF


def test_labels_branches_and_jumps():
    p = assemble(
        """
    top:  addi t0, t0, -1
          bnez t0, top      # back 4 bytes
          beqz t0, done
          j top
    done: csrr a0, mhartid
    """
    )
    assert p.labels == {"top": 0, "done": 16}
    d = _decoded(p)
    assert d[1] == ("bne", {"rs1": 5, "rs2": 0, "imm": -4})
    assert d[2] == ("beq", {"rs1": 5, "rs2": 0, "imm": 8})
    assert d[3] == ("jal", {"rd": 0, "imm": -12})
    assert d[4] == ("csrrs", {"rd": 10, "rs1": 0, "imm": isa.CSR_MHARTID})


def test_hardware_loop_end_is_the_last_instruction():
    p = assemble(
        """
        lp.setupi 0, 64, last
        p.lw a1, 4(a0!)
        p.lw a2, 4(a3!)
  last: vfmac.h a4, a1, a2
        lp.setup 1, t0, last2
  last2: p.sw a4, 4(a5!)
    """
    )
    d = _decoded(p)
    # end offset / 2 from the lp.setupi: (12 - 0) / 2
    assert d[0] == ("lp.setupi", {"L": 0, "count": 64, "imm": 6})
    assert d[1] == ("p.lw", {"rd": 11, "rs1": 10, "imm": 4})
    assert d[4] == ("lp.setup", {"L": 1, "rs1": 5, "imm": 2})
    assert d[5] == ("p.sw", {"rs1": 15, "rs2": 14, "imm": 4})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("  addx t0, t0", r"line 1: 'addx t0, t0': unknown instruction 'addx'; valid: lui"),
        ("nop\n  add t0, t9, t1", r"line 2: .*'t9' is not a register \(x0-x31 or an ABI name"),
        ("  bnez t0, nowhere", r"undefined label 'nowhere'"),
        ("a:\na: nop", r"line 2: .*label 'a' is already defined"),
        ("  addi t0, t0, 4096", r"imm must be an integer in -2048..2047"),
        ("  p.lw t0, 4(a0)", r"memory operand must be imm\(rs1!\)"),
        ("  add t0, t1", r"add takes 3 operands: add rd, rs1, rs2"),
        ("  lp.setupi 0, 4, e\n" + "  nop\n" * 16 + "e: nop", r"lp.setupi reaches at most 62 bytes"),
    ],
)
def test_errors_name_line_text_and_what_is_valid(text, message):
    with pytest.raises(AsmError, match=message) as info:
        assemble(text)
    assert isinstance(info.value, UsageError)
    assert "\n" not in str(info.value)
