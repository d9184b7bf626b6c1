"""Sample quality in a fixed CPU budget: today's models and recipes side by side, on phantoms.

Each configuration trains the target-1 generator of fold 0 on 200 phantoms at 64 px for the
same wall-clock budget (``RXWGAN_QUALITY_BUDGET_S``, default 300 s), two at a time, one core
each. Every ``SNAPSHOT_EPOCHS`` epochs the generator file (with its moving average) is kept;
afterwards each snapshot is scored against 100 held-out target-1 phantoms that no generator
saw:
- KID in the ``trained`` feature space, fitted once on another 200 held-out phantoms;
- the floor: KID between two halves of the held-out phantoms;
- the two-sample test (logistic regression on 16 x 16 pixels, 5-fold accuracy; 0.5 means
  indistinguishable).
The moving average and the raw weights of one run are both scored, which measures the EMA
at no extra training. Grids of each configuration's last snapshot (its trained weights, the
last scored) are saved beside ``results.json`` (bench/quality_<name>.png).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUDGET_S = float(os.environ.get("RXWGAN_QUALITY_BUDGET_S", "300"))
SNAPSHOT_EPOCHS = 25
RECIPE = {"n_critic": 1, "lr": 5e-4, "betas": [0.0, 0.9], "batch_size": 32}  # rxwgan.demo's
CONFIGS = {
    # What `make demo` trained before: the small model, Keras init, the old tool's recipe.
    "small_keras_old_recipe": {"model": "small", "init": "keras", "ema_kimg": 0.0},
    # The same model with the standard init and the recipe the demo now uses.
    "small_new_recipe": {**RECIPE, "model": "small", "dropout": 0.0},
    # With DiffAugment, and the ResNet default at 64 px with the same recipe.
    "small_new_recipe_augment": {**RECIPE, "model": "small", "dropout": 0.0,
                                 "augment": "translation,cutout,brightness,contrast"},
    "resnet64_new_recipe": {**RECIPE, "model": "resnet64"},
}
TRAINER = """
import json, sys, time
from rxwgan.train.config import TrainConfig
from rxwgan.train.loop import train
import torch
torch.set_num_threads(1)
options, table, out, budget = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
start, times = time.perf_counter(), {}
class Budget(Exception):
    pass
def log(line):
    if line.startswith("epoch "):
        epoch = int(line.split()[1].split("/")[0])
        times[epoch] = time.perf_counter() - start
        json.dump(times, open(out + "/times.json", "w"))
        if time.perf_counter() - start > budget:
            raise Budget
try:
    train(TrainConfig(input=table, output=out, target=1, kimg=10_000, save_for_each=%d,
                      disp_for_each=10**6, progress=False, **options), log=log)
except Budget:
    pass
""" % SNAPSHOT_EPOCHS


def _score(generator_file: Path, weights: str, held_out, space, seed: int = 0) -> dict:
    import torch

    from rxwgan.metrics.feature_distances import kid
    from rxwgan.metrics.two_sample import c2st_accuracy
    from rxwgan.models import load_model

    generator = load_model(generator_file, role="generator", weights=weights).eval()
    with torch.no_grad():
        z = torch.randn(len(held_out), generator.latent_dim, generator=torch.Generator().manual_seed(seed))
        fake = generator(z).float()
    return {"kid": round(kid(space(held_out), space(fake))[0], 5),
            "c2st": round(c2st_accuracy(held_out, fake, seed=seed)[0], 3)}, fake


def run() -> dict:
    import numpy as np
    import torch

    from rxwgan.base.plots import save_grid
    from rxwgan.data.cache import ImageCache
    from rxwgan.data.phantoms import write_demo_data
    from rxwgan.data.table import read_table
    from rxwgan.metrics.feature_distances import kid
    from rxwgan.metrics.space_builder import resolve_space
    from rxwgan.metrics.two_sample import c2st_accuracy

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        table = write_demo_data(root / "train", n_images=200, size=128, seed=0)
        held = read_table(write_demo_data(root / "held", n_images=600, size=128, seed=99))
        images = torch.from_numpy(ImageCache(root / "cache").load_rows(held, 64, progress=False))
        ones, zeros = images[torch.from_numpy(held.targets == 1)], images[torch.from_numpy(held.targets == 0)]
        reference, fit = ones[:100], torch.cat([ones[100:200], zeros[:100]])
        labels = np.array([1] * 100 + [0] * 100)
        space, _ = resolve_space("trained", fit_images=fit, fit_labels=labels, seed=0,
                                 cache_dir=root / "cache")
        floor = {"kid": round(kid(space(ones[:50]), space(ones[50:100]))[0], 5),
                 "c2st": round(c2st_accuracy(ones[:50], ones[50:100])[0], 3)}
        env = dict(os.environ, RXWGAN_CACHE_DIR=str(root / "cache"), OMP_NUM_THREADS="1")
        results: dict = {}
        names = list(CONFIGS)
        for pair in (names[:2], names[2:]):
            processes = [subprocess.Popen([sys.executable, "-c", TRAINER, json.dumps(CONFIGS[name]),
                                           str(table), str(root / name), str(BUDGET_S)], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                         for name in pair]
            for name, process in zip(pair, processes, strict=True):
                _, err = process.communicate()
                if process.returncode != 0:
                    raise RuntimeError(f"{name}: {err.strip().splitlines()[-1:]}")
        for name in names:
            folder = root / name
            times = {int(k): v for k, v in json.loads((folder / "times.json").read_text()).items()}
            curve, fake = [], None
            for epoch in sorted(e for e in times if e % SNAPSHOT_EPOCHS == 0):
                entry = {"epoch": epoch, "seconds": round(times[epoch], 1)}
                for weights in ("ema", "raw"):
                    entry[weights], fake = _score(folder / f"generator_epoch_{epoch}", weights, reference,
                                                  space)
                curve.append(entry)
            if fake is not None:
                save_grid(fake[:25], HERE / f"quality_{name}.png")
            results[name] = {"options": CONFIGS[name], "curve": curve}
            print(f"  {name}: {curve[-1] if curve else 'no snapshot'}", flush=True)
    return {"budget_s_per_config": BUDGET_S, "image_size": 64, "train_images": "~80 target-1 phantoms",
            "reference": "100 held-out target-1 phantoms", "floor_real_vs_real": floor, "configs": results}


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
