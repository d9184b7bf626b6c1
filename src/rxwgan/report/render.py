"""A study's report pages (report.md, report.html): the tables of ``rxwgan.report.collect``,
the curves across folds and the best generators' samples drawn by ``rxwgan.report.figures``,
and the utility study's summary when there is one.

Failed runs, damaged runs (left out of the best-run choice) and runs not finished yet are
noted apart, at the top of the pages and in the log, so that none is mistaken for another.
Conditional runs (one generator for both classes) get a section of their own after the classes'.
"""

from __future__ import annotations

import base64
import html
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from rxwgan.base import atomic
from rxwgan.base.layout import (
    CONDITIONAL_RUN,
    HISTORY_KEYS,
    REPORT_BEST,
    REPORT_FOLDER,
    REPORT_HTML,
    REPORT_MARKDOWN,
    REPORT_RUNS,
    REPORT_UTILITY_ROC,
    UTILITY_FOLDER,
    UTILITY_ROC,
    UTILITY_SUMMARY_MARKDOWN,
    report_best_grid,
    report_figure,
)
from rxwgan.base.plots import save_grid
from rxwgan.base.progress import Log
from rxwgan.data.table import write_frame
from rxwgan.metrics.space_per_study import FEATURE_KEYS
from rxwgan.report.collect import (
    BOTH,
    DAMAGED,
    DEFAULT_SELECT,
    SPLIT_COLUMNS,
    TEXT_COLUMNS,
    StudyRun,
    comparable_keys,
    load_runs,
    runs_frame,
    select_best,
)
from rxwgan.report.figures import generator_samples, plot_bands

GRID_COLUMNS = 8
LOSS_PANELS = (("critic loss", ("train_critic_loss", "val_critic_loss")),
               ("generator loss", ("train_gen_loss", "val_gen_loss")),
               ("gradient penalty", ("train_reg_loss",)))
DIVERGENCE_PANELS = tuple((metric.upper(), (f"train_{metric}_rf", f"val_{metric}_rf", f"val_{metric}_rr"))
                          for metric in ("kl", "js", "l1", "l2"))
SHOWN_COLUMNS = ["run", "target", "state", "epoch", "epochs", "train_critic_loss", "train_gen_loss",
                 "val_critic_loss", "val_gen_loss", "val_kl_rf", "val_js_rf"]
# States in which a run will not change by itself: anything else is under way, or stopped short.
SETTLED = ("done", "failed", DAMAGED)


@dataclass
class Report:
    """What ``write_report`` wrote, and the tables it wrote them from."""

    folder: Path
    runs: pd.DataFrame
    best: pd.DataFrame
    select: str
    files: list[Path] = field(default_factory=list)

    @property
    def partial(self) -> bool:
        """Some run is not finished yet (nor failed, nor damaged): its numbers may still change."""
        return bool((~self.runs["state"].isin(SETTLED)).any())

    @property
    def failed(self) -> list[tuple[str, str]]:
        """(run, error) of each failed run."""
        return self._errors("failed")

    @property
    def damaged(self) -> list[tuple[str, str]]:
        """(run, what is wrong with its files) of each run left out of the best-run choice."""
        return self._errors(DAMAGED)

    @property
    def ok(self) -> bool:
        """No run failed or is damaged: once the study is finished, best.csv ranks every run."""
        return not (self.failed or self.damaged)

    def _errors(self, state: str) -> list[tuple[str, str]]:
        rows = self.runs[self.runs["state"] == state]
        return [(run, _one_line(error) if isinstance(error, str) else "no error recorded")
                for run, error in zip(rows["run"], rows["error"], strict=True)]

    @property
    def html(self) -> Path:
        return self.folder / REPORT_HTML

    @property
    def markdown(self) -> Path:
        return self.folder / REPORT_MARKDOWN


