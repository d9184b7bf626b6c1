"""The memorisation check of one run's generator: its three sets, its record, its picture.

The synthetic images are compared with the run's own training rows of its class, with the
fold's validation (or test) rows of that class as the unseen reference, all taken from the
run folder (``rxwgan.train.run_info``), in the run's feature space and in pixels at the
generator's size. The numbers come from the ``memorisation`` metric; here they are
gathered into a record (``MEMORISATION_RECORD``, JSON) that says where every number comes from,
a one-line summary, and the picture of the closest pairs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from rxwgan.base import atomic
from rxwgan.base.errors import RxwganError
from rxwgan.base.layout import MEMORISATION_RECORD
from rxwgan.metrics.metric_registry import MEMORISATION_SCORES
from rxwgan.metrics.nearest_neighbours import NEAR_COPY_QUANTILE
from rxwgan.train.run_info import RunInfo, read_run

UNSEEN_PARTITIONS = ("val", "test")
FLAG_P = 0.01  # flagged: more near copies than unseen real images would give, at this p-value
PAIRS = 16


def run_feature_space(info: RunInfo, device: str | torch.device = "cpu") -> Any:
    """The space the run measured in: its recorded space file, else its ``--eval_features``
    (``trained`` fitted on its training rows of both classes, as training fits it)."""
    from rxwgan.metrics.space_builder import resolve_space
    from rxwgan.metrics.space_per_study import read_run_space, run_space

    recorded = read_run_space(info.folder).get("file")
    if recorded and Path(recorded).is_file():
        return resolve_space(str(recorded), device=device)[0]
    return run_space(info.space_config(), info.image_size, device)


def check_memorisation(run: str | Path | RunInfo, fake: Any, *, n: int | None = None, seed: int = 0,
                       unseen: str = "val", features: Any = None, device: str | torch.device = "cpu",
                       cache_dir: str | Path | None = None, pairs: str | Path | None = None,
                       generator: dict[str, Any] | None = None) -> dict[str, Any]:
    """Memorisation of ``fake`` (a generator file, a synthetic table or folder, a tensor)
    against the run in ``run`` (its folder, or the run already read); returns the record and
    draws the closest pairs to ``pairs``.

    ``n``: images sampled from a generator (1000 by default). ``features``: a space name,
    file or ``FeatureSpace`` (default: the run's). ``generator``: what to record about the
    generator when ``fake`` is not the file itself (``generate`` passes its sha256).
    """
    from rxwgan.metrics import compute_metrics
    from rxwgan.metrics.sources import load_images

    if unseen not in UNSEEN_PARTITIONS:
        raise RxwganError(f"--partition {unseen}: the unseen rows are the run's val or test rows")
    info = run if isinstance(run, RunInfo) else read_run(run)
    train_set = info.images("train", cache_dir)
    unseen_set = info.images(unseen, cache_dir)
    space = features if features is not None else run_feature_space(info, device)
    fake_set = load_images(fake, info.image_size, n=n, seed=seed, cache_dir=cache_dir, device=device)
    result = compute_metrics(unseen_set, fake_set, ["memorisation"], space, seed=seed,
                             size=info.image_size, cache_dir=cache_dir, device=device, train=train_set)
    record = _record(info, unseen, result, generator)
    if pairs is not None:
        from rxwgan.base.plots import save_pairs

        distance, index = result["nearest_train"]
        threshold = record["scores"]["pixels"]["threshold"]
        save_pairs(fake_set.images, train_set.images, distance, index, pairs,
                   f"{info.folder.name}: the {PAIRS} synthetic images closest to a training image (left) "
                   f"beside it (right); d: RMS pixel difference on a 0-1 grey scale at "
                   f"{info.image_size} px; near-copy threshold {threshold:.4f}",
                   labels=info.names("train"), count=PAIRS)
        record["pairs"] = str(pairs)
    return record


def _record(info: RunInfo, unseen: str, result: dict[str, Any],
            generator: dict[str, Any] | None) -> dict[str, Any]:
    fake = result["sets"]["fake"]
    if generator is None and fake.get("kind") == "generator" and "sha256" in fake:
        generator = {"file": fake["path"], "sha256": fake["sha256"]}
    return {
        "run": str(info.folder), "split": info.split.name, "target": info.target,
        "unseen_partition": unseen, "image_size": info.image_size,
        "n_synthetic": result["n_fake"], "n_train": result["n_train"], "n_unseen": result["n_real"],
        "quantile": NEAR_COPY_QUANTILE, "flag_p": FLAG_P,
        "space_id": result["space_id"], "features": result["feature_space"]["description"],
        "pixels": f"pixels at {info.image_size} px, RMS difference on a 0-1 grey scale",
        "scores": {"features": {key: result[key] for key in MEMORISATION_SCORES},
                   "pixels": {key: result[f"pixel_{key}"] for key in MEMORISATION_SCORES}},
        "flagged": flagged(result),
        "generator": generator, "sets": result["sets"], "notes": result["notes"],
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def flagged(result: dict[str, Any]) -> bool:
    """More near copies than unseen real images give, in either space (one-sided p < FLAG_P)."""
    return bool(result["near_copies_p"] < FLAG_P or result["pixel_near_copies_p"] < FLAG_P)


def summary_line(record: dict[str, Any]) -> str:
    """One line: near copies and authenticity in both spaces, the references, the set sizes."""
    features, pixels = record["scores"]["features"], record["scores"]["pixels"]
    verdict = "FLAGGED: more near copies than unseen real images" if record["flagged"] else "not flagged"
    return (f"memorisation {verdict} ({record['n_synthetic']} synthetic, {record['n_train']} training, "
            f"{record['n_unseen']} unseen {record['unseen_partition']} rows; {record['split']} target "
            f"{record['target']}): near copies {features['near_copies']:.1%} in features "
            f"{record['space_id']} and {pixels['near_copies']:.1%} in pixels (unseen reference "
            f"{features['near_copies_unseen']:.1%} / {pixels['near_copies_unseen']:.1%}); authentic "
            f"{features['authenticity']:.1%} / {pixels['authenticity']:.1%} (unseen "
            f"{features['authenticity_unseen']:.1%} / {pixels['authenticity_unseen']:.1%})")


def format_memorisation(record: dict[str, Any]) -> str:
    """The terminal table of ``evaluate --memorisation``."""
    lines = [f"synthetic: {record['sets']['fake']['label']}",
             f"training:  {record['sets']['train']['label']}",
             f"unseen:    {record['sets']['real']['label']}",
             f"features:  {record['features']} (id {record['space_id']})",
             f"pixels:    {record['pixels']}",
             f"{'space':<10}{'near copies':>12}{'unseen ref':>11}{'p':>9}{'threshold':>11}"
             f"{'authentic':>11}{'unseen ref':>11}"]
    for name, scores in record["scores"].items():
        lines.append(f"{name:<10}{scores['near_copies']:>12.3f}{scores['near_copies_unseen']:>11.3f}"
                     f"{scores['near_copies_p']:>9.2g}{scores['threshold']:>11.4g}"
                     f"{scores['authenticity']:>11.3f}{scores['authenticity_unseen']:>11.3f}")
    lines.append(f"(n: {record['n_synthetic']} synthetic, {record['n_train']} training, "
                 f"{record['n_unseen']} unseen; near copy: no farther from its nearest training "
                 f"image than the unseen images' {record['quantile']:.0%} quantile)")
    lines.append(summary_line(record))
    if record.get("pairs"):
        lines.append(f"closest pairs: {record['pairs']}")
    lines += [f"note: {note}" for note in record["notes"]]
    return "\n".join(lines)


def write_record(folder: str | Path, record: dict[str, Any]) -> Path:
    path = Path(folder) / MEMORISATION_RECORD
    atomic.write_json(path, record)
    return path


def recorded(folder: str | Path, sha256: str | None = None) -> dict[str, Any] | None:
    """The memorisation record in ``folder``; with ``sha256``, only if it is of that generator."""
    try:
        record = json.loads((Path(folder) / MEMORISATION_RECORD).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or "scores" not in record:
        return None
    if sha256 is not None and (record.get("generator") or {}).get("sha256") != sha256:
        return None
    return record
