"""Exact and near twins: found whatever the file, kept apart from distinct patients, counted
across a split, and dropped by ``table dedupe`` without deleting an image."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from rxwgan.cli import main
from rxwgan.data import cache as cache_module
from rxwgan.data.cache import ImageCache
from rxwgan.data.duplicates import exact_groups, find_duplicates, pixel_hashes, straddling
from rxwgan.data.phantoms import render_phantom, write_demo_data
from rxwgan.data.splits import SplitSpec, partition
from rxwgan.data.table import read_table
from rxwgan.data.twin_phantoms import PATIENT_COLUMN, near_copy, write_twin_table


def save(path, pixels: np.ndarray, **options) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **options)
    return f"images/{path.name}"


def write_rows(folder, rows: list[tuple[str, int]]) -> str:
    """A table in the users' format (leading index column) of (relative image path, target) rows."""
    frame = pd.DataFrame({"target": [t for _, t in rows], "raw_image_path": [p for p, _ in rows]})
    frame.to_csv(folder / "table.csv")
    return str(folder / "table.csv")


def search(csv, size: int = 64, **settings):
    """``find_duplicates`` over a table's rows, as ``table check`` runs it (cache filled first)."""
    table = read_table(csv)
    cache = ImageCache()
    depths = cache.bit_depths(table.paths)
    assert cache.fill(table.paths, size, depths=depths, progress=False) == []
    return find_duplicates(cache, table.paths, size, depths, progress=False, **settings)


def one_line_error(capsys, code: int) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    return err[0]


@pytest.fixture
def formats(tmp_path):
    """One phantom saved five ways with the same decoded pixels, one a grey level off, one other."""
    rng = np.random.default_rng(3)
    pixels = render_phantom(48, 1, rng)
    pixels[0, 0] = 255  # so its 16-bit copy (values x 257) decodes at 16 bits: the same floats
    off = pixels.copy()
    off[20, 20] = pixels[20, 20] ^ 1
    images = tmp_path / "d" / "images"
    rows = [(save(images / "a.png", pixels), 1),
            (save(images / "other.png", render_phantom(48, 0, rng)), 0),
            (save(images / "b_again.png", pixels, compress_level=0), 1),
            (save(images / "c.tif", pixels), 1),
            (save(images / "off_by_one.png", off), 1),
            (save(images / "d16.png", pixels.astype(np.uint16) * 257), 0),
            (save(images / "e.png", np.dstack([pixels] * 3)), 1)]  # RGB of equal channels
    return write_rows(tmp_path / "d", rows)


def test_exact_twins_share_decoded_pixels_whatever_the_name_format_or_bytes(formats, monkeypatch):
    table = read_table(formats)
    cache = ImageCache()
    assert len({path.read_bytes() for path in table.paths}) == 7
    hashes = pixel_hashes(cache, table.paths, cache.bit_depths(table.paths))
    assert exact_groups(hashes) == [[0, 2, 3, 5, 6]]

    def no_decoding(*args):
        raise AssertionError("decoded again")

    monkeypatch.setattr(cache_module, "decode_unit", no_decoding)
    assert pixel_hashes(cache, table.paths, cache.bit_depths(table.paths)) == hashes


def test_a_grey_level_off_is_a_near_twin_and_another_phantom_is_neither(formats):
    found = search(formats)
    assert found.exact == [[0, 2, 3, 5, 6]]
    assert found.near == [[0, 2, 3, 4, 5, 6]]
    assert search(formats, near=False).near is None


@pytest.mark.parametrize("size", [64, 128])  # at 128 px a 1 px shift is half a pixel when compared
def test_twin_table_groups_follow_ups_by_patient_and_never_mixes_patients(tmp_path, size):
    csv = write_twin_table(tmp_path / "twins", n_patients=40, size=size, seed=5)
    frame = pd.read_csv(csv, index_col=0)
    found = search(csv, size)
    blank = frame["comment"].eq("blank film").to_numpy()
    patients = frame[PATIENT_COLUMN].to_numpy()
    for group in found.exact + found.near:
        assert blank[group].all() or len(set(patients[group])) == 1, frame.iloc[group]
    assert [g for g in found.exact if blank[g].all()] == [np.flatnonzero(blank).tolist()]
    group_of = {row: min(group) for group in found.exact + found.near for row in group}
    for patient, rows in frame.reset_index().groupby(PATIENT_COLUMN).groups.items():
        if len(rows) > 1 and not blank[rows[0]]:
            assert len({group_of.get(row) for row in rows}) == 1, patient


def test_distinct_phantoms_are_not_twins(tmp_path):
    found = search(write_demo_data(tmp_path / "demo", n_images=40, size=64, seed=2), size=64)
    assert found.exact == [] and found.near == []


