from __future__ import annotations

import numpy as np
import pytest

from helpers import write_png
from rxwgan.base.errors import RxwganError
from rxwgan.data.cache import ImageCache
from rxwgan.data.images import decode_unit, model_image
from rxwgan.data.table import read_table


def entries(cache: ImageCache) -> list:
    return sorted(cache.root.rglob("*.npz"))


def test_fills_once_then_reads(make_table, tmp_path, monkeypatch):
    table = read_table(make_table(n=6, size=40))
    cache = ImageCache(tmp_path / "c")
    first = cache.load(table.paths, 16, progress=False)
    assert first.shape == (6, 1, 16, 16) and len(entries(cache)) == 6
    np.testing.assert_array_equal(first[2, 0], model_image(decode_unit(table.paths[2]), 16))

    calls = []
    monkeypatch.setattr("rxwgan.data.cache.decode_unit", lambda *a: calls.append(a))
    second = cache.load(table.paths, 16, progress=False)
    assert calls == []  # nothing decoded on a warm cache
    np.testing.assert_array_equal(first, second)


def test_size_is_part_of_key(make_table, tmp_path):
    table = read_table(make_table(n=3))
    cache = ImageCache(tmp_path / "c")
    cache.load(table.paths, 8, progress=False)
    cache.load(table.paths, 16, progress=False)
    assert len(entries(cache)) == 6


def test_changed_file_is_redecoded(make_table, tmp_path):
    table = read_table(make_table(n=3))
    cache = ImageCache(tmp_path / "c")
    before = cache.load(table.paths, 16, progress=False)
    write_png(table.paths[1], np.full((24, 24), 255, np.uint8))
    after = cache.load(table.paths, 16, progress=False)
    assert np.allclose(after[1], 1.0) and not np.allclose(before[1], 1.0)
    np.testing.assert_array_equal(before[0], after[0])


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_entry_is_rebuilt(make_table, tmp_path, damage):
    table = read_table(make_table(n=2))
    cache = ImageCache(tmp_path / "c")
    good = cache.load(table.paths, 16, progress=False)
    entry = entries(cache)[0]
    data = bytearray(entry.read_bytes())
    if damage == "truncate":
        entry.write_bytes(data[: len(data) // 2])
    else:
        data[len(data) - 200] ^= 0xFF  # inside the image payload
        entry.write_bytes(bytes(data))
    np.testing.assert_array_equal(cache.load(table.paths, 16, progress=False), good)


def test_bad_images_reported_with_rows(make_table, tmp_path):
    table = read_table(make_table(n=5))
    table.paths[3].write_bytes(b"garbage")
    table.paths[1].write_bytes(b"")
    with pytest.raises(RxwganError) as info:
        ImageCache(tmp_path / "c").load_rows(table, 16, progress=False)
    message = str(info.value)
    assert message.startswith("2 image(s) could not be decoded: row 2 (line 3)")
    assert "row 4 (line 5)" in message and "img_003_0.png" in message


def test_rows_of_a_table_load_in_order(make_table, tmp_path):
    table = read_table(make_table(n=8))
    cache = ImageCache(tmp_path / "c")
    some = cache.load_rows(table, 16, positions=[1, 4, 6], progress=False)
    everything = cache.load_rows(table, 16, progress=False)
    assert some.shape == (3, 1, 16, 16)
    np.testing.assert_array_equal(some, everything[[1, 4, 6]])
    assert float(some.min()) >= -1 and float(some.max()) <= 1
