"""``rxwgan utility STUDY/``: does the study's synthetic data help a TB classifier?

For every fold of a study, a compact CNN is trained under several conditions (real rows,
real plus synthetic, synthetic only, and optionally a label-swapped control) with several
seeds, and scored on rows that neither it nor the fold's generators saw. Each training is
one task (``rxwgan.utility.task``), run on Ray or in local processes
(``rxwgan.utility.workers``); each writes its own result file, filed under the key of
what it depends on (``rxwgan.utility.results``), so the same command again does only what
is missing, and a result is never used for settings or generators it was not made with.

A fold's generators come from its two class runs or from its one conditional run (``--runs``).
``--folds`` chooses what to compute now; the tables (``rxwgan.utility.summary``) cover
every ready fold whose results are valid for its current generators, and say which are
missing, stale or partial. One command at a time writes a study's ``utility/`` folder.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rxwgan.base import atomic, folder_lock
from rxwgan.base.errors import RxwganError
from rxwgan.base.json_files import read_json
from rxwgan.base.layout import (
    UTILITY_FOLDER,
    UTILITY_ROC,
    UTILITY_RUNS_FOLDER,
    UTILITY_SETTINGS,
    UTILITY_SUMMARY,
    UTILITY_SUMMARY_MARKDOWN,
    UTILITY_TABLE,
)
from rxwgan.base.progress import Log
from rxwgan.base.ray_runner import Outcome
from rxwgan.data.table import read_table
from rxwgan.utility.leakage import fold_leakage, leakage_line
from rxwgan.utility.plan import (
    FoldInputs,
    UtilityTask,
    arm,
    fold_rows,
    plan_tasks,
    run_kind,
    splits_not_ready,
    study_folds,
)
from rxwgan.utility.results import SetAside, fold_key, read_result, set_aside
from rxwgan.utility.settings import AUTO, UtilitySettings
from rxwgan.utility.summary import FoldResults, write_tables
from rxwgan.utility.two_sample import fold_two_sample
from rxwgan.utility.workers import UtilityOptions, run_workers

RUNNING, DONE, FAILED = "running", "done", "failed"  # utility.json's "state": the last command's


@dataclass
class UtilityResult:
    folder: Path
    runs: pd.DataFrame
    summary: pd.DataFrame
    comparisons: list[dict[str, Any]]
    folds: dict[str, str]  # every ready fold -> complete, partial, missing or stale
    headline: str | None = None  # synth-only AUC beside each class's two-sample test
    errors: dict[str, str] = field(default_factory=dict)  # task path -> why it failed
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def run_utility(study: str | Path, settings: UtilitySettings | None = None,
                options: UtilityOptions | None = None, *, table: str | Path | None = None,
                folds: Sequence[str] | None = None, runs: str = AUTO, overwrite: bool = False,
                log: Log = print) -> UtilityResult:
    """Train and score the missing classifier runs of ``folds`` (default: every ready fold) of
    ``study``; write the tables over every ready fold and return them. ``runs``: the runs that
    give each fold's generators (``rxwgan.utility.settings.RUN_KINDS``).

    ``overwrite`` runs the asked folds' classifier runs of these settings and generators again
    (it deletes only their result files); other results are never deleted.
    """
    settings = settings or UtilitySettings()
    options = options or UtilityOptions()
    settings.check()
    options.check()
    study = Path(study).expanduser().resolve()
    if not study.is_dir():
        raise RxwganError(f"{study}: no such study folder")
    kind = run_kind(study, runs)
    ready = _ready_folds(study, table, folds, kind, log)
    computed = [fold.split.name for fold in ready] if folds is None else list(folds)
    keyed = [_keyed(settings, fold) for fold in ready]
    _check_ratios([fold for fold in ready if fold.split.name in computed], settings)
    out = study / UTILITY_FOLDER
    with folder_lock.hold(out, "utility folder"):  # one writer: a second utility is refused
        return _run_in(study, out, keyed, computed, settings, options, kind, overwrite, log)


def _ready_folds(study: Path, table: str | Path | None, folds: Sequence[str] | None, kind: str,
                 log: Log) -> list[FoldInputs]:
    """Every fold whose runs of ``kind`` finished; each asked fold must be one of them."""
    ready = study_folds(study, table, None, log if folds is None else None, kind)
    unready = [name for name in folds or () if name not in {fold.split.name for fold in ready}]
    if unready:
        study_folds(study, table, unready, runs=kind)  # refuses, naming the fold and why
    return ready


def _keyed(settings: UtilitySettings, fold: FoldInputs) -> FoldResults:
    key = fold_key(settings, fold)
    return FoldResults(fold, key, plan_tasks({fold.split.name: key.key}, settings), SetAside(0, 0))


def _check_ratios(folds: list[FoldInputs], settings: UtilitySettings) -> None:
    """Refuse a ratio that would add no synthetic image of a class to some classifier run."""
    for fold in folds:
        table = read_table(fold.table, fold.path_column, fold.target_column)
        targets = table.targets.astype(np.int64)
        for seed in settings.seeds:
            fit = targets[fold_rows(fold, table, seed, settings.stop_share)["fit"]]
            for target in (0, 1):
                count = int((fit == target).sum())
                for ratio in settings.ratios:
                    if round(ratio * count) < 1:
                        raise RxwganError(f"--ratio {ratio:g}: adds no synthetic image of target {target} in "
                                          f"{fold.split.name} ({count} real training images of it); use at "
                                          f"least {1 / max(count, 1):.3g}")


def _run_in(study: Path, out: Path, folds: list[FoldResults], computed: list[str], settings: UtilitySettings,
            options: UtilityOptions, kind: str, overwrite: bool, log: Log) -> UtilityResult:
    _remove_temporaries(out)
    warnings = _warnings([fold.fold for fold in folds])
    for line in warnings:
        log(f"warning: {line}")
    leakage = fold_leakage([fold.fold for fold in folds])
    leakage_lines = [leakage_line(fold.fold, leakage[fold.name]) for fold in folds]
    for line in leakage_lines:
        log(f"leakage: {line}")
    asked = [fold for fold in folds if fold.name in computed]
    if overwrite:
        removed = [path for fold in asked for task in fold.tasks if (path := out / task.path).is_file()]
        for path in removed:
            path.unlink()
        log(f"--overwrite: deleted {len(removed)} result file(s) of {', '.join(computed)} to run them again")
    for fold in folds:
        fold.aside = set_aside(out, fold.name, fold.key)
        fold.read(out)
    _log_set_aside(folds, log)
    pending = [task for fold in asked for task in fold.missing]
    damaged = [task.path for task in pending if (out / task.path).exists()]
    if damaged:
        log(f"{len(damaged)} damaged result file(s), run again: {', '.join(damaged)}")
    atomic.write_json(out / UTILITY_SETTINGS, _record(settings, folds, computed, RUNNING, kind))
    planned = sum(len(fold.tasks) for fold in asked)
    log(f"{planned} classifier runs ({len(asked)} folds x {planned // len(asked)}), "
        f"{planned - len(pending)} done before, {len(pending)} to run "
        f"({'local processes' if options.local else 'Ray'})")
    errors = _execute(pending, {fold.name: fold.fold for fold in asked}, settings, out, options, log)
    for fold in folds:
        fold.read(out)
    if not any(fold.records for fold in folds):
        atomic.write_json(out / UTILITY_SETTINGS, _record(settings, folds, computed, FAILED, kind,
                                                          errors=errors))
        raise RxwganError(f"{out}: no classifier run finished; see the errors above")
    two_sample = {fold.name: fold_two_sample(out, fold, settings.weights, settings.seed)
                  for fold in folds if fold.records}
    tables = write_tables(out, folds, warnings, splits_not_ready(study, kind), leakage_lines, two_sample,
                          kind)
    finished = sum(len(fold.records) for fold in folds)
    atomic.write_json(out / UTILITY_SETTINGS, _record(
        settings, folds, computed, DONE, kind, headline=tables.headline, two_sample={
            name: {"accuracy": record["accuracy"], "n": record["n"]} for name, record in two_sample.items()},
        comparisons=tables.comparisons, warnings=warnings, leakage=leakage,
        errors=errors,
        finished_runs=finished, planned_runs=sum(len(fold.tasks) for fold in folds),
        task_seconds=round(sum(r["seconds"] for fold in folds for r in fold.records), 1)))
    return UtilityResult(out, tables.runs, tables.summary, tables.comparisons,
                         {fold.name: fold.state for fold in folds}, tables.headline, errors, warnings)


def _remove_temporaries(out: Path) -> None:
    """The temporary files a killed command left (``rxwgan.base.atomic``): of its own tables, or
    of result files; the lock is held, so no writer of ours is using them."""
    own = {UTILITY_SETTINGS, UTILITY_TABLE, UTILITY_SUMMARY, UTILITY_SUMMARY_MARKDOWN, UTILITY_ROC}
    for path in [*out.glob(".*"), *out.glob(f"{UTILITY_RUNS_FOLDER}/*/*/.*")]:
        target = atomic.temporary_target(path.name)
        if target is not None and path.is_file() and (target in own if path.parent == out
                                                      else target.endswith(".json")):
            path.unlink()


def _log_set_aside(folds: list[FoldResults], log: Log) -> None:
    """Say what is on disk and not used: results of other settings, or of earlier generators."""
    stale = {fold.name: fold.aside.stale for fold in folds if fold.aside.stale}
    other = sum(fold.aside.other_settings for fold in folds)
    if stale:
        log(f"set aside, made with earlier generators (kept, not used): "
            f"{', '.join(f'{name}: {n}' for name, n in stale.items())} result file(s)")
    if other:
        log(f"set aside, made with other settings (kept, not used): {other} result file(s)")


def _record(settings: UtilitySettings, folds: list[FoldResults], computed: list[str], state: str,
            kind: str, **more: Any) -> dict[str, Any]:
    """utility.json: the last command, its settings, the kind of runs that gave the generators
    (``runs``), and per ready fold what its results depend on and how many are valid."""
    return {"format": "rxwgan-utility", "state": state, "updated": time.strftime("%Y-%m-%d %H:%M:%S"),
            "settings": settings.to_dict(), "computed": computed, "runs": kind,
            "folds": {fold.name: {"key": fold.key.key, "state": fold.state, "finished": len(fold.records),
                                  "planned": len(fold.tasks),
                                  "set_aside": {"stale": fold.aside.stale,
                                                "other_settings": fold.aside.other_settings},
                                  "generators": {str(t): {"file": fold.fold.generators[t],
                                                          "kind": fold.fold.generator_kinds[t],
                                                          **fold.key.depends["inputs"]["generators"][str(t)]}
                                                 for t in (0, 1)},
                                  "depends": fold.key.depends}
                      for fold in folds},
            **more}


def _warnings(folds: list[FoldInputs]) -> list[str]:
    """k-fold scores on the validation rows: say so where they chose a generator."""
    chosen = [fold.split.name for fold in folds
              if fold.test_partition == "val" and "best" in fold.generator_kinds.values()]
    if not chosen:
        return []
    return [f"k-fold study: the classifier is scored on each fold's validation rows ({', '.join(chosen)}), "
            f"which the generators did not train on but which chose their best checkpoint "
            f"(generator_best); the stratified scheme (--scheme stratified) keeps a test partition apart"]


def _execute(pending: list[UtilityTask], folds: dict[str, FoldInputs], settings: UtilitySettings, out: Path,
             options: UtilityOptions, log: Log) -> dict[str, str]:
    """Run the tasks, a line as each ends; return {task path: error} for those that failed."""
    if not pending:
        return {}
    arguments = [(folds[task.split].to_dict(), task.to_dict(), settings.to_dict(), str(out),
                  options.cpus_per_task) for task in pending]
    errors: dict[str, str] = {}
    done: list[int] = []

    def ended(index: int, outcome: Outcome) -> None:
        task = pending[index]
        head = (f"[{len(done) + 1}/{len(pending)}] {task.split} {arm(task.condition, task.ratio)} "
                f"seed {task.seed}")
        done.append(index)
        if outcome.state == "done":
            scores = outcome.payload
            log(f"{head}: AUC {scores['auc']:.3f} on {int(scores['n_test'])} test images "
                f"({scores['seconds']:.0f} s)")
        else:
            errors[task.path] = outcome.error
            log(f"{head}: failed: {outcome.error}")

    run_workers(arguments, options, ended)
    return errors


def utility_status(study: str | Path) -> str:
    """How far a study's utility runs are, from its files alone (no Ray): per fold of the last
    command, the classifier runs whose results are valid for its settings and generators."""
    record, progress = _progress(Path(study) / UTILITY_FOLDER)
    lines = [f"{name}: {done}/{planned} classifier runs finished"
             for name, (done, planned) in progress.items()]
    if record["state"] == RUNNING:
        lines.append("the last utility command has not ended: it is running, or it was stopped (run it "
                     "again to finish)")
    return "\n".join(lines)


def unfinished_note(study: str | Path) -> str | None:
    """One line when the last utility command did not end (stopped, or still running), else
    None: the tables on disk are then older than some of its results."""
    try:
        record, progress = _progress(Path(study) / UTILITY_FOLDER)
    except RxwganError:
        return None
    if record["state"] != RUNNING:
        return None
    asked = [progress[name] for name in record["computed"] if name in progress]
    return (f"the last `rxwgan utility` did not end (stopped, or still running): "
            f"{sum(done for done, _ in asked)} of {sum(planned for _, planned in asked)} classifier runs it "
            f"asked for are finished, and the tables here are from before it; the same command again "
            f"finishes them")


def recorded_headline(study: str | Path) -> str | None:
    """The headline the last finished utility command recorded (synth-only AUC and each class's
    two-sample test), or None; ``report`` puts it first."""
    headline = read_json(Path(study) / UTILITY_FOLDER / UTILITY_SETTINGS).get("headline")
    return headline if isinstance(headline, str) else None


def _progress(out: Path) -> tuple[dict[str, Any], dict[str, tuple[int, int]]]:
    """utility.json, and per fold it names (finished, planned) valid results, read from disk."""
    try:
        record = json.loads((out / UTILITY_SETTINGS).read_text())
        settings = UtilitySettings.from_dict(record["settings"])
        progress = {}
        for name, fold in record["folds"].items():
            tasks = plan_tasks({name: fold["key"]}, settings)
            progress[name] = (sum(read_result(out, task, fold["depends"]) is not None for task in tasks),
                              len(tasks))
        record.setdefault("state", DONE)
        record.setdefault("computed", list(progress))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise RxwganError(f"{out / UTILITY_SETTINGS}: missing or unreadable; no utility command is recorded "
                          f"here") from None
    return record, progress
