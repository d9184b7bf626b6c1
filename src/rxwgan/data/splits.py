"""Fold assignments, identical to the old tool's (same scikit-learn splitters and seed).

Splitting happens on the whole table before any class filter, so both classes of a
study share one assignment of rows to folds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold

from rxwgan.base.errors import RxwganError

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

    def to_dict(self) -> dict[str, int | None]:
        return {"fold": self.fold, "n_splits": self.n_splits, "test": self.test, "sort": self.sort,
                "seed": self.seed}

    @classmethod
    def from_dict(cls, data: dict) -> SplitSpec:
        return cls(fold=data.get("fold"), n_splits=data.get("n_splits"), test=data.get("test"),
                   sort=data.get("sort"), seed=data.get("seed", DEFAULT_SEED))

    @classmethod
    def from_flags(cls, fold: int | None = None, n_splits: int | None = None, test: int | None = None,
                   sort: int | None = None, seed: int = DEFAULT_SEED) -> SplitSpec:
        """The partition a command's flags name; k-fold 0 of 5 when they name none."""
        if test is None and sort is None:
            fold = 0 if fold is None else fold
            n_splits = DEFAULT_N_SPLITS if n_splits is None else n_splits
        return cls(fold=fold, n_splits=n_splits, test=test, sort=sort, seed=seed)

    def changes_from(self, before: SplitSpec) -> list[str]:
        """The flags that differ from ``before``, as ``--n_splits 2 -> 3`` (for refusals)."""
        flags = {"fold": "--fold", "n_splits": "--n_splits", "test": "--test", "sort": "--sort",
                 "seed": "--split-seed"}
        old, new = before.to_dict(), self.to_dict()
        return [f"{flag} {old[key]} -> {new[key]}" for key, flag in flags.items() if old[key] != new[key]]

    @property
    def scheme(self) -> str:
        return "stratified" if self.test is not None else "kfold"

    @property
    def name(self) -> str:
        """A folder-friendly name: ``fold_0`` or ``test_3_sort_7`` (the old tool's habit)."""
        return f"test_{self.test}_sort_{self.sort}" if self.scheme == "stratified" else f"fold_{self.fold}"

    def check(self) -> None:
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


def partition(targets: np.ndarray, spec: SplitSpec) -> Partition:
    """The old tool's partition of a table with these targets (one per row)."""
    spec.check()
    targets = np.asarray(targets)
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


def _stratified_folds(targets: np.ndarray, what: str, seed: int) -> list:
    smallest = int(np.bincount(targets.astype(np.int64)).min()) if len(targets) else 0
    if smallest < STRATIFIED_FOLDS or len(np.unique(targets)) < 2:
        raise RxwganError(f"the stratified scheme needs at least {STRATIFIED_FOLDS} rows of each "
                          f"class in the {what}; the smallest class has {smallest}")
    splitter = StratifiedKFold(n_splits=STRATIFIED_FOLDS, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(targets)), targets))
