"""Tile-level view of the SAT PE array (:mod:`trainforge.hw.sat.pe_array`): OS and WS tiles to beats.

Shared by the Amaranth-simulator tests and the cocotb testbench ``tb_pe_array``. A program is a list
of tiles, output-stationary (:class:`OsTile`) or weight-stationary (:class:`WsTile`), dense or N:M
sparse; :class:`PeBeats` turns it into request beats (packed payload integers and the
``(kind, last)`` list :func:`~trainforge.hw.sat.pe_array.beat_schedule` takes) and computes the
expected response rows with the bit-exact golden GEMM (:mod:`trainforge.models.golden`,
``order="sequential"``, ``init`` = the WS partial sums). Operand slots the PEs must not use (group
padding, inactive PE rows) are filled with random bit patterns, NaNs included, so that any use shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from trainforge.hw.sat.config import SatConfig
from trainforge.hw.sat.pe_array import BeatKind, pe_request_layout, pe_response_layout
from trainforge.models import fp, golden
from trainforge.models.nm import nm_compress
from trainforge.sim.packing import PayloadCodec

__all__ = ["OsTile", "PeBeats", "Trace", "WsTile", "random_bits", "random_program", "run_amaranth"]

_TORCH = {"fp16": torch.float16, "bf16": torch.bfloat16}


def random_bits(rng: np.random.Generator, shape: tuple[int, ...], fmt: str, corner_pct: float = 3.0) -> np.ndarray:
    """Bit patterns of ``fmt``: mostly normal-distributed values, ``corner_pct`` percent corner values."""
    if fmt == "fp32":
        bits = rng.standard_normal(shape).astype(np.float32).view(np.uint32).astype(np.uint64)
    else:
        values = torch.from_numpy(rng.standard_normal(shape).astype(np.float32)).to(_TORCH[fmt])
        bits = values.view(torch.int16).numpy().astype(np.uint16).astype(np.uint64)
    pick = rng.random(shape) < corner_pct / 100
    bits[pick] = rng.choice(fp.corner_values(fmt), size=int(pick.sum()))
    return bits


@dataclass
class OsTile:
    """An OS tile ``C[R x C] = A[R x K] . B[K x C]``; ``nm`` None for dense (``m_max:m_max``, index ``k mod m_max``)."""

    a: np.ndarray  # R x K bit patterns
    b: np.ndarray  # K x C bit patterns
    nm: tuple[int, int] | None = None


@dataclass
class WsTile:
    """A WS tile: ``steps`` kept weights per column held in PE rows ``0 .. steps-1``, A rows streamed through.

    ``b`` is the dense ``K x C`` weight slice (``K = steps / n * m``; dense: ``K = steps``), ``a`` the
    ``rows x K`` activations, ``psum`` the ``rows x C`` FP32 partial sums entering the columns.
    """

    a: np.ndarray
    b: np.ndarray
    psum: np.ndarray
    nm: tuple[int, int] | None = None


class PeBeats:
    """Encode programs as request beats, decode response rows, compute the expected rows."""

    def __init__(self, config: SatConfig) -> None:
        self.config = config
        self.request = PayloadCodec(pe_request_layout(config))
        self.response = PayloadCodec(pe_response_layout(config))

    def _compressed(self, b: np.ndarray, nm: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
        """Kept values and in-group indices along K; dense is every element with index ``k mod m_max``."""
        if nm is None:
            k = np.arange(b.shape[0])[:, None] % self.config.m_max
            return b, np.broadcast_to(k, b.shape)
        weights = torch.from_numpy(b.astype(np.uint16).view(np.int16)).view(_TORCH[self.config.in_fmt])
        values, indices = nm_compress(weights, *nm, dim=0)
        return values.view(torch.int16).numpy().view(np.uint16).astype(np.uint64), indices.numpy().astype(np.uint64)

    def steps(self, tile: OsTile | WsTile) -> int:
        """Kept weights per column along the tile's K: OS steps, or active PE rows of a WS tile."""
        k = tile.b.shape[0]
        return k if tile.nm is None else k // tile.nm[1] * tile.nm[0]

    def _group(self, row: np.ndarray, g: int, m: int, rng: np.random.Generator) -> np.ndarray:
        """Group ``g`` (``m`` elements) of a K-vector, padded to ``m_max`` with junk."""
        out = random_bits(rng, (self.config.m_max,), self.config.in_fmt, 30)
        part = row[g * m : (g + 1) * m]
        out[: len(part)] = part
        return out

    def beats(
        self, tiles: list[OsTile | WsTile], seed: int = 0, *, inactive_value: int | None = None
    ) -> tuple[list[int], list[tuple[int, bool]]]:
        """Payload integers of every beat, and ``(kind, last)`` per beat.

        Unused slots get random junk from ``seed``; ``inactive_value`` fixes the weight value of
        inactive PE rows instead (e.g. +0, whose product would turn a -0 partial sum into +0).
        """
        cfg = self.config
        rng = np.random.default_rng(seed)
        fields: dict[tuple, list] = {}
        kinds: list[tuple[int, bool]] = []

        def beat(kind, a, w_value, w_index, psum, active, last):
            values = {("kind",): kind, ("active",): active, ("last",): last}
            for i in range(cfg.rows):
                for s in range(cfg.m_max):
                    values[("a", i, s)] = a[i][s]
            for j in range(cfg.cols):
                values[("w", j, "value")] = w_value[j]
                values[("w", j, "index")] = w_index[j]
                values[("psum", j)] = psum[j]
            for key, value in values.items():
                fields.setdefault(key, []).append(int(value))
            kinds.append((int(kind), bool(last)))

        junk = random_bits
        for tile in tiles:
            m_group = cfg.m_max if tile.nm is None else tile.nm[1]
            n_group = cfg.m_max if tile.nm is None else tile.nm[0]
            values, indices = self._compressed(tile.b, tile.nm)
            steps = len(values)
            if isinstance(tile, OsTile):
                for s in range(steps):
                    g = s // n_group
                    a = [self._group(tile.a[i], g, m_group, rng) for i in range(cfg.rows)]
                    psum = junk(rng, (cfg.cols,), "fp32", 30)
                    beat(BeatKind.OS_STEP, a, values[s], indices[s], psum, rng.integers(2), s == steps - 1)
            else:
                if not 1 <= steps <= cfg.rows:
                    raise ValueError(f"a WS tile holds 1 to {cfg.rows} steps, not {steps}")
                for b in range(cfg.rows):
                    row = cfg.rows - 1 - b
                    a = [junk(rng, (cfg.m_max,), cfg.in_fmt, 30) for _ in range(cfg.rows)]
                    psum = junk(rng, (cfg.cols,), "fp32", 30)
                    if row < steps:
                        w_value, w_index = values[row], indices[row]
                    else:  # an inactive PE row: junk it must not use
                        w_value = junk(rng, (cfg.cols,), cfg.in_fmt, 30)
                        if inactive_value is not None:
                            w_value[:] = inactive_value
                        w_index = rng.integers(0, cfg.m_max, cfg.cols)
                    beat(BeatKind.WS_LOAD, a, w_value, w_index, psum, row < steps, b == cfg.rows - 1)
                for r in range(len(tile.a)):
                    a = [
                        self._group(tile.a[r], i // n_group, m_group, rng)
                        if i < steps
                        else junk(rng, (cfg.m_max,), cfg.in_fmt, 30)
                        for i in range(cfg.rows)
                    ]
                    w_value = junk(rng, (cfg.cols,), cfg.in_fmt, 30)
                    w_index = rng.integers(0, cfg.m_max, cfg.cols)
                    beat(BeatKind.WS_ROW, a, w_value, w_index, tile.psum[r], rng.integers(2), r == len(tile.a) - 1)
        count = len(kinds)
        words = self.request.pack({key: np.array(v, dtype=np.uint64) for key, v in fields.items()}, count)
        return words, kinds

    def expected(self, tiles: list[OsTile | WsTile]) -> np.ndarray:
        """Every response row of the program in order, ``(rows, C)`` uint32, from the golden GEMM."""
        fmt = self.config.in_fmt
        out = []
        for tile in tiles:
            init = tile.psum.astype(np.uint32) if isinstance(tile, WsTile) else None
            if tile.nm is None:
                result = golden.gemm(tile.a, tile.b, fmt=fmt, order="sequential", init=init)
            else:
                values, indices = self._compressed(tile.b, tile.nm)
                n, m = tile.nm
                result = golden.sparse_gemm(tile.a, values, indices, n=n, m=m, fmt=fmt, order="sequential", init=init)
            out.append(np.asarray(result, dtype=np.uint32))
        return np.concatenate(out) if out else np.zeros((0, self.config.cols), np.uint32)

    def rows(self, words: list[int]) -> np.ndarray:
        """Response payload integers to ``(n, C)`` uint32 rows."""
        paths = [("row", j) for j in range(self.config.cols)]
        return np.stack(self.response.unpack(words, paths), axis=1).astype(np.uint32).reshape(-1, self.config.cols)


def random_program(
    config: SatConfig,
    rng: np.random.Generator,
    count: int,
    *,
    patterns: list[tuple[int, int] | None] | None = None,
    ws_share: float = 0.5,
    max_os_groups: int = 3,
    max_ws_rows: int = 4,
) -> list[OsTile | WsTile]:
    """``count`` random tiles, OS and WS mixed, dense and every supported N:M pattern.

    OS tiles take 1 to ``max_os_groups`` groups of K (dense: any K from 1); WS tiles any number of
    kept steps that fits the array (so some PE rows are inactive) and 1 to ``max_ws_rows`` A rows.
    """
    cfg = config
    if patterns is None:
        patterns = [None] + [(n, m) for m in (2, 4, 8, 16) for n in range(1, m) if cfg.supports(n, m)]
    tiles: list[OsTile | WsTile] = []
    for _ in range(count):
        nm = patterns[int(rng.integers(len(patterns)))]
        if rng.random() < ws_share:
            if nm is not None and nm[0] > cfg.rows:
                nm = None  # a group's kept weights must fit the PE rows
            if nm is None:
                k = int(rng.integers(1, cfg.rows + 1))  # steps = K
            else:
                k = nm[1] * int(rng.integers(1, cfg.rows // nm[0] + 1))
            r = int(rng.integers(1, max_ws_rows + 1))
            psum = random_bits(rng, (r, cfg.cols), "fp32", 15).astype(np.uint32)
            tiles.append(
                WsTile(random_bits(rng, (r, k), cfg.in_fmt), random_bits(rng, (k, cfg.cols), cfg.in_fmt), psum, nm)
            )
        else:
            m = cfg.m_max if nm is None else nm[1]
            k = (
                int(rng.integers(1, max_os_groups * m + 1))
                if nm is None
                else m * int(rng.integers(1, max_os_groups + 1))
            )
            tiles.append(
                OsTile(random_bits(rng, (cfg.rows, k), cfg.in_fmt), random_bits(rng, (k, cfg.cols), cfg.in_fmt), nm)
            )
    return tiles


@dataclass
class Trace:
    """What a run observed: response payloads in order, acceptance and presentation cycles.

    ``present`` holds the cycle each response row was first presented (``valid`` rising), which
    with ``ready`` held high is the cycle it transferred.
    """

    words: list[int]
    accept: list[int]
    present: list[int]


def run_amaranth(
    config: SatConfig,
    words: list[int],
    expected_rows: int,
    *,
    gaps: list[int] | None = None,
    ready_pct: int = 100,
    seed: int = 0,
    max_cycles: int = 100_000,
) -> Trace:
    """Drive the beats through :class:`PEArray` in the Amaranth simulator.

    Beat ``k`` is offered ``gaps[k]`` cycles after beat ``k-1`` was accepted (``valid`` held
    until taken); ``response.ready`` is high with probability ``ready_pct`` percent each cycle.
    """
    from amaranth.sim import Simulator

    from trainforge.hw.sat.pe_array import PEArray

    dut = PEArray(config=config)
    rng = np.random.default_rng(seed)
    trace = Trace([], [], [])
    gaps = [int(g) for g in gaps] if gaps is not None else [0] * len(words)

    async def testbench(ctx):
        k, wait, cycle, presented = 0, gaps[0] if words else 0, 0, False
        while len(trace.words) < expected_rows:
            if cycle > max_cycles:
                raise RuntimeError(f"no progress after {max_cycles} cycles: {len(trace.words)} rows out")
            offer = k < len(words) and wait == 0
            ready = ready_pct >= 100 or rng.random() * 100 < ready_pct
            ctx.set(dut.request.valid, offer)
            if offer:
                ctx.set(dut.request.payload.as_value(), words[k])
            ctx.set(dut.response.ready, ready)
            _, _, req_ready, valid, payload = await ctx.tick().sample(
                dut.request.ready, dut.response.valid, dut.response.payload.as_value()
            )
            if valid and not presented:
                trace.present.append(cycle)
            presented = valid and not ready
            if valid and ready:
                trace.words.append(payload)
            if offer and req_ready:
                trace.accept.append(cycle)
                k += 1
                wait = gaps[k] if k < len(words) else 0
            elif not offer and wait:
                wait -= 1
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return trace
