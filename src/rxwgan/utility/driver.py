"""``rxwgan utility STUDY/``: does the study's synthetic data help a TB classifier?

For every fold of a study, a compact CNN is trained under several conditions (real rows,
real plus synthetic, synthetic only, and optionally a label-swapped control) with several
seeds, and scored on rows that neither it nor the fold's generators saw. Each training is
one task (``rxwgan.utility.task``), run on Ray by the runner ``sweep`` uses
(``rxwgan.base.ray_runner``), or in local worker processes; each writes its own result
file, so a re-run only does what is missing. The results are gathered into
``STUDY/utility/``: ``utility.csv`` (a row per fold x condition x seed),
``summary.csv``/``summary.md`` (across folds) and ``roc.png``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from rxwgan.base import atomic, folder_lock
from rxwgan.base.errors import RxwganError
from rxwgan.base.layout import (
    UTILITY_FOLDER,
    UTILITY_RESULTS_PATTERN,
    UTILITY_ROC,
    UTILITY_SETTINGS,
    UTILITY_SUMMARY,
    UTILITY_SUMMARY_MARKDOWN,
    UTILITY_TABLE,
)
from rxwgan.base.progress import Log
from rxwgan.base.ray_runner import Outcome
from rxwgan.data.table import write_frame
from rxwgan.utility.plan import (
    CONDITION_MEANINGS,
    CONDITION_ORDER,
    REAL,
    FoldInputs,
    UtilityTask,
    arm,
    plan_tasks,
    study_folds,
)
from rxwgan.utility.scores import paired_comparison, summarise
from rxwgan.utility.settings import UtilitySettings
from rxwgan.utility.workers import UtilityOptions, run_workers

METRICS = ("auc", "sp_index", "sens_at_spec90", "spec_at_sens90")
CSV_COLUMNS = ["split", "condition", "ratio", "seed", *METRICS, "sp_threshold", "n_test", "n_positive",
               "n_fit_real", "n_fit_synthetic", "n_stop"]
RESULT_KEYS = (*CSV_COLUMNS, "seconds", "test_labels", "test_scores")  # what the tables and figure read


@dataclass
class UtilityResult:
    folder: Path
    runs: pd.DataFrame
    summary: pd.DataFrame
    comparisons: list[dict[str, Any]]
    errors: dict[str, str] = field(default_factory=dict)  # task path -> why it failed
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def run_utility(study: str | Path, settings: UtilitySettings | None = None,
                options: UtilityOptions | None = None, *, table: str | Path | None = None,
                folds: Sequence[str] | None = None, overwrite: bool = False,
                log: Log = print) -> UtilityResult:
    """Train and score every missing classifier run of ``study``; write and return the results."""
    settings = settings or UtilitySettings()
    options = options or UtilityOptions()
    settings.check()
    options.check()
    study = Path(study).expanduser().resolve()
    if not study.is_dir():
        raise RxwganError(f"{study}: no such study folder")
    fold_inputs = study_folds(study, table, list(folds) if folds is not None else None, log)
    out = study / UTILITY_FOLDER
    with folder_lock.hold(out, "utility folder"):  # one writer: a second utility is refused
        return _run_in(study, out, fold_inputs, settings, options, overwrite, log)


def _run_in(study: Path, out: Path, fold_inputs: list[FoldInputs], settings: UtilitySettings,
            options: UtilityOptions, overwrite: bool, log: Log) -> UtilityResult:
    record = _settings_record(settings, fold_inputs)
    _check_previous(out, record, overwrite)
    tasks = plan_tasks([fold.split.name for fold in fold_inputs], settings)
    warnings = _warnings(fold_inputs)
    for line in warnings:
        log(f"warning: {line}")
    atomic.write_json(out / UTILITY_SETTINGS, record)
    pending = [task for task in tasks if read_result(out, task) is None]
    damaged = [task.path for task in pending if (out / task.path).exists()]
    if damaged:
        log(f"{len(damaged)} damaged result file(s), run again: {', '.join(damaged)}")
    log(f"{len(tasks)} classifier runs ({len(fold_inputs)} folds x {len(tasks) // len(fold_inputs)}), "
        f"{len(tasks) - len(pending)} done before, {len(pending)} to run "
        f"({'local processes' if options.local else 'Ray'})")
    errors = _execute(pending, {f.split.name: f for f in fold_inputs}, settings, out, options, log)
    return write_results(study, tasks, warnings, errors)


def write_results(study: Path, tasks: Sequence[UtilityTask], warnings: list[str],
                  errors: dict[str, str]) -> UtilityResult:
    """Gather the finished task files into the table, the summary, the comparisons and the figure."""
    from rxwgan.utility.figures import save_roc_figure

    out = study / UTILITY_FOLDER
    records = [record for task in tasks if (record := read_result(out, task)) is not None]
    if not records:
        raise RxwganError(f"{out}: no classifier run finished; see the errors above")
    runs = pd.DataFrame(records)[CSV_COLUMNS]
    by_fold = runs.assign(fold=runs["split"])  # the scores' name for the unit they average over
    summary = summarise(by_fold, METRICS, by=("condition", "ratio"))
    summary = summary.sort_values("condition", key=lambda c: c.map(CONDITION_ORDER.index), kind="stable",
                                  ignore_index=True)
    names = [arm(c, r) for c, r in zip(runs["condition"], runs["ratio"], strict=True)]
    arms = by_fold.assign(condition=names)
    comparisons = [{**paired_comparison(arms, arm(condition, ratio), REAL, "auc"),
                    "condition": condition, "ratio": ratio}
                   for condition, ratio in _compared(runs)]
    write_frame(runs, out / UTILITY_TABLE)
    write_frame(summary, out / UTILITY_SUMMARY)
    save_roc_figure(records, out / UTILITY_ROC)
    atomic.write_text(out / UTILITY_SUMMARY_MARKDOWN,
                      summary_markdown(summary, comparisons, warnings, len(records), len(tasks)))
    record = json.loads((out / UTILITY_SETTINGS).read_text())
    atomic.write_json(out / UTILITY_SETTINGS, {**record, "comparisons": comparisons, "warnings": warnings,
                                            "finished_runs": len(records), "planned_runs": len(tasks),
                                            "errors": errors,
                                            "task_seconds": round(sum(r["seconds"] for r in records), 1)})
    return UtilityResult(out, runs, summary, comparisons, errors, warnings)


def _compared(runs: pd.DataFrame) -> list[tuple[str, float]]:
    """Every (condition, ratio) but ``real``, in the table's order."""
    pairs = runs.loc[runs["condition"] != REAL, ["condition", "ratio"]].drop_duplicates()
    return sorted(((c, float(r)) for c, r in pairs.itertuples(index=False)),
                  key=lambda pair: (CONDITION_ORDER.index(pair[0]), pair[1]))


