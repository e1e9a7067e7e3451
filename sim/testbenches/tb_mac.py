"""cocotb regression of the PE multiply-accumulate (:class:`~trainforge.hw.fp.mac.MacUnit`) on Verilator, in bulk.

The unit has no handshake, so :class:`MacStream` puts it between two streams for the bulk DPI
driver (:mod:`trainforge.sim.bulk`); the same wrapper around the generic FMA gives the speed to
compare with. Every result is judged bit for bit by the exact oracle
``trainforge.models.fp.fma(..., fmt="fp32", rounding="rne")``.

Environment: ``TRAINFORGE_MAC_SRC_FMT`` (``fp16`` or ``bf16``), ``TRAINFORGE_MAC_RANDOM`` (random
vectors, default 2,000,000).
"""

from __future__ import annotations

import os
import time

import cocotb
import numpy as np
from amaranth.hdl import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from trainforge.hw.fp.fma import FMA, FMAConfig
from trainforge.hw.fp.ieee import FMAOp, RoundingMode
from trainforge.hw.fp.mac import MacUnit
from trainforge.models import fp
from trainforge.sim.bulk import run_bulk
from trainforge.sim.testbenches.common import random_seed, record_metrics

__all__ = ["MacStream", "corner_triples", "mismatches", "near_ties", "pack_requests"]

SRC_ENV = "TRAINFORGE_MAC_SRC_FMT"
RANDOM_ENV = "TRAINFORGE_MAC_RANDOM"
DEFAULT_RANDOM = 2_000_000


class MacStream(wiring.Component):
    """A combinational MAC between a request stream (``a``, ``b``, ``c``) and a response stream (``result``).

    Parameters
    ----------
    src_fmt : {"fp16", "bf16"}
    unit : {"mac", "fma"}
        :class:`MacUnit`, or the generic :class:`~trainforge.hw.fp.fma.FMA` (FMADD, RNE) for comparison.
    """

    def __init__(self, *, src_fmt: str, unit: str = "mac") -> None:
        if unit not in ("mac", "fma"):
            raise ValueError(f"unit must be 'mac' or 'fma', not {unit!r}")
        self._src_fmt, self._unit = src_fmt, unit
        request = data.StructLayout({"a": 16, "b": 16, "c": 32})
        response = data.StructLayout({"result": 32})
        super().__init__({"request": In(stream.Signature(request)), "response": Out(stream.Signature(response))})

    def elaborate(self, platform) -> Module:
        m = Module()
        req = self.request.payload
        m.d.comb += [self.response.valid.eq(self.request.valid), self.request.ready.eq(self.response.ready)]
        if self._unit == "mac":
            mac = m.submodules.mac = MacUnit(src_fmt=self._src_fmt)
            m.d.comb += [mac.a.eq(req.a), mac.b.eq(req.b), mac.c.eq(req.c), self.response.payload.result.eq(mac.result)]
        else:
            fma = m.submodules.fma = FMA(config=FMAConfig(fmt="fp32", src_fmt=self._src_fmt, pipeline_stages=0))
            m.d.comb += [
                fma.request.valid.eq(1),
                fma.response.ready.eq(1),
                fma.request.payload.a.eq(req.a),
                fma.request.payload.b.eq(req.b),
                fma.request.payload.c.eq(req.c),
                fma.request.payload.op.eq(FMAOp.FMADD),
                fma.request.payload.rm.eq(RoundingMode.RNE),
                self.response.payload.result.eq(fma.response.payload.result),
            ]
        return m


