"""The SAT energy model: the shipped table, its validation, and action counts -> joules.

Reference numbers are written out here from the sources (M. Horowitz, ISSCC 2014, 45 nm; Aladdin's
40 nm register), independently of the implementation.
"""

from __future__ import annotations

import copy
import importlib.util
import itertools
import math
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from trainforge.dataflow.energy import (
    ACTION_FIELDS,
    COMPONENTS,
    REQUIRED_ACTIONS,
    SatActions,
    actions_from_counters,
    buffer_geometry,
    energy_matrix,
    gemm_actions,
    load_energy_table,
    prune_actions,
    sat_energy,
    sram_access_pj,
    update_actions,
)
from trainforge.errors import ConfigError, UsageError
from trainforge.hw.sat.config import SatConfig

SHIPPED = Path(__file__).resolve().parents[2] / "dataflow" / "energy_tables" / "sat_45nm.yaml"

# Horowitz, ISSCC 2014, 45 nm (pJ): arithmetic, 64-bit cache accesses, DRAM per 64 bits.
FP16_MULT, FP16_ADD, FP32_MULT, FP32_ADD, INT32_ADD = 1.1, 0.4, 3.7, 0.9, 0.1
CACHE_64B = {8 * 1024: 10.0, 32 * 1024: 20.0, 1024 * 1024: 100.0}
DRAM_64B = (1300.0, 2600.0)
ALADDIN_REGISTER_BIT = 0.009  # 40 nm, per bit


@pytest.fixture(scope="module")
def table():
    return load_energy_table()


@pytest.fixture(scope="module")
def tiny():
    return SatConfig.preset_named("tiny")


def test_shipped_table_loads_with_every_number_sourced(table):
    assert (table.version, table.name, table.technology_nm) == (1, "sat_45nm", 45)
    assert set(REQUIRED_ACTIONS) <= set(table.actions)
    for name, entry in table.actions.items():
        assert entry.source.strip(), name
        assert entry.pj > 0
        assert math.isfinite(entry.pj)
    # the same file by path gives the same table
    assert load_energy_table(SHIPPED) == table


def test_shipped_numbers_match_their_sources(table):
    pj = table.pj
    assert pj("fma") == pytest.approx(FP16_MULT + FP32_ADD)
    assert (pj("fp32_add"), pj("fp32_mult"), pj("fp_round")) == (FP32_ADD, FP32_MULT, FP16_ADD)
    assert pj("register") == pj("mux") == ALADDIN_REGISTER_BIT
    assert pj("compare") == pytest.approx(INT32_ADD / 32)
    assert pj("dram") == pytest.approx(sum(DRAM_64B) / 2)
    assert table.actions["dram"].access_bits == 64
    points = {e.capacity_bytes: e.pj for _, e in table.sram_points}
    assert points == CACHE_64B
    assert {e.access_bits for _, e in table.sram_points} == {64}


# ---- bad files ----------------------------------------------------------------------------------


def _shipped_data():
    return yaml.safe_load(SHIPPED.read_text())


def _drop_fma(d):
    del d["actions"]["fma"]


def _negative(d):
    d["actions"]["dram"]["pj"] = -1.0


def _nan(d):
    d["actions"]["fp32_add"]["pj"] = float("nan")


def _unknown_unit(d):
    d["actions"]["register"]["unit"] = "per kilobyte"


def _wrong_unit(d):
    d["actions"]["fma"]["unit"] = "per bit"


def _version_string(d):
    d["version"] = "1"


def _version_float(d):
    d["version"] = 1.5


def _version_future(d):
    d["version"] = 2


def _unknown_action(d):
    d["actions"]["fmaa"] = copy.deepcopy(d["actions"]["fma"])


def _sram_no_capacity(d):
    del d["actions"]["sram_32kib"]["capacity_bytes"]


def _pj_text(d):
    d["actions"]["mux"]["pj"] = "0.009 pJ"


def _no_source(d):
    del d["actions"]["compare"]["source"]


