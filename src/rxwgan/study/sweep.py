"""A whole study at once: one training run per (fold, target), or per fold for conditional
runs, side by side on Ray.

This is the driver. Each run is exactly ``rxwgan train`` with that fold and target, in
``STUDY/<split>/target_<t>/`` (``--conditional``: both classes in ``STUDY/<split>/conditional/``),
done by ``rxwgan.study.worker.train_task`` as a Ray task (``rxwgan.base.ray_runner``); a task
whose process dies, or that raises what a second attempt can cure, is retried by Ray and
``train`` resumes from the run folder's checkpoint, so no finished epoch is lost. A run that
stops on an RxwganError (bad settings, a NaN loss) is not retried: it is marked failed with
its message and the other runs go on. Everything the status table (``rxwgan.study.status``)
shows is read back from the run folders (``rxwgan.study.plan``), so another shell (``rxwgan
sweep --status``) sees what the driver sees, without Ray, and the same sweep started again
continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rxwgan.base import atomic
from rxwgan.base.errors import RxwganError
from rxwgan.base.extras import require
from rxwgan.base.json_files import read_json
from rxwgan.base.progress import Log
from rxwgan.base.ray_runner import Outcome, joined_ray, largest_node, require_a_node_with, run_tasks
from rxwgan.data.splits import SplitSpec
from rxwgan.study.plan import STATUS_FILE, SWEEP_FILE, RunPlan, is_finished, planned_epochs, write_status
from rxwgan.study.status import LiveTable
from rxwgan.study.worker import train_task
from rxwgan.train.config import TrainConfig


@dataclass
class SweepOptions:
    """Where and how wide the runs go; None means "decide from the cluster"."""

    address: str | None = None
    gpus_per_run: float | None = None
    cpus_per_run: int | None = None
    max_concurrent: int | None = None
    max_retries: int = 3
    refresh: float | None = None  # seconds between status tables (2 on a terminal, else 30)
    num_cpus: int | None = None  # local instance only: CPUs Ray may use (default: all)


@dataclass
class SweepResult:
    """How each run of one ``run_sweep`` call ended."""

    study: Path
    states: dict[str, str] = field(default_factory=dict)  # run path -> final state
    errors: dict[str, str] = field(default_factory=dict)  # run path -> why it failed
    skipped: list[str] = field(default_factory=list)  # already finished before this sweep

    @property
    def ok(self) -> bool:
        return all(state == "done" for state in self.states.values())


def run_sweep(base: TrainConfig, study: str | Path, runs: Sequence[RunPlan],
              options: SweepOptions | None = None, log: Log = print,
              live: bool | None = None, eval_fit_all: bool = False) -> SweepResult:
    """Run every unfinished run of ``runs`` on Ray and wait for all of them.

    ``base`` carries the training settings every run shares; each run replaces its
    partition, target (or ``conditional``) and output. Finished runs are skipped, unfinished
    ones continue from their checkpoints. With ``--eval_for_each`` every run measures in the
    study's one feature space (``study_space``; ``eval_fit_all``: fitted on every row).
    """
    require(("ray",), "sweep", "rxwgan sweep")  # before minutes of filling the cache
    options = options or SweepOptions()
    study = Path(study).expanduser().resolve()
    base = _prepare_base(base, runs)
    sweep_id = uuid.uuid4().hex
    _check_study(study, base, runs)
    _fill_cache(base, runs)
    base, space = study_space(study, base, runs, eval_fit_all)
    pending = [run for run in runs
               if base.overwrite or not is_finished(study / run.path, planned_epochs(study / run.path, base))]
    result = SweepResult(study, skipped=[run.path for run in runs if run not in pending])
    result.states.update({path: "done" for path in result.skipped})
    if result.skipped:
        log(f"{len(result.skipped)} run(s) finished before: skipped")
    if not pending:
        _write_sweep_file(study, base, runs, sweep_id, options, {}, space)
        log(f"{study}: all {len(runs)} runs are finished; nothing to train")
        return result

    with joined_ray(options.address, options.num_cpus):
        try:
            resources = _resources(options, len(pending))
            _write_sweep_file(study, base, runs, sweep_id, options, resources, space)
            log(f"{len(pending)} run(s) to train ({len(result.skipped)} finished before), "
                f"{resources['cpus_per_run']} CPU(s) and {resources['gpus_per_run']} GPU(s) each")
            table = LiveTable(study, log, live, options.refresh)
            _drive(base, study, pending, sweep_id, options, resources, result, table)
        finally:
            _unqueue(study, pending, sweep_id)
    for path, error in result.errors.items():
        log(f"{path}: failed: {error}")
    return result


def _prepare_base(base: TrainConfig, runs: Sequence[RunPlan]) -> TrainConfig:
    """Settings every worker can use as they are: absolute paths, no terminal output."""
    from rxwgan.data.cache import ImageCache

    if not runs:
        raise RxwganError("the sweep has no runs")
    cache_root = ImageCache(base.cache_dir).root.expanduser().resolve()
    base = dataclasses.replace(base, input=str(Path(base.input).expanduser().resolve()),
                               cache_dir=str(cache_root), progress=False, resume=False)
    for flag, value in (("--history", base.history), ("--start_from_epoch", base.start_from_epoch > 1)):
        if value:
            raise RxwganError(f"{flag} restarts one run; a sweep continues its runs by itself")
    for run in runs:
        run.config(base, Path("/")).check()
    return base


def _check_study(study: Path, base: TrainConfig, runs: Sequence[RunPlan]) -> None:
    """Refuse a study folder that holds another study's settings (unless --overwrite)."""
    previous = read_json(study / SWEEP_FILE)
    if "config" not in previous or base.overwrite:
        return
    saved = TrainConfig.from_dict(previous["config"])
    # Each run has its own partition and class (or both: conditional); the study's settings are the rest.
    own = {"split": saved.split, "target": saved.target, "conditional": saved.conditional}
    changed = dataclasses.replace(base, **own).differences(saved)
    planned = {entry["path"]: SplitSpec.from_dict(entry) for entry in previous.get("runs", [])}
    changes = {change for run in runs if run.path in planned
               for change in run.split.changes_from(planned[run.path])}
    # One grouping per study, new runs included: its folds are parts of one partition of the table.
    changes |= {f"--group-column {spec.group_column} -> {run.split.group_column}"
                for spec in planned.values() for run in runs if spec.group_column != run.split.group_column}
    changed += sorted(changes)
    if changed:
        raise RxwganError(f"{study} holds a study with other settings ({'; '.join(changed)}): "
                          f"use another -o, or --overwrite to start its runs afresh")