def pack_requests(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """(n, 2) uint32 bulk records of :class:`MacStream` requests: ``a | b << 16``, then ``c``."""
    a, b, c = (np.asarray(x, dtype=np.uint64) for x in (a, b, c))
    return np.stack([(a | (b << np.uint64(16))).astype("<u4"), c.astype("<u4")], axis=1)


def near_ties(src_fmt: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``a * b + c`` next to a rounding midpoint of FP32, with ``c`` reaching far below it.

    ``c`` is +/- half an FP32 ulp of the exact product, scaled by ``1``, ``1 + 2**-23`` or
    ``1 - 2**-24``: an exact tie, or one broken only by ``c``'s lowest bits, which an adder must
    keep as a sticky bit however far they fall below the product.
    """
    rng = np.random.default_rng(seed)

    def finite_nonzero() -> np.ndarray:
        bits = fp.random_vectors(4 * n, src_fmt, seed=int(rng.integers(1 << 31)))
        value = fp.to_float(bits, src_fmt)
        return bits[np.isfinite(value) & (value != 0)]

    a, b = finite_nonzero(), finite_nonzero()
    n = min(n, len(a), len(b))
    a, b = a[:n], b[:n]
    # a quarter are products of two small subnormals (a significand under 2**6: FP32's midpoints then
    # lie within reach of c's low bits)
    small = rng.random(n) < 0.25
    for x in (a, b):
        tiny = rng.integers(1, 1 << rng.integers(1, 4, n), dtype=np.int64)
        sign = rng.integers(0, 2, n, dtype=np.int64) << 15  # FP16 and BF16 alike
        x[small] = (tiny | sign)[small].astype(x.dtype)
    product = fp.to_float(a, src_fmt) * fp.to_float(b, src_fmt)  # exact in float64 (at most 22 bits)
    with np.errstate(all="ignore"):
        half_ulp = np.ldexp(1.0, (np.floor(np.log2(np.abs(product))) - 24).astype(np.int32))
    scale = rng.choice([1.0, 1.0 + 2.0**-23, 1.0 - 2.0**-24], n) * rng.choice([-1.0, 1.0], n)
    c = fp.from_float(half_ulp * scale, "fp32")
    return a.astype(np.uint64), b.astype(np.uint64), c.astype(np.uint64)


def corner_triples(src_fmt: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (a, b, c) of the oracle's corner values, its targeted FMA families (ties, cancellation,
    edges) and :func:`near_ties`."""
    sv, cv = fp.corner_values(src_fmt), fp.corner_values("fp32")
    grid = [g.reshape(-1) for g in np.meshgrid(sv, sv, cv, indexing="ij")]
    families = fp.corner_vectors("fma", "fp32", src_fmt=src_fmt, seed=seed)
    ties = near_ties(src_fmt, 20_000, seed)
    return tuple(np.concatenate(parts).astype(np.uint64) for parts in zip(grid, families, ties, strict=True))


def mismatches(src_fmt: str, a, b, c, got, limit: int = 8) -> tuple[int, list[str]]:
    """How many results ``got`` differ from the exact oracle, and up to ``limit`` of them described."""
    a, b, c, got = (np.asarray(x, dtype=np.uint64) for x in (a, b, c, got))
    want, _ = fp.fma(a, b, c, fmt="fp32", rounding="rne", src_fmt=src_fmt)
    bad = np.flatnonzero(got != want)
    lines = [
        f"a={int(a[i]):#06x} b={int(b[i]):#06x} c={int(c[i]):#010x}: "
        f"expected {int(want[i]):#010x}, got {int(got[i]):#010x}"
        for i in bad[:limit]
    ]
    return len(bad), lines


async def _check(dut, name: str, a: np.ndarray, b: np.ndarray, c: np.ndarray, src_fmt: str) -> None:
    records = pack_requests(a, b, c)
    start = time.perf_counter()
    out, cycles = await run_bulk(dut, records, out_bits=32, seed=random_seed())
    sim_s = time.perf_counter() - start
    record_metrics(name, cycles=cycles, sim_s=sim_s, vectors=len(records), vectors_per_s=len(records) / sim_s)
    count, lines = mismatches(src_fmt, a, b, c, out[:, 0])
    assert count == 0, f"{count} of {len(records)} results differ from the oracle:\n" + "\n".join(lines)


@cocotb.test()
async def corners(dut):
    """All corner-value triples (zeros, subnormals, inf, quiet and signalling NaNs, edges) and the targeted families."""
    src_fmt = os.environ.get(SRC_ENV, "fp16")
    await _check(dut, "corners", *corner_triples(src_fmt, seed=random_seed() & 0xFFFF), src_fmt)


@cocotb.test()
async def random(dut):
    """Random operands biased towards every exponent range, ties, cancellation and specials."""
    src_fmt = os.environ.get(SRC_ENV, "fp16")
    count = int(os.environ.get(RANDOM_ENV, DEFAULT_RANDOM))
    a, b, c = fp.random_operands("fma", count, fmt="fp32", seed=random_seed() & 0xFFFF_FFFF, src_fmt=src_fmt)
    await _check(dut, "random", a, b, c, src_fmt)
