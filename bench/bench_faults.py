"""Fault injection: kill ``rxwgan train`` at many instants, rerun the same command, compare.

A straight run (tiny model, 32 px phantoms, 4 epochs) is the reference. Each trial starts
the same command in a fresh folder and SIGKILLs it, either after a random delay spread over
the whole run (setup, epochs, checkpoint writes, the final files) or at a chosen awkward
instant (inside a checkpoint write, between a temporary file and its rename, between the two
final model files). The same command then runs, sometimes killed again, until it exits. The
trial passes when the folder ends with the straight run's weights and history, bit for bit,
and no rerun was ever refused. Set ``RXWGAN_FAULT_TRIALS`` for more or fewer random trials.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RANDOM_TRIALS = int(os.environ.get("RXWGAN_FAULT_TRIALS", "20"))
# Kill the process at an exact instant: the patch runs in the child before the CLI.
TARGETED = {
    "inside a checkpoint write": """
import torch, os, signal
real_save = torch.save
def save(obj, f, *a, **k):
    if isinstance(obj, dict) and obj.get("epoch") == {epoch}:
        with open(f, "wb") as h:
            h.write(b"PK partial")
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, f, *a, **k)
torch.save = save
""",
    "between a checkpoint file and its pointer": """
import os, signal
from rxwgan.train import checkpoint
real = checkpoint.atomic.write_json
def write_json(path, obj):
    if str(path).endswith("checkpoint.json") and obj.get("epoch") == {epoch}:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(path, obj)
checkpoint.atomic.write_json = write_json
""",
    "between the two final model files": """
import os, signal
from rxwgan.train import artefacts
real = artefacts.save_model
def save_model(module, path, **kwargs):
    real(module, path, **kwargs)
    if str(path).endswith("generator_trained.safetensors"):
        os.kill(os.getpid(), signal.SIGKILL)
artefacts.save_model = save_model
""",
    "during setup, after the split was written": """
import os, signal
from rxwgan.train import artefacts
def write_config(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
artefacts.RunFolder.write_config = write_config
""",
}
RUNNER = "import sys\n{patch}\nfrom rxwgan.cli import main\nsys.exit(main(sys.argv[1:]))\n"


def _args(table: Path, out: Path) -> list[str]:
    return ["train", "-i", str(table), "-o", str(out), "--model", "tiny", "--epochs", "4",
            "--batch_size", "4", "--n_critic", "2", "--fold", "0", "--n_splits", "5",
            "--save_for_each", "2", "--disp_for_each", "2", "--precision", "fp32", "--no-progress"]


def _state(out: Path) -> tuple[dict, dict]:
    from safetensors.torch import load_file

    weights = {name: {k: v.numpy().tobytes() for k, v in load_file(str(out / name)).items()}
               for name in ("generator_trained.safetensors", "critic_trained.safetensors")}
    return weights, json.loads((out / "history.json").read_text())


def _phase(out: Path) -> str:
    """Where the killed run was, read from what it left behind."""
    if not (out / "config.json").exists():
        return "setup"
    try:
        pointer = json.loads((out / "checkpoint.json").read_text())
    except (OSError, ValueError):
        return "before the first checkpoint"
    if (out / "generator_trained.safetensors").exists():
        return "finish" if not (out / "critic_trained.safetensors").exists() else "done"
    if pointer.get("epoch") == 4:
        return "finish"
    return "between epochs" if pointer.get("batch") is None else "mid-epoch"


def _run_until_done(table: Path, out: Path, rng: random.Random, duration: float) -> list[str]:
    """Rerun the same command (killing it again half the time) until it exits; its problems."""
    problems = []
    for attempt in range(4):
        process = subprocess.Popen([sys.executable, "-m", "rxwgan.cli", *_args(table, out)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if attempt == 0 and rng.random() < 0.5:
            time.sleep(rng.uniform(0, duration))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
        _, err = process.communicate(timeout=600)
        if process.returncode == -signal.SIGKILL:
            continue
        if process.returncode != 0:
            problems.append(f"rerun exited {process.returncode}: {err.strip().splitlines()[-1:]}")
        return problems
    return problems + ["never finished"]


def run() -> dict:
    from rxwgan.data.phantoms import write_demo_data

    rng = random.Random(2024)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        table = write_demo_data(root / "data", n_images=40, size=32, seed=3)
        os.environ["RXWGAN_CACHE_DIR"] = str(root / "cache")
        durations = []
        for name in ("straight", "straight_warm"):  # the second run finds the image cache warm
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "rxwgan.cli", *_args(table, root / name)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            durations.append(time.perf_counter() - start)
        duration = durations[-1] * 0.95  # kill delays fall inside a warm run
        reference = _state(root / "straight")
        assert _state(root / "straight_warm") == reference, "two straight runs differ"
        trials = []
        plans = [("random", None)] * RANDOM_TRIALS + [(name, epoch) for name in TARGETED
                                                      for epoch in ((1, 3) if "checkpoint" in name else (0,))]
        for index, (kind, epoch) in enumerate(plans):
            out = root / f"trial_{index}"
            if kind == "random":
                process = subprocess.Popen([sys.executable, "-m", "rxwgan.cli", *_args(table, out)],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                # Half the kills anywhere; half once setup is done (imports take most of a tiny run).
                started = time.perf_counter()
                while index % 2 and not (out / "config.json").exists() and process.poll() is None:
                    time.sleep(0.02)
                time.sleep(rng.uniform(0, max(0.0, duration - (time.perf_counter() - started))))
                if process.poll() is None:
                    process.send_signal(signal.SIGKILL)
                process.wait()
                killed = process.returncode == -signal.SIGKILL
            else:
                script = RUNNER.format(patch=TARGETED[kind].format(epoch=epoch))
                process = subprocess.run([sys.executable, "-c", script, *_args(table, out)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                killed = process.returncode == -signal.SIGKILL
            phase = _phase(out) if killed else "not killed (finished first)"
            problems = _run_until_done(table, out, rng, duration)
            same = not problems and _state(out) == reference
            trials.append({"kind": kind if epoch is None else f"{kind} (epoch {epoch})", "phase": phase,
                           "killed": killed, "same_as_straight": same, "problems": problems})
            print(f"  trial {index}: {trials[-1]['kind']}, killed at {phase}: "
                  f"{'same as straight' if same else problems or 'DIFFERENT'}", flush=True)
    phases: dict[str, int] = {}
    for trial in trials:
        if trial["killed"]:
            phases[trial["phase"]] = phases.get(trial["phase"], 0) + 1
    return {
        "straight_run_s": round(durations[-1], 1),
        "trials": len(trials),
        "kills": sum(t["killed"] for t in trials),
        "kills_by_phase": phases,
        "all_same_as_straight": all(t["same_as_straight"] for t in trials),
        "refusals_or_errors": sum(bool(t["problems"]) for t in trials),
        "failures": [t for t in trials if not t["same_as_straight"]],
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
