"""Where ``rxwgan utility``'s classifier runs go: Ray (a private instance, or a cluster's
address) or local worker processes, with the same outcome per task either way.

On Ray a task is retried on what ``sweep`` retries (``ray_runner.retried_exceptions``),
which includes ``torch.OutOfMemoryError``: a GPU shared with another job may have room on
a second attempt.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rxwgan.base.errors import RxwganError, require_at_least
from rxwgan.base.extras import require
from rxwgan.base.local_pool import local_pool
from rxwgan.base.ray_runner import Outcome, joined_ray, require_a_node_with, run_tasks
from rxwgan.utility.plan import FoldInputs, UtilityTask
from rxwgan.utility.settings import UtilitySettings


@dataclass
class UtilityOptions:
    """Where the classifier runs go: Ray (a private instance, or ``address``), or local processes."""

    local: bool = False
    workers: int | None = None  # local: processes at once (default: CPUs / cpus_per_task)
    address: str | None = None
    cpus_per_task: int = 1
    gpus_per_task: float = 0.0
    max_retries: int = 3

    def check(self) -> None:
        """Refuse a request that cannot run, before anything is written."""
        if self.workers is not None:
            require_at_least("--workers", self.workers, 1)
        require_at_least("--cpus_per_task", self.cpus_per_task, 1)
        if not (math.isfinite(self.gpus_per_task) and self.gpus_per_task >= 0):
            raise RxwganError(f"--gpus_per_task must be 0 or more, not {self.gpus_per_task:g}")
        require_at_least("--max_retries", self.max_retries, 0)


def run_workers(arguments: Sequence[tuple], options: UtilityOptions,
                ended: Callable[[int, Outcome], None]) -> None:
    """``utility_worker(*args)`` for each of ``arguments``, in local processes or on Ray;
    ``ended(index, outcome)`` as each ends, the same outcome either way."""
    if options.local:
        _run_local(utility_worker, arguments, options, ended)
        return
    require(("ray",), "sweep", "rxwgan utility")
    with joined_ray(options.address):
        require_a_node_with(options.cpus_per_task, options.gpus_per_task,
                            cpus_flag="--cpus_per_task", gpus_flag="--gpus_per_task")
        run_tasks(utility_worker, arguments, ended=ended, num_cpus=options.cpus_per_task,
                  num_gpus=options.gpus_per_task, max_retries=options.max_retries)


def _run_local(function: Callable[..., dict[str, Any]], arguments: Sequence[tuple],
               options: UtilityOptions, ended: Callable[[int, Outcome], None]) -> None:
    """``function(*args)`` for each of ``arguments`` in a process pool, no Ray and no retry:
    an exception a worker raises stops the command."""
    workers = options.workers or max(1, (os.cpu_count() or 1) // options.cpus_per_task)
    if workers == 1:  # in this process: nothing to leave behind if it is killed
        for index, args in enumerate(arguments):
            ended(index, Outcome.of(function(*args)))
        return
    with local_pool(workers) as pool:
        futures = {pool.submit(function, *args): i for i, args in enumerate(arguments)}
        for future in as_completed(futures):
            ended(futures[future], Outcome.of(future.result()))


def utility_worker(fold: dict[str, Any], task: dict[str, Any], settings: dict[str, Any], out: str,
                   cpus: int) -> dict[str, Any]:
    """One task in its own process: a user error is its outcome, anything else propagates."""
    import torch

    from rxwgan.utility.task import run_task

    torch.set_num_threads(max(1, int(cpus)))
    device = "cuda" if torch.cuda.is_available() else "cpu"  # Ray hides the GPUs of a task given none
    try:
        record = run_task(FoldInputs.from_dict(fold), UtilityTask(**task),
                          UtilitySettings.from_dict(settings), Path(out), device)
    except RxwganError as exc:
        return {"state": "failed", "error": str(exc)}
    return {"state": "done", **{k: record[k] for k in ("auc", "n_test", "seconds")}}
