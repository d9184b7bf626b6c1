"""Fault injection: kill ``rxwgan utility`` at many instants, rerun the same command, compare.

A tiny 2-fold study (32 px phantoms, tiny generators trained one epoch) is built once; a
straight ``utility`` run over a copy of it is the reference. Each trial starts the same
command over a fresh copy and SIGKILLs it, either after a random delay spread over the
whole run (only the main process is killed, as ``kill -9 PID`` does: its worker processes
are left to notice), or at a chosen instant: just before or after a task's result file is
renamed into place, or between the summary's files. The chosen instants come from a hook
on ``os.replace`` (the rename that ends every atomic write) loaded as ``sitecustomize`` into
every process of the command, worker processes included, which kills the command's whole
process group. The same command, without the hook and sometimes killed again, then runs
until it exits. A trial passes when it exits 0 and leaves the reference's tables byte for
byte; each trial also records the tasks the last rerun reused and ran again, and the
processes of a killed command still alive a few seconds after the kill (then ended).
``RXWGAN_UTILITY_FAULT_TRIALS`` sets the number of random trials.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rxwgan.base.atomic import temporary_target
from rxwgan.base.layout import (
    UTILITY_FOLDER,
    UTILITY_RESULTS_PATTERN,
    UTILITY_ROC,
    UTILITY_RUNS_FOLDER,
    UTILITY_SETTINGS,
    UTILITY_SUMMARY,
    UTILITY_SUMMARY_MARKDOWN,
    UTILITY_TABLE,
)

RANDOM_TRIALS = int(os.environ.get("RXWGAN_UTILITY_FAULT_TRIALS", "8"))
COMPARED = (UTILITY_TABLE, UTILITY_SUMMARY, UTILITY_SUMMARY_MARKDOWN, UTILITY_ROC)  # deterministic outputs
RESULT = "a result file"  # a hook target: any task's result file
# (name, workers, before or after the rename, which file, its ordinal among the command's writes)
TARGETED = [
    ("before the 3rd result file, in-process (--workers 1)", 1, "before", RESULT, 3),
    ("in a worker, before the 2nd result file", 2, "before", RESULT, 2),
    ("in a worker, after the 4th result file", 2, "after", RESULT, 4),
    ("before the table", 2, "before", UTILITY_TABLE, 1),
    ("between the table and the summary", 2, "after", UTILITY_TABLE, 1),
    ("before the figure", 2, "before", UTILITY_ROC, 1),
    ("before the summary's markdown", 2, "before", UTILITY_SUMMARY_MARKDOWN, 1),
    ("before the settings' final record", 2, "before", UTILITY_SETTINGS, 2),
    ("after every file, before the exit", 2, "after", UTILITY_SETTINGS, 2),
]
# Loaded as sitecustomize by every process of a hooked command, spawned workers included.
HOOK = """
import json, os, signal
_SPEC = json.loads(os.environ["RXWGAN_BENCH_KILL"])
_replace = os.replace

def _ordinal():
    k = 1
    while True:  # one counter for all the command's processes
        try:
            os.close(os.open(os.path.join(_SPEC["counter"], str(k)), os.O_CREAT | os.O_EXCL))
            return k
        except FileExistsError:
            k += 1

def _chosen(dst):
    parts = os.fspath(dst).split(os.sep)
    if _SPEC["file"] is None:
        return _SPEC["runs"] in parts and parts[-1].endswith(".json")
    return parts[-1] == _SPEC["file"]

def replace(src, dst, *args, **kwargs):
    hit = _chosen(dst) and _ordinal() == _SPEC["nth"]
    if hit and _SPEC["when"] == "before":
        os.killpg(os.getpgrp(), signal.SIGKILL)
    _replace(src, dst, *args, **kwargs)
    if hit and _SPEC["when"] == "after":
        os.killpg(os.getpgrp(), signal.SIGKILL)

os.replace = replace
"""
# "6 classifier runs (2 folds x 3), 2 done before, 4 to run (local processes)", worded loosely
COUNTS = re.compile(r"(?P<planned>\d+) classifier runs?\b.*?(?P<reused>\d+) (?:done|finished|reused)[^,]*,"
                    r"\s*(?P<rerun>\d+) (?:to run|left|pending)")
LEFTOVER_GRACE_S = 5.0  # how long a killed command's workers get to notice and exit


def _args(study: Path, workers: int = 2) -> list[str]:
    return [sys.executable, "-m", "rxwgan.cli", "utility", str(study), "--local", "--workers", str(workers),
            "--repeats", "1", "--size", "32", "--epochs", "2"]


def _train_study(root: Path) -> Path:
    """Both folds of a 2-fold study, each class's tiny generator trained one epoch."""
    from rxwgan.data.phantoms import write_demo_data
    from rxwgan.data.splits import SplitSpec
    from rxwgan.train.config import TrainConfig
    from rxwgan.train.loop import train

    table = write_demo_data(root / "data", n_images=40, size=32, seed=3)
    for fold in (0, 1):
        for target in (0, 1):
            run_folder = root / "study" / f"fold_{fold}" / f"target_{target}"
            train(TrainConfig(input=str(table), output=str(run_folder), model="tiny", epochs=1, batch_size=4,
                              n_critic=1, split=SplitSpec(fold=fold, n_splits=2), target=target,
                              save_for_each=10, disp_for_each=10, precision="fp32",
                              cache_dir=str(root / "cache"), progress=False), log=lambda _: None)
    return root / "study"