@pytest.mark.parametrize(
    ("mutate", "entry", "what"),
    [
        (_drop_fma, "actions.fma", "missing"),
        (_negative, "actions.dram.pj", "greater than 0"),
        (_nan, "actions.fp32_add.pj", "finite"),
        (_unknown_unit, "actions.register.unit", "unknown unit 'per kilobyte'"),
        (_wrong_unit, "actions.fma.unit", "must be 'per operation'"),
        (_version_string, "version", "valid integer"),
        (_version_float, "version", "valid integer"),
        (_version_future, "version", "unsupported version 2"),
        (_unknown_action, "actions.fmaa", "unknown action"),
        (_sram_no_capacity, "actions.sram_32kib.capacity_bytes", "required"),
        (_pj_text, "actions.mux.pj", "valid number"),
        (_no_source, "actions.compare.source", "missing"),
    ],
)
def test_bad_table_names_file_entry_and_problem(tmp_path, mutate, entry, what):
    data = _shipped_data()
    mutate(data)
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_energy_table(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert entry in message, message
    assert what in message, message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("version: 1\nactions: [unclosed\n", "not valid YAML"),
        ("- just\n- a list\n", "must be a YAML mapping"),
        ("", "must be a YAML mapping"),
    ],
)
def test_not_a_table_is_a_named_error(tmp_path, text, what):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"^{path}: .*{what}"):
        load_energy_table(path)


def test_missing_file_is_a_named_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_energy_table(tmp_path / "absent.yaml")


# ---- energy -------------------------------------------------------------------------------------


def test_hand_computed_os_tile(tiny, table):
    # tiny: 4 x 4 PEs, m_max 8, FP16, a/b/acc_lines 32, mem_bits 128. One OS 2:8 tile of 8 steps,
    # loading A and B, no accumulate, stored.
    actions = gemm_actions(tiny, dataflow="os", n=2, rows=4, cols=4, steps=8)
    macs = 8 * 16
    fma = macs * (FP16_MULT + FP32_ADD)  # 256 pJ
    mux = macs * 3 * 16 * ALADDIN_REGISTER_BIT  # 3 mux levels x 16 bits = 55.296 pJ
    registers = macs * (8 * 16 + (16 + 3) + 32) * ALADDIN_REGISTER_BIT  # 179 bits per MAC = 206.208 pJ
    pe_array = fma + mux + registers
    # SRAM: per-bit energy of a 64-bit access at the capacity of one 64-bit slice; below 8 kB it
    # follows the 8 kB -> 32 kB segment, where energy doubles per 4x capacity (exponent 1/2).
    per_bit_8k = 10.0 / 64

    def per_bit(slice_bytes):
        return per_bit_8k * math.sqrt(slice_bytes / 8192)

    # A: 2 halves x 32 lines x 512 bits = 4096 B, 512-bit lines = 8 slices of 512 B -> 20 pJ a line
    a_line = 512 * per_bit(512)
    assert a_line == pytest.approx(20.0)
    a_buffer = (8 + 4) * a_line  # 8 steps read, ceil(8 / 2) = 4 lines loaded
    # B: 2 x 32 x 76 bits = 608 B, 76-bit lines = 1.1875 slices of 512 B -> 2.96875 pJ a line
    b_buffer = (8 + 8) * 76 * per_bit(512)  # 8 read, 8 loaded
    # acc: 32 x 128 bits = 512 B, 128-bit lines = 2 slices of 256 B -> 3.5355 pJ a line
    acc_buffer = (4 + 4) * 128 * per_bit(256)  # 4 written back, 4 read by the store
    # DRAM: A 4 lines x 4 words + B 8 lines x 1 word read, 4 acc-lines x 1 word written, 128-bit words
    dram = (4 * 4 + 8 * 1 + 4 * 1) * 128 * sum(DRAM_64B) / 2 / 64
    expected = pe_array + a_buffer + b_buffer + acc_buffer + dram
    assert expected == pytest.approx(110033.28827125, rel=1e-9)

    energy = sat_energy(tiny, actions, table)
    assert energy.pe_array == pytest.approx(pe_array * 1e-12, rel=1e-12)
    assert energy.a_buffer == pytest.approx(a_buffer * 1e-12, rel=1e-12)
    assert energy.b_buffer == pytest.approx(b_buffer * 1e-12, rel=1e-12)
    assert energy.acc_buffer == pytest.approx(acc_buffer * 1e-12, rel=1e-12)
    assert energy.dram == pytest.approx(dram * 1e-12, rel=1e-12)
    assert energy.writeback == energy.prune == energy.update == 0
    assert energy.total == pytest.approx(expected * 1e-12, rel=1e-12)


