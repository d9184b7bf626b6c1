"""The one Ray runner of ``sweep`` and ``utility``: what it retries, how a finished task reads,
how many run at once, what Ctrl-C does, and how joining a cluster fails; on one local
instance of 2 CPUs shared by the whole module."""

from __future__ import annotations

import itertools
import json
import os
import socket
import sys
import time
from pathlib import Path

import pytest
import torch

from rxwgan.base.errors import RxwganError
from rxwgan.base.ray_runner import Outcome, join_ray, joined_ray, run_tasks

pytest.importorskip("ray")


# --- tasks (sent to the workers by value: they cannot import this test module) ---------------

def attempt_count(marker: str) -> int:
    """How many times a task ran: a byte in ``marker`` per attempt."""
    return Path(marker).stat().st_size


def attempt(marker: str) -> int:
    with open(marker, "a") as file:
        file.write("x")
    return attempt_count(marker)


def fails_once(marker: str, error: type[BaseException]) -> dict:
    attempts = attempt(marker)
    if attempts == 1:
        raise error("a first attempt that a second one cures")
    return {"state": "done", "attempts": attempts}


def reports_user_error(marker: str) -> dict:
    """How the workers treat an RxwganError: an outcome, not an exception for Ray to retry."""
    attempt(marker)
    try:
        raise RxwganError("--lr must be positive")
    except RxwganError as exc:
        return {"state": "failed", "error": str(exc)}


def has_a_bug(marker: str) -> dict:
    attempt(marker)
    raise ValueError("a bug\nwith a traceback below")


def dies(marker: str) -> dict:
    attempt(marker)
    os._exit(1)


def sleeps(record: str, seconds: float) -> dict:
    """Write when it started and when it ended (``end`` stays absent when cancelled).

    Short sleeps, like a training loop's steps: Ray's cancel interrupts Python code, not a long sleep.
    """
    times = {"start": time.time()}
    Path(record).write_text(json.dumps(times))
    while time.time() < times["start"] + seconds:
        time.sleep(0.05)
    Path(record).write_text(json.dumps({**times, "end": time.time()}))
    return {"state": "done"}


def oom_once_train(config_data: dict, study: str, sweep_id: str, cpus: int) -> dict:
    """Stands in for the sweep's ``train_task``: out of GPU memory on the first attempt."""
    out = Path(config_data["output"])
    out.mkdir(parents=True, exist_ok=True)
    return fails_once(str(out / "attempts"), torch.OutOfMemoryError)


# --- tests -----------------------------------------------------------------------------------

