"""What ``rxwgan utility`` will do for a study: its folds, their generators, the classifier runs.

A fold is usable when both of its class runs (``<split>/target_0`` and ``target_1``) have
finished on the same table and partition, or its one conditional run (``<split>/conditional``,
whose generator gives both classes) has; ``--runs`` chooses between the two kinds where a
study holds both. Everything is read from the run folders, never guessed: the table a run
trained on, the row partition, the generator it kept (its best checkpoint when it recorded
one, else its final one). The plan is a list of tasks, one per fold x condition x seed,
each small enough to be one Ray task.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from rxwgan.base.errors import RxwganError
from rxwgan.base.json_files import read_json
from rxwgan.base.layout import BEST_GENERATOR, CONDITIONAL_RUN, CONFIG_FILE, TRAINED_GENERATOR, utility_result
from rxwgan.base.progress import Log
from rxwgan.data.splits import SplitSpec, grouped_holdout, partition, table_groups
from rxwgan.data.table import Table, read_table
from rxwgan.models.files import file_sha256
from rxwgan.study.plan import RunPlan, study_runs
from rxwgan.train.config import TARGETS, TrainConfig
from rxwgan.train.folder import table_fingerprint
from rxwgan.utility.settings import AUTO, CONDITIONAL, PER_CLASS, RUN_KINDS, UtilitySettings

REAL, MIXED, DUPLICATED, SYNTH, SWAPPED = "real", "real+synth", "duplicated", "synth", "swapped"
CONDITION_ORDER = (REAL, MIXED, DUPLICATED, SYNTH, SWAPPED)
CONDITION_MEANINGS = {
    REAL: "the fold's real training rows",
    MIXED: "the real rows plus RATIO synthetic images per real image of each class",
    DUPLICATED: "control: the real rows, some repeated, as many images as real+synth at the same RATIO "
                "(more images, no new information); real+synth must beat it for the synthetic images "
                "to earn more than repetition",
    SYNTH: "synthetic images only, as many per class as the fold has real ones (train on "
           "synthetic, test on real)",
    SWAPPED: "control: real+synth with the synthetic labels swapped (TB generator labelled "
             "normal and the reverse); must score below real",
}


@dataclass(frozen=True)
class FoldInputs:
    """One fold of the study as the classifier runs see it."""

    split: SplitSpec
    table: str  # absolute path of the table both generators trained on
    table_sha256: str
    path_column: str
    target_column: str
    cache_dir: str | None
    bit_depth: int | None
    generators: dict[int, str]  # target -> generator file (a conditional run's: one file for both)
    generator_kinds: dict[int, str]  # target -> "best" or "trained"
    generator_sha256: dict[int, str]  # target -> its file's sha256 when the plan was made
    image_size: int  # the runs' image size: the table's images are cached at it

    @property
    def test_partition(self) -> str:
        """Rows neither the classifier nor the generators trained on."""
        return "test" if self.split.scheme == "stratified" else "val"

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "split": self.split.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FoldInputs:
        by_target = ("generators", "generator_kinds", "generator_sha256")
        return cls(**{**data, "split": SplitSpec.from_dict(data["split"]),
                      **{name: {int(k): v for k, v in data[name].items()} for name in by_target}})


@dataclass(frozen=True)
class UtilityTask:
    """One classifier training: a fold, a condition (at a ratio), a seed, and the key of what
    its result depends on (``rxwgan.utility.results.result_key``)."""

    split: str
    key: str
    condition: str
    ratio: float
    seed: int

    @property
    def path(self) -> str:
        """Its result file, relative to the utility folder."""
        return utility_result(self.split, self.key, self.condition, self.ratio, self.seed)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def arm(condition: str, ratio: float) -> str:
    """A condition at its ratio, as one name: ``real+synth x2``; ``real`` and ``synth`` have one."""
    return condition if condition in (REAL, SYNTH) else f"{condition} x{ratio:g}"


# What a split needs of each kind of run, in words: all of them finished, one of them not.
NEEDS = {PER_CLASS: ("both class runs", "a class run"), CONDITIONAL: ("its conditional run",) * 2}


def study_folds(study: Path, table: str | Path | None = None, splits: list[str] | None = None,
                log: Log | None = None, runs: str = AUTO) -> list[FoldInputs]:
    """Every fold of ``study`` whose generators' runs have finished (``splits``: exactly those,
    refused when one is not ready); ``log`` is told which folds were left out. ``runs`` says
    which runs give the generators (``rxwgan.utility.settings.RUN_KINDS``).

    ``table`` replaces the path the runs recorded (a study moved to another machine); its
    content must still be what they trained on.
    """
    by_split = _runs_by_split(study)
    kind = _kind(study, by_split, runs)
    chosen = splits
    if chosen is None:
        chosen = [name for name in sorted(by_split) if _finished(study, by_split[name], kind)]
        left_out = sorted(set(by_split) - set(chosen))
        if not chosen:
            raise RxwganError(f"{study}: no split has {NEEDS[kind][0]} finished yet ({', '.join(left_out)})")
        if left_out and log is not None:
            log(f"left out, {NEEDS[kind][1]} not finished: {', '.join(left_out)}")
    unknown = [name for name in chosen if name not in by_split]
    if unknown:
        raise RxwganError(f"--folds: {', '.join(unknown)} not in {study} "
                          f"(it has {', '.join(sorted(by_split))})")
    fingerprints: dict[tuple[Path, str, str, str | None], str] = {}  # the folds share a table: read it once
    return [_fold(study, name, _class_folders(study, name, by_split[name], kind), table, fingerprints)
            for name in chosen]


def run_kind(study: Path, runs: str = AUTO) -> str:
    """``per-class`` or ``conditional``: the kind of run ``runs`` asks for, or (``auto``) the only
    kind ``study`` holds; a study that holds both must be told which."""
    return _kind(study, _runs_by_split(study), runs)


def _kind(study: Path, by_split: dict[str, dict[int | None, RunPlan]], runs: str) -> str:
    if runs not in RUN_KINDS:
        raise RxwganError(f"--runs must be one of {', '.join(RUN_KINDS)}, not {runs!r}")
    if runs != AUTO:
        return runs
    present = {CONDITIONAL if key is None else PER_CLASS for split in by_split.values() for key in split}
    if len(present) > 1:
        raise RxwganError(f"{study} holds both per-class and conditional runs: choose the generators "
                          f"with --runs {PER_CLASS} or --runs {CONDITIONAL}")
    return present.pop()


def splits_not_ready(study: Path, runs: str = AUTO) -> list[str]:
    """The splits of ``study`` whose runs of the kind ``runs`` asks for have not all finished."""
    by_split = _runs_by_split(study)
    kind = _kind(study, by_split, runs)
    return [name for name, split in sorted(by_split.items()) if not _finished(study, split, kind)]


def _runs_by_split(study: Path) -> dict[str, dict[int | None, RunPlan]]:
    """Per split, its runs by class (None: its conditional run)."""
    by_split: dict[str, dict[int | None, RunPlan]] = {}
    for run in study_runs(study):
        by_split.setdefault(run.split.name, {})[run.target] = run
    if not by_split:
        raise RxwganError(f"{study}: holds no run folders (<split>/target_<t>/ or "
                          f"<split>/{CONDITIONAL_RUN}/)")
    return by_split


def _run_keys(kind: str) -> tuple[int | None, ...]:
    """The runs a split needs: one per class, or its conditional run."""
    return (None,) if kind == CONDITIONAL else TARGETS


def _finished(study: Path, runs: dict[int | None, RunPlan], kind: str) -> bool:
    """The split's runs of ``kind`` are there and have written their trained generator."""
    return all(key in runs and (study / runs[key].path / TRAINED_GENERATOR).is_file()
               for key in _run_keys(kind))


