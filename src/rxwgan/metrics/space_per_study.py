"""One feature space per study, fitted where no run is scored, and recorded beside every number.

A KID, FID or precision is a distance in some feature space; two numbers from different
spaces cannot be ranked. So:

- a study (``rxwgan sweep``) fits its ``trained``/``random`` space once, on the table rows
  no run of the study validates or tests on (every row only when the user accepts it),
  saves it in the study folder (``STUDY_SPACE_FILE``) and names that file as every run's
  ``--eval_features``: a run resumed or retried anywhere measures in the same space;
- a single run (``rxwgan train --eval_for_each``) fits it on its own training rows, both
  classes, never on the validation rows it scores; or it is given a space file;
- pretrained spaces (xrv, inception) need no fitting: their id is fixed by their weights;
- every run records the id of its space in ``RUN_SPACE_RECORD`` and refuses to go on in another.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rxwgan.base import atomic
from rxwgan.base.errors import RxwganError
from rxwgan.base.layout import RUN_SPACE_RECORD, STUDY_SPACE_FILE
from rxwgan.data.splits import partition_table
from rxwgan.data.table import Table, read_table
from rxwgan.metrics.metric_registry import METRICS
from rxwgan.metrics.space_builder import (
    FeatureSpace,
    auto_space,
    is_space_file,
    read_space_info,
    resolve_space,
    save_space,
)
from rxwgan.metrics.space_registry import AUTO, is_fitted

# The history keys measured in a feature space (fid, kid, precision, ...): never ranked across spaces.
FEATURE_KEYS = frozenset(key for metric in METRICS.values() if metric.uses_features
                         for key in metric.keys)


def chosen_space(features: str, weights: str | Path | None = None) -> str:
    """``auto`` made definite (xrv when usable, else trained); names and files as they are."""
    return auto_space(weights)[0] if features == AUTO else features


def fit_on_rows(name: str, table: Table, rows: Sequence[int], size: int, *, seed: int,
                cache_dir: str | Path | None, device: str | torch.device = "cpu") -> FeatureSpace:
    """The space ``name`` fitted on these rows of ``table`` (all their classes)."""
    from rxwgan.data.cache import ImageCache

    if not is_fitted(name):
        return resolve_space(name, device=device)[0]
    rows = [int(i) for i in rows]
    paths = table.paths
    images = ImageCache(cache_dir).load([paths[i] for i in rows], size,
                                        labels=[table.row_label(i) for i in rows], progress=False)
    return resolve_space(name, torch.from_numpy(images), table.targets[rows], seed=seed,
                         cache_dir=cache_dir, device=device)[0]


def space_of_run(config: Any, table: Table, train_rows: Sequence[int], size: int,
                 device: str | torch.device = "cpu") -> FeatureSpace:
    """The feature space of one training run (a ``TrainConfig``) at ``size`` px, from the table
    and the training rows (every class) the run already holds.

    A file (``--eval_features path``) or a pretrained space as named; ``trained`` or
    ``random`` fitted on the run's training rows of every class (the rows its metrics
    never score).
    """
    name = chosen_space(config.eval_features)
    if is_space_file(name) or not is_fitted(name):
        return resolve_space(name, device=device)[0]
    space = fit_on_rows(name, table, train_rows, size, seed=config.seed, cache_dir=config.cache_dir,
                        device=device)
    which = f"the training rows of {config.split.name}"
    space.info["fitted_on"] = {"table": str(table.source), "rows": which, "n_rows": len(train_rows)}
    return space


def run_space(config: Any, size: int, device: str | torch.device = "cpu") -> FeatureSpace:
    """``space_of_run`` for a run known only by its settings: its table is read from ``config.input``."""
    table = read_table(config.input, config.path_column, config.target_column, check_files=False)
    return space_of_run(config, table, partition_table(table, config.split).train, size, device)


def record_run_space(folder: Path, space: FeatureSpace, history: dict[str, list]) -> None:
    """Write the run's ``RUN_SPACE_RECORD``; refuse a run whose earlier numbers are in another space.

    Only when ``history`` already holds feature-space numbers (a resume) must an existing
    record match; otherwise it is a previous run's, and is replaced.
    """
    path = Path(folder) / RUN_SPACE_RECORD
    previous = read_run_space(Path(folder))
    if previous.get("id") == space.key:
        return
    evaluated_before = any(value is not None for key in FEATURE_KEYS for value in history.get(key, []))
    if previous.get("id") and evaluated_before:
        raise RxwganError(f"{path}: this run's metrics so far are in feature space {previous['id']}, "
                          f"but --eval_features now gives {space.key}; continue with the same "
                          f"--eval_features, or start afresh with --overwrite")
    atomic.write_json(path, space_record(space))


def space_record(space: FeatureSpace) -> dict[str, Any]:
    """What a run or study records about its space: id, name, description, what it was fitted on."""
    return {"id": space.key, "name": space.name, "description": space.description,
            "fitted_on": space.info.get("fitted_on"), "file": space.info.get("file")}


def read_run_space(folder: Path) -> dict[str, Any]:
    """A run's ``RUN_SPACE_RECORD``, or {} when it has none (no evaluation, or an older rxwgan)."""
    try:
        data = json.loads((Path(folder) / RUN_SPACE_RECORD).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def study_space(features: str, study: Path, csv: str | Path, splits: Sequence[Any], size: int, *,
                seed: int, path_column: str, target_column: str, cache_dir: str | Path | None,
                fit_all: bool, refit: bool) -> tuple[str, dict[str, Any]]:
    """The study's one space: what every run's ``--eval_features`` becomes, and its record.

    ``trained``/``random`` are fitted on the rows that none of ``splits`` validates or tests
    on (every row with ``fit_all``) and saved as ``study/STUDY_SPACE_FILE``; a file already there
    is reused unless it was fitted on rows these splits score, or ``refit`` (--overwrite).
    Pretrained spaces and space files are used as named.
    """
    name = chosen_space(features)
    if is_space_file(name) or not is_fitted(name):
        space, _ = resolve_space(name)
        return name, space_record(space)
    table = read_table(csv, path_column, target_column, check_files=False)
    scored = np.zeros(len(table), dtype=bool)
    for spec in splits:
        parts = partition_table(table, spec)
        scored[parts.val] = True
        scored[parts.test] = True
    file = study / STUDY_SPACE_FILE
    if file.is_file() and not refit:
        info = read_space_info(file)
        fitted = np.asarray(info["fitted_on"]["row_indices"], dtype=np.int64)
        if info["name"] != name:
            raise RxwganError(f"{file}: this study measures in the {info['name']} space, not {name}; "
                              f"use --eval_features {info['name']}, or --overwrite to start afresh")
        if scored[fitted].any() and not fit_all:
            raise RxwganError(f"{file} was fitted on rows that runs of this sweep validate or test on; "
                              f"pass --eval_fit_all to accept that, or --overwrite to refit it")
        return str(file), space_record(resolve_space(str(file))[0])
    rows = np.arange(len(table)) if fit_all else np.flatnonzero(~scored)
    if len(rows) < 2:
        raise RxwganError(f"--eval_features {name}: every row of {table.source} is validated or tested "
                          f"on by some run of this study, so none is left to fit its feature space on; "
                          f"pass --eval_fit_all to fit it on every row (its numbers then see the "
                          f"validation images), or use --eval_features xrv")
    space = fit_on_rows(name, table, rows, size, seed=seed, cache_dir=cache_dir)
    which = "every row (--eval_fit_all)" if fit_all else "the rows no run of the study validates or tests on"
    fitted_on = {"table": str(Path(csv).resolve()), "rows": which, "n_rows": len(rows),
                 "row_indices": rows.tolist()}
    save_space(space, file, fitted_on)
    return str(file), space_record(resolve_space(str(file))[0])
