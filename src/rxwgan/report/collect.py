"""A study's runs as tables: one row per run (split, state, history, metrics, memorisation)
and the best run per class (conditional runs, target ``both``, are ranked among themselves).

Read from the run folders alone, so it works on a finished study, on one still running
(its unfinished runs are marked), and on a folder of runs made one by one with ``rxwgan
train``. A run whose history cannot be read is ``damaged``: it is never ranked, so a broken
file cannot quietly hand the best run of its class to another fold. It reads a study through
``rxwgan.study.plan``, never through the Ray driver, so it needs no Ray;
``rxwgan.report.render`` turns these tables into the report's pages.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from rxwgan.base.errors import RxwganError
from rxwgan.base.json_files import is_number, last_value, read_json
from rxwgan.base.layout import (
    BEST_GENERATOR,
    BEST_RECORD,
    CHECKPOINT_POINTER,
    HISTORY_FILE,
    HISTORY_KEYS,
    RUN_SPACE_RECORD,
    TRAINED_GENERATOR,
)
from rxwgan.metrics.space_per_study import FEATURE_KEYS, read_run_space
from rxwgan.study.plan import RunPlan, load_study, run_status
from rxwgan.train.config import TARGETS

DEFAULT_SELECT = "val_kl_rf"
BOTH = "both"  # the target of a conditional run: one generator learns both classes
# The report's own state, beyond the study's (rxwgan.study.plan.STATES): the run's history is unreadable.
DAMAGED = "damaged"
_JSON_KINDS = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
SPLIT_COLUMNS = ["run", "split", "fold", "n_splits", "test", "sort", "target", "state", "epoch", "epochs",
                 "best_epoch"]
# A run's recorded memorisation check (rxwgan.synth.memorisation) of its generator, when there is one.
MEMO_COLUMNS = ["near_copies", "near_copies_unseen", "authenticity", "pixel_near_copies"]
# Text columns after the numbers: the id of the feature space of a run's metrics, the sets and
# space of its memorisation check, its error.
TEXT_COLUMNS = ["eval_space", "memorisation", "error"]


@dataclass
class StudyRun:
    plan: RunPlan
    folder: Path
    row: dict[str, Any]
    history: dict[str, list[float | None]]


# --- tables -------------------------------------------------------------------------------

def load_runs(study: Path) -> list[StudyRun]:
    runs, epochs = load_study(study)
    loaded = []
    for plan in runs:
        folder = study / plan.path
        status = run_status(study, plan, epochs)
        history, damage = read_history(folder, status.epoch)
        spec = plan.split
        row: dict[str, Any] = {"run": plan.path, "split": spec.name, "fold": spec.fold,
                               "n_splits": spec.n_splits, "test": spec.test, "sort": spec.sort,
                               "target": BOTH if plan.conditional else plan.target,
                               "state": DAMAGED if damage else status.state,
                               "epoch": status.epoch, "epochs": status.epochs}
        row.update({key: last_value(values) for key, values in history.items()})
        best = read_json(folder / BEST_RECORD)
        if is_number(best.get("kid")):  # the run kept its lowest-KID generator: rank by that one
            row.update(kid=best["kid"], best_epoch=best.get("epoch"))
        row["eval_space"] = read_run_space(folder).get("id")
        row.update(_memorisation(folder, plan.conditional))
        row["error"] = "; ".join(text for text in (damage, status.error) if text) or None
        loaded.append(StudyRun(plan, folder, row, history))
    return loaded


def read_history(folder: Path, epoch: int) -> tuple[dict[str, list[float | None]], str | None]:
    """The run's history, or ``({}, why)`` when it is unreadable or holds fewer epochs than the
    checkpoint at ``epoch``: training writes it atomically before each checkpoint, so either is damage."""
    path = folder / HISTORY_FILE
    try:
        history = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}, (f"{HISTORY_FILE}: missing, though {CHECKPOINT_POINTER} is at epoch {epoch}"
                    if epoch else None)
    except OSError as exc:
        return {}, f"{HISTORY_FILE}: cannot be read ({exc.strerror})"
    except ValueError as exc:  # truncated, or not JSON text at all
        return {}, f"{HISTORY_FILE}: not valid JSON ({exc})"
    problem = _history_problem(history, epoch)
    return ({}, f"{HISTORY_FILE}: {problem}") if problem else (history, None)


def _history_problem(history: Any, epoch: int) -> str | None:
    """What is wrong with a parsed history: one series per key, of numbers or nulls, all as long
    as each other and at least ``epoch`` long."""
    if not isinstance(history, dict):
        return f"holds a JSON {_json_kind(history)}, not an object of per-epoch series"
    for key, values in history.items():
        if not isinstance(values, list):
            return f"{key} is a JSON {_json_kind(values)}, not an array of per-epoch values"
        wrong = next((v for v in values if v is not None and not is_number(v)), None)
        if wrong is not None:
            return f"{key} holds {str(wrong)[:40]!r}, not a number"
    lengths = {len(values) for values in history.values()}
    if len(lengths) > 1:
        return f"its series differ in length ({min(lengths)} to {max(lengths)} epochs)"
    held = lengths.pop() if lengths else 0
    if held < epoch:
        return f"holds {held} of the {epoch} epochs {CHECKPOINT_POINTER} records"
    return None


def _json_kind(value: Any) -> str:
    return _JSON_KINDS.get(type(value), "number")


def _memorisation(folder: Path, conditional: bool) -> dict[str, Any]:
    """The run's memorisation record as columns, when it is of a generator still in the folder;
    a conditional run's records of each class, the worse share of near copies shown."""
    from rxwgan.models import file_sha256
    from rxwgan.synth.memorisation import recorded

    shas = {file_sha256(folder / name) for name in (TRAINED_GENERATOR, BEST_GENERATOR)
            if (folder / name).is_file()}
    records = [recorded(folder, sha, target) for sha in shas
               for target in (TARGETS if conditional else (None,))]
    records = [record for record in records if record is not None]
    if not records:
        return {}
    worst = max(records, key=lambda record: record["scores"]["features"]["near_copies"])
    features, pixels = worst["scores"]["features"], worst["scores"]["pixels"]
    described = "; ".join((f"target {record['target']}: " if conditional else "")
                          + f"{record['n_synthetic']} synthetic, {record['n_train']} train, "
                          f"{record['n_unseen']} unseen; {record['space_id']}"
                          + ("; FLAGGED" if record.get("flagged") else "") for record in records)
    return {"near_copies": features["near_copies"], "near_copies_unseen": features["near_copies_unseen"],
            "authenticity": features["authenticity"], "pixel_near_copies": pixels["near_copies"],
            "memorisation": described}


