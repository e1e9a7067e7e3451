"""The MCU ISA table: encode/decode round trips and encodings checked against the published values."""

from __future__ import annotations

import random

import pytest

from trainforge.hw.mcu import isa


def _random_fields(s: isa.InsnSpec, rng: random.Random) -> dict[str, int]:
    ranges = {
        "I": (-2048, 2047, 1),
        "S": (-2048, 2047, 1),
        "SH": (0, 31, 1),
        "B": (-4096, 4094, 2),
        "U": (0, 0xFFFFF, 1),
        "J": (-(1 << 20), (1 << 20) - 2, 2),
        "CSR": (0, 0xFFF, 1),
        "LPR": (0, 0xFFF, 1),
        "LPI": (0, 31, 1),
        "LPIMM": (0, 0xFFF, 1),
    }
    fields = {}
    for name in s.fields:
        if name in ("rd", "rs1", "rs2", "rs3"):
            fields[name] = rng.randrange(32)
        elif name == "L":
            fields[name] = rng.randrange(2)
        elif name == "count":
            fields[name] = rng.randrange(0x1000)
        else:
            lo, hi, step = ranges[s.fmt]
            fields[name] = rng.randrange(lo, hi + 1, step)
    return fields


@pytest.mark.parametrize("mnemonic", list(isa.INSTRUCTIONS))
def test_every_instruction_round_trips(mnemonic):
    rng = random.Random(mnemonic)
    s = isa.spec(mnemonic)
    for _ in range(200):
        fields = _random_fields(s, rng)
        word = isa.encode(mnemonic, **fields)
        decoded = isa.decode(word)
        assert decoded.mnemonic == mnemonic
        assert decoded.fields == fields
        assert isa.encode(mnemonic, **decoded.fields) == word


def test_no_two_entries_overlap():
    specs = list(isa.INSTRUCTIONS.values())
    for i, s in enumerate(specs):
        for t in specs[i + 1 :]:
            common = s.mask & t.mask
            assert (s.match ^ t.match) & common, f"{s.mnemonic} and {t.mnemonic} overlap"


@pytest.mark.parametrize(
    ("mnemonic", "fields", "word"),
    [
        # RISC-V unprivileged spec / GNU as: ret = jalr x0, 0(ra); csrr a3, mhartid; nop
        ("jalr", {"rd": 0, "rs1": 1, "imm": 0}, 0x00008067),
        ("csrrs", {"rd": 13, "rs1": 0, "imm": 0xF14}, 0xF14026F3),
        ("addi", {"rd": 0, "rs1": 0, "imm": 0}, 0x00000013),
        # pulp riscv-binutils-gdb include/opcode/riscv-opc.h: MATCH_LWPOST 0x200b (I-type, custom-0)
        ("p.lw", {"rd": 0, "rs1": 0, "imm": 0}, 0x0000200B),
        ("p.sw", {"rs1": 0, "rs2": 0, "imm": 0}, 0x0000202B),  # MATCH_SWPOST
        ("p.minu", {"rd": 0, "rs1": 0, "rs2": 0}, 0x04005033),  # MATCH_MINU
        ("p.mac", {"rd": 0, "rs1": 0, "rs2": 0}, 0x42000033),  # MATCH_MAC32
        ("pv.shuffle2.h", {"rd": 0, "rs1": 0, "rs2": 0}, 0xC8000057),  # MATCH_V_OP_SHUFFLE2 | H_VV
        ("pv.pack.h", {"rd": 0, "rs1": 0, "rs2": 0}, 0xD0000057),  # MATCH_V_OP_PACK | H_VV
        ("lp.setupi", {"L": 0, "count": 0, "imm": 0}, 0x0000507B),  # MATCH_HWLP_SETUPI
        ("lp.setup", {"L": 1, "rs1": 0, "imm": 0}, 0x000040FB),  # MATCH_HWLP_SETUP, L in bit 7
        # smallFloat: MATCH_VFMAC_H 0x90002033, MATCH_VFDOTPEX_S_H 0x96000033
        ("vfmac.h", {"rd": 0, "rs1": 0, "rs2": 0}, 0x90002033),
        ("vfdotpex.s.h", {"rd": 0, "rs1": 0, "rs2": 0}, 0x96000033),
        # Zfh: MATCH_FCVT_S_H 0x40200053 (rm 0), MATCH_FADD_H 0x04000053 with rm = dyn
        ("fcvt.s.h", {"rd": 0, "rs1": 0}, 0x40200053),
        ("fadd.h", {"rd": 0, "rs1": 0, "rs2": 0}, 0x04007053),
        # a full word: p.lw a1, 4(a0!) = imm 4, rs1 a0 (10), funct3 2, rd a1 (11), opcode 0x0b
        ("p.lw", {"rd": 11, "rs1": 10, "imm": 4}, 0x0045258B),
    ],
)
def test_encodings_match_the_published_values(mnemonic, fields, word):
    assert isa.encode(mnemonic, **fields) == word
    assert isa.decode(word).mnemonic == mnemonic


def test_bad_arguments_name_the_problem():
    with pytest.raises(ValueError, match="unknown instruction 'foo'"):
        isa.encode("foo")
    with pytest.raises(ValueError, match=r"imm must be an integer in -2048\.\.2047"):
        isa.encode("addi", rd=1, rs1=1, imm=5000)
    with pytest.raises(ValueError, match="takes fields rd, rs1, rs2"):
        isa.encode("add", rd=1, rs1=2)
    with pytest.raises(ValueError, match="not an instruction of the MCU subset"):
        isa.decode(0xFFFFFFFF)