def write_report(study: str | Path, out: str | Path | None = None,
                 select: str = DEFAULT_SELECT, log: Log = print) -> Report:
    """Write runs.csv, best.csv, the figures, report.md and a self-contained report.html;
    ``log`` gets one warning line per failed or damaged run."""
    study = Path(study)
    out = Path(out) if out is not None else study / REPORT_FOLDER
    runs = load_runs(study)
    frame = runs_frame(runs)
    best = select_best(frame, select)
    report = Report(out, frame, best, select)
    for run, error in report.failed:
        log(f"warning: {run} failed: {error}")
    for run, error in report.damaged:
        log(f"warning: {run} is damaged, left out of the choice of best generator: {error}")
    write_frame(frame, out / REPORT_RUNS)
    write_frame(best, out / REPORT_BEST)
    report.files += [out / REPORT_RUNS, out / REPORT_BEST]

    folders = {run.plan.path: run.folder for run in runs}
    samples = {path: images for path in best["run"]
               if (images := generator_samples(folders[path])) is not None}
    sections = []
    classes = sorted({run.plan.target for run in runs if not run.plan.conditional})
    for target in classes + ([None] if any(run.plan.conditional for run in runs) else []):
        shown = BOTH if target is None else target
        chosen = [samples[path] for path in best.loc[best["target"] == shown, "run"] if path in samples]
        mine = [run for run in runs if run.plan.target == target]
        sections.append(_target_section(target, mine, chosen, comparable_keys(mine), out, report.files))
    best_grids = _best_grids(samples, out, report.files)
    markdown, page = _documents(study, report, sections, best_grids, _utility_part(study, out, report.files))
    atomic.write_text(out / REPORT_MARKDOWN, markdown)
    atomic.write_text(out / REPORT_HTML, page)
    report.files += [out / REPORT_MARKDOWN, out / REPORT_HTML]
    return report


@dataclass
class _Section:
    target: int | None  # None: the conditional runs
    runs: int
    figures: list[tuple[str, str]]  # (caption, file name)

    @property
    def title(self) -> str:
        return "Both targets, conditional" if self.target is None else f"Target {self.target}"


def _target_section(target: int | None, runs: list[StudyRun], chosen: list[torch.Tensor], metrics: list[str],
                    out: Path, files: list[Path]) -> _Section:
    """Curves across the target's runs (None: the conditional runs'), and a row of samples from
    each selected generator."""
    histories = [run.history for run in runs if run.history]
    figures = []
    named = CONDITIONAL_RUN if target is None else target  # the figures' names: curves_target_<named>.png
    what = "conditional runs" if target is None else f"target {target}"
    plots = [("loss curves", report_figure("curves", named), LOSS_PANELS),
             ("histogram divergences", report_figure("divergences", named), DIVERGENCE_PANELS)]
    if metrics:
        plots.append(("evaluation metrics", report_figure("metrics", named),
                      tuple((key, (key,)) for key in metrics)))
    if histories:
        for caption, name, panels in plots:
            plot_bands(histories, panels, out / name,
                       f"{what}: mean and ±1 std over {len(histories)} run(s)")
            figures.append((caption, name))
            files.append(out / name)
    if chosen:
        name = report_figure("samples", named)
        save_grid(torch.cat([images[:GRID_COLUMNS] for images in chosen]), out / name,
                  columns=GRID_COLUMNS)
        figures.append((f"samples of the {len(chosen)} selected generator(s), one per row", name))
        files.append(out / name)
    return _Section(target, len(runs), figures)


def _best_grids(samples: dict[str, torch.Tensor], out: Path, files: list[Path]) -> list[tuple[str, str]]:
    grids = []
    for path, images in samples.items():
        name = report_best_grid(path)
        save_grid(images, out / name)
        grids.append((path, name))
        files.append(out / name)
    return grids


def _summary(report: Report) -> str:
    counts = report.runs["state"].value_counts()
    states = ", ".join(f"{n} {state}" for state, n in counts.items())
    return f"{len(report.runs)} runs: {states}."


