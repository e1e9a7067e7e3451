"""cocotb regression of the MCU FP16 SIMD datapath (fp-simd) on Verilator, judged by the exact oracle.

Every operation in every rounding mode on corner and random vectors (``TRAINFORGE_FP_RANDOM`` per
operation and mode, default 100,000), the two lanes filled from independent permutations so that
the OR of per-lane flags is exercised. Expected values compose :mod:`trainforge.models.fp` exactly
as the datapath is specified: per lane for the vector forms, two expanding FMAs in lane order for
``vfdotpex.s.h``.
"""

from __future__ import annotations

import os
import time

import cocotb
import numpy as np

from trainforge.hw.fp.ieee import ROUNDING_MODE_NAMES
from trainforge.hw.mcu.fp_simd import FPSimdConfig, SimdOp, simd_request_layout, simd_response_layout
from trainforge.models import fp
from trainforge.sim.bulk import run_bulk
from trainforge.sim.packing import PayloadCodec
from trainforge.sim.testbenches.common import load_config, random_seed, record_metrics

RANDOM_ENV = "TRAINFORGE_FP_RANDOM"
DEFAULT_RANDOM = 100_000
OPS = {
    "vfadd.h": SimdOp.VFADD_H,
    "vfsub.h": SimdOp.VFSUB_H,
    "vfmul.h": SimdOp.VFMUL_H,
    "vfmac.h": SimdOp.VFMAC_H,
    "vfdotpex.s.h": SimdOp.VFDOTPEX_S_H,
    "fmadd.s": SimdOp.FMADD_S,
}
LANE_FAMILY = {"vfadd.h": "add", "vfsub.h": "add", "vfmul.h": "mul", "vfmac.h": "fma"}


