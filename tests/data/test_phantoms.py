from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from rxwgan.base.errors import RxwganError
from rxwgan.data.phantoms import render_phantom, write_demo_data
from rxwgan.data.table import TABLE_COLUMNS, read_table


def folder_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def upper_lungs(image: np.ndarray) -> np.ndarray:
    """Pixels where both upper lobes sit in every phantom (rows 25-45 %, lateral columns)."""
    n = image.shape[0]
    rows = slice(round(0.25 * n), round(0.45 * n))
    return np.concatenate([image[rows, round(0.15 * n):round(0.4 * n)].ravel(),
                           image[rows, round(0.6 * n):round(0.85 * n)].ravel()])


def test_same_arguments_give_byte_identical_files(tmp_path):
    first = write_demo_data(tmp_path / "a", n_images=6, size=32, seed=3)
    second = write_demo_data(tmp_path / "b", n_images=6, size=32, seed=3)
    files = folder_bytes(first.parent)
    assert len(files) == 7  # six images and the table
    assert files == folder_bytes(second.parent)


def test_different_seeds_give_different_data(tmp_path):
    first = folder_bytes(write_demo_data(tmp_path / "a", n_images=4, size=32, seed=0).parent)
    second = folder_bytes(write_demo_data(tmp_path / "b", n_images=4, size=32, seed=1).parent)
    images = [name for name in first if name.endswith(".png")]
    assert all(first[name] != second.get(name) for name in images)


def test_image_does_not_depend_on_how_many_images_are_written(tmp_path):
    few = pd.read_csv(write_demo_data(tmp_path / "a", n_images=3, size=32, seed=5), index_col=0)
    many = pd.read_csv(write_demo_data(tmp_path / "b", n_images=9, size=32, seed=5), index_col=0)
    for i in range(3):
        if few.target[i] == many.target[i]:
            assert few.raw_image_md5[i] == many.raw_image_md5[i]
    assert (few.target[:3] == many.target[:3]).any()


def test_table_is_in_the_users_format(tmp_path):
    table = write_demo_data(tmp_path / "demo", n_images=10, size=24, seed=2, tb_fraction=0.3)
    assert table == tmp_path / "demo" / "table.csv"
    header = table.read_text().splitlines()[0]
    assert header.split(",") == [""] + TABLE_COLUMNS

    frame = pd.read_csv(table, index_col=0)
    assert list(frame.index) == list(range(10))
    assert (frame.target == 1).sum() == 3 and (frame.target == 0).sum() == 7
    for i, row in frame.iterrows():
        assert row.raw_image_path == f"images/phantom_{i:04d}_{row.target}.png"
        assert row.image_ID == f"phantom_{i:04d}_{row.target}"
        path = table.parent / row.raw_image_path
        assert hashlib.md5(path.read_bytes()).hexdigest() == row.raw_image_md5
        with Image.open(path) as image:
            assert image.mode == "L" and image.size == (24, 24)
        assert 18 <= row.age <= 80 and row.sex in ("M", "F")
        assert (row.comment == "normal") == (row.target == 0)
        if row.target == 1:
            assert "upper lobe" in row.comment
    assert len(read_table(table)) == 10  # the project's own reader accepts it as is


def test_class_count_is_rounded_and_order_is_shuffled(tmp_path):
    frame = pd.read_csv(write_demo_data(tmp_path, n_images=40, size=16, seed=0), index_col=0)
    assert frame.target.sum() == 20
    assert list(frame.target) != sorted(frame.target) and list(frame.target) != sorted(
        frame.target, reverse=True)
    only_normal = pd.read_csv(write_demo_data(tmp_path / "n", n_images=2, size=16, tb_fraction=0.0),
                              index_col=0)
    assert list(only_normal.target) == [0, 0]


@pytest.mark.parametrize("kwargs", [{"n_images": 1}, {"size": 15}, {"tb_fraction": 1.5}])
def test_refuses_bad_arguments(tmp_path, kwargs):
    with pytest.raises(RxwganError):
        write_demo_data(tmp_path, **kwargs)
    assert not (tmp_path / "table.csv").exists()


def test_render_is_deterministic_given_the_rng_state():
    first = render_phantom(48, 1, np.random.default_rng(9))
    assert np.array_equal(first, render_phantom(48, 1, np.random.default_rng(9)))
    assert not np.array_equal(first, render_phantom(48, 1, np.random.default_rng(10)))


@pytest.mark.parametrize("size", [16, 64, 300])
@pytest.mark.parametrize("target", [0, 1])
def test_any_size_renders_a_full_range_image(size, target):
    image = render_phantom(size, target, np.random.default_rng(size))
    assert image.shape == (size, size) and image.dtype == np.uint8
    low, high = np.percentile(image, [1, 99])
    assert low < 40 and high > 150  # dark background, bright tissue
    assert (image == 255).mean() < 0.05  # not blown out
    assert (image == 0).mean() < 0.25  # background only, not a crushed image
    assert image.std() > 30


