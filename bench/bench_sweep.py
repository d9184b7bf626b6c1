"""Wall time of a 4-run study: ``rxwgan sweep`` on a local Ray instance against the same
4 runs one after another with ``rxwgan train``.

Both sides are whole commands in fresh processes (imports, Ray's start for the sweep)
on a warm image cache: the figure a user sees. Runs: tiny model (32 px), 40 phantom
X-rays, k-fold 2 folds x 2 targets. The sweep's Ray overhead is its time until the first
run starts training; its gain is the runs going side by side, one torch thread each,
where ``rxwgan train`` gives one run all the cores. The 4 runs are also timed one after
another with one torch thread each, to tell the two gains apart: on a busy machine torch's
multi-threading itself loses a lot to other processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = [(fold, target) for fold in (0, 1) for target in (0, 1)]


def _flags(epochs: int) -> list[str]:
    return ["--model", "tiny", "--n_splits", "2", "--epochs", str(epochs), "--batch_size", "4",
            "--n_critic", "2", "--precision", "fp32", "--save_for_each", "1000",
            "--disp_for_each", "1000"]


def _command(*args: str, threads: int | None = None) -> float:
    """Seconds one ``rxwgan`` command takes in a fresh process (``threads``: torch's, else its default)."""
    env = dict(os.environ, **({} if threads is None else {"OMP_NUM_THREADS": str(threads)}))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rxwgan.cli", *args], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _one_after_another(table: Path, out: Path, epochs: int, threads: int | None) -> list[float]:
    return [_command("train", "-i", str(table), "-o", str(out / f"f{f}_t{t}"), "--fold", str(f),
                     "-t", str(t), "--no-progress", *_flags(epochs), threads=threads)
            for f, t in RUNS]


def run(epochs: int = 15, n_images: int = 40) -> dict:
    saved_cache = os.environ.get("RXWGAN_CACHE_DIR")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["RXWGAN_CACHE_DIR"] = str(Path(tmp) / "cache")  # inherited by every command
        try:
            return _measure(Path(tmp), epochs, n_images)
        finally:
            if saved_cache is None:
                os.environ.pop("RXWGAN_CACHE_DIR", None)
            else:
                os.environ["RXWGAN_CACHE_DIR"] = saved_cache


def _measure(root: Path, epochs: int, n_images: int) -> dict:
    from rxwgan.data.cache import ImageCache
    from rxwgan.data.phantoms import write_demo_data
    from rxwgan.data.table import read_table

    table = write_demo_data(root / "data", n_images=n_images, size=32, seed=0)
    ImageCache().load(read_table(table).paths, 32, progress=False)  # warm for every side
    sequential = _one_after_another(table, root / "seq", epochs, threads=None)
    one_thread = _one_after_another(table, root / "seq1", epochs, threads=1)
    launched = time.time()
    sweep_s = _command("sweep", "-i", str(table), "-o", str(root / "study"), "--refresh", "600",
                       *_flags(epochs))
    study = root / "study"
    workers = [json.loads(p.read_text()) for p in sorted(study.glob("*/*/worker.json"))]
    finished = [p.stat().st_mtime for p in sorted(study.glob("*/*/status.json"))]
    settings = json.loads((study / "sweep.json").read_text())["ray"]
    return {
        "model": "tiny", "image_px": 32, "images": n_images, "epochs": epochs, "runs": len(RUNS),
        "cpus": os.cpu_count(),
        "sequential_s": round(sum(sequential), 2),
        "sequential_per_run_s": [round(s, 2) for s in sequential],
        "sequential_one_thread_s": round(sum(one_thread), 2),
        "sweep_s": round(sweep_s, 2),
        "speedup": round(sum(sequential) / sweep_s, 2),
        "speedup_vs_one_thread": round(sum(one_thread) / sweep_s, 2),
        "sweep_until_first_run_starts_s": round(min(w["started"] for w in workers) - launched, 2),
        "sweep_per_run_s": [round(end - w["started"], 2)
                            for w, end in zip(workers, finished, strict=True)],
        "sweep_cpus_per_run": settings["cpus_per_run"],
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }


if __name__ == "__main__":
    r = run()
    print(f"4 runs ({r['model']} {r['image_px']} px, {r['epochs']} epochs, {r['cpus']} CPUs): one after "
          f"another {r['sequential_s']:.1f} s ({r['sequential_one_thread_s']:.1f} s with one thread), "
          f"sweep on Ray {r['sweep_s']:.1f} s (x{r['speedup']:.2f}, x{r['speedup_vs_one_thread']:.2f}); "
          f"Ray start until the first run trains {r['sweep_until_first_run_starts_s']:.1f} s")
