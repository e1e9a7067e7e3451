"""prune_on_rtl: a user's tensor through the Verilator-built unit equals nm_compress bit for bit."""

from __future__ import annotations

import pytest
import torch

from trainforge.errors import UsageError
from trainforge.hw.nm_prune import NMPruneConfig
from trainforge.models import nm_compress, nm_mask
from trainforge.sim.nm_prune import prune_on_rtl


@pytest.mark.verilator
def test_conv_weight_ff_and_bp_copies_match_the_golden():
    gen = torch.Generator().manual_seed(5)
    weight = torch.randn(16, 8, 3, 3, generator=gen).half()
    for dim, (n, m) in ((1, (2, 4)), (0, (2, 8))):  # FF copy along C_in, BP copy along C_out
        rtl = prune_on_rtl(weight, n, m, dim=dim)
        values, indices = nm_compress(weight, n, m, dim=dim)
        assert torch.equal(rtl.values.view(torch.int16), values.view(torch.int16))
        assert torch.equal(rtl.indices, indices)
        assert torch.equal(rtl.mask, nm_mask(weight, n, m, dim=dim))
        # 4 lanes, one weight per lane per cycle, plus one cycle of latency
        assert rtl.cycles == weight.numel() // 4 + 1


def test_out_of_range_requests_are_refused_before_simulating():
    with pytest.raises(UsageError, match="outside this unit's range"):
        prune_on_rtl(torch.randn(4, 16).half(), 2, 16, config=NMPruneConfig(m_max=8))
    with pytest.raises(UsageError, match="configured for fp16"):
        prune_on_rtl(torch.randn(4, 16), 2, 4)
    with pytest.raises(UsageError, match="not a multiple of m=4"):
        prune_on_rtl(torch.randn(4, 10).half(), 2, 4)