def _fill_cache(base: TrainConfig, runs: Sequence[RunPlan]) -> None:
    """Decode every image of the table once, here, before the runs read them side by side; a
    group column the table lacks is refused here too, not in every run."""
    from rxwgan.data.cache import ImageCache
    from rxwgan.data.splits import table_groups
    from rxwgan.data.table import read_table

    table = read_table(base.input, base.path_column, base.target_column)
    for spec in {run.split.group_column: run.split for run in runs}.values():
        table_groups(table, spec)
    ImageCache(base.cache_dir).load_rows(table, image_size(base), progress=sys.stderr.isatty(),
                                         bit_depth=base.bit_depth)


def study_space(study: Path, base: TrainConfig, runs: Sequence[RunPlan],
                fit_all: bool = False) -> tuple[TrainConfig, dict[str, Any] | None]:
    """The study's one metric feature space, and the base config whose runs all use it.

    A fitted space (``trained``, ``random``, or ``auto`` without xrv) is fitted once on the
    rows no run validates or tests on (every row with ``fit_all``) and saved in the study
    folder; every run's ``eval_features`` names that file, so its config says where its
    numbers come from and a resumed run measures in the same space. ``auto`` is made
    definite here, so that no worker falls back to a space of its own.
    """
    if not base.eval_for_each:
        return base, None
    from rxwgan.metrics.space_per_study import study_space as fit_study_space

    features, record = fit_study_space(
        base.eval_features, study, base.input, [run.split for run in runs], image_size(base),
        seed=base.seed, path_column=base.path_column, target_column=base.target_column,
        cache_dir=base.cache_dir, fit_all=fit_all, refit=base.overwrite)
    return dataclasses.replace(base, eval_features=features), record


