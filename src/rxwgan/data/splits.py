"""Fold assignments: the old tool's (same scikit-learn splitters and seed), or patient-level ones.

Splitting happens on the whole table before any class filter, so both classes of a
study share one assignment of rows to folds.

Without a group column the folds are exactly the old tool's, row by row. With one
(``--group-column``, e.g. a patient id) every group lands whole on one side of every split:
our own deterministic assignment (``_group_bins``), not scikit-learn's, so a seed gives the
same folds on every scikit-learn and NumPy release.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold

from rxwgan.base.errors import RxwganError
from rxwgan.data.table import Table

DEFAULT_SEED = 512  # the old tool's splitter seed; also every run's default seed
DEFAULT_N_SPLITS = 5  # the old README's example: --fold 0 --n_splits 5
STRATIFIED_FOLDS = 10


@dataclass(frozen=True)
class SplitSpec:
    """Which partition of the table a run uses: k-fold (fold, n_splits) or stratified (test, sort)."""

    fold: int | None = None
    n_splits: int | None = None
    test: int | None = None
    sort: int | None = None
    seed: int = DEFAULT_SEED
    group_column: str | None = None  # rows sharing a value here stay together; None: row by row

    def to_dict(self) -> dict[str, int | str | None]:
        """The spec as saved; ``group_column`` only when set, so an ungrouped run's record (and
        its fingerprint) is the one older versions wrote."""
        data: dict[str, int | str | None] = {"fold": self.fold, "n_splits": self.n_splits, "test": self.test,
                                             "sort": self.sort, "seed": self.seed}
        if self.group_column is not None:
            data["group_column"] = self.group_column
        return data

    @classmethod
    def from_dict(cls, data: dict) -> SplitSpec:
        return cls(fold=data.get("fold"), n_splits=data.get("n_splits"), test=data.get("test"),
                   sort=data.get("sort"), seed=data.get("seed", DEFAULT_SEED),
                   group_column=data.get("group_column"))

    @classmethod
    def from_flags(cls, fold: int | None = None, n_splits: int | None = None, test: int | None = None,
                   sort: int | None = None, seed: int = DEFAULT_SEED,
                   group_column: str | None = None) -> SplitSpec:
        """The partition a command's flags name; k-fold 0 of 5 when they name none."""
        if test is None and sort is None:
            fold = 0 if fold is None else fold
            n_splits = DEFAULT_N_SPLITS if n_splits is None else n_splits
        return cls(fold=fold, n_splits=n_splits, test=test, sort=sort, seed=seed, group_column=group_column)

    def changes_from(self, before: SplitSpec) -> list[str]:
        """The flags that differ from ``before``, as ``--n_splits 2 -> 3`` (for refusals)."""
        flags = {"fold": "--fold", "n_splits": "--n_splits", "test": "--test", "sort": "--sort",
                 "seed": "--split-seed", "group_column": "--group-column"}
        old, new = before.to_dict(), self.to_dict()
        return [f"{flag} {old.get(key)} -> {new.get(key)}" for key, flag in flags.items()
                if old.get(key) != new.get(key)]

    @property
    def scheme(self) -> str:
        return "stratified" if self.test is not None else "kfold"

    @property
    def name(self) -> str:
        """A folder-friendly name: ``fold_0`` or ``test_3_sort_7`` (the old tool's habit)."""
        return f"test_{self.test}_sort_{self.sort}" if self.scheme == "stratified" else f"fold_{self.fold}"

    def check(self) -> None:
        if self.group_column is not None and not self.group_column.strip():
            raise RxwganError("--group-column needs a column name")
        if self.test is not None or self.sort is not None:
            if self.test is None or self.sort is None:
                raise RxwganError("--test and --sort go together")
            if self.fold is not None:
                raise RxwganError("use either --fold/--n_splits or --test/--sort, not both")
            for flag, value in (("--test", self.test), ("--sort", self.sort)):
                if not 0 <= value < STRATIFIED_FOLDS:
                    raise RxwganError(f"{flag} must be in 0..{STRATIFIED_FOLDS - 1}, not {value}")
            return
        if self.fold is None or self.n_splits is None:
            raise RxwganError("choose a partition: --fold K --n_splits N, or --test T --sort S")
        if self.n_splits < 2:
            raise RxwganError(f"--n_splits must be at least 2, not {self.n_splits}")
        if not 0 <= self.fold < self.n_splits:
            raise RxwganError(f"--fold must be in 0..{self.n_splits - 1} for --n_splits "
                              f"{self.n_splits}, not {self.fold}")