def _class_folders(study: Path, name: str, runs: dict[int | None, RunPlan], kind: str) -> dict[int, Path]:
    """Each class's run folder: its own, or (conditional) the split's one run for both."""
    missing = [key for key in _run_keys(kind) if key not in runs]
    if missing:
        what = "conditional run" if missing[0] is None else f"run of target {missing[0]}"
        raise RxwganError(f"{study / name}: no {what}; the classifier needs a generator for each class "
                          f"(leave the fold out with --folds)")
    return {t: study / runs[None if kind == CONDITIONAL else t].path for t in TARGETS}


def _fold(study: Path, name: str, folders: dict[int, Path], table: str | Path | None,
          fingerprints: dict[tuple[Path, str, str, str | None], str]) -> FoldInputs:
    configs, generators, kinds = {}, {}, {}
    for target, folder in folders.items():
        saved = read_json(folder / CONFIG_FILE)
        if not (folder / TRAINED_GENERATOR).is_file() or "config" not in saved:
            raise RxwganError(f"{folder}: this run has not finished (no {TRAINED_GENERATOR}); finish "
                              f"it (rerun the sweep) or leave the fold out with --folds")
        configs[target] = saved
        best = folder / BEST_GENERATOR
        generators[target] = str((best if best.is_file() else folder / TRAINED_GENERATOR).resolve())
        kinds[target] = "best" if best.is_file() else "trained"
    first, second = (TrainConfig.from_dict(configs[t]["config"]) for t in (0, 1))
    if configs[0].get("table_sha256") != configs[1].get("table_sha256") or first.split != second.split:
        raise RxwganError(f"{study / name}: its two runs trained on different tables or partitions")
    path = Path(table if table is not None else first.input).expanduser()
    if not path.is_file():
        raise RxwganError(f"{path}: the table {study / name} trained on is not there; pass --table "
                          f"with its new place")
    sha = str(configs[0].get("table_sha256"))
    read = (path.resolve(), first.path_column, first.target_column, first.split.group_column)
    if read not in fingerprints:  # a grouped split's fingerprint holds the groups too
        fingerprints[read] = table_fingerprint(read_table(*read[:3]), first.split)["sha256"]
    if fingerprints[read] != sha:
        what = "rows or images" if read[3] is None else f"rows, images or {read[3]} groups"
        raise RxwganError(f"{path}: its {what} changed since {study / name} trained on it; "
                          f"the fold's partition would not be the generators' one")
    return FoldInputs(first.split, str(path.resolve()), sha, first.path_column, first.target_column,
                      first.cache_dir, first.bit_depth, generators, kinds,
                      {t: file_sha256(path) for t, path in generators.items()}, int(configs[0]["image_size"]))


