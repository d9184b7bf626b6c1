"""A study on disk: which runs it plans, where their files live, and what state they are in.

A study is a folder of run folders, ``STUDY/<split>/target_<t>/`` (a per-class run) or
``STUDY/<split>/conditional/`` (one run for both classes), plus ``sweep.json``.
Everything here reads or writes those files and nothing else, so the report, ``rxwgan
sweep --status`` and the Ray driver share one reading of a study, and none of them needs
Ray to do it (the driver and its workers are in ``rxwgan.study.sweep`` and
``rxwgan.study.worker``, the status table in ``rxwgan.study.status``).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rxwgan.base import atomic
from rxwgan.base.errors import RxwganError
from rxwgan.base.json_files import last_value, read_json
from rxwgan.base.layout import (
    CHECKPOINT_POINTER,
    CONDITIONAL_RUN,
    CONFIG_FILE,
    HISTORY_FILE,
    STATUS_FILE,
    SWEEP_FILE,
    TRAINED_GENERATOR,
    WORKER_FILE,
    class_run,
)
from rxwgan.data.splits import DEFAULT_N_SPLITS, DEFAULT_SEED, STRATIFIED_FOLDS, SplitSpec
from rxwgan.train.config import TARGETS, TrainConfig

STATES = ("new", "queued", "running", "done", "failed", "stopped", "partial")
STATUS_LOSSES = ("train_critic_loss", "train_gen_loss", "val_kl_rf")  # the table's loss columns


# --- the plan ---------------------------------------------------------------------------

def parse_indices(text: str, flag: str) -> list[int]:
    """``"0-4"``, ``"1,3,5"`` or ``"0-2,7"`` as a sorted list without repeats."""
    found: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                low, high = (int(v) for v in part.split("-", 1))
                if high < low:
                    raise ValueError
                found.update(range(low, high + 1))
            else:
                found.add(int(part))
        except ValueError:
            raise RxwganError(f"{flag} {text!r}: write numbers like 0-4 or 0,2,5") from None
    if any(v < 0 for v in found):
        raise RxwganError(f"{flag} {text!r}: numbers must be 0 or more")
    return sorted(found)


def plan_splits(scheme: str, n_splits: int | None = None, folds: Sequence[int] | None = None,
                tests: Sequence[int] | None = None, sorts: Sequence[int] | None = None,
                seed: int = DEFAULT_SEED, group_column: str | None = None) -> list[SplitSpec]:
    """Every partition of the study: folds of k-fold, or tests x sorts of the stratified scheme
    (``group_column``: each grouped by that column)."""
    if scheme == "kfold":
        n_splits = DEFAULT_N_SPLITS if n_splits is None else n_splits
        chosen = range(n_splits) if folds is None else folds
        specs = [SplitSpec(fold=f, n_splits=n_splits, seed=seed, group_column=group_column) for f in chosen]
    elif scheme == "stratified":
        every = range(STRATIFIED_FOLDS)
        specs = [SplitSpec(test=t, sort=s, seed=seed, group_column=group_column)
                 for t in (every if tests is None else tests) for s in (every if sorts is None else sorts)]
    else:
        raise RxwganError(f"--scheme must be kfold or stratified, not {scheme!r}")
    for spec in specs:
        spec.check()
    if not specs:
        raise RxwganError("the sweep has no folds to run")
    return specs


@dataclass(frozen=True)
class RunPlan:
    """One run of the study: a partition and a class (None: a conditional run, both classes),
    and the folder it lives in."""

    split: SplitSpec
    target: int | None

    @property
    def conditional(self) -> bool:
        return self.target is None

    @property
    def path(self) -> str:
        """The run folder relative to the study: ``fold_0/target_1`` or ``fold_0/conditional``."""
        return f"{self.split.name}/{CONDITIONAL_RUN if self.target is None else class_run(self.target)}"

    def config(self, base: TrainConfig, study: Path) -> TrainConfig:
        """``base`` with this run's partition, class (or ``conditional``) and output folder."""
        # A conditional run keeps base's target: its config's target means nothing.
        kind = {"conditional": True} if self.target is None else {"target": self.target, "conditional": False}
        return dataclasses.replace(base, split=self.split, output=str(study / self.path), **kind)

    def to_dict(self) -> dict[str, Any]:
        """The entry of this run in ``sweep.json``."""
        return {"path": self.path, "split": self.split.name, **self.split.to_dict(), "target": self.target,
                "conditional": self.conditional}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunPlan:
        conditional = data.get("conditional", False)  # not recorded before conditional runs
        return cls(SplitSpec.from_dict(data), None if conditional else int(data["target"]))


def plan_runs(splits: Sequence[SplitSpec], targets: Sequence[int] = TARGETS,
              conditional: bool = False) -> list[RunPlan]:
    """One run per (partition, target), partition by partition; ``conditional``: one run per
    partition that learns both classes (``targets`` unused)."""
    if conditional:
        return [RunPlan(spec, None) for spec in splits]
    for target in targets:
        if target not in TARGETS:
            raise RxwganError(f"--targets: a target is 0 or 1, not {target}")
    return [RunPlan(spec, t) for spec in splits for t in targets]



# --- the files of a run -------------------------------------------------------------------


