"""TestFloat vector files: exact text layout, parsing (fast and tolerant paths), errors, and generated
files checked against Berkeley SoftFloat (softfloatpy), which shares no code with the oracle."""

from __future__ import annotations

import time

import numpy as np
import pytest

from trainforge.errors import UsageError
from trainforge.models import fp
from trainforge.models import testfloat as tf


def columns(d: dict) -> list[str]:
    return list(d)


def test_write_exact_layout(tmp_path):
    path = tmp_path / "f16_mulAdd.tv"
    a = np.array([0x3C00, 0x7C00, 0x0001], dtype=np.uint64)
    tf.write_vectors(path, a, a, a, results=np.array([0x4000, 0x7C00, 0x0002]), flags=np.array([0, 0x10, 3]), widths=16)
    assert path.read_text() == "3C00 3C00 3C00 4000 00\n7C00 7C00 7C00 7C00 10\n0001 0001 0001 0002 03\n"
    tf.write_vectors(path, np.array([0x3C00]), results=np.array([0x3F800000]), flags=np.array([0]), widths=[16, 32])
    assert path.read_text() == "3C00 3F800000 00\n"
    tf.write_vectors(
        path, np.array([0x7E00]), np.array([1]), results=np.array([0]), flags=np.array([0x10]), widths=[16, 16, 1]
    )
    assert path.read_text() == "7E00 0001 0 10\n"


@pytest.mark.parametrize("arity", [1, 2, 3])
def test_round_trip(tmp_path, arity):
    rng = np.random.default_rng(arity)
    n = 5000
    ops = [rng.integers(0, 1 << 32, n, dtype=np.uint64) for _ in range(arity)]
    res = rng.integers(0, 1 << 16, n, dtype=np.uint64)
    flags = rng.integers(0, 32, n, dtype=np.uint64)
    path = tmp_path / "v.tv"
    tf.write_vectors(path, *ops, results=res, flags=flags, widths=[32] * arity + [16])
    back = tf.read_vectors(path, arity)
    assert columns(back) == [*"abc"[:arity], "result", "flags"]
    for want, key in zip([*ops, res, flags], back, strict=True):
        assert back[key].dtype == np.uint64
        np.testing.assert_array_equal(back[key], want)


def test_read_tolerates_hand_written_files(tmp_path):
    path = tmp_path / "hand.tv"
    path.write_bytes(b"3c00  3C00\t3c00 4000 00\r\n\n7c00 0000 7e01 7E00 10\n  0001 0001 0001 0002 3")
    got = tf.read_vectors(path, 3)
    assert got["a"].tolist() == [0x3C00, 0x7C00, 0x0001]
    assert got["c"].tolist() == [0x3C00, 0x7E01, 0x0001]
    assert got["result"].tolist() == [0x4000, 0x7E00, 0x0002]
    assert got["flags"].tolist() == [0, 0x10, 3]
    empty = tmp_path / "empty.tv"
    empty.write_bytes(b"")
    assert tf.read_vectors(empty, 2)["a"].shape == (0,)