def test_near_twins_of_make_table_images_and_the_threshold(make_table, tmp_path):
    csv = make_table(n=8, size=32)
    table = read_table(csv)
    pixels = np.asarray(Image.open(table.paths[3]))
    copy = near_copy(pixels, np.random.default_rng(0), gamma=1.03, noise=2.0)
    frame = pd.read_csv(csv, index_col=0)[["target", "raw_image_path"]]
    frame.loc[8] = [0, save(tmp_path / "data" / "images" / "copy.png", copy)]
    frame.to_csv(csv)
    assert search(csv, size=32).near == [[3, 8]]
    assert search(csv, size=32, near_threshold=0.5).near == []


def test_straddling_counts_groups_with_rows_in_more_than_one_part():
    parts = ["train", "val", "train", "train", "val", "val", "test"]
    assert straddling([[0, 1], [2, 3], [4, 5, 6]], parts) == 2
    assert straddling([], parts) == 0


def test_table_check_lists_groups_marks_mixed_classes_and_counts_straddling(formats, capsys):
    assert main(["table", "check", formats, "--size", "48", "--fold", "1", "--n_splits", "2"]) == 0
    out = capsys.readouterr().out
    assert "duplicates: 1 exact group (5 rows), 1 near group (6 rows) within 7.5 grey levels" in out
    assert ("exact 1: 5 rows, classes differ (0, 1): row 1 (line 2) images/a.png (target 1); "
            "row 3 (line 4) images/b_again.png (target 1)") in out
    assert "near 1: 6 rows, classes differ (0, 1):" in out and "row 5 (line 6) images/off_by_one.png" in out
    parts = partition(np.array([1, 0, 1, 1, 1, 0, 1]), SplitSpec(fold=1, n_splits=2)).labels(7)
    expected = [straddling([[0, 2, 3, 5, 6]], parts), straddling([[0, 2, 3, 4, 5, 6]], parts)]
    assert (f"split fold 1 of 2: {expected[0]} of 1 exact group and {expected[1]} of 1 near group "
            f"straddle the partitions") in out
    assert "no problems found" in out


def test_table_check_caps_the_listing(tmp_path, capsys):
    images = tmp_path / "d" / "images"
    rows = []
    for i in range(22):
        pixels = np.full((8, 8), 10 * i, np.uint8)
        rows += [(save(images / f"{i}a.png", pixels), 0), (save(images / f"{i}b.png", pixels), 0)]
    assert main(["table", "check", write_rows(tmp_path / "d", rows), "--size", "8", "--no-near"]) == 0
    out = capsys.readouterr().out
    assert "duplicates: 22 exact groups (44 rows); near twins not searched (--no-near)" in out
    assert "exact 20: 2 rows" in out and "exact 21:" not in out and "and 2 more exact groups" in out


def test_dedupe_keeps_the_first_row_of_each_exact_group_and_deletes_nothing(formats, tmp_path, capsys):
    out = tmp_path / "elsewhere" / "deduped.csv"
    assert main(["table", "dedupe", formats, "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert ("kept row 1 (line 2) images/a.png (target 1), classes differ (0, 1); dropped row 3 (line 4) "
            "images/b_again.png (target 1); row 4 (line 5)") in printed
    assert "wrote" in printed and "3 of 7 rows" in printed
    before, after = read_table(formats), read_table(out)
    assert all(path.is_file() for path in before.paths)
    assert [path.resolve() for path in after.paths] == [before.paths[i].resolve() for i in (0, 1, 4)]
    assert after.frame.index.tolist() == [0, 1, 4] and after.has_index_column
    assert search(out).exact == []


@pytest.mark.parametrize("value", ["-1", "nan", "many"])
def test_a_bad_threshold_is_refused_in_one_line(formats, capsys, value):
    line = one_line_error(capsys, main(["table", "check", formats, "--near-threshold", value]))
    assert "--near-threshold" in line or "near_threshold" in line


def test_dedupe_refuses_an_existing_output_and_the_table_itself(formats, tmp_path, capsys):
    out = tmp_path / "deduped.csv"
    out.write_text("mine")
    line = one_line_error(capsys, main(["table", "dedupe", formats, "-o", str(out)]))
    assert str(out) in line and "--overwrite" in line and out.read_text() == "mine"
    before = open(formats).read()
    line = one_line_error(capsys, main(["table", "dedupe", formats, "-o", formats, "--overwrite"]))
    assert "the table itself" in line and open(formats).read() == before


def test_the_cache_remembers_each_decoded_files_pixel_hash(formats, monkeypatch):
    """Training fills the cache: the duplicate search after it decodes nothing more."""
    table = read_table(formats)
    cache = ImageCache()
    depths = cache.bit_depths(table.paths)
    cache.fill(table.paths, 32, depths=depths, progress=False)

    def no_decoding(*args):
        raise AssertionError("decoded again")

    monkeypatch.setattr(cache_module, "decode_unit", no_decoding)
    assert exact_groups(pixel_hashes(cache, table.paths, depths)) == [[0, 2, 3, 5, 6]]