def _two_lanes(operands: tuple[np.ndarray, ...], rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each operand as (lane 0, lane 1): lane 1 is an independent permutation of the same set."""
    perm = rng.permutation(len(operands[0]))
    return [(x, x[perm]) for x in operands]


def expected(op: str, lanes, rounding: str, lane_fmt: str) -> tuple[np.ndarray, np.ndarray]:
    if op == "fmadd.s":
        (a, _), (b, _), (c, _) = lanes
        return fp.fma(a, b, c, fmt="fp32", rounding=rounding)
    if op == "vfdotpex.s.h":
        (a0, a1), (b0, b1), (c, _) = lanes
        partial, f0 = fp.fma(a0, b0, c, fmt="fp32", rounding=rounding, src_fmt=lane_fmt)
        result, f1 = fp.fma(a1, b1, partial, fmt="fp32", rounding=rounding, src_fmt=lane_fmt)
        return result, f0 | f1
    results, flags = [], []
    for i in range(2):
        args = [pair[i] for pair in lanes]
        if op in ("vfadd.h", "vfsub.h"):
            r, f = fp.add(*args, fmt=lane_fmt, rounding=rounding, subtract=op == "vfsub.h")
        elif op == "vfmul.h":
            r, f = fp.mul(*args, fmt=lane_fmt, rounding=rounding)
        else:
            r, f = fp.fma(*args, fmt=lane_fmt, rounding=rounding)
        results.append(r)
        flags.append(f)
    return results[0] | (results[1] << np.uint64(16)), flags[0] | flags[1]


def _registers(op: str, lanes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """rs1, rs2, rs3 as 32-bit patterns."""
    if op == "fmadd.s":
        return lanes[0][0], lanes[1][0], lanes[2][0]
    if op == "vfdotpex.s.h":
        (a0, a1), (b0, b1), (c, _) = lanes
        return a0 | (a1 << np.uint64(16)), b0 | (b1 << np.uint64(16)), c
    packed = [lo | (hi << np.uint64(16)) for lo, hi in lanes]
    zero = np.zeros_like(packed[0])
    return packed[0], packed[1], packed[2] if len(packed) > 2 else zero


async def _check(dut, name: str, operands_for, *, valid_pct: int = 100, ready_pct: int = 100) -> None:
    config = load_config(FPSimdConfig)
    request, response = PayloadCodec(simd_request_layout()), PayloadCodec(simd_response_layout())
    rng = np.random.default_rng(random_seed() & 0xFFFF_FFFF)
    parts, wants = [], []
    for op in OPS:
        if op in LANE_FAMILY:
            operands = operands_for(LANE_FAMILY[op], config.lane_fmt, None)
        elif op == "vfdotpex.s.h":
            operands = operands_for("fma", "fp32", config.lane_fmt)
        else:
            operands = operands_for("fma", "fp32", None)
        lanes = _two_lanes(operands, rng)
        rs1, rs2, rs3 = _registers(op, lanes)
        for rounding in fp.ROUNDING_MODES:
            fields = {
                ("rs1",): rs1,
                ("rs2",): rs2,
                ("rs3",): rs3,
                ("op",): np.uint64(OPS[op].value),
                ("rm",): np.uint64(ROUNDING_MODE_NAMES[rounding].value),
            }
            parts.append(request.pack_records(fields, len(rs1)))
            wants.append((op, rounding, rs1, rs2, rs3, *expected(op, lanes, rounding, config.lane_fmt)))
    records = np.concatenate(parts)
    start = time.perf_counter()
    out, cycles = await run_bulk(
        dut, records, out_bits=response.width, valid_pct=valid_pct, ready_pct=ready_pct, seed=random_seed()
    )
    sim_s = time.perf_counter() - start
    got_result, got_flags = response.unpack_records(out, [("result",), ("flags",)])
    offset, bad, lines = 0, 0, []
    for op, rounding, rs1, rs2, rs3, want_result, want_flags in wants:
        sl = slice(offset, offset + len(rs1))
        wrong = np.flatnonzero((got_result[sl] != want_result) | (got_flags[sl] != want_flags))
        bad += len(wrong)
        for i in wrong[: max(0, 5 - len(lines))]:
            lines.append(
                f"{op} {rounding} rs1={int(rs1[i]):#010x} rs2={int(rs2[i]):#010x} rs3={int(rs3[i]):#010x}: expected "
                f"{int(want_result[i]):#010x} {fp.flag_names(int(want_flags[i])) or '-'}, got "
                f"{int(got_result[sl][i]):#010x} {fp.flag_names(int(got_flags[sl][i])) or '-'}"
            )
        offset += len(rs1)
    record_metrics(name, cycles=cycles, sim_s=sim_s, vectors=len(records), vectors_per_s=len(records) / sim_s)
    assert bad == 0, f"{bad} of {len(records)} vectors differ from the oracle:\n" + "\n".join(lines)


@cocotb.test()
async def corners_every_op_and_rounding_mode(dut):
    """The oracle's corner sets, both lanes, every operation and rounding mode."""
    await _check(
        dut,
        "corners_every_op_and_rounding_mode",
        lambda family, fmt, src: fp.corner_vectors(family, fmt, src_fmt=src, seed=2),
    )


@cocotb.test()
async def random_every_op_and_rounding_mode(dut):
    count = int(os.environ.get(RANDOM_ENV, DEFAULT_RANDOM))
    seed = random_seed() & 0xFFFF_FFFF
    await _check(
        dut,
        "random_every_op_and_rounding_mode",
        lambda family, fmt, src: fp.random_operands(family, count, fmt=fmt, seed=seed, src_fmt=src),
    )


@cocotb.test()
async def stalls_and_gaps(dut):
    seed = random_seed() & 0xFFFF_FFFF
    await _check(
        dut,
        "stalls_and_gaps",
        lambda family, fmt, src: fp.random_operands(family, 2_000, fmt=fmt, seed=seed, src_fmt=src),
        valid_pct=70,
        ready_pct=60,
    )