def _notes(report: Report) -> list[tuple[str, str]]:
    """(css class, text) of each note above the tables: failed, damaged, then unfinished runs."""
    notes = []
    if report.failed:
        notes.append(("problem", f"{_runs(len(report.failed))} failed: {_listed(report.failed)}."))
    if report.damaged:
        notes.append(("problem", f"{_runs(len(report.damaged))} damaged, left out of the choice of "
                                 f"best generator: {_listed(report.damaged)}."))
    if report.partial:
        unfinished = report.runs.loc[~report.runs["state"].isin(SETTLED), "state"].value_counts()
        states = ", ".join(f"{n} {state}" for state, n in unfinished.items())
        notes.append(("partial", f"Partial results: {unfinished.sum()} of {len(report.runs)} runs are not "
                                 f"finished ({states}); their rows hold the last epoch recorded and the "
                                 f"figures the epochs done so far."))
    return notes


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def _listed(errors: list[tuple[str, str]]) -> str:
    return "; ".join(f"{run}: {error}" for run, error in errors)


def _one_line(text: str) -> str:
    """A run's error (perhaps a multi-line traceback's message) as one line of a note or log."""
    return " ".join(text.split())


def _utility_part(study: Path, out: Path, files: list[Path]) -> tuple[list[str], list[str]]:
    """``rxwgan utility``'s answer, when the study has one: its summary, comparisons and ROC
    figure, after a note when its last command did not end."""
    from rxwgan.utility.driver import unfinished_note

    folder = study / UTILITY_FOLDER
    note = unfinished_note(study)
    has_summary = (folder / UTILITY_SUMMARY_MARKDOWN).is_file()
    if not has_summary and note is None:
        return [], []
    summary = (folder / UTILITY_SUMMARY_MARKDOWN).read_text().rstrip() if has_summary else ""
    title = "Does the synthetic data help? (rxwgan utility)"
    md = [f"## {title}", "", *([f"> {note}", ""] if note else []), summary, ""]
    page = [f"<h2>{html.escape(title)}</h2>",
            *([f'<p class="partial">{html.escape(note)}</p>'] if note else []),
            *(f"<pre>{html.escape(block)}</pre>" for block in summary.split("\n\n") if block)]
    if (folder / UTILITY_ROC).is_file():
        atomic.write_bytes(out / REPORT_UTILITY_ROC, (folder / UTILITY_ROC).read_bytes())
        files.append(out / REPORT_UTILITY_ROC)
        caption = "ROC curves on the test rows per condition: every classifier run, and their mean"
        md += [f"![{caption}](utility_roc.png)", "", f"*{caption}*", ""]
        page.append(_figure(out / REPORT_UTILITY_ROC, caption))
    return md, page