def test_anatomy_scales_with_size():
    """One rng state is the same patient at every size: drawn in normalised coordinates."""
    small = render_phantom(64, 1, np.random.default_rng(4)).astype(float)
    large = render_phantom(256, 1, np.random.default_rng(4)).astype(float)
    shrunk = large.reshape(64, 4, 64, 4).mean(axis=(1, 3))
    assert np.corrcoef(small.ravel(), shrunk.ravel())[0, 1] > 0.95
    other = render_phantom(64, 1, np.random.default_rng(5)).astype(float)
    assert np.abs(small - shrunk).mean() < 0.5 * np.abs(small - other).mean()


def test_tb_findings_brighten_the_upper_lungs():
    """Across the two classes the upper lung fields are measurably denser with TB."""
    def upper_mean(target: int, seed: int) -> float:
        return upper_lungs(render_phantom(64, target, np.random.default_rng(seed))).mean()

    normal = [upper_mean(0, seed) for seed in range(20)]
    tb = [upper_mean(1, 100 + seed) for seed in range(20)]
    assert np.mean(tb) - np.mean(normal) > 6


def test_findings_are_the_only_difference_for_one_rng_state():
    for seed in range(5):
        normal = render_phantom(96, 0, np.random.default_rng(seed)).astype(int)
        tb = render_phantom(96, 1, np.random.default_rng(seed)).astype(int)
        assert upper_lungs(tb).mean() > upper_lungs(normal).mean() + 2
        assert np.array_equal(tb[-10:], normal[-10:])  # the abdomen is untouched


def test_default_findings_make_the_same_random_draws_as_before_the_subtle_setting(tmp_path):
    """Pinned by the comments (counts and sides of findings), which only the draws decide."""
    frame = pd.read_csv(write_demo_data(tmp_path, n_images=6, size=16, seed=0), index_col=0)
    assert list(frame.comment) == [
        "normal", "normal", "patchy opacities left upper lobe; 6 small nodules",
        "patchy opacities right upper lobe; cavity right upper lobe; 7 small nodules",
        "patchy opacities both upper lobes; cavity left upper lobe; cavity right upper lobe; "
        "4 small nodules", "normal"]
    same = folder_bytes(write_demo_data(tmp_path / "clear", n_images=6, size=16, seed=0,
                                        findings="clear").parent)
    assert same == folder_bytes(write_demo_data(tmp_path / "default", n_images=6, size=16,
                                                seed=0).parent)


def test_subtle_findings_change_only_the_tb_images(tmp_path):
    clear, subtle = tmp_path / "clear", tmp_path / "subtle"
    write_demo_data(clear, n_images=12, size=32, seed=4)
    write_demo_data(subtle, n_images=12, size=32, seed=4, findings="subtle")
    clear_rows = pd.read_csv(clear / "table.csv", index_col=0)
    subtle_rows = pd.read_csv(subtle / "table.csv", index_col=0)
    assert list(clear_rows.target) == list(subtle_rows.target)
    assert 0 < clear_rows.target.sum() < 12
    for (_, before), (_, after) in zip(clear_rows.iterrows(), subtle_rows.iterrows(), strict=True):
        same = (clear / before.raw_image_path).read_bytes() == (subtle / after.raw_image_path).read_bytes()
        assert same == (before.target == 0)  # the same patients; only the findings differ
        assert (after.comment == "normal") == (after.target == 0)
        if after.target == 1:
            assert "upper lobe" in after.comment


def test_subtle_findings_brighten_the_upper_lungs_less_and_some_are_faint(tmp_path):
    def gain(findings: str) -> float:
        return np.mean([upper_lungs(render_phantom(64, 1, np.random.default_rng(seed), findings)).mean()
                        - upper_lungs(render_phantom(64, 0, np.random.default_rng(seed))).mean()
                        for seed in range(12)])

    assert 0 < gain("subtle") < 0.6 * gain("clear")
    frame = pd.read_csv(write_demo_data(tmp_path, n_images=30, size=16, findings="subtle"), index_col=0)
    comments = frame.comment[frame.target == 1]
    assert comments.str.startswith("faint signs; ").any() and not comments.str.startswith("faint").all()


def test_refuses_an_unknown_findings_setting(tmp_path):
    with pytest.raises(RxwganError, match="findings must be one of clear, subtle, not 'obvious'"):
        write_demo_data(tmp_path, n_images=4, size=16, findings="obvious")
    assert not (tmp_path / "table.csv").exists()
