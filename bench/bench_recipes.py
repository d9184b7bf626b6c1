"""Does plain ``rxwgan train -i table.csv -o out`` learn on a CPU in 10 minutes? Recipes against time.

On the demo's phantoms (200 images, as ``make demo`` writes them), two commands run side by
side for ``RXWGAN_RECIPES_BUDGET_S`` seconds (default 600), one core each (OMP_NUM_THREADS=1),
and are stopped with SIGTERM when the budget ends (they checkpoint and stop):
- ``plain``: ``rxwgan train -i table.csv -o out``, no other flag: today's default recipe;
- ``old_default``: what that command trained before recipes existed (``--recipe keras --model
  resnet128``), with epoch files every 5 epochs so that it has snapshots at all.
Afterwards every generator file a run wrote (epoch files and the final one) is scored as the
demo scores its sets: 200 samples of its moving average against every real target-1 phantom,
with the two-sample test (0.5: indistinguishable) and KID in the ``trained`` space fitted on
the table's images. The seconds of a snapshot are its file's time since the command started.
The load average is recorded: a busy machine gives each command less than its core.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / "work" / "recipes"
BUDGET_S = float(os.environ.get("RXWGAN_RECIPES_BUDGET_S", "600"))
GOAL = 0.75  # the bar: the two-sample test of the newest generator after 10 minutes
COMMANDS = {"plain": [],
            "old_default": ["--recipe", "keras", "--model", "resnet128", "--save_for_each", "5"]}
SAMPLES = 200


def run() -> dict:
    from rxwgan.data.phantoms import write_demo_data

    table = write_demo_data(WORK / "data", n_images=200, size=128, seed=0)
    env = dict(os.environ, OMP_NUM_THREADS="1", RXWGAN_CACHE_DIR=str(WORK / "cache"))
    load_before = os.getloadavg()
    started, processes = {}, {}
    for name, flags in COMMANDS.items():
        out = WORK / name
        subprocess.run(["rm", "-rf", str(out)], check=True)
        started[name] = time.time()
        processes[name] = subprocess.Popen([sys.executable, "-m", "rxwgan.cli", "train", "-i", str(table),
                                            "-o", str(out), "--no-progress", *flags], env=env,
                                           stdout=open(WORK / f"{name}.log", "w"), stderr=subprocess.STDOUT)
    deadline = min(started.values()) + BUDGET_S
    while any(p.poll() is None for p in processes.values()) and time.time() < deadline:
        time.sleep(2)
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes.values():
        process.wait(timeout=300)
    load_after = os.getloadavg()
    return {"budget_s": BUDGET_S, "goal": f"newest generator's two-sample test <= {GOAL} after the budget",
            "threads_per_command": 1, "load_average_before": load_before, "load_average_after": load_after,
            "commands": {name: {"flags": flags, "first_line": _first_line(WORK / f"{name}.log"),
                                "curve": _curve(WORK / name, started[name], table)}
                         for name, flags in COMMANDS.items()}}


def _first_line(log: Path) -> str:
    return log.read_text().splitlines()[0] if log.is_file() and log.read_text() else ""


def _curve(folder: Path, started: float, table_path: Path) -> list[dict]:
    """Each generator file of the run, oldest first, scored."""
    import torch

    from rxwgan.data.cache import ImageCache
    from rxwgan.data.table import read_table
    from rxwgan.metrics.space_builder import resolve_space

    files = sorted((f for f in folder.glob("generator_*.safetensors") if "best" not in f.name),
                   key=lambda f: f.stat().st_mtime)
    if not files:
        return []
    table = read_table(table_path)
    size = _generator(files[0]).image_size
    real = torch.from_numpy(ImageCache(WORK / "cache").load_rows(table, size, progress=False))
    space, _ = resolve_space("trained", fit_images=real, fit_labels=table.targets, seed=0,
                             cache_dir=WORK / "cache")
    ones = real[torch.from_numpy(table.targets == 1)]
    return [{"file": f.name, "seconds": round(f.stat().st_mtime - started, 1), **_score(f, ones, space)}
            for f in files]


def _generator(path: Path):
    from rxwgan.synth.sampling import load_generator

    return load_generator(path)[0]


def _score(generator_file: Path, ones, space) -> dict:
    from rxwgan.metrics import compute_metrics
    from rxwgan.metrics.feature_distances import kid
    from rxwgan.synth.sampling import synthetic_images

    fake = synthetic_images(_generator(generator_file), range(SAMPLES), seed=0)
    scores = compute_metrics(ones, fake, ["c2st"], size=fake.shape[-1])
    return {"c2st": round(float(scores["c2st_accuracy"]), 3),
            "kid": round(float(kid(space(ones), space(fake))[0]), 3)}


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