@dataclass(frozen=True)
class Partition:
    """Row positions (into the whole table) of each part of one split."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def labels(self, n_rows: int) -> list[str]:
        """The partition name of every row of the table (for the split CSV)."""
        names = np.full(n_rows, "", dtype=object)
        for name in ("train", "val", "test"):
            names[getattr(self, name)] = name
        return names.tolist()


def partition(targets: np.ndarray, spec: SplitSpec, groups: np.ndarray | None = None) -> Partition:
    """The partition of a table with these targets (one per row): the old tool's, or, for a
    grouped ``spec``, one that keeps each of ``groups`` (one per row) whole on one side."""
    spec.check()
    targets = np.asarray(targets)
    if (groups is None) != (spec.group_column is None):  # a caller's bug: table_groups gives what it asks
        raise ValueError(f"groups go with a split grouped by a column, and only then ({spec.group_column!r})")
    if groups is not None:
        return _grouped_partition(targets, np.asarray(groups), spec)
    n_rows = len(targets)
    if spec.scheme == "kfold":
        if spec.n_splits > n_rows:
            raise RxwganError(f"--n_splits {spec.n_splits} is more than the table's {n_rows} rows")
        folds = list(KFold(n_splits=spec.n_splits, shuffle=True,
                           random_state=spec.seed).split(np.zeros(n_rows)))
        train, val = folds[spec.fold]
        return Partition(train=train, val=val)

    outer = _stratified_folds(targets, "table", spec.seed)
    train_val, test = outer[spec.test]
    inner = _stratified_folds(targets[train_val], f"train+val rows of --test {spec.test}", spec.seed)
    train_local, val_local = inner[spec.sort]
    return Partition(train=train_val[train_local], val=train_val[val_local], test=test)


def table_groups(table: Table, spec: SplitSpec) -> np.ndarray | None:
    """Each row's group (as text) when ``spec`` is grouped, else None; refuses a table
    without the column or with a row that has no group."""
    column = spec.group_column
    if column is None:
        return None
    if column not in table.frame.columns:
        raise RxwganError(f"{table.source}: no column {column!r} to group rows by (--group-column {column})")
    values = table.frame[column]
    groups = values.astype(str).str.strip().to_numpy()
    empty = np.flatnonzero(values.isna().to_numpy() | (groups == ""))  # an empty CSV cell reads as NaN
    if len(empty):
        raise RxwganError(f"{table.source}: {len(empty)} row(s) with no {column} (first: "
                          f"{table.row_label(int(empty[0]))}); every row needs a group for --group-column")
    return groups


def partition_table(table: Table, spec: SplitSpec) -> Partition:
    """``partition`` of a table's rows, grouped by its ``spec.group_column`` when set."""
    return partition(table.targets, spec, table_groups(table, spec))


def grouped_holdout(targets: np.ndarray, groups: np.ndarray, share: float,
                    seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row positions ``(kept, held)``: about ``share`` of each class's rows held out, whole groups
    only (the utility's early-stopping rows of a grouped fold)."""
    bins = _group_bins(np.asarray(groups), np.asarray(targets), (1 - share, share), seed)
    return np.flatnonzero(bins == 0), np.flatnonzero(bins == 1)


def _stratified_folds(targets: np.ndarray, what: str, seed: int) -> list:
    smallest = int(np.bincount(targets.astype(np.int64)).min()) if len(targets) else 0
    if smallest < STRATIFIED_FOLDS or len(np.unique(targets)) < 2:
        raise RxwganError(f"the stratified scheme needs at least {STRATIFIED_FOLDS} rows of each "
                          f"class in the {what}; the smallest class has {smallest}")
    splitter = StratifiedKFold(n_splits=STRATIFIED_FOLDS, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(targets)), targets))