def comparable_keys(runs: Sequence[StudyRun]) -> list[str]:
    """The metric keys whose curves may be averaged over these runs: feature-space keys
    only when every run that has them measured them in one space."""
    keys = _metric_keys(runs)
    spaces = {run.row["eval_space"] for run in runs if FEATURE_KEYS & set(run.history)}
    return keys if len(spaces) <= 1 else [key for key in keys if key not in FEATURE_KEYS]


def _metric_keys(runs: Sequence[StudyRun]) -> list[str]:
    """History keys beyond training's own (evaluation metrics such as kid, fid), sorted."""
    return sorted({key for run in runs for key in run.history} - set(HISTORY_KEYS))


def collect_runs(study: str | Path) -> pd.DataFrame:
    """One row per run: its partition, target, state, epochs and last value of every history key."""
    return runs_frame(load_runs(Path(study)))


def runs_frame(runs: Sequence[StudyRun]) -> pd.DataFrame:
    memo = MEMO_COLUMNS if any("near_copies" in run.row for run in runs) else []
    columns = SPLIT_COLUMNS + list(HISTORY_KEYS) + _metric_keys(runs) + memo + TEXT_COLUMNS
    frame = pd.DataFrame([run.row for run in runs], columns=columns)
    for name in ("fold", "n_splits", "test", "sort", "epochs", "best_epoch"):
        frame[name] = frame[name].astype("Int64")
    for name in columns[len(SPLIT_COLUMNS):-len(TEXT_COLUMNS)]:
        frame[name] = pd.to_numeric(frame[name], errors="coerce")
    return frame


def select_best(runs: pd.DataFrame, key: str = DEFAULT_SELECT) -> pd.DataFrame:
    """The run with the smallest last ``key`` for each (test, target): k-fold runs group by target.

    Conditional runs (target ``both``) are ranked among themselves: their ``kid`` is the mean
    over the classes (the one that chose their generator_best), not one class's KID.

    A ``damaged`` run is never ranked, whatever its other files hold: the report names it instead.
    A metric measured in a feature space (kid, fid, precision...) is ranked only among runs
    whose ``eval_space`` is the same: otherwise the ranking is refused, naming the runs.
    """
    known = [c for c in runs.columns if c not in SPLIT_COLUMNS + TEXT_COLUMNS]
    if key not in known:
        raise RxwganError(f"--select {key}: not a history key of this study (choose from "
                          f"{', '.join(known)})")
    usable = runs["state"] != DAMAGED if "state" in runs.columns else True
    scored = runs[pd.to_numeric(runs[key], errors="coerce").notna() & usable]
    if scored.empty:
        return scored
    if key in FEATURE_KEYS:
        _refuse_mixed_spaces(scored, key)
    groups = scored.groupby(_ranked_together(scored), dropna=False, sort=True)[key]
    return scored.loc[groups.idxmin().to_numpy()].reset_index(drop=True)


def _ranked_together(runs: pd.DataFrame) -> list[Any]:
    """The keys of a group of runs ranked together: test, then target (as text: a class or ``both``)."""
    return [runs["test"], runs["target"].astype(str)]


def _refuse_mixed_spaces(scored: pd.DataFrame, key: str) -> None:
    """One line naming the runs and spaces when a group to rank mixes feature spaces."""
    spaces = (scored["eval_space"] if "eval_space" in scored.columns
              else pd.Series(None, index=scored.index, dtype=object))
    spaces = spaces.where(spaces.notna(), f"no {RUN_SPACE_RECORD}")
    for _, group in scored.assign(_space=spaces).groupby(_ranked_together(scored), dropna=False, sort=True):
        if group["_space"].nunique() > 1:
            named = ", ".join(f"{run} ({space})" for run, space in zip(group["run"], group["_space"],
                                                                        strict=True))
            raise RxwganError(f"--select {key}: these runs measured {key} in different feature spaces "
                              f"and cannot be ranked together: {named}; run them as one sweep (one "
                              f"space for the study) or give each the same --eval_features FILE")