def write_status(folder: Path, state: str, sweep_id: str | None = None, error: str | None = None) -> None:
    """``status.json``: what the sweep last knew of the run (one of STATES), and why it failed."""
    atomic.write_json(folder / STATUS_FILE, {"state": state, "error": error, "sweep_id": sweep_id,
                                            "updated": time.time()})



def planned_epochs(folder: Path, base: TrainConfig) -> int:
    """The epochs ``base`` asks of the run in ``folder``: --epochs, or what --kimg/--gen_steps
    come to for the number of training images its classes have (both for a conditional run;
    recorded once the run began)."""
    images = read_json(folder / CONFIG_FILE).get("train_images")
    if (base.kimg is None and base.gen_steps is None) or not images:
        return base.epochs
    return base.total_epochs(images // min(base.batch_size, images))


def is_finished(folder: Path, epochs: int) -> bool:
    """The run holds its trained networks and a checkpoint at (or past) ``epochs``."""
    pointer = read_json(folder / CHECKPOINT_POINTER)
    return ((folder / TRAINED_GENERATOR).is_file() and pointer.get("batch") is None
            and int(pointer.get("epoch", 0)) >= epochs)



# --- reading a study back ---------------------------------------------------------------

def study_runs(study: str | Path) -> list[RunPlan]:
    """Every run of a study: those sweep.json plans, then any other run folder found."""
    study = Path(study)
    runs = {entry["path"]: RunPlan.from_dict(entry)
            for entry in read_json(study / SWEEP_FILE).get("runs", [])}
    for folder in sorted([*study.glob(f"*/{class_run('*')}"), *study.glob(f"*/{CONDITIONAL_RUN}")]):
        path = f"{folder.parent.name}/{folder.name}"
        if path in runs or not (folder / CONFIG_FILE).is_file():
            continue
        config = read_json(folder / CONFIG_FILE).get("config", {})
        if config:
            target = None if config.get("conditional") else int(config.get("target", 1))
            runs[path] = RunPlan(TrainConfig.from_dict(config).split, target)
    return list(runs.values())




def load_study(study: str | Path) -> tuple[list[RunPlan], int | None]:
    """A study's runs and the epochs its sweep asks for; refuses a folder that is no study."""
    study = Path(study)
    if not study.is_dir():
        raise RxwganError(f"{study}: no such study folder")
    runs = study_runs(study)
    if not runs:
        raise RxwganError(f"{study}: holds no sweep.json and no run folders (<split>/target_<t>/ or "
                          f"<split>/{CONDITIONAL_RUN}/)")
    return runs, read_json(study / SWEEP_FILE).get("config", {}).get("epochs")


@dataclass
class RunStatus:
    """One line of the status table, read from a run folder."""

    path: str
    split: str
    target: int | None  # None: a conditional run (both classes)
    state: str
    epoch: int = 0
    epochs: int | None = None
    losses: dict[str, float | None] = field(default_factory=dict)
    eta: float | None = None
    attempt: int | None = None
    host: str | None = None
    error: str | None = None


def run_status(study: Path, run: RunPlan, epochs: int | None = None) -> RunStatus:
    """One run's line of the status table, from its folder's files."""
    folder = study / run.path
    saved = read_json(folder / CONFIG_FILE)
    epochs = saved.get("epochs") or epochs or saved.get("config", {}).get("epochs")
    status, worker = read_json(folder / STATUS_FILE), read_json(folder / WORKER_FILE)
    pointer = read_json(folder / CHECKPOINT_POINTER)
    history = read_json(folder / HISTORY_FILE)
    epoch = int(pointer.get("epoch", 0))
    losses = {key: last_value(history.get(key)) for key in STATUS_LOSSES}
    state = _state(folder, status, worker, epochs, study)
    eta = _eta(folder, worker, epoch, epochs) if state == "running" else None
    return RunStatus(run.path, run.split.name, run.target, state, epoch, epochs, losses, eta,
                     worker.get("attempt"), worker.get("host"), status.get("error"))


def study_status(study: str | Path) -> list[RunStatus]:
    """The status of every run of a study, from its files alone."""
    runs, epochs = load_study(study)
    return [run_status(Path(study), run, epochs) for run in runs]


def _state(folder: Path, status: dict[str, Any], worker: dict[str, Any], epochs: int | None,
           study: Path) -> str:
    if epochs and is_finished(folder, epochs):
        return "done"
    state = status.get("state")
    if state == "running" and not _alive(worker.get("host"), worker.get("pid")):
        return "stopped"
    if state == "queued":
        driver = read_json(study / SWEEP_FILE).get("driver", {})
        if not _alive(driver.get("host"), driver.get("pid")):
            return "stopped"
    if state == "done":  # done for fewer epochs than the study now asks
        return "partial"
    if state in STATES:
        return state
    return "partial" if (folder / CHECKPOINT_POINTER).is_file() else "new"


def _alive(host: str | None, pid: int | None) -> bool:
    """False only when the process is known gone: on another host it cannot be checked."""
    if pid is None or host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _eta(folder: Path, worker: dict[str, Any], epoch: int, epochs: int | None) -> float | None:
    """Seconds left, at this attempt's pace so far (checkpoint time since the attempt began)."""
    done = epoch - int(worker.get("start_epoch", 0))
    if not epochs or done < 1 or "started" not in worker:
        return None
    try:
        elapsed = (folder / CHECKPOINT_POINTER).stat().st_mtime - float(worker["started"])
    except OSError:
        return None
    return max(0.0, elapsed / done * (epochs - epoch))