def _grouped_partition(targets: np.ndarray, groups: np.ndarray, spec: SplitSpec) -> Partition:
    """K-fold balanced in rows, or the 10 x 10 scheme balanced per class; whole groups only."""
    if len(groups) != len(targets):
        raise ValueError(f"{len(groups)} groups for {len(targets)} rows")
    if spec.scheme == "kfold":
        n_groups = len(np.unique(groups))
        if spec.n_splits > n_groups:
            raise RxwganError(f"--n_splits {spec.n_splits} is more than the table's {n_groups} groups "
                              f"of {spec.group_column}")
        folds = _group_bins(groups, np.zeros(len(targets), dtype=np.int64), (1,) * spec.n_splits, spec.seed)
        return Partition(train=np.flatnonzero(folds != spec.fold), val=np.flatnonzero(folds == spec.fold))

    outer = _grouped_stratified_folds(targets, groups, spec, "table")
    train_val, test = np.flatnonzero(outer != spec.test), np.flatnonzero(outer == spec.test)
    inner = _grouped_stratified_folds(targets[train_val], groups[train_val], spec,
                                      f"train+val rows of --test {spec.test}")
    return Partition(train=train_val[inner != spec.sort], val=train_val[inner == spec.sort], test=test)


def _grouped_stratified_folds(targets: np.ndarray, groups: np.ndarray, spec: SplitSpec,
                              what: str) -> np.ndarray:
    """Each row's fold of STRATIFIED_FOLDS, a group counting for its majority class."""
    _, _, counts = _group_counts(groups, targets)
    per_class = np.bincount(counts.argmax(axis=1), minlength=2)
    if per_class.min() < STRATIFIED_FOLDS:
        raise RxwganError(f"the stratified scheme with --group-column {spec.group_column} needs at least "
                          f"{STRATIFIED_FOLDS} groups of each class in the {what}; the smallest class has "
                          f"{int(per_class.min())}")
    return _group_bins(groups, targets, (1,) * STRATIFIED_FOLDS, spec.seed)


def _group_counts(groups: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct groups, each row's group index, and each group's rows per label."""
    names, row_group = np.unique(groups, return_inverse=True)
    counts = np.zeros((len(names), max(int(labels.max(initial=0)) + 1, 2)), dtype=np.int64)
    np.add.at(counts, (row_group, labels.astype(np.int64)), 1)
    return names, row_group, counts


def _group_bins(groups: np.ndarray, labels: np.ndarray, weights: Sequence[float], seed: int) -> np.ndarray:
    """Each row's bin: whole groups, dealt to bins of the given relative sizes.

    Groups go largest first, equal sizes in an order the seed shuffles (a hash of the seed and
    the group's name: the same on every platform and library release, and unchanged by the
    table's row order); each goes to the bin it leaves least full, relative to the bin's weight,
    in rows of its majority label (ties: the lower label), then in all rows, then the first bin.
    All labels equal balances rows alone.
    """
    names, row_group, counts = _group_counts(groups, labels)
    sizes, majority = counts.sum(axis=1), counts.argmax(axis=1)
    order = sorted(range(len(names)), key=lambda g: (-sizes[g], _shuffle_key(seed, str(names[g]))))
    weight = np.asarray(weights, dtype=np.float64)
    load = np.zeros((len(weight), counts.shape[1]), dtype=np.int64)
    bin_of = np.empty(len(names), dtype=np.int64)
    for g in order:
        label = majority[g]
        of_label = (load[:, label] + counts[g, label]) / weight
        of_rows = (load.sum(axis=1) + sizes[g]) / weight
        chosen = int(np.lexsort((of_rows, of_label))[0])  # stable: equal fills keep the first bin
        bin_of[g] = chosen
        load[chosen] += counts[g]
    return bin_of[row_group]


def _shuffle_key(seed: int, name: str) -> bytes:
    return hashlib.sha256(f"{seed}\0{name}".encode()).digest()