def read_result(out: Path, task: UtilityTask) -> dict[str, Any] | None:
    """``task``'s finished result in the utility folder ``out``; None when it is missing, cut
    short, or not that task's (a damaged file is never counted: it is run again)."""
    try:
        record = json.loads((out / task.path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or any(key not in record for key in RESULT_KEYS):
        return None
    return record if all(record[key] == value for key, value in task.to_dict().items()) else None


def summary_markdown(summary: pd.DataFrame, comparisons: list[dict[str, Any]], warnings: list[str],
                     finished: int, planned: int) -> str:
    """The summary as a person reads it: a table, the paired comparisons, what each condition is."""
    lines = ["| condition | ratio | AUC mean ± std [95% CI] | SP index | sens @ 90% spec | spec @ 90% sens "
             "| folds | runs | test images |", "|---|---|---|---|---|---|---|---|---|"]
    for row in summary.to_dict("records"):
        cells = [f"{row[f'{m}_mean']:.3f}" + ("" if row["n_folds"] < 2 else
                                              f" ± {row[f'{m}_std']:.3f} [{row[f'{m}_ci95_low']:.3f}, "
                                              f"{row[f'{m}_ci95_high']:.3f}]") for m in METRICS]
        lines.append(f"| {row['condition']} | {row['ratio']:g} | {' | '.join(cells)} | {row['n_folds']} "
                     f"| {row['n_runs']} | {row['n_test_images']} |")
    lines += ["", *(comparison_line(c) for c in comparisons), ""]
    lines += [f"- `{name}`: {meaning}" for name, meaning in CONDITION_MEANINGS.items()]
    lines += ["", *(f"> warning: {line}" for line in warnings)]
    if finished < planned:
        lines.append(f"> partial: {finished} of {planned} classifier runs finished")
    return "\n".join(lines).rstrip() + "\n"


def comparison_line(comparison: dict[str, Any]) -> str:
    """``real+synth x1 - real: AUC +0.012 [-0.020, 0.044], p 0.41 (paired t, 5 folds, 15 pairs)``."""
    name = arm(comparison["condition"], comparison["ratio"])
    if comparison["n_folds"] < 2:
        return (f"{name} - real: AUC {comparison['mean_difference']:+.3f} (one fold, "
                f"{comparison['n_pairs']} pairs: no interval and no test across folds)")
    return (f"{name} - real: AUC {comparison['mean_difference']:+.3f} [{comparison['ci95_low']:+.3f}, "
            f"{comparison['ci95_high']:+.3f}], p {comparison['p_value']:.3g} ({comparison['test']}, "
            f"{comparison['n_folds']} folds, {comparison['n_pairs']} pairs)")


def _settings_record(settings: UtilitySettings, folds: list[FoldInputs]) -> dict[str, Any]:
    """What the results depend on; ``weights`` per generator is what it holds, not what was asked
    (a generator trained with --ema_kimg 0 has no moving average: its raw weights are used)."""
    from rxwgan.models.files import file_sha256, stored_weights

    def generator(kind: str, path: str) -> dict[str, str]:
        return {"kind": kind, "sha256": file_sha256(Path(path)),
                "weights": stored_weights(path, settings.weights)}

    return {"format": "rxwgan-utility", "settings": settings.to_dict(),
            "folds": {fold.split.name: {"table_sha256": fold.table_sha256,
                                        "test_partition": fold.test_partition,
                                        "generators": {str(t): generator(fold.generator_kinds[t], path)
                                                       for t, path in fold.generators.items()}}
                      for fold in folds}}


def _check_previous(out: Path, record: dict[str, Any], overwrite: bool) -> None:
    """Results of other settings or other generators are never mixed in: refuse, or clear them."""
    try:
        previous = json.loads((out / UTILITY_SETTINGS).read_text())
    except (OSError, json.JSONDecodeError):
        previous = None
    if overwrite:
        for name in (UTILITY_SETTINGS, UTILITY_TABLE, UTILITY_SUMMARY, UTILITY_SUMMARY_MARKDOWN, UTILITY_ROC):
            (out / name).unlink(missing_ok=True)
        for path in sorted(out.glob(UTILITY_RESULTS_PATTERN)):
            path.unlink()
        return
    if previous is None:
        return
    changed = [key for key in ("settings",) if previous.get(key) != record[key]]
    before = {name: _dependencies(fold) for name, fold in previous.get("folds", {}).items()}
    changed += [f"{name} generators" for name, fold in record["folds"].items()
                if name in before and before[name] != _dependencies(fold)]
    if changed:
        raise RxwganError(f"{out} holds results of other {', '.join(changed)}: --overwrite to replace "
                          f"them")


def _dependencies(fold: dict[str, Any]) -> dict[str, Any]:
    """A fold's record without what follows from the rest (a generator's weights follow from its
    file and the settings), so that records written before it was recorded still match."""
    generators = {target: {key: value for key, value in generator.items() if key != "weights"}
                  for target, generator in fold.get("generators", {}).items()}
    return {**fold, "generators": generators}


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

    done: list[int] = []
    run_workers(arguments, options, ended)
    return errors


def utility_status(study: str | Path) -> str:
    """How far a study's utility runs are, from its files alone (no Ray)."""
    out = Path(study) / UTILITY_FOLDER
    try:
        record = json.loads((out / UTILITY_SETTINGS).read_text())
    except (OSError, json.JSONDecodeError):
        raise RxwganError(f"{out}: no utility runs started here (no {UTILITY_SETTINGS})") from None
    settings = UtilitySettings.from_dict(record["settings"])
    lines = []
    for name in record["folds"]:
        tasks = plan_tasks([name], settings)
        done = sum(read_result(out, task) is not None for task in tasks)
        lines.append(f"{name}: {done}/{len(tasks)} classifier runs finished")
    return "\n".join(lines)