@pytest.mark.parametrize(
    ("content", "arity", "match"),
    [
        (b"3C00 3C00 4000 00\n3C00 3C00 4000\n", 2, r"bad\.tv:2: expected 4 hex fields .* found 3"),
        (b"3C00 3C00 4000 00\n\n3C00 3C00 4000 00 00\n", 2, r"bad\.tv:3: expected 4 hex fields"),
        (b"3C00 3C00 4000 00\n3C00 3G00 4000 00\n", 2, r"bad\.tv:2: unexpected character 'G'"),
        (b"0x3C00 3C00 4000 00\n", 2, r"bad\.tv:1: unexpected character 'x'"),
        (b"3C00 3C00 11112222333344445 00\n", 2, r"bad\.tv:1: a field has more than 16 hex digits"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, content, arity, match):
    path = tmp_path / "bad.tv"
    path.write_bytes(content)
    with pytest.raises(UsageError, match=match):
        tf.read_vectors(path, arity)


def test_errors_in_a_later_block_count_lines_from_the_start(tmp_path, monkeypatch):
    monkeypatch.setattr(tf, "_READ_BLOCK", 64)
    path = tmp_path / "long.tv"
    good = b"3C00 3C00 4000 00\n"
    path.write_bytes(good * 40 + b"3C00 4000 00\n" + good * 3)
    with pytest.raises(UsageError, match=r"long\.tv:41: expected 4 hex fields"):
        tf.read_vectors(path, 2)
    # lines of two layouts: parsed by the general path, in blocks of whole lines
    path.write_bytes(b"3C00  3C00 4000 00\n" * 39 + b"3C00 3C00 4000 00\n")
    got = tf.read_vectors(path, 2)
    assert got["a"].size == 40
    assert (got["result"] == 0x4000).all()


def test_argument_errors(tmp_path):
    with pytest.raises(UsageError, match=r"cannot read TestFloat vectors from .*missing\.tv"):
        tf.read_vectors(tmp_path / "missing.tv", 3)
    with pytest.raises(UsageError, match=r"arity must be 1, 2 or 3 .* not 4"):
        tf.read_vectors(tmp_path / "missing.tv", 4)
    one = np.array([1])
    with pytest.raises(UsageError, match=r"results holds values that do not fit in 16 bits"):
        tf.write_vectors(tmp_path / "x.tv", one, results=np.array([1 << 16]), flags=one, widths=16)
    with pytest.raises(UsageError, match=r"all columns must have the same length, not a=1, results=2"):
        tf.write_vectors(tmp_path / "x.tv", one, results=np.array([1, 2]), flags=one, widths=16)
    with pytest.raises(UsageError, match=r"widths must be .* 2 in all, not \[16, 16, 16\]"):
        tf.write_vectors(tmp_path / "x.tv", one, results=one, flags=one, widths=[16, 16, 16])
    with pytest.raises(UsageError, match=r"flags holds values that do not fit in 5 bits"):
        tf.write_vectors(tmp_path / "x.tv", one, results=one, flags=np.array([32]), widths=16)
    with pytest.raises(UsageError, match=r"op must be one of 'fmadd'.* not 'mulAdd'"):
        tf.generate_vectors("mulAdd", "fp16", "rne", 10, 0)
    with pytest.raises(UsageError, match=r"convert needs src_fmt"):
        tf.generate_vectors("convert", "fp16", "rne", 10, 0)
    with pytest.raises(UsageError, match=r"count must be a non-negative integer, not -5"):
        tf.generate_vectors("add", "fp16", "rne", -5, 0)


GENERATED = [
    ("fmadd", "fp16", None),
    ("fnmsub", "fp32", None),
    ("fmadd", "fp32", "bf16"),
    ("add", "bf16", None),
    ("sub", "fp16", None),
    ("mul", "fp8e5m2", None),
    ("min", "fp16", None),
    ("max", "fp32", None),
    ("eq", "fp16", None),
    ("lt", "bf16", None),
    ("le", "fp32", None),
    ("convert", "fp16", "fp32"),
    ("convert", "fp32", "fp16"),
]


@pytest.mark.parametrize(("op", "fmt", "src"), GENERATED)
def test_generate_writes_what_the_oracle_says(tmp_path, op, fmt, src):
    path = tmp_path / f"{op}.tv"
    made = tf.generate_vectors(op, fmt, "rup", 3000, seed=4, path=path, src_fmt=src)
    arity = tf.VECTOR_OPS[op]
    back = tf.read_vectors(path, arity)
    assert columns(back) == columns(made)
    for key in made:
        np.testing.assert_array_equal(back[key], made[key])
    # corner cases come first, and the same arguments give the same file
    assert tf.generate_vectors(op, fmt, "rup", 3000, seed=4, src_fmt=src)["result"].tolist() == made["result"].tolist()
    first_line = path.read_text().splitlines()[0].split()
    assert len(first_line) == arity + 2
    assert len(first_line[-1]) == 2


def test_generate_small_count_thins_the_corners():
    made = tf.generate_vectors("fmadd", "fp16", "rne", 100, seed=1)
    assert made["a"].size == 100
    assert made["flags"].max() <= 0x1F


# --------------------------------------------------------------------------------------------
# generated files against Berkeley SoftFloat
# --------------------------------------------------------------------------------------------

SF_FUNCS = {
    ("fmadd", "fp16"): "f16_mul_add",
    ("fmadd", "fp32"): "f32_mul_add",
    ("add", "fp16"): "f16_add",
    ("mul", "fp32"): "f32_mul",
    ("le", "fp16"): "f16_le",
    ("eq", "fp32"): "f32_eq",
}


@pytest.mark.parametrize("mode", fp.ROUNDING_MODES)
@pytest.mark.parametrize(("op", "fmt"), list(SF_FUNCS))
def test_generated_files_agree_with_softfloat(tmp_path, op, fmt, mode):
    sf = pytest.importorskip("softfloatpy")
    path = tmp_path / "v.tv"
    tf.generate_vectors(op, fmt, mode, 4000, seed=7, path=path)
    cases = tf.read_vectors(path, tf.VECTOR_OPS[op])
    sf.set_tininess_mode(sf.TininessMode.AFTER_ROUNDING)
    sf.set_rounding_mode(sf.RoundingMode(fp.ROUNDING_MODES.index(mode)))
    kind, nbytes = (sf.Float16, 2) if fmt == "fp16" else (sf.Float32, 4)
    fn = getattr(sf, SF_FUNCS[(op, fmt)])
    operands = [cases[k] for k in "abc"[: tf.VECTOR_OPS[op]]]
    bad = []
    try:
        for i, row in enumerate(zip(*operands, strict=True)):
            sf.set_exception_flags(0)
            r = fn(*(kind.from_bytes(int(x).to_bytes(nbytes, "big")) for x in row))
            got = int(r) if isinstance(r, bool) else int.from_bytes(r.to_bytes(), "big")
            want = (int(cases["result"][i]), int(cases["flags"][i]))
            if (got, int(sf.get_exception_flags())) != want:
                bad.append((row, want, got))
    finally:
        sf.set_rounding_mode(sf.RoundingMode.NEAR_EVEN)
        sf.set_exception_flags(0)
    assert not bad, bad[:5]


def test_read_write_speed(tmp_path, capsys):
    """A TestFloat level-1 f16_mulAdd file has 6,133,248 lines per rounding mode: loads in seconds."""
    n = 1_000_000
    made = tf.generate_vectors("fmadd", "fp16", "rne", n, seed=2)
    path = tmp_path / "big.tv"
    t0 = time.perf_counter()
    tf.write_vectors(path, made["a"], made["b"], made["c"], results=made["result"], flags=made["flags"], widths=16)
    t1 = time.perf_counter()
    back = tf.read_vectors(path, 3)
    t2 = time.perf_counter()
    with capsys.disabled():
        print(f"\ntestfloat: write {n / (t1 - t0) / 1e6:.1f} M lines/s, read {n / (t2 - t1) / 1e6:.1f} M lines/s")
    np.testing.assert_array_equal(back["c"], made["c"])
    assert t2 - t1 < 10