class Command:
    """One run of the command over ``study``, in its own session so that its processes can be found."""

    def __init__(self, study: Path, log: Path, workers: int = 2, env: dict[str, str] | None = None) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}  # a killed run's lines are in the log
        self.log = log
        self.started = time.perf_counter()
        with open(log, "w") as out:
            self.process = subprocess.Popen(_args(study, workers), stdout=out, stderr=subprocess.STDOUT,
                                            env=env, start_new_session=True)

    def kill_after(self, delay: float) -> bool:
        """SIGKILL the main process ``delay`` s after its start; False if it ended first."""
        time.sleep(max(0.0, self.started + delay - time.perf_counter()))
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        return self.wait() == -signal.SIGKILL

    def wait(self) -> int:
        return self.process.wait(timeout=900)

    def elapsed(self) -> float:
        return round(time.perf_counter() - self.started, 2)

    def leftovers(self) -> int:
        """The killed command's processes still alive after a grace period; they are then ended."""
        deadline = time.perf_counter() + LEFTOVER_GRACE_S
        while (alive := _session(self.process.pid)) and time.perf_counter() < deadline:
            time.sleep(0.2)
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(alive)

    def counts(self, required: bool) -> dict[str, int]:
        """The tasks its own count line says it reused and ran again; fails when a required line is absent."""
        text = self.log.read_text()
        found = list(COUNTS.finditer(text))
        if not found and not required:
            return {}
        if not found:
            raise RuntimeError(f"no 'N classifier runs ..., D done before, P to run' line in the output of "
                               f"rxwgan utility:\n{text[-2000:]}")
        return {key: int(value) for key, value in found[-1].groupdict().items()}