def fold_rows(fold: FoldInputs, table: Table, seed: int, stop_share: float) -> dict[str, np.ndarray]:
    """Row positions of ``table`` (the fold's): ``fit`` (classifier training), ``stop`` (early
    stopping), ``test``.

    ``fit`` and ``stop`` split the fold's training rows, stratified by class, anew for each
    seed, whole groups only when the fold is grouped; ``test`` is the partition no generator
    and no classifier trained on.
    """
    targets = table.targets.astype(np.int64)
    groups = table_groups(table, fold.split)
    parts = partition(targets, fold.split, groups)
    if groups is None:
        fit, stop = train_test_split(parts.train, test_size=stop_share, stratify=targets[parts.train],
                                     random_state=seed)
    else:
        kept, held = grouped_holdout(targets[parts.train], groups[parts.train], stop_share, seed)
        fit, stop = parts.train[kept], parts.train[held]
    return {"fit": np.sort(fit), "stop": np.sort(stop), "test": np.sort(getattr(parts, fold.test_partition))}


def repeated_rows(fit: np.ndarray, targets: np.ndarray, ratio: float, seed: int) -> np.ndarray:
    """The rows ``duplicated`` adds to ``fit``: per class, as many as real+synth adds synthetic
    images at ``ratio`` (``round(ratio * count)``), the class's rows in a seeded order, cycled."""
    rng = np.random.default_rng(seed)
    extra = []
    for target in (0, 1):
        rows = fit[targets[fit] == target]
        extra.append(np.resize(rng.permutation(rows), round(ratio * len(rows))))
    return np.concatenate(extra).astype(fit.dtype)


def plan_tasks(keys: dict[str, str], settings: UtilitySettings) -> list[UtilityTask]:
    """For each split (``{name: result key}``, names such as ``fold_0``): real, real+synth at
    each ratio, synth, then the controls asked (duplicated at each ratio, swapped at the first)."""
    conditions = [(REAL, 0.0), *((MIXED, r) for r in settings.ratios), (SYNTH, 1.0)]
    if DUPLICATED in settings.control:
        conditions += [(DUPLICATED, r) for r in settings.ratios]
    if SWAPPED in settings.control:
        conditions.append((SWAPPED, settings.ratios[0]))
    return [UtilityTask(split, key, condition, ratio, seed)
            for split, key in keys.items() for condition, ratio in conditions for seed in settings.seeds]
