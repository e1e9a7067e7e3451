"""Cycle model of the SAT PE array (``sat-gemm``), exact against the RTL.

Reads the same :class:`~trainforge.hw.sat.gemm_array.GemmArrayConfig` the generator reads. The
array is output-stationary: a tile of ``steps`` reduction steps streams in one step per cycle; its
results drain one row per cycle ``rows + cols`` cycles after its last step; and a tile's last step
is accepted only once the previous tile has drained. With the input always valid and the output
always ready, tile ``k``'s last step is accepted at

    L_1 = T_1 - 1,    L_k = L_(k-1) + max(T_k, 2 rows + cols)

(cycle 0 accepts the first step), and its last row is presented at ``L_k + 2 rows + cols - 1``.
``tests/dataflow/test_sat_cost.py`` holds this to the RTL cycle for cycle.
"""

from __future__ import annotations

from collections.abc import Sequence

from trainforge.errors import UsageError
from trainforge.hw.sat.gemm_array import GemmArrayConfig

__all__ = ["gemm_steps", "tile_stream_cycles"]


def gemm_steps(k: int, nm: tuple[int, int] | None = None) -> int:
    """Reduction steps of one tile: ``k`` dense, ``k / m * n`` with B compressed N:M along K."""
    if k < 1:
        raise UsageError(f"K must be at least 1, not {k}")
    if nm is None:
        return k
    n, m = nm
    if not 1 <= n <= m:
        raise UsageError(f"N:M needs 1 <= n <= m, not {n}:{m}")
    if k % m:
        raise UsageError(f"K={k} is not a multiple of m={m}")
    return k // m * n


def tile_stream_cycles(config: GemmArrayConfig, steps: Sequence[int]) -> int:
    """Cycles from accepting the first step of the first tile to presenting the last row of the last.

    Parameters
    ----------
    config : GemmArrayConfig
        The array.
    steps : sequence of int
        Reduction steps of each tile, in stream order (see :func:`gemm_steps`).
    """
    if not steps:
        raise UsageError("a tile stream needs at least one tile")
    if any(s < 1 for s in steps):
        raise UsageError(f"every tile needs at least one step, not {min(steps)}")
    drain_gap = 2 * config.rows + config.cols
    last = steps[0] - 1
    for count in steps[1:]:
        last += max(count, drain_gap)
    return last + drain_gap