def test_an_unreachable_address_is_one_line_naming_the_flag():
    """Before the module's Ray starts: joining is refused at once, not after Ray's minutes of retries."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(RxwganError) as caught:
        join_ray(address=f"127.0.0.1:{port}")
    message = str(caught.value)
    assert message.startswith(f"--address 127.0.0.1:{port}: no Ray cluster there") and "\n" not in message
    assert time.monotonic() - started < 10


@pytest.fixture(scope="module")
def ray_cluster():
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with joined_ray(num_cpus=2):
        yield
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def collect(function, arguments, **options) -> dict[int, Outcome]:
    outcomes: dict[int, Outcome] = {}
    run_tasks(function, arguments, ended=outcomes.__setitem__, **options)
    return outcomes


@pytest.mark.parametrize("error", [OSError, MemoryError, torch.OutOfMemoryError])
def test_what_a_second_attempt_can_cure_is_retried(ray_cluster, tmp_path, error):
    marker = str(tmp_path / "attempts")
    done = Outcome("done", payload={"state": "done", "attempts": 2})
    assert collect(fails_once, [(marker, error)]) == {0: done}


def test_a_user_error_is_reported_once_and_a_bug_is_not_retried(ray_cluster, tmp_path):
    markers = [str(tmp_path / "user"), str(tmp_path / "bug")]
    outcomes = collect(reports_user_error, [(markers[0],)])
    outcomes |= {1: collect(has_a_bug, [(markers[1],)])[0]}
    assert outcomes[0].state == "failed" and outcomes[0].error == "--lr must be positive"
    assert outcomes[1] == Outcome("failed", "ValueError: a bug")
    assert [attempt_count(marker) for marker in markers] == [1, 1]


def test_a_worker_that_keeps_dying_is_a_failed_outcome(ray_cluster, tmp_path):
    marker = str(tmp_path / "attempts")
    [outcome] = collect(dies, [(marker,)], max_retries=1).values()
    assert outcome.state == "failed" and outcome.error.startswith("WorkerCrashedError: ")
    assert attempt_count(marker) == 2


def test_at_most_max_concurrent_tasks_run_at_once(ray_cluster, tmp_path):
    records = [tmp_path / f"{i}.json" for i in range(3)]
    ticks: list[bool] = []
    outcomes = collect(sleeps, [(str(record), 0.5) for record in records], max_concurrent=1,
                       tick=ticks.append)
    assert sorted(outcomes) == [0, 1, 2] and {o.state for o in outcomes.values()} == {"done"}
    spans = sorted((times["start"], times["end"]) for times in (json.loads(r.read_text()) for r in records))
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans))
    assert ticks.count(True) == 3  # the table is redrawn as each task ends


def test_ctrl_c_cancels_the_running_tasks_and_goes_on(ray_cluster, tmp_path):
    records = [tmp_path / f"{i}.json" for i in range(2)]

    def interrupt(_: bool) -> None:
        if records[0].is_file():
            raise KeyboardInterrupt

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        collect(sleeps, [(str(record), 60) for record in records], max_concurrent=1, tick=interrupt)
    assert time.monotonic() - started < 30
    assert "end" not in json.loads(records[0].read_text())  # cancelled while it ran
    assert not records[1].exists()  # never started


def test_utility_retries_what_the_runner_retries(ray_cluster, tmp_path, monkeypatch):
    from rxwgan.utility import workers

    monkeypatch.setattr(workers, "utility_worker", fails_once)
    outcomes: dict[int, Outcome] = {}
    workers.run_workers([(str(tmp_path / "attempts"), torch.OutOfMemoryError)], workers.UtilityOptions(),
                        outcomes.__setitem__)
    assert outcomes[0].state == "done" and outcomes[0].payload["attempts"] == 2


def test_sweep_retries_what_the_runner_retries(ray_cluster, tmp_path, monkeypatch):
    from rxwgan.data.phantoms import write_demo_data
    from rxwgan.study import sweep
    from rxwgan.study.plan import plan_runs, plan_splits
    from rxwgan.train.config import TrainConfig

    monkeypatch.setattr(sweep, "train_task", oom_once_train)
    table = write_demo_data(tmp_path / "data", n_images=20, size=32, seed=3)
    base = TrainConfig(input=str(table), output="", model="tiny", epochs=1, batch_size=4, precision="fp32",
                       cache_dir=str(tmp_path / "cache"), progress=False)
    runs = plan_runs(plan_splits("kfold", n_splits=2, folds=[0]), [0])
    result = sweep.run_sweep(base, tmp_path / "study", runs, sweep.SweepOptions(max_retries=1),
                             log=lambda _: None, live=False)
    assert result.ok and result.states == {"fold_0/target_0": "done"}
    assert attempt_count(str(tmp_path / "study" / "fold_0" / "target_0" / "attempts")) == 2


def test_a_task_no_node_can_hold_is_refused_at_once_not_left_waiting(ray_cluster):
    from rxwgan.utility.workers import UtilityOptions, run_workers

    started = time.monotonic()
    with pytest.raises(RxwganError, match=r"^--gpus_per_task 64: no node of the Ray cluster has that many"):
        # utility_worker's five arguments (never run: no node could take the task)
        run_workers([({}, {}, {}, "", 1)], UtilityOptions(gpus_per_task=64), ended=lambda *_: None)
    assert time.monotonic() - started < 10
