"""The SAT prune engine on Verilator (tiny preset): random 64 x 64 weight matrices, both copies.

BP copy (``transpose = 0``): the matrix in the panel layout, one op over all its w-lines, groups
along C_out. FF copy (``transpose = 1``): one op per band of C rows, groups along C_in spanning
panels. The whole b-line and mask streams are reassembled into matrices and compared with
``nm_compress`` / ``nm_mask`` of the matrix itself; cycles with ``prune_cycles``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainforge.hw.sat.config import SatConfig
from trainforge.hw.sat.prune_engine import PruneEngine, prune_cycles
from trainforge.models import nm_compress, nm_mask
from trainforge.sim import verilator
from trainforge.sim.harness import to_verilog
from trainforge.sim.testbenches.common import CONFIG_ENV
from trainforge.sim.testbenches.tb_prune_engine import REQUEST_ENV, RESPONSE_ENV

pytestmark = pytest.mark.verilator

TOP = "prune_engine"
PORTS = [
    "clk",
    "rst",
    "params",
    *(f"{stream}__{part}" for stream in ("request", "blines", "masks") for part in ("payload", "valid", "ready")),
]
PATTERNS = [(2, 4), (1, 4), (2, 8), (1, 8), (4, 8)]
SIZE = 64


@pytest.fixture(scope="module")
def model():
    config = SatConfig.preset_named("tiny")
    return config, verilator.build(to_verilog(PruneEngine(config=config), name=TOP), top=TOP, ports=PORTS)


def bits(w: torch.Tensor) -> np.ndarray:
    return w.contiguous().view(torch.int16).numpy().view(np.uint16)


def bp_lines(w: torch.Tensor, c: int) -> np.ndarray:
    """The panel layout: panel p (columns p C .. p C + C - 1), row r at line p * SIZE + r."""
    return bits(w).reshape(SIZE, SIZE // c, c).transpose(1, 0, 2).reshape(-1, c)


def ff_lines(w: torch.Tensor, c: int, band: int) -> np.ndarray:
    """The w-lines of band ``band`` as the controller reads them: panel by panel, C rows each."""
    return bits(w)[band * c : (band + 1) * c].reshape(c, SIZE // c, c).transpose(1, 0, 2).reshape(-1, c)


def run(model, tmp_path, ops, *, rates=(1.0, 1.0, 1.0), seed=1):
    """Run ``ops`` ((n, m, transpose, words) tuples) back to back; one response dict per op."""
    config, build = model
    request, response = tmp_path / "request.npz", tmp_path / "response.npz"
    arrays = {f"op{k}_words": words for k, (*_, words) in enumerate(ops)}
    arrays |= {f"op{k}_pattern": np.array([n, m, int(t)]) for k, (n, m, t, _) in enumerate(ops)}
    np.savez(request, count=len(ops), rates=np.array(rates), seed=seed, **arrays)
    result = verilator.run_cocotb(
        build,
        top=TOP,
        test_module="trainforge.sim.testbenches.tb_prune_engine",
        run_dir=tmp_path / "run",
        seed=seed,
        env={CONFIG_ENV: config.to_json(), REQUEST_ENV: str(request), RESPONSE_ENV: str(response)},
        timeout=300,
    )
    assert (result.tests, result.failures) == (1, 0), result.log.read_text()[-3000:]
    out = np.load(response)
    return [{key: out[f"op{k}_{key}"] for key in ("values", "indices", "masks", "timing")} for k in range(len(ops))]


def check_bp(config, w, n, m, got):
    """One BP op over every panel: b-lines and mask-lines reassembled into matrices."""
    c, panels = config.cols, SIZE // config.cols
    values, indices = nm_compress(w, n, m, dim=0)  # (SIZE / m * n, SIZE)
    steps = SIZE // m * n

    def unpanel(x):
        return x.reshape(panels, -1, c).transpose(1, 0, 2).reshape(-1, SIZE)

    assert got["values"].shape == (panels * steps, c), f"{n}:{m} BP: {len(got['values'])} b-lines"
    assert np.array_equal(unpanel(got["values"]), bits(values)), f"{n}:{m} BP: values differ from nm_compress"
    assert np.array_equal(unpanel(got["indices"]), indices.numpy()), f"{n}:{m} BP: indices differ"
    assert np.array_equal(unpanel(got["masks"]), nm_mask(w, n, m, dim=0).numpy()), f"{n}:{m} BP: masks differ"


def check_ff(config, w, n, m, got_bands):
    """One FF op per band; b-lines are columns of the compressed band, masks in the panel layout."""
    c = config.cols
    values, indices = nm_compress(w, n, m, dim=1)  # (SIZE, SIZE / m * n)
    got_values = np.concatenate([g["values"].T for g in got_bands])  # band rows stacked
    got_indices = np.concatenate([g["indices"].T for g in got_bands])
    assert got_values.shape == values.shape, f"{n}:{m} FF: got {got_values.shape}"
    assert np.array_equal(got_values, bits(values)), f"{n}:{m} FF: values differ from nm_compress"
    assert np.array_equal(got_indices, indices.numpy()), f"{n}:{m} FF: indices differ"
    # mask-line (panel p, row i) of band b is row b C + i, columns p C .. p C + C - 1
    got_mask = np.concatenate(
        [g["masks"].reshape(SIZE // c, c, c).transpose(1, 0, 2).reshape(c, SIZE) for g in got_bands]
    )
    assert np.array_equal(got_mask, nm_mask(w, n, m, dim=1).numpy()), f"{n}:{m} FF: masks differ from nm_mask"


def test_random_matrices_both_copies_every_pattern_at_full_rate(model, tmp_path):
    config, _ = model
    c, bands = config.cols, SIZE // config.cols
    gen = torch.Generator().manual_seed(2024)
    weights = {nm: torch.randn(SIZE, SIZE, generator=gen).half() for nm in PATTERNS}
    ops = []
    for (n, m), w in weights.items():
        ops.append((n, m, False, bp_lines(w, c)))
        ops += [(n, m, True, ff_lines(w, c, b)) for b in range(bands)]
    got = iter(run(model, tmp_path, ops))
    for (n, m), w in weights.items():
        bp = next(got)
        check_bp(config, w, n, m, bp)
        assert bp["timing"].tolist() == [prune_cycles(config, n, m, SIZE * bands, False), SIZE * bands]
        ff = [next(got) for _ in range(bands)]
        check_ff(config, w, n, m, ff)
        for g in ff:  # one w-line per cycle, and the documented cycle count
            assert g["timing"].tolist() == [prune_cycles(config, n, m, bands, True), SIZE]


def test_backpressure_on_both_outputs_and_input_gaps(model, tmp_path):
    config, _ = model
    c, bands = config.cols, SIZE // config.cols
    gen = torch.Generator().manual_seed(7)
    w = torch.randn(SIZE, SIZE, generator=gen).half()
    n, m = 2, 8
    ops = [(n, m, False, bp_lines(w, c))] + [(n, m, True, ff_lines(w, c, b)) for b in range(bands)]
    got = run(model, tmp_path, ops, rates=(0.8, 0.6, 0.7), seed=3)
    check_bp(config, w, n, m, got[0])
    check_ff(config, w, n, m, got[1:])
