from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import KFold, StratifiedKFold

from rxwgan.base.errors import RxwganError
from rxwgan.data.splits import SplitSpec, partition


def shenzhen_like_targets(n: int = 662, positives: int = 336) -> np.ndarray:
    targets = np.zeros(n, dtype=np.int64)
    targets[np.random.default_rng(0).permutation(n)[:positives]] = 1
    return targets


@pytest.mark.parametrize("fold", range(5))
def test_kfold_is_sklearn_kfold_seed_512(fold):
    targets = shenzhen_like_targets()
    expected = list(KFold(5, shuffle=True, random_state=512).split(targets))[fold]
    got = partition(targets, SplitSpec(fold=fold, n_splits=5))
    np.testing.assert_array_equal(got.train, expected[0])
    np.testing.assert_array_equal(got.val, expected[1])


@pytest.mark.parametrize("test,sort", [(0, 0), (3, 7), (9, 9)])
def test_stratified_is_nested_sklearn(test, sort):
    targets = shenzhen_like_targets()
    outer = list(StratifiedKFold(10, shuffle=True, random_state=512).split(targets, targets))
    train_val, test_rows = outer[test]
    inner = list(StratifiedKFold(10, shuffle=True, random_state=512).split(
        train_val, targets[train_val]))
    got = partition(targets, SplitSpec(test=test, sort=sort))
    np.testing.assert_array_equal(got.test, test_rows)
    np.testing.assert_array_equal(got.train, train_val[inner[sort][0]])
    np.testing.assert_array_equal(got.val, train_val[inner[sort][1]])


def test_no_row_in_two_partitions_and_every_row_somewhere():
    targets = shenzhen_like_targets()
    for spec in (SplitSpec(fold=2, n_splits=5), SplitSpec(test=4, sort=1)):
        parts = partition(targets, spec)
        rows = np.concatenate([parts.train, parts.val, parts.test])
        assert len(rows) == len(set(rows.tolist())) == len(targets)


def test_seed_changes_assignment():
    targets = shenzhen_like_targets()
    a = partition(targets, SplitSpec(fold=0, n_splits=5))
    b = partition(targets, SplitSpec(fold=0, n_splits=5, seed=1))
    assert not np.array_equal(a.val, b.val)


@pytest.mark.parametrize("spec,message", [
    (SplitSpec(fold=5, n_splits=5), "--fold must be in 0..4"),
    (SplitSpec(fold=0, n_splits=1), "--n_splits must be at least 2"),
    (SplitSpec(fold=0, n_splits=700), "more than the table's 662 rows"),
    (SplitSpec(test=10, sort=0), "--test must be in 0..9"),
    (SplitSpec(test=0, sort=-1), "--sort must be in 0..9"),
    (SplitSpec(test=0), "--test and --sort go together"),
    (SplitSpec(), "choose a partition"),
])
def test_refusals(spec, message):
    with pytest.raises(RxwganError, match=message):
        partition(shenzhen_like_targets(), spec)


def test_stratified_needs_ten_per_class():
    with pytest.raises(RxwganError, match="at least 10 rows of each class"):
        partition(np.array([0] * 30 + [1] * 5), SplitSpec(test=0, sort=0))