def _session(sid: int) -> list[int]:
    """Live (not zombie) processes of session ``sid``."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def _where(out: Path, planned: int) -> tuple[str, int]:
    """Where a killed run was, read from what it left behind; and its result files."""
    results = len(list(out.glob(UTILITY_RESULTS_PATTERN)))
    try:
        record = json.loads((out / UTILITY_SETTINGS).read_text())
    except (OSError, ValueError):
        return "setup", results
    if results < planned:
        return f"tasks ({results}/{planned} results)", results
    if "finished_runs" not in record:  # the settings file's final record counts the finished runs
        written = [name for name in (UTILITY_TABLE, UTILITY_SUMMARY, UTILITY_ROC, UTILITY_SUMMARY_MARKDOWN)
                   if (out / name).exists()]
        return f"summary (written: {', '.join(written) or 'nothing'})", results
    return "every file written", results


def _described(kill: dict) -> str:
    if not kill["killed"]:
        return f"not killed, it finished first ({kill['at_s']} s)"
    return (f"killed at {kill['at_s']} s in {kill['where']}, "
            f"{kill['leftover_processes']} of its processes left")


def _same(out: Path, reference: Path) -> bool:
    return all((out / name).is_file() and (out / name).read_bytes() == (reference / name).read_bytes()
               for name in COMPARED)


def _temporaries(out: Path) -> int:
    """Temporary files a killed atomic write left behind."""
    return sum(temporary_target(path.name) is not None for path in out.rglob("*"))


class Trials:
    """The study, the reference and the random source the trials share."""

    def __init__(self, root: Path, study: Path, reference: Path, planned: int, duration: float) -> None:
        self.root, self.study, self.reference = root, study, reference
        self.planned, self.duration = planned, duration
        self.rng = random.Random(2024)
        (root / "hook").mkdir()
        (root / "hook" / "sitecustomize.py").write_text(HOOK)

    def run(self, index: int, name: str, workers: int = 2, hook: dict | None = None) -> dict:
        study = self.root / f"trial_{index}"
        shutil.copytree(self.study, study)
        out = study / UTILITY_FOLDER
        first = Command(study, self.root / f"trial_{index}_0.log", workers, self._hook_env(index, hook))
        if hook is None:
            kills = [self._random_kill(first, out, wait_for_setup=bool(index % 2))]
        else:
            kills = [self._kill_record(first, out, first.wait() == -signal.SIGKILL)]
        again = self.rng.choice((0, 0, 1, 2)) if hook is None else 0  # kills in a row
        problems = []
        for attempt in range(1, again + 2):  # the last rerun is left to finish
            command = Command(study, self.root / f"trial_{index}_{attempt}.log", workers)
            if attempt <= again:
                kills.append(self._random_kill(command, out, wait_for_setup=False))
                if kills[-1]["killed"]:
                    continue
            if command.wait() != 0:
                problems.append(f"rerun exited {command.process.returncode}: "
                                f"{command.log.read_text().strip().splitlines()[-1:]}")
            break
        counts = command.counts(required=not problems)
        if counts and not counts["planned"] == counts["reused"] + counts["rerun"] == self.planned:
            problems.append(f"the rerun's counts {counts} do not add up to {self.planned} tasks")
        same = not problems and _same(out, self.reference)
        trial = {"trial": name, "workers": workers, "kills": kills, "reused": counts.get("reused"),
                 "rerun": counts.get("rerun"), "identical": same, "temporaries_left": _temporaries(out),
                 "problems": problems}
        print(f"  trial {index}: {name}: " + "; then ".join(_described(kill) for kill in kills)
              + f"; the rerun reused {trial['reused']}, ran {trial['rerun']}: "
              f"{'identical' if same else problems or 'DIFFERENT'}", flush=True)
        return trial

    def _hook_env(self, index: int, hook: dict | None) -> dict[str, str]:
        """The environment that loads the kill hook into every process of the command."""
        if hook is None:
            return {}
        counter = self.root / f"counter_{index}"
        counter.mkdir()
        spec = {**hook, "counter": str(counter), "runs": UTILITY_RUNS_FOLDER}
        return {"PYTHONPATH": os.pathsep.join(filter(None, [str(self.root / "hook"),
                                                            os.environ.get("PYTHONPATH")])),
                "RXWGAN_BENCH_KILL": json.dumps(spec)}

    def _random_kill(self, command: Command, out: Path, wait_for_setup: bool) -> dict:
        """Kill the main process at a random instant: anywhere, or once setup is done (imports take
        much of a tiny run)."""
        while wait_for_setup and not (out / UTILITY_SETTINGS).exists() and command.process.poll() is None:
            time.sleep(0.02)
        start = command.elapsed() if wait_for_setup else 0.0
        delay = self.rng.uniform(start, max(start, self.duration))
        return self._kill_record(command, out, command.kill_after(delay))

    def _kill_record(self, command: Command, out: Path, killed: bool) -> dict:
        at = command.elapsed()
        where, results = _where(out, self.planned) if killed else ("not killed (it finished first)", None)
        return {"at_s": at, "killed": killed, "where": where, "result_files": results,
                "leftover_processes": command.leftovers() if killed else 0}


def run() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        study = _train_study(root)
        durations, folders = [], []
        for name in ("straight", "straight_again"):
            shutil.copytree(study, root / name)
            command = Command(root / name, root / f"{name}.log")
            if command.wait() != 0:
                raise RuntimeError(f"the straight run failed:\n{command.log.read_text()[-2000:]}")
            durations.append(command.elapsed())
            folders.append(root / name / UTILITY_FOLDER)
        planned = command.counts(required=True)["planned"]
        if not _same(folders[1], folders[0]):
            raise RuntimeError("two straight runs differ")
        print(f"  straight run: {durations[-1]} s, {planned} classifier runs", flush=True)
        trials = Trials(root, study, folders[0], planned, durations[-1])
        plans = [(f"random kill {i + 1}", 2, None) for i in range(RANDOM_TRIALS)]
        plans += [(name, workers, {"when": when, "file": None if file == RESULT else file, "nth": nth})
                  for name, workers, when, file, nth in TARGETED]
        log = [trials.run(index, name, workers, hook) for index, (name, workers, hook) in enumerate(plans)]
    kills = [kill for trial in log for kill in trial["kills"] if kill["killed"]]
    phases: dict[str, int] = {}
    for kill in kills:
        phase = kill["where"].split(" (")[0]
        phases[phase] = phases.get(phase, 0) + 1
    return {
        "reference_s": durations[-1],
        "classifier_runs": planned,
        "trials": len(log),
        "identical": sum(trial["identical"] for trial in log),
        "all_identical": all(trial["identical"] for trial in log),
        "kills": len(kills),
        "kills_by_phase": phases,
        "targeted_instants_never_reached": [trial["trial"] for trial in log[RANDOM_TRIALS:]
                                            if not trial["kills"][0]["killed"]],
        "reused": sum(trial["reused"] or 0 for trial in log),
        "rerun": sum(trial["rerun"] or 0 for trial in log),
        "leftover_processes": sum(kill["leftover_processes"] for kill in kills),
        "kills_with_leftovers": sum(kill["leftover_processes"] > 0 for kill in kills),
        "log": log,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
