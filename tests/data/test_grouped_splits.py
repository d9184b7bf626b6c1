"""Patient-level folds (--group-column): no group on two sides of any split, the seed moves them,
the same seed gives the same folds everywhere, and without the flag the folds are the old tool's."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rxwgan.base.errors import RxwganError
from rxwgan.data.splits import (
    STRATIFIED_FOLDS,
    SplitSpec,
    grouped_holdout,
    partition,
    partition_table,
    table_groups,
)
from rxwgan.data.table import Table

LARGEST_PATIENT = 5


def patients(n: int = 150, seed: int = 0, mixed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Targets and patient ids of ``n`` patients of one to five images, one class each (the first
    ``mixed`` patients have images of both classes), rows in random order."""
    rng = np.random.default_rng(seed)
    sizes = 1 + np.arange(n) % LARGEST_PATIENT
    groups = np.repeat([f"P{i:04d}" for i in range(n)], sizes)
    targets = np.repeat((rng.random(n) < 0.4).astype(np.int64), sizes)
    for i in range(mixed):
        targets[np.flatnonzero(groups == f"P{i:04d}")[::2]] ^= 1
    order = rng.permutation(len(targets))
    return targets[order], groups[order]


def grouped(**fields) -> SplitSpec:
    return SplitSpec(group_column="patient_id", **fields)


def assert_whole_groups(parts, groups: np.ndarray, n_rows: int) -> None:
    sides = [set(groups[getattr(parts, name)]) for name in ("train", "val", "test")]
    assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    rows = np.concatenate([parts.train, parts.val, parts.test])
    assert len(rows) == len(set(rows.tolist())) == n_rows


@pytest.mark.parametrize("n_splits", [2, 3, 5, 10])
@pytest.mark.parametrize("seed", [512, 7])
def test_kfold_keeps_every_patient_on_one_side_and_folds_balanced(n_splits, seed):
    targets, groups = patients(seed=seed)
    vals = []
    for fold in range(n_splits):
        parts = partition(targets, grouped(fold=fold, n_splits=n_splits, seed=seed), groups)
        assert_whole_groups(parts, groups, len(targets))
        vals.append(parts.val)
    every = np.sort(np.concatenate(vals))
    np.testing.assert_array_equal(every, np.arange(len(targets)))  # each row validated once
    sizes = [len(v) for v in vals]
    assert max(sizes) - min(sizes) <= LARGEST_PATIENT


@pytest.mark.parametrize("seed", [512, 3])
def test_all_100_test_sort_pairs_keep_patients_whole_and_stay_stratified(seed):
    targets, groups = patients(n=200, seed=seed, mixed=6)
    tests = []
    for test in range(STRATIFIED_FOLDS):
        for sort in range(STRATIFIED_FOLDS):
            parts = partition(targets, grouped(test=test, sort=sort, seed=seed), groups)
            assert_whole_groups(parts, groups, len(targets))
        tests.append(parts.test)
    np.testing.assert_array_equal(np.sort(np.concatenate(tests)), np.arange(len(targets)))
    for target in (0, 1):  # each test fold holds about a tenth of each class
        counts = [int((targets[rows] == target).sum()) for rows in tests]
        assert max(counts) - min(counts) <= 2 * LARGEST_PATIENT


@pytest.mark.parametrize("spec", [grouped(fold=1, n_splits=5), grouped(test=2, sort=4)])
def test_split_seed_moves_grouped_folds_and_the_same_seed_gives_the_same(spec):
    targets, groups = patients()
    first = partition(targets, spec, groups)
    again = partition(targets, spec, groups)
    moved = partition(targets, SplitSpec(**{**spec.to_dict(), "seed": 1}), groups)
    np.testing.assert_array_equal(first.val, again.val)
    assert not np.array_equal(first.val, moved.val)


def test_the_same_patients_land_in_the_same_folds_whatever_the_row_order():
    targets, groups = patients()
    order = np.random.default_rng(5).permutation(len(targets))
    for spec in (grouped(fold=3, n_splits=5), grouped(test=7, sort=1)):
        a = partition(targets, spec, groups)
        b = partition(targets[order], spec, groups[order])
        for name in ("train", "val", "test"):
            assert set(groups[getattr(a, name)]) == set(groups[order][getattr(b, name)])


def digest(targets: np.ndarray, specs: list[SplitSpec], groups: np.ndarray | None = None) -> str:
    found = hashlib.sha256()
    for spec in specs:
        parts = partition(targets, spec, groups)
        for rows in (parts.train, parts.val, parts.test):
            found.update(np.asarray(rows, dtype=np.int64).tobytes() + b"|")
    return found.hexdigest()


def formula_patients() -> tuple[np.ndarray, np.ndarray]:
    """Targets and patient ids made without any random generator: 80 patients of 1-5 images,
    40% of them positive."""
    sizes = 1 + np.arange(80) * 3 % LARGEST_PATIENT
    targets = np.repeat((np.arange(80) * 7 % 10 < 4).astype(np.int64), sizes)
    return targets, np.repeat([f"P{i:03d}" for i in range(80)], sizes)


