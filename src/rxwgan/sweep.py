"""A whole study at once: one training run per (fold, target), side by side on Ray.

Each run is exactly ``rxwgan train`` with that fold and target, in
``STUDY/<split>/target_<t>/``. Runs are Ray tasks; a task whose process dies is retried
by Ray and ``train`` resumes from the run folder's checkpoint, so no finished epoch is
lost. A run that stops on an RxwganError (bad settings, a NaN loss) is not retried: it is
marked failed with its message and the other runs go on. Everything the status table
shows is read back from the run folders, so another shell (``rxwgan sweep --status``)
sees what the driver sees, and the same sweep started again continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from rxwgan import atomic
from rxwgan.config import TrainConfig
from rxwgan.errors import RxwganError
from rxwgan.splits import STRATIFIED_FOLDS, SplitSpec

SWEEP_FILE = "sweep.json"
STATUS_FILE = "status.json"
WORKER_FILE = "worker.json"
TRAINED_GENERATOR = "generator_trained.safetensors"
STATES = ("new", "queued", "running", "done", "failed", "stopped", "partial")
STATUS_LOSSES = ("train_critic_loss", "train_gen_loss", "val_kl_rf")  # the table's loss columns
# Exceptions a second attempt can cure (a full disk freed, a flaky network share, a GPU
# shared with another job); anything else that is not an RxwganError is a bug to report.
RETRIED_EXCEPTIONS: tuple[type[BaseException], ...] = (OSError, MemoryError)
Log = Callable[[str], None]


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
                seed: int = 512) -> list[SplitSpec]:
    """Every partition of the study: folds of k-fold, or tests x sorts of the stratified scheme."""
    if scheme == "kfold":
        n_splits = 5 if n_splits is None else n_splits
        chosen = range(n_splits) if folds is None else folds
        specs = [SplitSpec(fold=f, n_splits=n_splits, seed=seed) for f in chosen]
    elif scheme == "stratified":
        every = range(STRATIFIED_FOLDS)
        specs = [SplitSpec(test=t, sort=s, seed=seed)
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
    """One run of the study: a partition and a class, and the folder it lives in."""

    split: SplitSpec
    target: int

    @property
    def path(self) -> str:
        """The run folder relative to the study: ``fold_0/target_1``."""
        return f"{self.split.name}/target_{self.target}"

    def config(self, base: TrainConfig, study: Path) -> TrainConfig:
        spec = self.split
        return dataclasses.replace(base, fold=spec.fold, n_splits=spec.n_splits, test=spec.test,
                                   sort=spec.sort, seed=spec.seed, target=self.target,
                                   output=str(study / self.path))

    def to_dict(self) -> dict[str, Any]:
        spec = self.split
        return {"path": self.path, "split": spec.name, "fold": spec.fold, "n_splits": spec.n_splits,
                "test": spec.test, "sort": spec.sort, "seed": spec.seed, "target": self.target}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunPlan:
        spec = SplitSpec(fold=data.get("fold"), n_splits=data.get("n_splits"), test=data.get("test"),
                         sort=data.get("sort"), seed=data.get("seed", 512))
        return cls(spec, int(data["target"]))


def plan_runs(splits: Sequence[SplitSpec], targets: Sequence[int]) -> list[RunPlan]:
    for target in targets:
        if target not in (0, 1):
            raise RxwganError(f"--targets: a target is 0 or 1, not {target}")
    return [RunPlan(spec, t) for spec in splits for t in targets]


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
    study: Path
    states: dict[str, str] = field(default_factory=dict)  # run path -> final state
    errors: dict[str, str] = field(default_factory=dict)  # run path -> why it failed
    skipped: list[str] = field(default_factory=list)  # already finished before this sweep

    @property
    def ok(self) -> bool:
        return all(state == "done" for state in self.states.values())


# --- the driver -------------------------------------------------------------------------

def run_sweep(base: TrainConfig, study: str | Path, runs: Sequence[RunPlan],
              options: SweepOptions | None = None, log: Log = print,
              live: bool | None = None, eval_fit_all: bool = False) -> SweepResult:
    """Run every unfinished run of ``runs`` on Ray and wait for all of them.

    ``base`` carries the training settings every run shares; each run replaces its
    partition, target and output. Finished runs are skipped, unfinished ones continue
    from their checkpoints. With ``--eval_for_each`` every run measures in the study's
    one feature space (``study_space``; ``eval_fit_all``: fitted on every row).
    """
    options = options or SweepOptions()
    study = Path(study).expanduser().resolve()
    base = _prepare_base(base, runs)
    sweep_id = uuid.uuid4().hex
    _check_study(study, base, runs)
    _fill_cache(base)
    base, space = study_space(study, base, runs, eval_fit_all)
    pending = [run for run in runs
               if base.overwrite or not is_finished(study / run.path, base.epochs)]
    result = SweepResult(study, skipped=[run.path for run in runs if run not in pending])
    result.states.update({path: "done" for path in result.skipped})
    if result.skipped:
        log(f"{len(result.skipped)} run(s) finished before: skipped")
    if not pending:
        _write_sweep_file(study, base, runs, sweep_id, options, {}, space)
        log(f"{study}: all {len(runs)} runs are finished; nothing to train")
        return result

    started = _connect(options)
    try:
        resources = _resources(options, len(pending))
        _write_sweep_file(study, base, runs, sweep_id, options, resources, space)
        log(f"{len(pending)} run(s) to train ({len(result.skipped)} finished before), "
            f"{resources['cpus_per_run']} CPU(s) and {resources['gpus_per_run']} GPU(s) each")
        table = LiveTable(study, log, live, options.refresh)
        _drive(base, study, pending, sweep_id, options, resources, result, table)
    finally:
        _unqueue(study, pending, sweep_id)
        if started:
            import ray

            ray.shutdown()
    for path, error in result.errors.items():
        log(f"{path}: failed: {error}")
    return result


def _prepare_base(base: TrainConfig, runs: Sequence[RunPlan]) -> TrainConfig:
    """Settings every worker can use as they are: absolute paths, no terminal output."""
    from rxwgan.cache import ImageCache

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
    saved = TrainConfig.from_dict({**previous["config"], "fold": 0, "n_splits": 2})
    mine = dataclasses.replace(base, fold=0, n_splits=2)
    changed = [d for d in mine.differences(saved) if not d.startswith("--target ")]
    folds = {entry["path"]: entry.get("n_splits") for entry in previous.get("runs", [])}
    changed += sorted({f"--n_splits {folds[run.path]} -> {run.split.n_splits}" for run in runs
                       if folds.get(run.path, run.split.n_splits) != run.split.n_splits})
    if changed:
        raise RxwganError(f"{study} holds a study with other settings ({'; '.join(changed)}): "
                          f"use another -o, or --overwrite to start its runs afresh")


def _fill_cache(base: TrainConfig) -> None:
    """Decode every image of the table once, here, before the runs read them side by side."""
    from rxwgan.cache import ImageCache
    from rxwgan.table import read_table

    table = read_table(base.input, base.path_column, base.target_column)
    labels = [table.row_label(i) for i in range(len(table))]
    ImageCache(base.cache_dir).load(table.paths, image_size(base), labels, progress=sys.stderr.isatty())


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
    from rxwgan.metrics.spaces import study_space as fit_study_space

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
              "target": None, "output": str(study)}
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


def start_local_ray(num_cpus: int | None = None) -> None:
    """A private Ray instance on this machine: loopback only, no dashboard, no usage report."""
    if "ray" not in sys.modules:
        # Read by Ray when imported: makes it bind its services to 127.0.0.1, not the LAN address.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import logging

    import ray

    ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING)


def _connect(options: SweepOptions) -> bool:
    """Join the user's cluster, or start a local instance; True when this call started Ray."""
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        return False
    if options.address is None:
        start_local_ray(options.num_cpus)
    else:
        import ray

        try:
            ray.init(address=options.address, log_to_driver=False)
        except ConnectionError as exc:
            raise RxwganError(f"--address {options.address}: no Ray cluster there ({exc})") from None
    return True


