"""Leakage: test rows that are twins of rows the classifier or the generators trained on.

A test row with an identical image (or a barely changed one) among a fold's training rows
is not a new patient: the classifier's AUC on it, and the synthetic images' help, are then
measured on what was learnt. ``rxwgan.data.duplicates`` finds the twins once per table; each
fold counts its test rows with an exact twin, or only a near one, among its training rows
(the generators' and the classifier's: its fit and stop rows are the same ``train`` rows),
and, for a fold grouped by patient, the patients on both sides (none, by construction).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rxwgan.data.cache import ImageCache
from rxwgan.data.duplicates import Duplicates, find_duplicates
from rxwgan.data.splits import partition_table, table_groups
from rxwgan.data.table import Table, read_table
from rxwgan.utility.plan import FoldInputs


def fold_leakage(folds: list[FoldInputs]) -> dict[str, dict[str, Any]]:
    """Per fold: its test rows, and how many have an exact twin (or only a near twin) among its
    training rows; ``shared_groups`` too when the fold is grouped."""
    found: dict[tuple[str, int], tuple[Table, Duplicates]] = {}
    leakage = {}
    for fold in folds:
        key = (fold.table, fold.image_size)
        if key not in found:  # the folds of a study share their table: search it once
            table = read_table(fold.table, fold.path_column, fold.target_column)
            cache = ImageCache(fold.cache_dir)
            depths = cache.bit_depths(table.paths, fold.bit_depth)
            found[key] = table, find_duplicates(cache, table.paths, fold.image_size, depths, progress=False)
        table, duplicates = found[key]
        leakage[fold.split.name] = _leakage(table, duplicates, fold)
    return leakage


def _leakage(table: Table, duplicates: Duplicates, fold: FoldInputs) -> dict[str, Any]:
    parts = partition_table(table, fold.split)
    test, train = getattr(parts, fold.test_partition), parts.train
    exact = _twinned(test, train, duplicates.exact, len(table))
    near = _twinned(test, train, duplicates.near or [], len(table)) & ~exact
    result = {"test_rows": len(test), "exact_twin_in_training": int(exact.sum()),
              "near_twin_in_training": int(near.sum())}
    groups = table_groups(table, fold.split)
    if groups is not None:
        result["shared_groups"] = len(set(groups[test]) & set(groups[train]))
    return result


def _twinned(test: np.ndarray, train: np.ndarray, groups: list[list[int]], n: int) -> np.ndarray:
    """For each test row, whether its group has a training row."""
    group_of = np.full(n, -1)
    for index, members in enumerate(groups):
        group_of[members] = index
    trained = set(group_of[train][group_of[train] >= 0].tolist())
    return np.array([group_of[row] in trained for row in test], dtype=bool)


def leakage_line(fold: FoldInputs, leak: dict[str, Any]) -> str:
    """``fold_0: 3 of 20 test rows have an identical image among the training rows, 1 more a near twin``."""
    line = (f"{fold.split.name}: {leak['exact_twin_in_training']} of {leak['test_rows']} test rows have an "
            f"identical image among the training rows, {leak['near_twin_in_training']} more a near twin")
    if "shared_groups" in leak:
        line += f"; {leak['shared_groups']} {fold.split.group_column} groups on both sides"
    return line

