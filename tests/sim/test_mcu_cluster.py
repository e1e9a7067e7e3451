"""The MCU cluster RTL on Verilator: hand-written programs checked for results and for cycles.

Results against independent references (``models.fp`` in the program's order, explicit Python);
cycles against the cycle model (``CoreSim`` running the same program as an Instr/Loop tree) and,
for bank conflicts, against the arbitration rule worked out by hand. Two builds: one core with
``fpu_latency`` 2 (the FP delay line and RAW stalls), two cores sharing one FPU.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from trainforge.dataflow.mcu.cluster import ClusterConfig
from trainforge.dataflow.mcu.core import CoreSim, Instr, Loop, Timing
from trainforge.errors import ConfigError
from trainforge.hw.mcu.asm import assemble
from trainforge.hw.mcu.cluster import core_timing
from trainforge.models import fp
from trainforge.sim.mcu_bench import McuJob, run_programs

pytestmark = pytest.mark.verilator

BASE = 0x1000_0000
IMEM = 512
ONE = ClusterConfig(cores=1, l1_bytes=8192, l1_banks=4, fpu_latency=2)
TWO = ClusterConfig(cores=2, fpus=1, l1_bytes=8192, l1_banks=4, fork_cycles=10, barrier_cycles=3)


def _model_cycles(program, config: ClusterConfig) -> int:
    timing = Timing(
        load_latency=config.load_latency,
        fpu_latency=config.fpu_latency,
        branch_penalty=config.branch_penalty,
        fpu_interval=config.fpu_share(),
    )
    return CoreSim(timing).run(program).cycles


def ins(op, dst=None, src=(), unit="alu", inc=None, jump=False):
    """An Instr with list sources (short, for the program tables below)."""
    return Instr(op, dst=dst, src=tuple(src), unit=unit, inc=inc, jump=jump)


RET = ins("ret", src=("ra",), unit="ctrl", jump=True)

# ---- program 1: FP16 SIMD dot product with a hardware loop, a lane reduction and stores
DOT = """
    lw   t0, 0(a0)          # A
    lw   t1, 4(a0)          # B
    lw   t2, 8(a0)          # pairs
    lw   t3, 12(a0)         # C
    mv   t4, zero
    lp.setup 0, t2, last
    p.lw t5, 4(t0!)
    p.lw t6, 4(t1!)
last: vfmac.h t4, t5, t6    # load-use stall on t6
    srli a1, t4, 16         # fpu-raw stall (fpu_latency 2)
    fadd.h a2, t4, a1
    sh   a2, 0(t3)
    sw   t4, 4(t3)
    ret
"""


def _dot_model(pairs: int):
    return [
        ins("lw", "t0", ["a0"], "load"),
        ins("lw", "t1", ["a0"], "load"),
        ins("lw", "t2", ["a0"], "load"),
        ins("lw", "t3", ["a0"], "load"),
        ins("mv", "t4", ["zero"]),
        Loop(
            pairs,
            (
                ins("p.lw", "t5", ["t0"], "load", inc="t0"),
                ins("p.lw", "t6", ["t1"], "load", inc="t1"),
                ins("vfmac.h", "t4", ["t5", "t6", "t4"], "fpu"),
            ),
        ),
        ins("srli", "a1", ["t4"]),
        ins("fadd.h", "a2", ["t4", "a1"], "fpu"),
        ins("sh", None, ["a2", "t3"], "store"),
        ins("sw", None, ["t4", "t3"], "store"),
        RET,
    ]


def _dot_job(seed: int, pairs: int):
    rng = np.random.default_rng(seed)
    a = fp.from_float(rng.standard_normal(2 * pairs), "fp16").astype(np.uint16)
    b = fp.from_float(rng.standard_normal(2 * pairs), "fp16").astype(np.uint16)
    a_at, b_at, c_at = BASE + 0x100, BASE + 0x400, BASE + 0x700
    args = struct.pack("<4I", a_at, b_at, pairs, c_at)
    image = {BASE: args, a_at: a.tobytes(), b_at: b.tobytes()}
    # reference: per lane, fused multiply-adds in k order, then lane 0 + lane 1 (fadd.h)
    acc = [0, 0]
    for k in range(pairs):
        for lane in (0, 1):
            r, _ = fp.fma(int(a[2 * k + lane]), int(b[2 * k + lane]), acc[lane], fmt="fp16", rounding="rne")
            acc[lane] = int(r)
    total, _ = fp.add(acc[0], acc[1], fmt="fp16", rounding="rne")
    job = McuJob(words=assemble(DOT).words, tcdm_image=image, args_addr=BASE, read=[(c_at, 8)])
    return job, (int(total), acc[0] | acc[1] << 16)


# ---- program 2: integer loops (software loop around two nested hardware loops) and branches
NESTED = """
    li   a1, 0
    li   a2, 0
    li   a3, 0
    li   t0, 4
