"""TCDM bank contention between the cluster's cores: a deterministic cycle-level model.

The L1 is ``banks`` word-interleaved single-cycle banks: byte address ``a`` lives in bank
``(a // 4) % banks``. Each bank serves one request per cycle; when several cores ask the same bank in
the same cycle (even for the same word: the interconnect has no broadcast), the arbiter grants one,
and the others stall that cycle and retry in the next.

What is simulated (:func:`contention`): the kernel's main inner loop on every active core, from a
common start (the fork releases the cores together). Each core repeats the steady-state iteration its
own timing model produced (:class:`~trainforge.dataflow.mcu.core.Probe`: ``period`` cycles, accesses at
fixed cycle offsets), with every stream's address advancing by its stride per iteration. A denied
core's whole schedule slips by one cycle. Arbitration per bank: **fixed priority, the lowest core
index wins**. With it the cores settle into a stable stagger, as the measured 8-core speed-ups show
they do; a round-robin arbiter started from an exact lock-step would instead keep them in a convoy
(every grant moves the priority past the leader), a pessimism real clusters escape through their
staggered start and I-cache misses. The rule is simple to mirror in an RTL interconnect.

The result is the stall cycles of each core: a *transient* while the cores spread out from lock-step,
then a *steady* rate per iteration, measured over one full bank period of the address pattern and
extrapolated to the loop's total iteration count. Accesses outside the probed loop (prologues,
epilogues, remainder loops) are not contended in this model.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import math

__all__ = ["Contention", "bank_of", "contention"]


def bank_of(address: int, banks: int) -> int:
    """Bank of byte ``address`` with ``banks`` word-interleaved banks."""
    return (address // 4) % banks


@dataclasses.dataclass(frozen=True, slots=True)
class Contention:
    """Bank-conflict stalls of a kernel's main loop.

    Attributes
    ----------
    per_core : tuple of int
        Stall cycles of each active core over all its iterations (extrapolated).
    transient : int
        Largest stall count of a core after the warm-up window.
    per_iteration : float
        Largest steady-state stall rate of a core, cycles per iteration.
    simulated_iterations : int
        Iterations simulated per core.
    """

    per_core: tuple[int, ...]
    transient: int
    per_iteration: float
    simulated_iterations: int

    @property
    def worst(self) -> int:
        """Stalls of the slowest core (what delays the barrier)."""
        return max(self.per_core, default=0)


def _period(stride: int, banks: int) -> int:
    span = 4 * banks
    step = stride % span
    return span // math.gcd(step, span) if step else 1


def contention(
    *,
    period: int,
    accesses: tuple[tuple[int, str, int], ...],
    bases: tuple[tuple[tuple[str, int], ...], ...],
    strides: tuple[tuple[str, int], ...],
    iterations: int,
    banks: int,
) -> Contention:
    """Simulate the cores' main loops against the banks (see the module docstring).

    Parameters
    ----------
    period : int
        Cycles of one steady-state iteration (the same on every core).
    accesses : tuple of (int, str, int)
        ``(cycle offset, stream, byte offset)`` of each access in the iteration.
    bases : tuple, one per active core, of ((stream, byte address), ...)
        Each stream's address at the core's first iteration.
    strides : tuple of (stream, bytes)
        Address advance of each stream per iteration.
    iterations : int
        Iterations each core runs in total (for the extrapolation).
    banks : int
        L1 banks.

    Returns
    -------
    Contention
    """
    cores = len(bases)
    if cores <= 1 or not accesses or iterations <= 0 or period <= 0:
        return Contention(per_core=(0,) * cores, transient=0, per_iteration=0.0, simulated_iterations=0)
    span = 4 * banks
    stride = {s: b % span for s, b in strides}
    pattern = 1
    for s in {s for _, s, _ in accesses}:
        pattern = math.lcm(pattern, _period(stride.get(s, 0), banks))
    warm = max(2 * pattern, 8)
    simulated = min(iterations, warm + pattern)
    # only addresses modulo the bank span matter: normalise so that equal patterns share the cache
    norm_bases = tuple(tuple(sorted((s, a % span) for s, a in b)) for b in bases)
    delay, delay_at_warm = _simulate(
        period, tuple(sorted(accesses)), norm_bases, tuple(sorted(stride.items())), simulated, warm, banks
    )
    if simulated == iterations:
        return Contention(per_core=delay, transient=max(delay), per_iteration=0.0, simulated_iterations=simulated)
    rates = [(delay[c] - delay_at_warm[c]) / pattern for c in range(cores)]
    per_core = tuple(round(delay_at_warm[c] + rates[c] * (iterations - warm)) for c in range(cores))
    return Contention(
        per_core=per_core,
        transient=max(delay_at_warm),
        per_iteration=max(rates),
        simulated_iterations=simulated,
    )


@functools.lru_cache(maxsize=8192)
def _simulate(
    period: int,
    slots: tuple[tuple[int, str, int], ...],
    bases: tuple[tuple[tuple[str, int], ...], ...],
    strides: tuple[tuple[str, int], ...],
    simulated: int,
    warm: int,
    banks: int,
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Delays of each core after ``simulated`` iterations and when it started iteration ``warm``."""
    cores = len(bases)
    stride = dict(strides)
    per_iter = len(slots)
    total = simulated * per_iter
    # every core's nominal request times and banks, precomputed
    times = [it * period + off for it in range(simulated) for off, _, _ in slots]
    banks_of = []
    for b in bases:
        base = dict(b)
        banks_of.append(
            [bank_of(base[s] + it * stride.get(s, 0) + off, banks) for it in range(simulated) for _, s, off in slots]
        )
    nxt = [0] * cores
    delay = [0] * cores
    delay_at_warm = [0] * cores
    warm_index = warm * per_iter
    heap = [(times[0], c) for c in range(cores)]
    heapq.heapify(heap)
    while heap:
        t = heap[0][0]
        requests: dict[int, list[int]] = {}
        while heap and heap[0][0] == t:
            _, c = heapq.heappop(heap)
            requests.setdefault(banks_of[c][nxt[c]], []).append(c)
        for who in requests.values():
            winner = min(who)
            for c in who:
                if c != winner:
                    delay[c] += 1
                    heapq.heappush(heap, (t + 1, c))
            nxt[winner] += 1
            i = nxt[winner]
            if i == warm_index:
                delay_at_warm[winner] = delay[winner]
            if i < total:
                heapq.heappush(heap, (times[i] + delay[winner], winner))
    return tuple(delay), tuple(delay_at_warm)
