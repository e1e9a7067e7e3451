"""Line-level view of the SAT update engine: stimulus, packing, and judging against the PyTorch reference.

Shared by the Amaranth-simulator test (``tests/hw/test_update_engine.py``) and the Verilator
regression (``tb_update_engine``), so both pack and judge the engine the same way. Values are FP32
(and ``in_fmt``) bit patterns in ``(lines, cols)`` arrays; the expected results come from
:func:`trainforge.models.weight_update.sgd_srste_update`. A NaN result is compared as "is a NaN"
against the reference (PyTorch's NaN patterns are the CPU's) and must moreover be the canonical
NaN, which is what the FP library produces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from trainforge.hw.sat.config import SatConfig
from trainforge.hw.sat.update_engine import update_params_layout, update_request_layout, update_response_layout
from trainforge.models import fp
from trainforge.models.weight_update import sgd_srste_update
from trainforge.sim.packing import PayloadCodec

__all__ = ["Lines", "UpdateLines", "UpdateParams", "random_lines", "run_amaranth"]


@dataclass(frozen=True)
class UpdateParams:
    """Hyper-parameters of one UPDATE (Python floats; the hardware holds them rounded to FP32)."""

    lr: float
    momentum: float
    decay: float
    use_mask: bool

    def value(self) -> int:
        """The ``params`` port value (:func:`update_params_layout`)."""
        codec = PayloadCodec(update_params_layout())
        f32 = {k: np.float32(getattr(self, k)).view(np.uint32) for k in ("lr", "momentum", "decay")}
        return codec.pack({(k,): np.uint64(v) for k, v in f32.items()} | {("use_mask",): int(self.use_mask)}, 1)[0]


@dataclass
class Lines:
    """``w``, ``v``, ``g`` (uint32 FP32 patterns) and ``keep`` (bool), each ``(lines, cols)``."""

    w: np.ndarray
    v: np.ndarray
    g: np.ndarray
    keep: np.ndarray

    def __len__(self) -> int:
        return len(self.w)


def _values(rng: np.random.Generator, shape: tuple[int, int], scale: float, special: float) -> np.ndarray:
    """Normal values of ``scale``; a fraction ``special`` from the oracle's biased generator
    (subnormals, near overflow, zeros of both signs, infinities, quiet and signalling NaNs)."""
    normal = (rng.standard_normal(shape) * scale).astype(np.float32).view(np.uint32)
    odd = fp.random_vectors(normal.size, "fp32", int(rng.integers(1 << 31))).astype(np.uint32).reshape(shape)
    corners = fp.corner_values("fp32").astype(np.uint32)
    pick = rng.random(shape)
    out = np.where(pick < special, odd, normal)
    return np.where(pick < special * 0.2, rng.choice(corners, size=shape), out)


def random_lines(config: SatConfig, count: int, rng: np.random.Generator, *, special: float = 0.2) -> Lines:
    """``count`` lines of training-like values, a fraction ``special`` of each operand odd."""
    shape = (count, config.cols)
    return Lines(
        w=_values(rng, shape, 1.0, special),
        v=_values(rng, shape, 0.1, special),
        g=_values(rng, shape, 0.01, special),
        keep=rng.random(shape) < 0.5,
    )


def _tensor(bits: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(bits, dtype=np.uint32).view(np.int32)).view(torch.float32)


class UpdateLines:
    """Pack request beats and judge response beats of one engine configuration."""

    def __init__(self, config: SatConfig) -> None:
        self.config = config
        self.request = PayloadCodec(update_request_layout(config))
        self.response = PayloadCodec(update_response_layout(config))

    def records(self, lines: Lines, *, last_every: int = 0) -> np.ndarray:
        """Request records, one per line; ``last`` set on every ``last_every``-th line (and the final one)."""
        n, cols = len(lines), self.config.cols
        fields: dict = {}
        for j in range(cols):
            for name in ("w", "v", "g"):
                fields[(name, j)] = getattr(lines, name)[:, j]
        weights = np.left_shift(np.uint64(1), np.arange(cols, dtype=np.uint64))
        fields[("keep",)] = lines.keep.astype(np.uint64) @ weights
        fields[("last",)] = self.lasts(n, last_every).astype(np.uint64)
        return self.request.pack_records(fields, n)

    @staticmethod
    def lasts(n: int, last_every: int) -> np.ndarray:
        last = np.zeros(n, dtype=bool)
        if last_every:
            last[last_every - 1 :: last_every] = True
        if n:
            last[-1] = True
        return last

    def results(self, records: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``w'``, ``v'``, ``w16`` bit patterns ``(lines, cols)`` and ``last`` from response records."""
        cols = range(self.config.cols)
        paths = [(name, j) for name in ("w", "v", "w16") for j in cols] + [("last",)]
        fields = self.response.unpack_records(records, paths)
        k = self.config.cols
        return (
            np.stack(fields[:k], axis=1),
            np.stack(fields[k : 2 * k], axis=1),
            np.stack(fields[2 * k : 3 * k], axis=1),
            fields[-1].astype(bool),
        )

    def expected(self, lines: Lines, params: UpdateParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``w'``, ``v'``, ``w16`` bit patterns from the PyTorch reference."""
        w2, v2, w16 = sgd_srste_update(
            _tensor(lines.w),
            _tensor(lines.v),
            _tensor(lines.g),
            torch.from_numpy(lines.keep),
            lr=params.lr,
            momentum=params.momentum,
            decay=params.decay,
            use_mask=params.use_mask,
            in_fmt=self.config.in_fmt,
        )
        as_bits = [t.view(torch.int32).numpy().view(np.uint32) for t in (w2, v2)]
        return *(b.astype(np.uint64) for b in as_bits), w16.view(torch.int16).numpy().view(np.uint16).astype(np.uint64)

    def mismatches(
        self, lines: Lines, params: UpdateParams, records: np.ndarray, *, last_every: int = 0, limit: int = 5
    ) -> tuple[int, list[str]]:
        """Elements (and ``last`` flags) that differ from the reference, and up to ``limit`` described.

        Non-NaN results must match bit for bit; a NaN result must be a NaN where the reference has
        one, and the canonical NaN of its format.
        """
        if len(records) != len(lines):
            return max(1, abs(len(records) - len(lines))), [f"{len(records)} responses for {len(lines)} requests"]
        got = self.results(records)
        want = self.expected(lines, params)
        count, messages = 0, []
        for name, fmt, g, e in zip(("w", "v", "w16"), ("fp32", "fp32", self.config.in_fmt), got, want, strict=False):
            nan_want = np.isnan(fp.to_float(e, fmt))
            ok = np.where(nan_want, g == fp.canonical_nan(fmt), g == e)
            for i, j in np.argwhere(~ok):
                count += 1
                if len(messages) < limit:
                    messages.append(
                        f"line {i} lane {j} {name}: expected {int(e[i, j]):#x}, got {int(g[i, j]):#x} "
                        f"(w={int(lines.w[i, j]):#x} v={int(lines.v[i, j]):#x} g={int(lines.g[i, j]):#x} "
                        f"keep={int(lines.keep[i, j])}, {params})"
                    )
        bad_last = np.flatnonzero(got[3] != self.lasts(len(lines), last_every))
        count += len(bad_last)
        messages += [f"line {i}: last flag wrong" for i in bad_last[: max(0, limit - len(messages))]]
        return count, messages


def run_amaranth(
    engine,
    lines: Lines,
    params: UpdateParams,
    *,
    last_every: int = 0,
    gap_pct: int = 0,
    stall_pct: int = 0,
    seed: int = 0,
) -> tuple[np.ndarray, list[int], int]:
    """Stream ``lines`` through ``engine`` in the Amaranth simulator.

    Parameters
    ----------
    engine : UpdateEngine
    lines : Lines
    params : UpdateParams
        Held on ``engine.params`` for the whole run.
    last_every : int
        Set ``last`` on every ``last_every``-th line (and the final one).
    gap_pct, stall_pct : int
        Chance (percent) per cycle that the input idles, and that the output is not taken.
    seed : int
        Seed of the gap and stall pattern.

    Returns
    -------
    records : numpy.ndarray
        Response records, one per line, in the order they came out.
    accepted : list of int
        Cycle on which each request was taken.
    first_response : int
        Cycle on which the first response was presented (valid), or -1.

    Raises
    ------
    AssertionError
        Fewer responses than requests within a generous cycle budget (a lost line).
    """
    from amaranth.sim import Simulator

    codec = UpdateLines(engine.config)
    words = [int.from_bytes(r.tobytes(), "little") for r in codec.records(lines, last_every=last_every)]
    rng = np.random.default_rng(seed)
    responses: list[int] = []
    accepted: list[int] = []
    first = [-1]
    budget = 4 * len(words) * 100 // max(1, 100 - max(gap_pct, stall_pct)) + 4 * engine.latency + 16

    async def bench(ctx):
        ctx.set(engine.params.as_value(), params.value())
        i, cycle = 0, 0
        while len(responses) < len(words):
            assert cycle < budget, f"{len(responses)} of {len(words)} responses after {cycle} cycles"
            offer = bool(i < len(words) and rng.integers(100) >= gap_pct)
            take = bool(rng.integers(100) >= stall_pct)
            ctx.set(engine.response.ready, take)
            ctx.set(engine.request.valid, offer)
            if offer:
                ctx.set(engine.request.payload.as_value(), words[i])
            _, _, ready, valid, payload = await ctx.tick().sample(
                engine.request.ready, engine.response.valid, engine.response.payload.as_value()
            )
            if offer and ready:
                accepted.append(cycle)
                i += 1
            if valid and first[0] < 0:
                first[0] = cycle
            if valid and take:
                responses.append(payload)
            cycle += 1

    sim = Simulator(engine)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    records = np.array(
        [np.frombuffer(w.to_bytes(codec.response.record_words * 4, "little"), dtype="<u4") for w in responses],
        dtype=np.uint32,
    ).reshape(len(responses), codec.response.record_words)
    return records, accepted, first[0]
