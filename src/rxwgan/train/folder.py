"""A run folder's rules: whose files are in it, and whether a run starts, resumes or is refused.

A folder belongs to one run. ``run_files.json`` (the manifest) lists every file the run
wrote and whether it ever reached a checkpoint; only those files are ever deleted, and
never one the current command reads. The decision, in order:

- an intact checkpoint with the same settings and table: resume it;
- the old tool's restart (``--start_from_epoch``): start from the given files, keep the rest;
- a previous attempt that never reached a checkpoint (or ``--overwrite``): remove its
  recorded files and start afresh;
- files rxwgan did not record, or a checkpointed run of other settings: refuse.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rxwgan.base import atomic
from rxwgan.base.errors import RxwganError
from rxwgan.base.layout import (
    CHECKPOINT_FOLDER,
    CHECKPOINT_POINTER,
    CONFIG_FILE,
    FINAL_FILES,
    HISTORY_FILE,
    MANIFEST_FILE,
    PARTITION_COLUMN,
    RUN_FILE_PATTERNS,
    SPLIT_FILE,
)
from rxwgan.base.progress import Log
from rxwgan.data.splits import SplitSpec, partition_table, table_groups
from rxwgan.data.table import Table, md5_of_file, read_table
from rxwgan.models.files import resolve_model_path
from rxwgan.train.checkpoint import load_checkpoint
from rxwgan.train.config import TrainConfig

# Files every run writes under a fixed name: none may be a file the command reads.
FIXED_OUTPUTS = (CONFIG_FILE, SPLIT_FILE, HISTORY_FILE, CHECKPOINT_POINTER, MANIFEST_FILE,
                 *FINAL_FILES)


@dataclass
class Start:
    """How a run begins: from ``checkpoint`` (resume), the old tool's restart, or afresh."""

    checkpoint: dict[str, Any] | None = None
    legacy: bool = False


class Manifest:
    """The run's own files (paths relative to the folder), recorded before they are written."""

    def __init__(self, folder: Path):
        self.path = folder / MANIFEST_FILE
        self.folder = folder
        data = _read_json(self.path)
        self.files: list[str] = [f for f in data.get("files", []) if isinstance(f, str)]
        self.checkpointed = bool(data.get("checkpointed", False))
        self.exists = self.path.is_file()

    def record(self, *names: str) -> None:
        new = [name for name in names if name not in self.files]
        if new or not self.exists:
            self.files.extend(new)
            self._write()

    def mark_checkpointed(self) -> None:
        if not self.checkpointed:
            self.checkpointed = True
            self._write()

    def remove_files(self, keep: set[Path]) -> int:
        """Delete the recorded files (folders recursively) except ``keep``; the manifest too."""
        removed = 0
        for name in self.files:
            path = self.folder / name
            if path.resolve() in keep:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
            elif path.exists() or path.is_symlink():
                path.unlink()
                removed += 1
        self.path.unlink(missing_ok=True)
        self.files, self.checkpointed, self.exists = [], False, False
        return removed

    def _write(self) -> None:
        atomic.write_json(self.path, {"files": self.files, "checkpointed": self.checkpointed})
        self.exists = True


def table_fingerprint(table: Table, split: SplitSpec | None = None) -> dict[str, Any]:
    """What the run's split depends on: each row's path as written, file md5 and target, and
    its group when ``split`` is grouped (only then: an ungrouped run's fingerprint is unchanged)."""
    rows = [[str(value), md5_of_file(path), int(target)]
            for value, path, target in zip(table.frame[table.path_column], table.paths, table.targets,
                                           strict=True)]
    groups = None if split is None else table_groups(table, split)
    if groups is None:
        return {"sha256": _digest(rows), "rows": rows}
    rows = [[*row, str(group)] for row, group in zip(rows, groups, strict=True)]
    return {"sha256": _digest(rows), "rows": rows, "group_column": split.group_column}


def check_split_file(split_csv: Path, config: TrainConfig) -> None:
    """A grouped run's ``split.csv`` must still give its own partition from its groups: when it
    does not, its group column (or rows) changed since the run split them. (An ungrouped run's
    is the old tool's row by row: nothing to check.)"""
    if config.split.group_column is None:
        return
    table = read_table(split_csv, config.path_column, config.target_column, check_files=False)
    recorded = table.frame.get(PARTITION_COLUMN)
    if recorded is None:
        return  # not a run's split: its readers (run_info) say so
    if partition_table(table, config.split).labels(len(table)) != recorded.astype(str).tolist():
        raise RxwganError(f"{split_csv}: its {config.split.group_column} column no longer gives the run's "
                          f"{PARTITION_COLUMN} column (the groups changed since the run split them)")