outer:
    lp.setupi 1, 3, e1
    addi a2, a2, 2
    lp.setupi 0, 5, e0
    add  a1, a1, a2
e0: addi a3, a3, 1
e1: mul  a4, a1, a3
    blt  a1, zero, skip     # not taken
    bge  a1, zero, skip     # taken: jumps over the next instruction
    addi a1, a1, 1000
skip:
    addi t0, t0, -1
    bnez t0, outer
    p.minu a5, a1, a4
    sw   a1, 0(a0)
    sw   a4, 4(a0)
    sw   a3, 8(a0)
    sw   a5, 12(a0)
    ret
"""


def _nested_model():
    body = (
        Loop(
            3,
            (
                ins("addi", "a2", ["a2"]),
                Loop(5, (ins("add", "a1", ["a1", "a2"]), ins("addi", "a3", ["a3"]))),
                ins("mul", "a4", ["a1", "a3"]),
            ),
        ),
        ins("blt", None, ["a1", "zero"], "ctrl"),
        ins("bge", None, ["a1", "zero"], "ctrl", jump=True),
    )
    tail = [ins("p.minu", "a5", ["a1", "a4"])] + [ins("sw", None, [r, "a0"], "store") for r in ("a1", "a4", "a3", "a5")]
    return [ins("li", "a1"), ins("li", "a2"), ins("li", "a3"), Loop(4, body, hw=False), *tail, RET]


def _nested_reference():
    a1 = a2 = a3 = a4 = 0
    for _ in range(4):
        for _ in range(3):
            a2 += 2
            for _ in range(5):
                a1 += a2
                a3 += 1
            a4 = a1 * a3
    return [a1, a4, a3, min(a1, a4)]


# ---- program 3: post-increment address reuse, FP conversions, packs and shuffles
MISC = """
    lw   t0, 0(a0)          # pointer to data
    p.lw t1, 4(t0!)         # t0 ready again the next cycle: no stall
    p.lw t2, 4(t0!)
    p.lhu t3, 2(t0!)
    fcvt.s.h a1, t1         # t1 (low half) to FP32
    fcvt.h.s a2, a1         # and back
    fcvt.s.wu a3, t3        # an unsigned integer to FP32
    pv.pack.h a4, t1, t2    # {t1.lo, t2.lo}
    pv.shuffle.h a5, t1, t3
    fmadd.s a6, a1, a1, a3
    sw   a1, 16(a0)
    sw   a2, 20(a0)
    sw   a3, 24(a0)
    sw   a4, 28(a0)
    sw   a5, 32(a0)
    sw   a6, 36(a0)
    sw   t0, 40(a0)
    ret