def image_size(config: TrainConfig) -> int:
    """The pixel size the runs train at: the -g file's, else the architecture's."""
    from rxwgan.models import load_model, model_info

    if config.generator:
        return int(load_model(config.generator, role="generator").image_size)
    return model_info(config.architecture).image_size


def _write_sweep_file(study: Path, base: TrainConfig, runs: Sequence[RunPlan], sweep_id: str,
                      options: SweepOptions, resources: dict[str, Any],
                      space: dict[str, Any] | None) -> None:
    """``sweep.json``: this invocation's settings, every run the study has ever planned, and
    the study's metric feature space (its id and what it was fitted on)."""
    previous = read_json(study / SWEEP_FILE)
    planned = {entry["path"]: entry for entry in previous.get("runs", [])} if not base.overwrite else {}
    planned.update({run.path: run.to_dict() for run in runs})
    shared = {**base.to_dict(), "fold": None, "n_splits": None, "test": None, "sort": None,
              "target": None, "conditional": None, "output": str(study)}
    atomic.write_json(study / SWEEP_FILE, {
        "format": "rxwgan-sweep", "sweep_id": sweep_id, "updated": time.time(), "study": str(study),
        "config": shared, "runs": list(planned.values()), "eval_space": _short(space),
        "ray": {"address": options.address, "max_concurrent": options.max_concurrent,
                "max_retries": options.max_retries, **resources},
        "driver": {"pid": os.getpid(), "host": socket.gethostname()},
    })


def _short(space: dict[str, Any] | None) -> dict[str, Any] | None:
    """The space record without its row list (kept in the space file itself)."""
    if space is None or not isinstance(space.get("fitted_on"), dict):
        return space
    return {**space, "fitted_on": {k: v for k, v in space["fitted_on"].items() if k != "row_indices"}}


def _resources(options: SweepOptions, n_runs: int) -> dict[str, Any]:
    """CPUs and GPUs per run: what the user asked, else enough to fill the cluster."""
    import ray

    node_cpus, node_gpus = largest_node()
    total = ray.cluster_resources()
    gpus = options.gpus_per_run if options.gpus_per_run is not None else (1 if node_gpus else 0)
    if gpus < 0:
        raise RxwganError(f"--gpus_per_run must be 0 or more, not {gpus:g}")
    slots = n_runs if options.max_concurrent is None else min(n_runs, options.max_concurrent)
    if gpus:
        slots = max(1, min(slots, int(total.get("GPU", 0) // gpus)))
    cpus = options.cpus_per_run or max(1, min(int(node_cpus), int(total.get("CPU", 0) // slots)))
    require_a_node_with(cpus, gpus, cpus_flag="--cpus_per_run", gpus_flag="--gpus_per_run")
    return {"cpus_per_run": cpus, "gpus_per_run": gpus}


def _drive(base: TrainConfig, study: Path, pending: list[RunPlan], sweep_id: str,
           options: SweepOptions, resources: dict[str, Any], result: SweepResult,
           table: LiveTable) -> None:
    """Queue every run, train them (at most max_concurrent at a time), refresh the table."""
    for run in pending:
        write_status(study / run.path, "queued", sweep_id)
    cpus = resources["cpus_per_run"]
    arguments = [(run.config(base, study).to_dict(), str(study), sweep_id, cpus) for run in pending]

    def ended(index: int, outcome: Outcome) -> None:
        run = pending[index]
        if outcome.state == "failed" and outcome.error:
            result.errors[run.path] = outcome.error
            write_status(study / run.path, "failed", sweep_id, outcome.error)
        result.states[run.path] = outcome.state

    run_tasks(train_task, arguments, ended=ended, num_cpus=cpus, num_gpus=resources["gpus_per_run"],
              max_retries=options.max_retries, max_concurrent=options.max_concurrent,
              tick=lambda any_ended: table.show(force=any_ended))


def _unqueue(study: Path, runs: Sequence[RunPlan], sweep_id: str) -> None:
    """Runs this sweep queued but never started are not waiting for anything any more."""
    for run in runs:
        status = read_json(study / run.path / STATUS_FILE)
        if status.get("state") == "queued" and status.get("sweep_id") == sweep_id:
            write_status(study / run.path, "stopped", sweep_id)

