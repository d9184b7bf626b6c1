"""The utility study's tables, written from the valid result files of every ready fold.

``utility.csv`` (a row per fold x condition x seed), ``summary.csv``/``summary.md`` (across
folds, with the paired comparisons against ``real``) and ``roc.png``. The summary says which
runs gave the generators (per-class or conditional), which folds it covers and which it does
not: a fold with no result yet (missing), one whose generators changed since its results
(stale: never summarised from the old ones), one whose runs are not all finished (partial).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rxwgan.base import atomic
from rxwgan.base.layout import UTILITY_ROC, UTILITY_SUMMARY, UTILITY_SUMMARY_MARKDOWN, UTILITY_TABLE
from rxwgan.data.table import write_frame
from rxwgan.utility.plan import (
    CONDITION_MEANINGS,
    CONDITION_ORDER,
    DUPLICATED,
    MIXED,
    REAL,
    FoldInputs,
    UtilityTask,
    arm,
)
from rxwgan.utility.results import CSV_COLUMNS, METRICS, FoldKey, SetAside, read_result
from rxwgan.utility.scores import paired_comparison, summarise
from rxwgan.utility.settings import CONDITIONAL, PER_CLASS

COMPLETE, PARTIAL, MISSING, STALE = "complete", "partial", "missing", "stale"
# summary.md's line on the generators, and why a fold is not ready, per kind of run.
GENERATORS = {PER_CLASS: "per-class runs, a generator per class and fold",
              CONDITIONAL: "conditional runs, one generator per fold bound to each class in turn"}
NOT_READY = {PER_CLASS: "a class run has not finished", CONDITIONAL: "its conditional run has not finished"}


@dataclass
class FoldResults:
    """One ready fold: its inputs, the key of its results, its tasks and those finished."""

    fold: FoldInputs
    key: FoldKey
    tasks: list[UtilityTask]
    aside: SetAside
    records: list[dict[str, Any]] = field(default_factory=list)
    missing: list[UtilityTask] = field(default_factory=list)  # tasks without a valid result

    @property
    def name(self) -> str:
        return self.fold.split.name

    @property
    def state(self) -> str:
        if len(self.records) == len(self.tasks):
            return COMPLETE
        if self.records:
            return PARTIAL
        return STALE if self.aside.stale else MISSING

    def read(self, out: Path) -> None:
        found = [(task, read_result(out, task, self.key.depends)) for task in self.tasks]
        self.records = [record for _, record in found if record is not None]
        self.missing = [task for task, record in found if record is None]


@dataclass
class Tables:
    runs: pd.DataFrame
    summary: pd.DataFrame
    comparisons: list[dict[str, Any]]
    headline: str | None  # synth-only AUC and the two-sample tests: the study's quality in a line


def write_tables(out: Path, folds: Sequence[FoldResults], warnings: list[str], not_ready: list[str],
                 leakage: list[str], two_sample: dict[str, dict[str, Any]], kind: str) -> Tables:
    """Gather the folds' finished results into the table, the summary, the comparisons and the
    figure; ``folds`` must have read their results, and one of them at least has one.
    ``leakage``: a line per fold (``rxwgan.utility.leakage``); ``two_sample``: per fold, each
    class's two-sample test (``rxwgan.utility.two_sample``), for the headline; ``kind``: the
    runs that gave the generators."""
    from rxwgan.utility.figures import save_roc_figure

    records = [record for fold in folds for record in fold.records]
    runs = pd.DataFrame(records)[CSV_COLUMNS]
    by_fold = runs.assign(fold=runs["split"])  # the scores' name for the unit they average over
    summary = summarise(by_fold, METRICS, by=("condition", "ratio"))
    summary = summary.sort_values("condition", key=lambda c: c.map(CONDITION_ORDER.index), kind="stable",
                                  ignore_index=True)
    names = [arm(c, r) for c, r in zip(runs["condition"], runs["ratio"], strict=True)]
    arms = by_fold.assign(condition=names)
    comparisons = [{**paired_comparison(arms, arm(condition, ratio), baseline, "auc"),
                    "condition": condition, "ratio": ratio}
                   for condition, ratio, baseline in _compared(runs)]
    write_frame(runs, out / UTILITY_TABLE)
    write_frame(summary, out / UTILITY_SUMMARY)
    save_roc_figure(records, out / UTILITY_ROC)
    notes = [f"> generators: {GENERATORS[kind]}", *(f"> warning: {line}" for line in warnings),
             *coverage_lines(folds, not_ready, kind), *(f"> leakage: {line}" for line in leakage)]
    first = headline(summary.to_dict("records"), two_sample)
    atomic.write_text(out / UTILITY_SUMMARY_MARKDOWN, summary_markdown(summary, comparisons, notes, first))
    return Tables(runs, summary, comparisons, first)


def coverage_lines(folds: Sequence[FoldResults], not_ready: list[str], kind: str) -> list[str]:
    """Which folds the numbers come from, and why the others are not in them."""
    by_state: dict[str, list[FoldResults]] = {}
    for fold in folds:
        by_state.setdefault(fold.state, []).append(fold)
    lines = [f"> folds: {', '.join(f.name for f in by_state.get(COMPLETE, [])) or 'none complete'}"]
    if partial := by_state.get(PARTIAL):
        counts = (f"{f.name} ({len(f.records)} of {len(f.tasks)} classifier runs)" for f in partial)
        lines.append(f"> partial: {', '.join(counts)}")
    if stale := by_state.get(STALE):
        lines.append(f"> stale, not summarised: {', '.join(f.name for f in stale)}: their generators (or "
                     f"table) changed since their results; `--folds {','.join(f.name for f in stale)}` "
                     f"computes them")
    if missing := by_state.get(MISSING):
        lines.append(f"> missing: {', '.join(f.name for f in missing)}: no result yet; `--folds "
                     f"{','.join(f.name for f in missing)}` computes them")
    if not_ready:
        lines.append(f"> not ready: {', '.join(not_ready)}: {NOT_READY[kind]}")
    return lines


def _compared(runs: pd.DataFrame) -> list[tuple[str, float, str]]:
    """(condition, ratio, baseline arm): every arm but ``real`` against ``real``, in the table's
    order, then real+synth against duplicated at each ratio both have (the gain beyond more images)."""
    pairs = runs.loc[runs["condition"] != REAL, ["condition", "ratio"]].drop_duplicates()
    arms = sorted(((c, float(r)) for c, r in pairs.itertuples(index=False)),
                  key=lambda pair: (CONDITION_ORDER.index(pair[0]), pair[1]))
    beyond = [(MIXED, r, arm(DUPLICATED, r)) for c, r in arms if c == MIXED and (DUPLICATED, r) in arms]
    return [(c, r, REAL) for c, r in arms] + beyond


def summary_markdown(summary: pd.DataFrame, comparisons: list[dict[str, Any]], notes: list[str],
                     first: str | None = None) -> str:
    """The summary as a person reads it: the headline, a table, the paired comparisons, what
    each condition is, then the notes (warnings, the folds covered)."""
    lines = [*([f"**{first}**", ""] if first else []),
             "| condition | ratio | AUC mean ± std [95% CI] | SP index | sens @ 90% spec | spec @ 90% sens "
             "| folds | runs | test images |", "|---|---|---|---|---|---|---|---|---|"]
    for row in summary.to_dict("records"):
        cells = [f"{row[f'{m}_mean']:.3f}" + ("" if row["n_folds"] < 2 else
                                              f" ± {row[f'{m}_std']:.3f} [{row[f'{m}_ci95_low']:.3f}, "
                                              f"{row[f'{m}_ci95_high']:.3f}]") for m in METRICS]
        lines.append(f"| {row['condition']} | {row['ratio']:g} | {' | '.join(cells)} | {row['n_folds']} "
                     f"| {row['n_runs']} | {row['n_test_images']} |")
    lines += ["", *(comparison_line(c) for c in comparisons), ""]
    lines += [f"- `{name}`: {meaning}" for name, meaning in CONDITION_MEANINGS.items()]
    lines += ["", *notes]
    return "\n".join(lines).rstrip() + "\n"


def comparison_line(comparison: dict[str, Any]) -> str:
    """``real+synth x1 - real: AUC +0.012 [-0.020, 0.044], p 0.41 (paired t, 5 folds, 15 pairs)``,
    and for real+synth against duplicated, what the synthetic images earn beyond more images."""
    name = f"{arm(comparison['condition'], comparison['ratio'])} - {comparison['baseline']}"
    if comparison["n_folds"] < 2:
        line = (f"{name}: AUC {comparison['mean_difference']:+.3f} (one fold, "
                f"{comparison['n_pairs']} pairs: no interval and no test across folds)")
    else:
        line = (f"{name}: AUC {comparison['mean_difference']:+.3f} [{comparison['ci95_low']:+.3f}, "
                f"{comparison['ci95_high']:+.3f}], p {comparison['p_value']:.3g} ({comparison['test']}, "
                f"{comparison['n_folds']} folds, {comparison['n_pairs']} pairs)")
    if comparison["baseline"].startswith(DUPLICATED):
        line += f": {_earned(comparison)}"
    return line


def _earned(comparison: dict[str, Any]) -> str:
    """What the synthetic images earn beyond repeating the real rows, in plain words."""
    if comparison["n_folds"] < 2:
        return "one fold cannot tell whether the synthetic images earn more than repeated real rows"
    if comparison["ci95_low"] > 0:
        return "the synthetic images earn more than repeating the real rows would"
    if comparison["ci95_high"] < 0:
        return "repeating the real rows does better than the synthetic images"
    return "no gain beyond repeating the real rows is shown (the interval contains 0)"


def headline(runs_summary: list[dict[str, Any]], two_sample: dict[str, dict[str, Any]]) -> str | None:
    """``synth-only AUC 0.944 (real 0.970) ...``: the study's quality in one line, or None
    without a synth row."""
    by_condition = {row["condition"]: row for row in runs_summary}
    if "synth" not in by_condition:
        return None
    synth, real = by_condition["synth"], by_condition.get("real")
    line = f"synth-only AUC {_mean(synth)}" + (f" (real {_mean(real)})" if real else "")
    line += " (train on synthetic, test on real)"
    if two_sample:
        per_class = []
        for target in ("0", "1"):
            values = [fold["accuracy"][target] for fold in two_sample.values()
                      if fold["accuracy"][target] is not None]
            per_class.append(f"target {target}: {np.mean(values):.3f}" if values
                             else f"target {target}: too few training images")
        line += (f"; two-sample test accuracy {', '.join(per_class)} (0.5: indistinguishable; mean over "
                 f"{len(two_sample)} fold(s))")
    return line


def _mean(row: dict[str, Any]) -> str:
    interval = "" if row["n_folds"] < 2 else f" [{row['auc_ci95_low']:.3f}, {row['auc_ci95_high']:.3f}]"
    return f"{row['auc_mean']:.3f}{interval}"