"""


def test_one_core_programs_are_exact_in_results_and_cycles():
    dots = [_dot_job(seed, pairs) for seed, pairs in ((1, 1), (2, 7), (3, 40))]
    t1, t2 = (int(x) for x in fp.from_float([1.5, -3.25], "fp16"))
    t3 = 0x9877  # lhu: zero-extended, so the shuffle selects t1.H[1] for lane 0 and t1.H[0] for lane 1
    misc_data = struct.pack("<IIH", t1 | 0xABCD0000, t2 | 0x1234_0000, t3)
    misc = McuJob(
        words=assemble(MISC).words,
        tcdm_image={BASE: struct.pack("<I", BASE + 0x200), BASE + 0x200: misc_data},
        read=[(BASE + 16, 28)],
    )
    nested = McuJob(words=assemble(NESTED).words, read=[(BASE, 16)])
    runs = run_programs([d[0] for d in dots] + [nested, misc], cluster=ONE, imem_words=IMEM)

    for (_job, (total, lanes)), run, pairs in zip(dots, runs, (1, 7, 40), strict=False):
        assert not run.timed_out
        stored_total, stored_lanes = struct.unpack("<HxxI", run.data[0])
        assert stored_total == total
        assert stored_lanes == lanes
        model = CoreSim(Timing(fpu_latency=2)).run(_dot_model(pairs))
        assert run.cycles == model.cycles == run.counters[0]["cycles"]
        c = run.counters[0]
        assert (c["instructions"], c["loads"], c["stores"], c["fp_ops"]) == (
            model.instructions,
            model.loads,
            model.stores,
            model.fp_ops,
        )
        assert {k: c[k] for k in ("load-use", "fpu-raw", "branch")} == {
            k: model.stalls[k] for k in ("load-use", "fpu-raw", "branch")
        }
        assert c["tcdm"] == 0

    run = runs[3]
    assert list(struct.unpack("<4I", run.data[0])) == _nested_reference()
    model = CoreSim(Timing(fpu_latency=2)).run(_nested_model())
    assert run.cycles == model.cycles
    assert run.counters[0]["instructions"] == model.instructions
    assert run.counters[0]["branch"] == model.stalls["branch"]

    run = runs[4]
    a1, a2, a3, a4, a5, a6, t0 = struct.unpack("<7I", run.data[0])
    want_a1 = int(fp.convert(int(t1), src_fmt="fp16", dst_fmt="fp32", rounding="rne")[0])
    assert a1 == want_a1
    assert a2 & 0xFFFF == int(t1)
    assert a2 >> 16 == (0xFFFF if int(t1) >> 15 else 0)
    assert a3 == int(np.float32(t3).view(np.uint32))
    assert a4 == (int(t1) << 16 | int(t2))
    assert a5 == (t1 << 16 | 0xABCD)  # shuffle.h: lane i <- rs1.H[rs2.H[i][0]]
    assert a6 == int(fp.fma(want_a1, want_a1, a3, fmt="fp32", rounding="rne")[0][()])
    assert t0 == BASE + 0x200 + 10


# ---- two cores: bank conflicts and the shared FPU
CONFLICT = """
    csrr t0, mhartid
    slli t0, t0, 4          # core c reads word 4c: bank 0 of 4 for every core
    add  t1, a0, t0
    lw   t2, 0(t1)
    lw   t2, 0(t1)
    lw   t2, 0(t1)
    lw   t2, 0(t1)
    ret
"""
FPSHARE = """
    vfmac.h a1, a2, a3
    vfmac.h a4, a2, a3
    vfmac.h a5, a2, a3
    ret
"""


def test_two_cores_bank_conflicts_and_shared_fpu_follow_the_rules():
    conflict, share = run_programs(
        [McuJob(words=assemble(CONFLICT).words), McuJob(words=assemble(FPSHARE).words)],
        cluster=TWO,
        imem_words=IMEM,
    )
    # both cores reach the loads in lock step (cycles 3..6); the bank grants core 0 first, so
    # core 1 is denied 4 times and loads in 7..10. ret: core 0 at 7 (halts 10), core 1 at 11 (halts 14)
    assert [c["tcdm"] for c in conflict.counters] == [0, 4]
    assert [c["cycles"] for c in conflict.counters] == [10, 14]
    assert conflict.cycles == TWO.fork_cycles + 14 + TWO.barrier_cycles
    # fpu_share = ceil(2 cores / 1 FPU) = 2: one FP issue every 2 cycles per core
    model = CoreSim(Timing(fpu_interval=2)).run(
        [ins("vfmac.h", r, ["a2", "a3", r], "fpu") for r in ("a1", "a4", "a5")] + [RET]
    )
    assert [c["cycles"] for c in share.counters] == [model.cycles] * 2
    assert [c["fpu-share"] for c in share.counters] == [model.stalls["fpu-share"]] * 2 == [2, 2]
    assert share.cycles == TWO.fork_cycles + model.cycles + TWO.barrier_cycles


def test_configurations_the_rtl_cannot_build_are_rejected():
    with pytest.raises(ConfigError, match="load_latency must be 2"):
        core_timing(ClusterConfig(cores=1, load_latency=3))
