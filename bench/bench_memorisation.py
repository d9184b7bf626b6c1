"""The memorisation check: can it fail, where a trained generator lands, and what it costs.

Controls, on 200 phantoms at 128 px and the target-1 run of fold 0 at 64 px (the demo's
``small`` model and recipe, ``KIMG`` kimg), each checked against the run's training rows
with its validation rows as the unseen reference (``rxwgan.synth.memorisation``):
- copies: the run's training images plus faint noise (sigma ``NOISE`` on [-1, 1]): must be
  flagged, most of them near copies;
- unseen: 100 target-1 phantoms of another seed, which no run saw: must not be flagged;
- trained: 1000 samples of the trained generator (its moving average).
The closest pairs of the trained generator are saved as bench/memorisation_small_pairs.png.

Cost: 10,000 synthetic against 500 training (and 100 unseen) images at 128 px, in a fresh
subprocess that reports its own peak resident memory before and after the check: the
search keeps ``CHUNK x 500`` distances at a time, so what the check adds stays small
beside the image sets themselves (10,000 x 128 x 128 float32 = 655 MB).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
KIMG = 5.0  # the demo trains 20; a quarter keeps this bench to minutes on a busy two-core machine
NOISE = 0.02
SAMPLES = 1000


def run() -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_memorisation_") as tmp:
        root = Path(tmp)
        controls = _controls(root)
        done = subprocess.run([sys.executable, __file__, "--cost", str(root / "cost")],
                              capture_output=True, text=True, check=True)
        cost = json.loads(done.stdout.strip().splitlines()[-1])
    return {"controls": controls, "cost": cost, "torch_threads": torch.get_num_threads(),
            "load_average_at_end": os.getloadavg()[0]}


def _controls(root: Path) -> dict:
    from rxwgan.data.phantoms import write_demo_data
    from rxwgan.metrics.sources import table_images
    from rxwgan.synth.memorisation import check_memorisation
    from rxwgan.train.config import TrainConfig
    from rxwgan.train.loop import train
    from rxwgan.train.run_info import read_run

    table = write_demo_data(root / "data", n_images=200, size=128)
    folder = root / "fold_0" / "target_1"
    start = time.perf_counter()
    train(TrainConfig(input=str(table), output=str(folder), model="small", target=1, kimg=KIMG,
                      batch_size=32, n_critic=1, lr=5e-4, betas=(0.0, 0.9), dropout=0.0,
                      save_for_each=10**6, disp_for_each=10**6, progress=False), log=lambda _: None)
    train_seconds = time.perf_counter() - start
    info = read_run(folder)
    training = info.images("train").images
    noise = torch.randn(training.shape, generator=torch.Generator().manual_seed(0))
    other = write_demo_data(root / "other", n_images=200, size=128, seed=1)
    sets = {"copies": (training + NOISE * noise).clamp(-1, 1),
            "unseen": table_images(other, info.image_size, target=1).images,
            "trained": folder / "generator_trained.safetensors"}
    found = {}
    for name, fake in sets.items():
        pairs = HERE / "memorisation_small_pairs.png" if name == "trained" else None
        record = check_memorisation(folder, fake, n=SAMPLES, pairs=pairs)
        found[name] = {"flagged": record["flagged"], "n_synthetic": record["n_synthetic"],
                       **{space: {key: round(value, 4) for key, value in scores.items()}
                          for space, scores in record["scores"].items()}}
    return {"n_train": record["n_train"], "n_unseen": record["n_unseen"], "space_id": record["space_id"],
            "image_size": info.image_size, "noise_sigma": NOISE, "kimg": KIMG,
            "train_seconds": round(train_seconds, 1), **found}


def _cost(folder: Path, n_fake: int = 10_000, n_train: int = 500, n_unseen: int = 100,
          size: int = 128) -> dict:
    """Seconds of each part of the check and the peak memory, on phantoms at ``size`` px."""
    from rxwgan.data.phantoms import write_demo_data
    from rxwgan.metrics.nearest_neighbours import memorisation_scores, pixel_scale
    from rxwgan.metrics.sources import table_images
    from rxwgan.metrics.space_builder import resolve_space

    table = write_demo_data(folder, n_images=n_train + n_unseen, size=size)
    images = table_images(table, size).images
    train, unseen = images[:n_train], images[n_train:]
    generator = torch.Generator().manual_seed(0)
    picks = torch.randint(0, n_unseen, (n_fake,), generator=generator)
    fake = (unseen[picks] + 0.05 * torch.randn(n_fake, 1, size, size, generator=generator)).clamp(-1, 1)
    del images
    before = _peak_mib()
    seconds = {}
    start = time.perf_counter()
    memorisation_scores(fake, train, unseen, scale=pixel_scale(fake))
    seconds["pixel_search"] = time.perf_counter() - start
    after_pixels = _peak_mib()
    start = time.perf_counter()
    space = resolve_space("trained", train, None, seed=0, cache_dir=folder / "cache")[0]
    seconds["feature_space_fit"] = time.perf_counter() - start
    start = time.perf_counter()
    features = [space(part) for part in (fake, train, unseen)]
    seconds["feature_extraction"] = time.perf_counter() - start
    start = time.perf_counter()
    memorisation_scores(*features)
    seconds["feature_search"] = time.perf_counter() - start
    return {"n_synthetic": n_fake, "n_train": n_train, "n_unseen": n_unseen, "image_size": size,
            "feature_dim": space.dim, "seconds": {k: round(v, 2) for k, v in seconds.items()},
            "peak_rss_mib_with_sets_loaded": round(before),
            "peak_rss_mib_after_pixel_check": round(after_pixels),
            "peak_rss_mib_at_end": round(_peak_mib()),
            "synthetic_set_mib": round(fake.numel() * 4 / 2**20), "torch_threads": torch.get_num_threads()}


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


if __name__ == "__main__":
    if sys.argv[1:2] == ["--cost"]:
        print(json.dumps(_cost(Path(sys.argv[2]))))
    else:
        print(json.dumps(run(), indent=1))