KFOLD_SPECS = [SplitSpec(fold=f, n_splits=n, seed=s) for n in (2, 5) for f in range(n) for s in (512, 3)]
STRATIFIED_SPECS = [SplitSpec(test=t, sort=o, seed=s) for t in range(10) for o in range(10) for s in (512, 3)]


def test_the_old_folds_are_unchanged_without_the_flag():
    # Taken from rxwgan before --group-column existed (its splits.py, same specs and table).
    targets = (np.arange(240) * 7 % 10 < 4).astype(np.int64)
    assert digest(targets, KFOLD_SPECS) == "c908d30343c1cd6fb4b3bf1ddf5a48701f1748bb190b79658c63c0ecbcc7a937"
    assert digest(targets, STRATIFIED_SPECS) == (
        "cb829d0adc4a03e1557638f62c4c03a4ad977782a099b5dcf2f44438cfa11c68")
    assert SplitSpec(fold=0, n_splits=5).to_dict() == {"fold": 0, "n_splits": 5, "test": None, "sort": None,
                                                         "seed": 512}  # what config.json always held


def test_grouped_folds_are_fixed_by_the_seed_alone():
    """No scikit-learn and no NumPy random stream decides them: these stay on every release."""
    targets, groups = formula_patients()
    specs = [SplitSpec(**{**spec.to_dict(), "group_column": "patient_id"}) for spec in KFOLD_SPECS]
    assert digest(targets, specs, groups) == (
        "c8c4dded4fd54b834c19d931a256e758060ba4d6366c884c029054ee6433beb1")
    specs = [grouped(test=t, sort=o, seed=s) for t in (0, 9) for o in (0, 5) for s in (512, 3)]
    assert digest(targets, specs, groups) == (
        "8e4d45821ebc891ed426f53e4d73b8a9739e512fbc86adf357c2f5648ce2eb6a")


def test_the_spec_records_its_column_only_when_grouped():
    spec = grouped(fold=0, n_splits=5)
    assert spec.to_dict()["group_column"] == "patient_id" and SplitSpec.from_dict(spec.to_dict()) == spec
    assert "group_column" not in SplitSpec(fold=0, n_splits=5).to_dict()
    assert SplitSpec.from_dict({"fold": 0, "n_splits": 5}).group_column is None  # an old record
    assert spec.changes_from(SplitSpec(fold=0, n_splits=5)) == ["--group-column None -> patient_id"]


def test_grouped_holdout_keeps_patients_whole_and_holds_about_the_share():
    targets, groups = patients(n=200)
    kept, held = grouped_holdout(targets, groups, 0.2, seed=4)
    assert not set(groups[kept]) & set(groups[held])
    assert sorted(np.concatenate([kept, held]).tolist()) == list(range(len(targets)))
    for target in (0, 1):
        share = (targets[held] == target).sum() / (targets == target).sum()
        assert 0.15 < share < 0.25


@pytest.mark.parametrize("spec, targets, groups, message", [
    (grouped(fold=0, n_splits=5), [0, 1] * 4, ["a", "b", "c", "d"] * 2,
     "--n_splits 5 is more than the table's 4 groups of patient_id"),
    (grouped(test=0, sort=0), [0] * 30 + [1] * 30,
     [f"N{i % 15}" for i in range(30)] + [f"T{i % 9}" for i in range(30)],
     "at least 10 groups of each class in the table; the smallest class has 9"),
])
def test_refusals(spec, targets, groups, message):
    with pytest.raises(RxwganError, match=message):
        partition(np.array(targets), spec, np.array(groups))


def test_a_grouped_split_needs_groups_and_an_ungrouped_one_takes_none():
    targets, groups = patients()
    with pytest.raises(ValueError):
        partition(targets, grouped(fold=0, n_splits=5))
    with pytest.raises(ValueError):
        partition(targets, SplitSpec(fold=0, n_splits=5), groups)


def table_of(frame: pd.DataFrame) -> Table:
    return Table(frame, Path("/data/table.csv"))


def test_the_groups_come_from_the_table_which_must_have_them():
    frame = pd.DataFrame({"raw_image_path": [f"{i}.png" for i in range(20)], "target": [0, 1] * 10,
                          "patient_id": [f"P{i // 2}" for i in range(20)]})
    parts = partition_table(table_of(frame), grouped(fold=0, n_splits=2))
    assert not set(frame["patient_id"].iloc[parts.train]) & set(frame["patient_id"].iloc[parts.val])
    assert table_groups(table_of(frame), SplitSpec(fold=0, n_splits=2)) is None
    with pytest.raises(RxwganError, match=r"/data/table.csv: no column 'subject' .*--group-column subject"):
        table_groups(table_of(frame), SplitSpec(fold=0, n_splits=2, group_column="subject"))
    frame.loc[3, "patient_id"] = " "
    with pytest.raises(RxwganError, match=r"1 row\(s\) with no patient_id \(first: row 4"):
        table_groups(table_of(frame), grouped(fold=0, n_splits=2))
    frame.loc[3, "patient_id"] = None  # an empty cell of a CSV reads as NaN, not as a patient "nan"
    frame.loc[5, "patient_id"] = float("nan")
    with pytest.raises(RxwganError, match=r"2 row\(s\) with no patient_id \(first: row 4"):
        table_groups(table_of(frame), grouped(fold=0, n_splits=2))
