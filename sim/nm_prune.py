"""Run a user's tensor through the nm-prune RTL (Verilator) and get the compressed N:M result back."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from trainforge.errors import SimulationError, UsageError
from trainforge.hw.nm_prune import NMPruneConfig
from trainforge.models.nm import nm_compress
from trainforge.sim.harness import SimResult, simulate

__all__ = ["RTLPruneResult", "prune_on_rtl"]


@dataclass(frozen=True)
class RTLPruneResult:
    """Output of the RTL, in the layout of :func:`trainforge.models.nm_compress`.

    Attributes
    ----------
    values, indices : torch.Tensor
        Compressed along the pruned dimension.
    mask : torch.Tensor
        Boolean keep mask of the input's shape.
    cycles : int
        Clock cycles from the first weight offered to the last result.
    sim : SimResult
        The harness's record of the run.
    """

    values: torch.Tensor
    indices: torch.Tensor
    mask: torch.Tensor
    cycles: int
    sim: SimResult


def prune_on_rtl(
    weight: torch.Tensor, n: int, m: int, dim: int = -1, *, config: NMPruneConfig | None = None
) -> RTLPruneResult:
    """Prune ``weight`` N:M along ``dim`` on the Verilator-built nm-prune unit.

    The tensor is split into groups of ``m`` along ``dim`` exactly as :func:`nm_compress` does,
    so the result can be compared with it bit for bit.

    Raises
    ------
    trainforge.errors.UsageError
        The pattern is outside the configuration's range, or the weight's dtype is not the
        configured format.
    """
    config = config or NMPruneConfig()
    if not config.supports(n, m):
        raise UsageError(f"{n}:{m} is outside this unit's range (n <= {config.slots}, n < m <= {config.m_max})")
    if weight.dtype != config.float_format.torch_dtype:
        raise UsageError(f"weight is {weight.dtype} but the unit is configured for {config.fmt}")
    nm_compress(weight, n, m, dim)  # validates the shape with the golden's own error messages
    with tempfile.TemporaryDirectory(prefix="trainforge-prune-") as tmp:
        request, response = Path(tmp) / "request.pt", Path(tmp) / "response.pt"
        torch.save({"weight": weight.detach().cpu().contiguous(), "n": n, "m": m, "dim": dim}, request)
        result = simulate(
            "nm-prune",
            config,
            test_module="trainforge.sim.testbenches.tb_nm_prune_tensor",
            extra_env={"TRAINFORGE_REQUEST": str(request), "TRAINFORGE_RESPONSE": str(response)},
            run_dir=Path(tmp) / "run",
        )
        if not response.exists():
            raise SimulationError(f"the RTL run wrote no result; log: {result.log}")
        out = torch.load(response)
    return RTLPruneResult(out["values"], out["indices"], out["mask"], out["cycles"], result)