def test_hand_computed_prune_and_update(tiny, table):
    # BP-copy prune of 8 w-lines at 2:4: 8 x 4 weights, each compared with m_max - 1 = 7 stored ones
    # (15-bit compares), clocked twice with its 3-bit count; 8 / 4 x 2 = 4 b-lines and 8 mask-lines out.
    prune = sat_energy(tiny, prune_actions(tiny, n=2, m=4, lines=8), table)
    weights = 8 * 4
    compare = weights * 7 * 15 * INT32_ADD / 32
    registers = weights * 2 * (16 + 3) * ALADDIN_REGISTER_BIT
    assert prune.prune == pytest.approx((compare + registers) * 1e-12)
    words = 8 * 1 + (4 * 1 + 8 * 1)  # w-lines 64 bits, b-lines 76, mask 4: one 128-bit word each
    assert prune.dram == pytest.approx(words * 128 * 1950 / 64 * 1e-12)
    # UPDATE of 2 acc-lines = 8 elements: 3 FP32 mults, 3 adds and a rounding each
    update = sat_energy(tiny, update_actions(tiny, lines=2), table)
    assert update.update == pytest.approx(8 * (3 * FP32_MULT + 3 * FP32_ADD + FP16_ADD) * 1e-12)
    assert update.dram == pytest.approx(2 * (3 + 1 + 2 + 1) * 128 * 1950 / 64 * 1e-12)


def _random_actions(rng, shape=()):
    return SatActions(**{f: rng.integers(0, 10**6, size=shape) for f in ACTION_FIELDS})


def test_breakdown_sums_to_total(tiny, table):
    rng = np.random.default_rng(1)
    for _ in range(20):
        energy = sat_energy(tiny, _random_actions(rng), table)
        parts = [getattr(energy, name) for name in COMPONENTS]
        assert all(p >= 0 for p in parts)
        assert math.fsum(parts) == pytest.approx(energy.total, rel=1e-12)
        assert energy.buffers == pytest.approx(energy.a_buffer + energy.b_buffer + energy.acc_buffer)


def test_vectorised_equals_scalar(table):
    config = SatConfig.preset_named("default")
    rng = np.random.default_rng(7)
    size = 50
    steps = rng.integers(1, config.b_lines + 1, size=size)
    rows = rng.integers(1, config.rows + 1, size=size)
    cols = rng.integers(1, config.cols + 1, size=size)
    n = rng.choice([1, 2, 4, 8], size=size)
    flags = rng.integers(0, 2, size=(4, size)).astype(bool)
    for dataflow in ("os", "ws"):
        s = steps if dataflow == "os" else np.minimum(steps, config.rows)
        batch = gemm_actions(
            config, dataflow=dataflow, n=n, rows=rows, cols=cols, steps=s,
            load_a=flags[0], load_b=flags[1], accumulate=flags[2], store=flags[3],
        )  # fmt: skip
        energy = sat_energy(config, batch, table)
        assert energy.total.shape == (size,)
        for i in range(size):
            one = gemm_actions(
                config, dataflow=dataflow, n=int(n[i]), rows=int(rows[i]), cols=int(cols[i]), steps=int(s[i]),
                load_a=bool(flags[0, i]), load_b=bool(flags[1, i]),
                accumulate=bool(flags[2, i]), store=bool(flags[3, i]),
            )  # fmt: skip
            assert isinstance(one.macs_issued, int)
            scalar = sat_energy(config, one, table)
            for name in (*COMPONENTS, "total"):
                assert getattr(energy, name)[i] == pytest.approx(getattr(scalar, name), rel=1e-12)


def test_batch_of_1e5_points_is_fast(table):
    config = SatConfig.preset_named("paper")
    counts = np.random.default_rng(0).integers(0, 10**9, size=(100_000, len(ACTION_FIELDS))).astype(np.float64)
    matrix = energy_matrix(config, table)
    start = time.perf_counter()
    joules = counts @ matrix
    elapsed = time.perf_counter() - start
    assert joules.shape == (100_000, len(COMPONENTS))
    assert elapsed < 1.0
    one = SatActions(**dict(zip(ACTION_FIELDS, counts[3], strict=True)))
    assert joules[3].sum() == pytest.approx(sat_energy(config, one, table).total, rel=1e-12)