def _documents(study: Path, report: Report, sections: list[_Section],
               best_grids: list[tuple[str, str]],
               utility: tuple[list[str], list[str]] = ([], [])) -> tuple[str, str]:
    """The same content twice: Markdown with image links, HTML with the images embedded."""
    when = time.strftime("%Y-%m-%d %H:%M:%S")
    shown = [c for c in SHOWN_COLUMNS if c in report.runs.columns] + _extra(report.runs)
    conditional = (report.runs["target"] == BOTH).any()
    if report.runs["eval_space"].notna().any():
        shown.append("eval_space")
    if report.runs["memorisation"].notna().any():
        shown.append("memorisation")
    select_note = (f"Best run per test and target: the smallest last `{report.select}`"
                   + (" (k-fold runs: per target)" if report.runs["test"].isna().any() else "")
                   + (f"; conditional runs (target {BOTH}) are ranked among themselves, their evaluation "
                      f"metrics being means over the two classes" if conditional else "")
                   + ("; a run that kept its lowest-KID generator (generator_best) counts that "
                      "generator's KID, from the epoch in best_epoch"
                      if report.runs["best_epoch"].notna().any() else "")
                   + (f"; left out of this choice, damaged: {', '.join(run for run, _ in report.damaged)}"
                      if report.damaged else ""))
    from rxwgan.utility.driver import recorded_headline

    md = [f"# Study report: {study}", ""]
    page = [f"<h1>Study report: {html.escape(str(study))}</h1>"]
    first = recorded_headline(study)
    if first is not None:  # the study's quality, as rxwgan utility measured it
        md += [f"**{first}**", ""]
        page.append(f"<p><strong>{html.escape(first)}</strong></p>")
    md += [f"Written {when}. {_summary(report)}", ""]
    page.append(f"<p>Written {when}. {html.escape(_summary(report))}</p>")
    for kind, note in _notes(report):
        md += [f"> **{note}**", ""]
        page.append(f'<p class="{kind}"><strong>{html.escape(note)}</strong></p>')
    memo_note = (" Memorisation (rxwgan evaluate --memorisation): near_copies is the share of synthetic "
                 "images closer to a training image than 95% of the unseen real images are (in the "
                 "feature space named, pixel_near_copies in pixels), near_copies_unseen the unseen "
                 "images' own share (the reference), authenticity the authentic share (Alaa et al. 2022)."
                 if "near_copies" in report.runs.columns else "")
    md += ["## Runs", "", _markdown_table(report.runs[shown]), "", "All columns: runs.csv." + memo_note, ""]
    page += ["<h2>Runs</h2>", _html_table(report.runs[shown]),
             f"<p>All columns: runs.csv.{html.escape(memo_note)}</p>"]
    md += ["## Best runs", "", select_note + ".", ""]
    page += ["<h2>Best runs</h2>", f"<p>{html.escape(select_note)}.</p>"]
    if report.best.empty:
        md += [f"No run has recorded {report.select} yet.", ""]
        page.append(f"<p>No run has recorded {html.escape(report.select)} yet.</p>")
    else:
        columns = [c for c in ["run", "test", "target", "state", "epoch", report.select]
                   if c in report.best.columns]
        if report.select in FEATURE_KEYS:
            columns.append("eval_space")
        md += [_markdown_table(report.best[columns]), ""]
        page.append(_html_table(report.best[columns]))
    for path, name in best_grids:
        md += [f"![{path}]({name})", ""]
        page.append(_figure(report.folder / name, f"{path}: its fixed-latent sample grid"))
    md += utility[0]
    page += utility[1]
    for section in sections:
        md += [f"## {section.title} ({section.runs} runs)", ""]
        page.append(f"<h2>{html.escape(section.title)} ({section.runs} runs)</h2>")
        for caption, name in section.figures:
            md += [f"![{caption}]({name})", "", f"*{caption}*", ""]
            page.append(_figure(report.folder / name, caption))
    style = ("body{font-family:sans-serif;max-width:1400px;margin:auto}table{border-collapse:collapse;"
             "font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
             ".partial{background:#fff3cd;padding:6px}.problem{background:#f8d7da;padding:6px}"
             "img{max-width:100%}")
    document = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>rxwgan study report</title>"
                f"<style>{style}</style></head><body>\n" + "\n".join(page) + "\n</body></html>\n")
    return "\n".join(md) + "\n", document


def _extra(frame: pd.DataFrame) -> list[str]:
    """The evaluation metrics' columns (history keys training does not write itself)."""
    own = {*SPLIT_COLUMNS, *HISTORY_KEYS, *TEXT_COLUMNS}
    return [c for c in frame.columns if c not in own]


def _cell(value: Any) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if isinstance(value, float | np.floating):
        return f"{value:.4g}"
    return str(value)


def _markdown_table(frame: pd.DataFrame) -> str:
    rows = [list(frame.columns), ["---"] * len(frame.columns)]
    rows += [[_cell(v).replace("|", "\\|") for v in record] for record in frame.itertuples(index=False)]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def _html_table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in record) + "</tr>"
                   for record in frame.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")