def _resources(options: SweepOptions, n_runs: int) -> dict[str, Any]:
    """CPUs and GPUs per run: what the user asked, else enough to fill the cluster."""
    import ray

    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    node_cpus = max((n.get("CPU", 0) for n in nodes), default=0)
    node_gpus = max((n.get("GPU", 0) for n in nodes), default=0)
    total = ray.cluster_resources()
    gpus = options.gpus_per_run if options.gpus_per_run is not None else (1 if node_gpus else 0)
    if gpus < 0 or gpus > node_gpus:
        raise RxwganError(f"--gpus_per_run {gpus}: no node of the Ray cluster has that many GPUs "
                          f"(the most on one node: {node_gpus:g})")
    slots = n_runs if options.max_concurrent is None else min(n_runs, options.max_concurrent)
    if gpus:
        slots = max(1, min(slots, int(total.get("GPU", 0) // gpus)))
    cpus = options.cpus_per_run or max(1, min(int(node_cpus), int(total.get("CPU", 0) // slots)))
    if cpus > node_cpus:
        raise RxwganError(f"--cpus_per_run {cpus}: no node of the Ray cluster has that many CPUs "
                          f"(the most on one node: {node_cpus:g})")
    return {"cpus_per_run": cpus, "gpus_per_run": gpus}


def _drive(base: TrainConfig, study: Path, pending: list[RunPlan], sweep_id: str,
           options: SweepOptions, resources: dict[str, Any], result: SweepResult,
           table: LiveTable) -> None:
    """Submit (at most max_concurrent at a time), collect outcomes, refresh the table."""
    import ray

    task = ray.remote(train_task).options(
        num_cpus=resources["cpus_per_run"], num_gpus=resources["gpus_per_run"],
        max_retries=options.max_retries, retry_exceptions=list(_retried_exceptions()))
    for run in pending:
        write_status(study / run.path, "queued", sweep_id)
    queue, running = deque(pending), {}
    try:
        while queue or running:
            while queue and (options.max_concurrent is None or len(running) < options.max_concurrent):
                run = queue.popleft()
                config = run.config(base, study)
                running[task.remote(config.to_dict(), str(study), sweep_id,
                                    resources["cpus_per_run"])] = run
            ready, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
            for ref in ready:
                run = running.pop(ref)
                state, error = _outcome(ref)
                if state == "failed" and error:
                    result.errors[run.path] = error
                    write_status(study / run.path, "failed", sweep_id, error)
                result.states[run.path] = state
            table.show(force=bool(ready))
    except KeyboardInterrupt:  # ask the runs to checkpoint and stop, give them a moment
        for ref in running:
            ray.cancel(ref)
        if running:
            ray.wait(list(running), num_returns=len(running), timeout=30)
        raise


def _outcome(ref: Any) -> tuple[str, str | None]:
    """A finished task's (state, error): its own report, or why Ray gave up on it."""
    import ray

    try:
        outcome = ray.get(ref)
    except ray.exceptions.RayTaskError as exc:  # an exception Ray retried until max_retries
        cause = exc.cause if isinstance(exc.cause, BaseException) else exc
        return "failed", _first_line(cause)
    except ray.exceptions.RayError as exc:  # the worker or its node died max_retries + 1 times
        return "failed", _first_line(exc)
    return outcome["state"], outcome.get("error")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def _retried_exceptions() -> tuple[type[BaseException], ...]:
    import torch

    return (*RETRIED_EXCEPTIONS, torch.OutOfMemoryError)


def _unqueue(study: Path, runs: Sequence[RunPlan], sweep_id: str) -> None:
    """Runs this sweep queued but never started are not waiting for anything any more."""
    for run in runs:
        status = read_json(study / run.path / STATUS_FILE)
        if status.get("state") == "queued" and status.get("sweep_id") == sweep_id:
            write_status(study / run.path, "stopped", sweep_id)


# --- one run, on a Ray worker ----------------------------------------------------------

def train_task(config_data: dict[str, Any], study: str, sweep_id: str, cpus: int) -> dict[str, Any]:
    """One run, as ``rxwgan train`` would do it; Ray calls this again after a crash."""
    import torch

    from rxwgan.training import train

    torch.set_num_threads(max(1, int(cpus)))
    config = TrainConfig.from_dict(config_data)
    out = Path(config.output)
    if read_json(Path(study) / SWEEP_FILE).get("sweep_id") != sweep_id:
        error = (f"{study}/{SWEEP_FILE} on {socket.gethostname()} is not this sweep's: put STUDY/ on "
                 f"storage every node shares (or another sweep of this study has started since)")
        return {"state": "failed", "error": error}
    previous = read_json(out / WORKER_FILE)
    retry = previous.get("sweep_id") == sweep_id
    if retry:  # --overwrite cleared the folder on the first attempt; later ones resume
        config.overwrite = False
    gpus = _gpu_ids()
    if not gpus and config.device == "auto":  # Ray hides no GPU from a run given none
        config.device = "cpu"
    pointer = read_json(out / "checkpoint.json")
    atomic.write_json(out / WORKER_FILE, {
        "pid": os.getpid(), "host": socket.gethostname(), "node_ip": _node_ip(),
        "sweep_id": sweep_id, "attempt": previous.get("attempt", 0) + 1 if retry else 1,
        "started": time.time(), "start_epoch": 0 if config.overwrite else pointer.get("epoch", 0),
        "gpus": gpus,
    })
    write_status(out, "running", sweep_id)
    name = f"{Path(config.output).parent.name}/{Path(config.output).name}"
    try:
        result = train(config, log=lambda message: print(f"[{name}] {message}", flush=True))
    except RxwganError as exc:
        write_status(out, "failed", sweep_id, str(exc))
        return {"state": "failed", "error": str(exc)}
    state = "stopped" if result.interrupted else "done"
    write_status(out, state, sweep_id)
    return {"state": state, "epoch": result.epoch}


def _node_ip() -> str | None:
    try:
        import ray

        return ray.util.get_node_ip_address()
    except Exception:  # outside Ray the address is only informative
        return None


def _gpu_ids() -> list[str]:
    try:
        import ray

        return [str(g) for g in ray.get_runtime_context().get_accelerator_ids().get("GPU", [])]
    except Exception:  # outside Ray: no assignment to report
        return []


def write_status(folder: Path, state: str, sweep_id: str | None = None, error: str | None = None) -> None:
    atomic.write_json(folder / STATUS_FILE, {"state": state, "error": error, "sweep_id": sweep_id,
                                            "updated": time.time()})


# --- reading a study back ---------------------------------------------------------------

def read_json(path: Path) -> dict[str, Any]:
    """A small JSON file, or {} when it is absent or being replaced."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def is_finished(folder: Path, epochs: int) -> bool:
    """The run holds its trained networks and a checkpoint at (or past) ``epochs``."""
    pointer = read_json(folder / "checkpoint.json")
    return ((folder / TRAINED_GENERATOR).is_file() and pointer.get("batch") is None
            and int(pointer.get("epoch", 0)) >= epochs)


def study_runs(study: str | Path) -> list[RunPlan]:
    """Every run of a study: those sweep.json plans, then any other run folder found."""
    study = Path(study)
    runs = {entry["path"]: RunPlan.from_dict(entry)
            for entry in read_json(study / SWEEP_FILE).get("runs", [])}
    for folder in sorted(study.glob("*/target_*")):
        path = f"{folder.parent.name}/{folder.name}"
        if path in runs or not (folder / "config.json").is_file():
            continue
        config = read_json(folder / "config.json").get("config", {})
        if config:
            runs[path] = RunPlan(TrainConfig.from_dict(config).split, int(config.get("target", 1)))
    return list(runs.values())


@dataclass
class RunStatus:
    """One line of the status table, read from a run folder."""

    path: str
    split: str
    target: int
    state: str
    epoch: int = 0
    epochs: int | None = None
    losses: dict[str, float | None] = field(default_factory=dict)
    eta: float | None = None
    attempt: int | None = None
    host: str | None = None
    error: str | None = None


def run_status(study: Path, run: RunPlan, epochs: int | None = None) -> RunStatus:
    folder = study / run.path
    config = read_json(folder / "config.json").get("config", {})
    epochs = epochs or config.get("epochs")
    status, worker = read_json(folder / STATUS_FILE), read_json(folder / WORKER_FILE)
    pointer = read_json(folder / "checkpoint.json")
    history = read_json(folder / "history.json")
    epoch = int(pointer.get("epoch", 0))
    losses = {key: last_value(history.get(key)) for key in STATUS_LOSSES}
    state = _state(folder, status, worker, epochs, study)
    eta = _eta(folder, worker, epoch, epochs) if state == "running" else None
    return RunStatus(run.path, run.split.name, run.target, state, epoch, epochs, losses, eta,
                     worker.get("attempt"), worker.get("host"), status.get("error"))


def study_status(study: str | Path) -> list[RunStatus]:
    """The status of every run of a study, from its files alone."""
    study = Path(study)
    if not study.is_dir():
        raise RxwganError(f"{study}: no such study folder")
    epochs = read_json(study / SWEEP_FILE).get("config", {}).get("epochs")
    runs = study_runs(study)
    if not runs:
        raise RxwganError(f"{study}: holds no sweep.json and no run folders (<split>/target_<t>/)")
    return [run_status(study, run, epochs) for run in runs]


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
    return "partial" if (folder / "checkpoint.json").is_file() else "new"


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
        elapsed = (folder / "checkpoint.json").stat().st_mtime - float(worker["started"])
    except OSError:
        return None
    return max(0.0, elapsed / done * (epochs - epoch))


def last_value(values: Any) -> float | None:
    """The last number of a history series (metrics may be recorded only every few epochs)."""
    if not isinstance(values, list):
        return None
    for value in reversed(values):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def format_status(rows: Sequence[RunStatus], max_lines: int | None = None) -> str:
    """The status table as fixed-width text, then one line per failed run's error.

    With ``max_lines`` (a terminal's height) a long table keeps the runs that are not
    done, so that a study of hundreds of runs still redraws in place.
    """
    shown = list(rows)
    if max_lines is not None and len(rows) + 3 > max_lines:
        shown = [row for row in rows if row.state not in ("done", "new")][:max(1, max_lines - 4)]
    header = ("run", "state", "epoch", "critic", "gen", "val kl_rf", "ETA", "try", "host")
    lines = [header]
    for row in shown:
        lines.append((
            row.path, row.state, f"{row.epoch}/{row.epochs if row.epochs else '?'}",
            *(_number(row.losses.get(key)) for key in STATUS_LOSSES),
            _duration(row.eta), str(row.attempt or ""), row.host or "",
        ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
            for line in lines]
    counts = {state: sum(row.state == state for row in rows) for state in STATES}
    hidden = f" ({len(rows) - len(shown)} more not shown)" if len(shown) < len(rows) else ""
    text.append(", ".join(f"{n} {state}" for state, n in counts.items() if n) + hidden)
    if max_lines is None:
        text += [f"{row.path}: {row.error}" for row in rows if row.state == "failed" and row.error]
    return "\n".join(text)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class LiveTable:
    """The status table, redrawn in place on a terminal, printed now and then elsewhere."""

    def __init__(self, study: Path, log: Log = print, live: bool | None = None,
                 refresh: float | None = None, stream: TextIO | None = None):
        self.study = study
        self.log = log
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self.refresh = refresh if refresh is not None else (2.0 if self.live else 30.0)
        self.shown_at = 0.0
        self.lines = 0

    def show(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.shown_at < self.refresh:
            return
        self.shown_at = now
        rows = study_status(self.study)
        if self.live:  # move up over the previous table and clear to the end of the screen
            text = format_status(rows, shutil.get_terminal_size().lines - 1)
            erase = f"\x1b[{self.lines}F\x1b[J" if self.lines else ""
            self.stream.write(f"{erase}{text}\n")
            self.stream.flush()
            self.lines = text.count("\n") + 1
        else:
            self.log(format_status(rows))