def test_sram_energy_grows_with_capacity(table, tiny):
    for width in (64, 76, 512, 4096):
        capacities = [2.0**k for k in range(7 + max(0, round(math.log2(width / 64))), 24)]  # above the floor
        energies = [sram_access_pj(table, c, width) for c in capacities]
        assert all(b > a for a, b in itertools.pairwise(energies)), width
    # at a reference point with a 64-bit access the table's number comes back
    for capacity, pj in CACHE_64B.items():
        assert sram_access_pj(table, capacity, 64) == pytest.approx(pj)
    # never below one register bit per bit
    assert sram_access_pj(table, 1, 64) == pytest.approx(64 * ALADDIN_REGISTER_BIT)
    # a deeper A buffer costs more per line read
    line = gemm_actions(tiny, dataflow="os", n=8, rows=1, cols=1, steps=1, load_a=False, load_b=False, store=False)
    small = sat_energy(tiny, line, table).a_buffer
    large = sat_energy(tiny.replace(a_lines=1024), line, table).a_buffer
    assert large > small > 0


def test_buffer_geometry_follows_the_config(tiny):
    geometry = buffer_geometry(tiny)
    assert geometry["a"].capacity_bytes == 2 * tiny.a_lines * tiny.a_line_bits // 8
    assert geometry["b"].line_bits == tiny.b_line_bits
    assert geometry["acc"].capacity_bytes == tiny.acc_lines * tiny.cols * 4


def test_counters_give_the_same_actions_as_the_descriptors(tiny, table):
    # two OS tiles (one accumulating) and one WS tile, as the counters and the DRAM model see them
    tiles = [
        gemm_actions(tiny, dataflow="os", n=2, rows=4, cols=3, steps=8, store=False),
        gemm_actions(tiny, dataflow="os", n=2, rows=4, cols=3, steps=8, load_a=False, accumulate=True),
        gemm_actions(tiny, dataflow="ws", n=1, rows=5, cols=4, steps=3, accumulate=True),
    ]
    total = tiles[0] + tiles[1] + tiles[2]
    counters = {"macs_issued": (8 + 8 + 5) * 16, "macs_useful": 8 * 12 * 2 + 5 * 3 * 4, "busy": 123}
    assert (total.macs_issued, total.macs_useful) == (counters["macs_issued"], counters["macs_useful"])
    derived = actions_from_counters(
        tiny,
        counters,
        dram_words_read=total.dram_bits_read // tiny.mem_bits,
        dram_words_written=total.dram_bits_written // tiny.mem_bits,
        ws_rows=5,
        ws_tiles=1,
        ws_weight_rows=3,
        a_lines_loaded=4 + 5,
        b_lines_loaded=8 + 8 + 3,
        acc_line_reads=4 + 4 + 5 + 5,  # 2nd OS tile: accumulate and store; WS: partial sums and store
        acc_line_writes=4 + 4 + 5,
        acc_adds=4 * 3,
    )
    assert derived == total
    assert sat_energy(tiny, derived, table) == sat_energy(tiny, total, table)


def test_repeated_work_scales_linearly(tiny, table):
    tile = gemm_actions(tiny, dataflow="os", n=4, rows=4, cols=4, steps=16)
    once, five = sat_energy(tiny, tile, table), sat_energy(tiny, 5 * tile, table)
    assert five.total == pytest.approx(5 * once.total)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda c: gemm_actions(c, dataflow="is", n=1, rows=1, cols=1, steps=1), "dataflow"),
        (lambda c: gemm_actions(c, dataflow="os", n=1, rows=0, cols=1, steps=1), "rows"),
        (lambda c: prune_actions(c, n=1, m=4, lines=6), "whole groups"),
        (
            lambda c: actions_from_counters(c, {"macs_issued": 16}, dram_words_read=0, dram_words_written=0),
            "macs_useful",
        ),
        (
            lambda c: actions_from_counters(
                c, {"macs_issued": 17, "macs_useful": 1}, dram_words_read=0, dram_words_written=0
            ),
            "array beats",
        ),
    ],
)
def test_bad_counts_are_usage_errors(tiny, call, match):
    with pytest.raises(UsageError, match=match):
        call(tiny)


def test_docs_show_the_current_table(table):
    # docs/energy.md embeds the output of scripts/energy_table.py; regenerate it when the YAML changes
    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("energy_table_script", root / "scripts" / "energy_table.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.render(table, "paper") in (root / "docs" / "energy.md").read_text()


def test_equality_ignores_the_matrix_cache():
    fresh = load_energy_table(SHIPPED)
    cached = load_energy_table()
    energy_matrix(SatConfig.preset_named("tiny"), cached)  # fills the cache of one of them only
    assert fresh == cached
    assert hash(fresh) == hash(cached)
