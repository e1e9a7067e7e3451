"""The lowered kernel programs compute C = A . B: a functional run of the assembly text.

Each core's program is executed sequentially (cores share no data that another core writes) with the
instruction semantics of docs/mcu-core.md: integer RV32/Xpulp here, FP through the exact oracle
``models/fp.py`` (round to nearest even, per-lane rounding as ``hw/mcu/fp_simd.py``). The reference is
the float64 product of the same operands; the tolerance covers FP16 (or FP32) accumulation.
"""

import numpy as np
import pytest

from trainforge.dataflow.mcu.cluster_sim import EXIT, CoreState, decode, execute
from trainforge.dataflow.mcu.kernels import KERNELS
from trainforge.dataflow.mcu.program import TCDM_BASE, kernel_image
from trainforge.models import fp

L1 = 128 * 1024


def _h(x: int, lane: int) -> int:
    return (x >> (16 * lane)) & 0xFFFF


def _fma(a, b, c, fmt, src_fmt=None):
    return int(fp.fma(np.array([a]), np.array([b]), np.array([c]), fmt=fmt, rounding="rne", src_fmt=src_fmt)[0][0])


def _fp_op(op: str, rd: int, a: int, b: int) -> int:
    """FP / SIMD results on 32-bit register values (rd = the destination's old value)."""
    if op == "fmadd.s":
        raise AssertionError("handled with its third operand")
    if op == "vfmac.h":
        return _fma(_h(a, 0), _h(b, 0), _h(rd, 0), "fp16") | _fma(_h(a, 1), _h(b, 1), _h(rd, 1), "fp16") << 16
    if op == "vfmul.h":
        lanes = [
            int(fp.mul(np.array([_h(a, i)]), np.array([_h(b, i)]), fmt="fp16", rounding="rne")[0][0]) for i in (0, 1)
        ]
        return lanes[0] | lanes[1] << 16
    if op == "vfdotpex.s.h":
        t = _fma(_h(a, 0), _h(b, 0), rd, "fp32", "fp16")
        return _fma(_h(a, 1), _h(b, 1), t, "fp32", "fp16")
    if op == "fadd.h":
        return int(fp.add(np.array([_h(a, 0)]), np.array([_h(b, 0)]), fmt="fp16", rounding="rne")[0][0])
    if op == "fcvt.h.s":
        return int(fp.convert(np.array([a]), src_fmt="fp32", dst_fmt="fp16", rounding="rne")[0][0])
    if op == "fcvt.s.h":
        return int(fp.convert(np.array([_h(a, 0)]), src_fmt="fp16", dst_fmt="fp32", rounding="rne")[0][0])
    if op == "fcvt.s.wu":
        return int(fp.from_float(np.array([float(a)]), "fp32")[0])
    if op == "pv.pack.h":
        return _h(a, 0) << 16 | _h(b, 0)
    if op == "pv.shuffle.h":
        return _h(a, _h(b, 0) & 1) | _h(a, _h(b, 1) & 1) << 16
    if op == "pv.shuffle2.h":
        pick = [_h(a if _h(b, i) & 2 else rd, _h(b, i) & 1) for i in (0, 1)]
        return pick[0] | pick[1] << 16
    raise AssertionError(op)