def _digest(rows: list[list[Any]]) -> str:
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def inputs_of(config: TrainConfig) -> set[Path]:
    """Resolved paths of every file the command reads: never deleted, never overwritten."""
    found = {Path(config.input).resolve()}
    for model in (config.generator, config.critic):
        if model:
            try:
                found.add(resolve_model_path(model).resolve())
            except RxwganError:
                pass  # a missing -g/-c file is reported when the model is loaded
    if config.history:
        found.add(Path(config.history).resolve())
    return found


def decide_start(config: TrainConfig, folder: Path, table: dict[str, Any], log: Log) -> Start:
    """Resume, restart or start afresh in ``folder`` (already locked), or refuse with why."""
    protected = inputs_of(config)
    for name in FIXED_OUTPUTS:
        if (folder / name).resolve() in protected:
            raise RxwganError(f"{folder / name} is read by this command and would be overwritten by "
                              f"the run's own {name}: copy it elsewhere or choose another -o")
    legacy = config.start_from_epoch > 1
    manifest = Manifest(folder)
    checkpoint = None if config.overwrite else load_checkpoint(folder, warn=log)
    if checkpoint is not None:
        saved = TrainConfig.from_dict(checkpoint["config"])
        if legacy and _restart_flags(saved) != _restart_flags(config):
            if checkpoint["epoch"] >= config.start_from_epoch:
                raise RxwganError(
                    f"{folder} holds a checkpoint at epoch {checkpoint['epoch']}, later than "
                    f"--start_from_epoch {config.start_from_epoch}: run without -g/-c/--history/"
                    f"--start_from_epoch to resume from it, or pass --overwrite")
            return Start(legacy=True)
        changed = config.differences(saved, checkpoint.get("arch"))
        if changed:
            raise RxwganError(f"{folder} holds a run with other settings ({'; '.join(changed)}): "
                              f"use another -o, or --overwrite to start afresh")
        _check_same_table(folder, checkpoint.get("table"), table, log)
        return Start(checkpoint=checkpoint)
    if config.resume:
        raise RxwganError(f"--resume: {folder} holds no checkpoint ({CHECKPOINT_POINTER} not found)")
    if manifest.exists and (config.overwrite or not manifest.checkpointed):
        removed = manifest.remove_files(keep=protected)
        if removed:
            why = "--overwrite" if config.overwrite else "the previous attempt never reached a checkpoint"
            log(f"{why}: removed {removed} file(s) of the previous run in {folder}")
    elif manifest.exists:
        raise RxwganError(f"{folder}: the run recorded checkpoints but none is left in "
                          f"{folder / CHECKPOINT_FOLDER}; pass --overwrite to start afresh")
    elif not legacy:
        unrecorded = sorted({p for pattern in RUN_FILE_PATTERNS for p in folder.glob(pattern)
                             if p.is_file() and p.resolve() not in protected})
        if unrecorded:
            raise RxwganError(f"{folder} holds files rxwgan did not record as a run's own "
                              f"({unrecorded[0].relative_to(folder)} and {len(unrecorded) - 1} more): "
                              f"move them away or choose another -o")
    return Start(legacy=legacy)


def _restart_flags(config: TrainConfig) -> tuple:
    return (config.generator, config.critic, config.history, config.start_from_epoch)


def _check_same_table(folder: Path, saved: dict[str, Any] | None, now: dict[str, Any], log: Log) -> None:
    if saved is None:
        log(f"warning: the checkpoint in {folder} records no table fingerprint (an older rxwgan made "
            f"it), so the table cannot be checked against the one the run began with")
        return
    if saved["sha256"] == now["sha256"]:
        return
    before = {row[0]: row for row in saved["rows"]}
    after = {row[0]: row for row in now["rows"]}
    removed = [p for p in before if p not in after]
    added = [p for p in after if p not in before]
    content = [p for p in before if p in after and before[p][1] != after[p][1]]
    targets = [p for p in before if p in after and before[p][2] != after[p][2]]
    groups = [p for p in before if p in after and before[p][3:] != after[p][3:]]
    parts = [f"{len(paths)} row(s) {what} (first: {paths[0]})"
             for what, paths in (("removed", removed), ("added", added),
                                 ("with other image content", content), ("with another target", targets),
                                 (f"with another {now.get('group_column')}", groups))
             if paths]
    if not parts:
        parts = ["the rows are in another order"]
    raise RxwganError(f"{folder}: the table changed since this run began ({'; '.join(parts)}), so its "
                      f"split would change: resume with the original table, or use another -o")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
