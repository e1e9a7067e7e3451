"""PayloadCodec against explicit bit arithmetic on Python ints."""

import numpy as np
from amaranth.lib import data

from trainforge.sim.packing import PayloadCodec

LAYOUT = data.ArrayLayout(data.StructLayout({"value": 16, "index": 3, "mask": 8}), 3)


def test_pack_places_fields_where_amaranth_does():
    codec = PayloadCodec(LAYOUT)
    assert codec.width == 3 * 27
    assert codec.field((1, "index")) == (27 + 16, 3)
    words = codec.pack({(0, "value"): [0xABCD, 1], (2, "mask"): [0x81, 0xFF], (1, "index"): [5, 7]}, 2)
    assert words[0] == 0xABCD | (5 << (27 + 16)) | (0x81 << (2 * 27 + 19))
    assert words[1] == 1 | (7 << (27 + 16)) | (0xFF << (2 * 27 + 19))


def test_unpack_inverts_pack_on_random_words():
    codec = PayloadCodec(LAYOUT)
    rng = np.random.default_rng(0)
    words = [int(rng.integers(0, 2**62)) | (int(rng.integers(0, 2**19)) << 62) for _ in range(50)]
    paths = [(lane, name) for lane in range(3) for name in ("value", "index", "mask")]
    fields = codec.unpack(words, paths)
    for word, *values in zip(words, *fields, strict=True):
        for (lane, name), got in zip(paths, values, strict=True):
            offset, width = codec.field((lane, name))
            assert int(got) == (word >> offset) & ((1 << width) - 1)
    assert codec.pack(dict(zip(paths, fields, strict=True)), len(words)) == words


def test_records_match_int_packing_for_fields_straddling_words():
    layout = data.StructLayout({"a": 16, "b": 37, "c": 64, "d": 3})
    codec = PayloadCodec(layout)
    rng = np.random.default_rng(1)
    n = 200
    fields = {
        ("a",): rng.integers(0, 2**16, n, dtype=np.uint64),
        ("b",): rng.integers(0, 2**37, n, dtype=np.uint64),
        ("c",): rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2) + np.uint64(1),
        ("d",): rng.integers(0, 8, n, dtype=np.uint64),
    }
    records = codec.pack_records(fields, n)
    assert records.shape == (n, 4)
    words = codec.pack(fields, n)
    # the same bits, word by word, as the explicit int packing
    for row, word in zip(records, words, strict=True):
        assert int.from_bytes(row.astype("<u4").tobytes(), "little") == word
    for path, values in zip(fields, codec.unpack_records(records, list(fields)), strict=True):
        assert np.array_equal(values, fields[path])