def run_functional(image, cores: int) -> np.ndarray:
    """Execute every core's program on a TCDM image; return the image afterwards."""
    code = decode(image.asm)
    mem = bytearray(L1)
    rng = np.random.default_rng(1)
    word = np.uint32 if image.dtype == "fp32" else np.uint16
    fmt = "fp32" if image.dtype == "fp32" else "fp16"
    a = fp.from_float(rng.uniform(-1, 1, image.a_shape()), fmt).astype(word)
    b = fp.from_float(rng.uniform(-1, 1, image.b_shape()), fmt).astype(word)
    mem[: image.tcdm_bytes_needed] = image.build_tcdm(a, b).tobytes()
    for core in range(cores):
        regs = [0] * 32
        regs[1], regs[2], regs[10] = EXIT, TCDM_BASE + L1 - 256 * core, image.args_addr
        st = CoreState(regs=regs)
        steps = 0
        while st.pc >= 0:
            ins = code[st.pc]
            r = st.regs
            if ins.unit in ("load", "store"):
                base = r[ins.rs[-1] if ins.unit == "store" else ins.rs[0]]
                addr = base if ins.inc else (base + ins.imm) & 0xFFFFFFFF
                size = {"w": 4, "h": 2, "b": 1}[ins.op.removeprefix("p.")[1]]
                off = addr - TCDM_BASE
                assert 0 <= off <= L1 - size, (ins.text, hex(addr))
                assert addr % size == 0, (ins.text, hex(addr))
                if ins.unit == "store":
                    mem[off : off + size] = (r[ins.rs[0]] & ((1 << 8 * size) - 1)).to_bytes(size, "little")
                    value = None
                else:
                    value = int.from_bytes(mem[off : off + size], "little")
                    assert ins.op.removeprefix("p.") in ("lw", "lhu"), ins.op
            else:
                value = None
                if ins.unit == "fpu" or ins.op.startswith("pv."):
                    a_, b_ = (r[x] for x in (*ins.rs, 0, 0)[:2])
                    if ins.op in ("fmadd.s", "fmadd.h"):
                        f = "fp32" if ins.op == "fmadd.s" else "fp16"
                        mask = 0xFFFFFFFF if f == "fp32" else 0xFFFF
                        value = _fma(a_ & mask, b_ & mask, r[ins.rs[2]] & mask, f)
                    else:
                        value = _fp_op(ins.op, r[ins.rd], a_, b_)
            old_rd = ins.rd
            nxt, _ = execute(
                ins,
                st,
                {image.args_addr + 4 * i: int.from_bytes(image.args[4 * i : 4 * i + 4], "little") for i in range(7)},
                core,
            )
            if value is not None and old_rd:
                r[old_rd] = value & 0xFFFFFFFF
            st.pc = nxt
            steps += 1
            assert steps < 2_000_000
    return np.frombuffer(bytes(mem[: image.tcdm_bytes_needed]), dtype=np.uint8).copy(), a, b


CASES = [
    ("vm_naive", False, 1, 16, 12, 3),
    ("vm_SIMD_naive", False, 1, 15, 16, 4),  # K odd: the halfword k tail
    ("vm_T_SIMD", True, 1, 16, 12, 8),  # 8 cores, the last one idle-free but partial
    ("mm", False, 5, 6, 7, 2),
    ("mm_unroll_2x4", False, 5, 6, 9, 2),  # leftover rows and columns
    ("mm_unroll_2x4", True, 5, 7, 9, 1),
    ("mm_u2", True, 3, 7, 4, 2),
    ("mm_fp16_unroll_4x1", False, 7, 5, 3, 1),
    ("mm_fp16_SIMD_2x4", False, 3, 10, 6, 2),
    ("mm_fp16_SIMD_2x4", False, 1, 9, 6, 1),  # broadcast k tail
    ("mm_fp16_SIMD_2x4", True, 1, 10, 7, 1),  # leftover column
    ("mm_fp16_SIMD_4x8", False, 9, 8, 10, 2),
    ("mm_fp16_SIMD_4x8", True, 9, 8, 10, 3),
    ("mm_M_fp16_SIMD_4x8", True, 5, 8, 20, 2),
    ("mm_fp16_dotpex_2x4", False, 3, 10, 6, 2),
    ("mm_fp16_dotpex_2x4", False, 1, 9, 6, 1),
    ("mm_fp16_dotpex_4x8", False, 5, 10, 10, 2),
    ("mm_fp16_dotpex_4x8", True, 5, 10, 10, 2),
    ("mm_M_fp16_dotpex_6x8", True, 7, 10, 16, 2),  # 3x4 blocks + a leftover row
    ("mm_dw_fp16_dotpex_1x2", False, 1, 10, 6, 2),
]


@pytest.mark.parametrize(("name", "trans_b", "n", "k", "m", "cores"), CASES)
def test_program_computes_the_product(name, trans_b, n, k, m, cores):
    spec = KERNELS[name]
    groups = 3 if spec.parallel == "G" else 1
    image = kernel_image(name, n=n, k=k, m=m, trans_b=trans_b, dtype=spec.fmt, cores=cores, groups=groups)
    tcdm, a, b = run_functional(image, cores)
    fmt = "fp32" if spec.fmt == "fp32" else "fp16"
    af = fp.to_float(a, fmt)
    bf = fp.to_float(b, fmt)
    if trans_b:
        bf = np.swapaxes(bf, -1, -2)
    expected = af @ bf
    got = fp.to_float(image.read_c(tcdm), fmt)
    tol = 1e-5 if fmt == "fp32" else 2e-2
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol * max(1, k / 4))
