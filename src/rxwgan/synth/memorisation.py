"""The memorisation check of one run's generator: its three sets, its record, its picture.

The synthetic images are compared with the run's own training rows of its class, with the
fold's validation (or test) rows of that class as the unseen reference, all taken from the
run folder (``rxwgan.train.run_info``), in the run's feature space and in pixels at the
generator's size. A conditional run learned both classes: the check names the class, whose
rows it reads and which a conditional generator samples. A run folder that moved away from
its images is read through the table it trained on, where that is now (``table``: refused
unless its rows and images are the run's).

Twins are told once, on contrast-normalised pixels (``TWIN_RADIUS``, chosen and measured in
``rxwgan.metrics.nearest_neighbours``), and both spaces score the same images:

- an unseen row that is a twin of a training image is leakage, not a new patient: it is
  named and left out of the reference, as is every unseen row but one of twins among
  themselves;
- a synthetic image that is a twin of a training image is a copy, and flags the set on its
  own, whatever the near-copy share's p-value; unless that training image also has a twin
  among the unseen rows: it is then common in the data (a blank film, a test image), counted
  as such and left out of the near-copy test, as its unseen twins are left out of the reference;
- otherwise the set is flagged when it holds more near copies than unseen real images do
  (one-sided p < ``FLAG_P``) in either space.

The numbers are gathered into a record (``MEMORISATION_RECORD``, JSON) that says where each
comes from, a one-line summary, and the picture of the closest pairs.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch

from rxwgan.base import atomic
from rxwgan.base.errors import RxwganError
from rxwgan.base.layout import memorisation_files
from rxwgan.data.table import Table
from rxwgan.metrics.metric_registry import MEMORISATION_SCORES
from rxwgan.metrics.nearest_neighbours import (
    CONTRAST_FLOOR,
    NEAR_COPY_QUANTILE,
    TWIN_RADIUS,
    Memorisation,
    Twins,
)
from rxwgan.metrics.sources import ImageSet
from rxwgan.metrics.space_types import FeatureSpace
from rxwgan.train.run_info import RunInfo, read_run

UNSEEN_PARTITIONS = ("val", "test")
FLAG_P = 0.01  # flagged: more near copies than unseen real images would give, at this p-value
PAIRS = 16
NAMES_SHOWN = 5  # rows named per line of the terminal table; the record names them all


def run_feature_space(info: RunInfo, device: str | torch.device = "cpu", features: str | None = None,
                      table: Table | None = None) -> FeatureSpace:
    """The space the run measured in: its recorded space file, else its ``--eval_features``
    (``trained`` fitted on its training rows of both classes, as training fits it);
    ``features`` (a space name or file) replaces it, fitted on the same rows. ``table``:
    the run's table where it is now (``moved_table``)."""
    from rxwgan.metrics.space_builder import resolve_space
    from rxwgan.metrics.space_per_study import read_run_space, run_space

    recorded = read_run_space(info.folder).get("file")
    if features is None and recorded and Path(recorded).is_file():
        return resolve_space(str(recorded), device=device)[0]
    config = info.space_config()
    if table is not None:
        config = dataclasses.replace(config, input=str(table.source))
    if features is not None:
        config = dataclasses.replace(config, eval_features=features)
    return run_space(config, info.image_size, device)


def moved_table(info: RunInfo, path: str | Path) -> Table:
    """The table the run trained on, read from where it is now; refused unless its rows,
    images (and groups) are the ones the run recorded (``table_sha256``)."""
    from rxwgan.data.table import read_table
    from rxwgan.train.folder import table_fingerprint

    table = read_table(Path(path).expanduser(), info.config.path_column, info.config.target_column)
    if table_fingerprint(table, info.split)["sha256"] != info.record.get("table_sha256"):
        raise RxwganError(f"--table {path}: its rows or images are not the ones {info.folder} trained on")
    return table


def run_images(info: RunInfo, partition: str, table: Table | None = None,
               cache_dir: str | Path | None = None) -> ImageSet:
    """The run's rows of its class in ``partition``: through its ``split.csv``, or through
    ``table`` (``moved_table``: same rows in the same order) when the folder moved."""
    if table is None:
        _check_images_found(info, partition)
        return info.images(partition, cache_dir)
    from rxwgan.data.cache import ImageCache

    positions = info.rows(partition)
    cache = ImageCache(cache_dir if cache_dir is not None else info.config.cache_dir)
    images = cache.load_rows(table, info.image_size, positions, progress=False,
                             bit_depth=info.config.bit_depth)
    what = f"{info.split.name} {partition} rows of target {info.target}"
    return ImageSet(torch.from_numpy(images), f"{info.folder.name}: {len(positions)} {what} (from "
                    f"{table.source}) at {info.image_size} px",
                    {"kind": "run rows", "run": str(info.folder), "table": str(table.source),
                     "split": info.split.name, "partition": partition, "target": info.target,
                     "rows": len(positions), "size": info.image_size})


def _check_images_found(info: RunInfo, partition: str) -> None:
    from rxwgan.data.table import read_table

    config = info.config
    paths = read_table(info.split_csv, config.path_column, config.target_column, check_files=False).paths
    missing = [paths[i] for i in info.rows(partition) if not paths[i].is_file()]
    if missing:
        raise RxwganError(f"{info.split_csv}: {len(missing)} images of its {partition} rows are not where it "
                          f"says (first: {missing[0]}); if the run folder or the images moved, pass --table "
                          f"with the table the run trained on, where it is now")


def check_memorisation(run: str | Path | RunInfo, fake: Any, *, n: int | None = None, seed: int = 0,
                       unseen: str = "val", features: Any = None, device: str | torch.device = "cpu",
                       cache_dir: str | Path | None = None, pairs: str | Path | None = None,
                       generator: dict[str, Any] | None = None,
                       table: str | Path | None = None, target: int | None = None) -> dict[str, Any]:
    """Memorisation of ``fake`` (a generator file, a synthetic table or folder, a tensor)
    against the run in ``run`` (its folder, or the run already read); returns the record and
    draws the closest pairs to ``pairs``.

    ``n``: images sampled from a generator (1000 by default). ``features``: a space name,
    file or ``FeatureSpace`` (default: the run's). ``generator``: what to record about the
    generator when ``fake`` is not the file itself (``generate`` passes its sha256).
    ``table``: the table the run trained on, where it is now (a run folder moved or copied
    away from its images). ``target``: the class of a conditional run to check (its rows, and
    the class a conditional ``fake`` generator samples); a per-class run checks its own.
    """
    from rxwgan.metrics.sources import load_images

    if unseen not in UNSEEN_PARTITIONS:
        raise RxwganError(f"--partition {unseen}: the unseen rows are the run's val or test rows")
    info = (run if isinstance(run, RunInfo) else read_run(run)).for_class(target)
    moved = moved_table(info, table) if table is not None else None
    sets = {"fake": load_images(fake, info.image_size, n=n, seed=seed, cache_dir=cache_dir, device=device,
                                sampled_class=info.target),
            "train": run_images(info, "train", moved, cache_dir),
            "real": run_images(info, unseen, moved, cache_dir)}
    if not torch.isfinite(sets["fake"].images).all():
        raise RxwganError(f"synthetic images contain NaN or infinite values ({sets['fake'].label}): "
                          f"a diverged generator?")
    if not isinstance(features, FeatureSpace):
        features = run_feature_space(info, device, features, moved)
    images = [found.images for found in sets.values()]
    checked = _check(info, unseen, images, features)
    twins, (distance, index) = checked.twins, checked.nearest_train
    scores = {"features": checked.features, "pixels": checked.pixels}
    record = _record(info, unseen, sets, twins, scores, features, generator)
    if pairs is not None:
        from rxwgan.base.plots import save_pairs

        tested = ~twins.synthetic_common
        common = record["twins"]["n_common"]
        left_out = f"; {common} common images left out" if common else ""
        save_pairs(images[0][tested], images[1], distance[tested], index[tested], pairs,
                   f"{info.folder.name}: the {PAIRS} synthetic images closest to a training image (left) "
                   f"beside it (right); d: RMS pixel difference on a 0-1 grey scale at "
                   f"{info.image_size} px; near-copy threshold {scores['pixels']['threshold']:.4f}{left_out}",
                   labels=info.names("train"), count=PAIRS)
        record["pairs"] = str(pairs)
    return record


def _check(info: RunInfo, unseen: str, images: list[torch.Tensor], space: FeatureSpace) -> Memorisation:
    """Both spaces' scores of the same images, a refusal naming the run when they cannot be had."""
    from rxwgan.metrics.nearest_neighbours import memorisation_in_both

    try:
        return memorisation_in_both(images, [space(part) for part in images])
    except ValueError as exc:
        raise RxwganError(f"{info.folder} ({unseen} rows of target {info.target}): {exc}") from None


def _record(info: RunInfo, unseen: str, sets: dict[str, ImageSet], twins: Twins,
            scores: dict[str, dict[str, float]], space: FeatureSpace,
            generator: dict[str, Any] | None) -> dict[str, Any]:
    fake = sets["fake"].info
    if generator is None and fake.get("kind") == "generator" and "sha256" in fake:
        generator = {"file": fake["path"], "sha256": fake["sha256"]}
    record = {
        "run": str(info.folder), "split": info.split.name, "target": info.target,
        **({"conditional": True} if info.conditional else {}),
        "unseen_partition": unseen, "image_size": info.image_size,
        "n_synthetic": len(sets["fake"]), "n_train": len(sets["train"]), "n_unseen": len(sets["real"]),
        "n_tested": int((~twins.synthetic_common).sum()), "n_reference": int(twins.reference.sum()),
        "quantile": NEAR_COPY_QUANTILE, "flag_p": FLAG_P,
        "space_id": space.key, "features": space.description,
        "pixels": f"pixels at {info.image_size} px, RMS difference on a 0-1 grey scale",
        "twins": _twins_record(info, unseen, twins),
        "scores": {name: {key: values[key] for key in MEMORISATION_SCORES}
                   for name, values in scores.items()},
        "generator": generator,
        "sets": {name: {"label": found.label, **found.info} for name, found in sets.items()},
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    record["flagged"] = flagged(record["scores"], record["twins"]["n_copies"])
    record["notes"] = _notes(record)
    return record


def _twins_record(info: RunInfo, unseen: str, twins: Twins) -> dict[str, Any]:
    """Counts, and the rows by name, of every kind of twin the check found."""
    def named(names: list[str], mask: torch.Tensor) -> list[str]:
        return [names[i] for i in mask.nonzero().flatten().tolist()]

    train_names, unseen_names = info.names("train"), info.names(unseen)
    group_sizes = torch.bincount(twins.train_group)
    return {
        "distance": f"RMS difference of the images at {info.image_size} px, each less its mean and over its "
                    f"contrast (standard deviation, at least {CONTRAST_FLOOR} on a 0-1 grey scale)",
        "radius": TWIN_RADIUS,
        "n_copies": int(twins.copies.sum()), "copied": named(train_names, twins.copied),
        "n_common": int(twins.synthetic_common.sum()), "common": named(train_names, twins.common),
        "n_leaked": int(twins.leaked.sum()), "leaked": named(unseen_names, twins.leaked),
        "n_unseen_duplicates": int((~twins.reference & ~twins.leaked).sum()),
        "n_train_twins": int((group_sizes[twins.train_group] > 1).sum()),
    }


def flagged(scores: dict[str, dict[str, float]], copies: int) -> bool:
    """A copy of a training image flags the set on its own; else more near copies than unseen
    real images give, in either space (one-sided p < FLAG_P)."""
    return copies > 0 or any(space["near_copies_p"] < FLAG_P for space in scores.values())


def _notes(record: dict[str, Any]) -> list[str]:
    m = record["n_reference"]
    notes = [f"memorisation: the near-copy threshold is the {record['quantile']:.0%} quantile of {m} unseen "
             f"images' distances to their nearest of {record['n_train']} training images"
             + (" (a rough threshold from so few; its p-value allows for it)" if m < 40 else "")
             + "; a nearest-neighbour test is evidence about copying, not a privacy guarantee"]
    notes += [f"{name}: the near-copy threshold is 0 (unseen images that are no twins of a training image "
              f"sit on one in this space): only exact matches count as near copies here"
              for name, scores in record["scores"].items() if scores["threshold"] == 0]
    return notes


def _verdict(record: dict[str, Any]) -> str:
    if not record["flagged"]:
        return "not flagged"
    copies = record.get("twins", {}).get("n_copies", 0)
    copied = "s are copies of training images" if copies > 1 else " is a copy of a training image"
    reasons = [f"{copies} synthetic image{copied}"] if copies else []
    if any(scores["near_copies_p"] < record["flag_p"] for scores in record["scores"].values()):
        reasons.append("more near copies than unseen real images")
    return "FLAGGED: " + " and ".join(reasons)


def _twin_clause(record: dict[str, Any]) -> str:
    twins = record.get("twins", {})
    parts = [f"{twins['n_common']} common synthetic images (twins of training images the unseen rows have "
             f"too) not tested" if twins.get("n_common") else "",
             f"{twins['n_leaked']} unseen rows that duplicate a training image left out of the reference"
             if twins.get("n_leaked") else ""]
    parts = [part for part in parts if part]
    return f"; {'; '.join(parts)}" if parts else ""


def summary_line(record: dict[str, Any]) -> str:
    """One line: the verdict, near copies and authenticity in both spaces, the references, the
    set sizes, and the twins left out."""
    features, pixels = record["scores"]["features"], record["scores"]["pixels"]
    return (f"memorisation {_verdict(record)} ({record['n_synthetic']} synthetic, {record['n_train']} "
            f"training, {record['n_unseen']} unseen {record['unseen_partition']} rows; {record['split']} "
            f"target {record['target']}{_conditional_clause(record)}): near copies "
            f"{features['near_copies']:.1%} in features {record['space_id']} and "
            f"{pixels['near_copies']:.1%} in pixels (unseen reference "
            f"{features['near_copies_unseen']:.1%} / {pixels['near_copies_unseen']:.1%}); authentic "
            f"{features['authenticity']:.1%} / {pixels['authenticity']:.1%} (unseen "
            f"{features['authenticity_unseen']:.1%} / {pixels['authenticity_unseen']:.1%})"
            f"{_twin_clause(record)}")


def _conditional_clause(record: dict[str, Any]) -> str:
    return " of a conditional run" if record.get("conditional") else ""


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown + (f" and {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN else "")


def _twin_lines(record: dict[str, Any]) -> list[str]:
    twins = record["twins"]
    lines = [f"twins:     at most {twins['radius']:g} apart in {twins['distance']}"]
    if twins["n_copies"]:
        lines.append(f"  copies:  {twins['n_copies']} synthetic images are twins of {len(twins['copied'])} "
                     f"training images (each flags the set): {_names(twins['copied'])}")
    if twins["common"]:
        lines.append(f"  common:  {len(twins['common'])} training images have twins among the unseen rows "
                     f"(blank or test images): {_names(twins['common'])}; {twins['n_common']} synthetic "
                     f"twins of them are not copies, and not tested")
    if twins["n_leaked"]:
        lines.append(f"  leaked:  {twins['n_leaked']} unseen {record['unseen_partition']} rows duplicate a "
                     f"training image (leakage; left out of the reference): {_names(twins['leaked'])}")
    if twins["n_unseen_duplicates"] or twins["n_train_twins"]:
        lines.append(f"  also:    {twins['n_unseen_duplicates']} unseen rows left out as twins of another; "
                     f"{twins['n_train_twins']} training rows have a twin among the training rows")
    return lines


def format_memorisation(record: dict[str, Any]) -> str:
    """The terminal table of ``evaluate --memorisation``."""
    lines = [f"synthetic: {record['sets']['fake']['label']}",
             f"training:  {record['sets']['train']['label']}",
             f"unseen:    {record['sets']['real']['label']}",
             f"features:  {record['features']} (id {record['space_id']})",
             f"pixels:    {record['pixels']}",
             *_twin_lines(record),
             f"{'space':<10}{'near copies':>12}{'unseen ref':>11}{'p':>9}{'threshold':>11}"
             f"{'authentic':>11}{'unseen ref':>11}"]
    for name, scores in record["scores"].items():
        lines.append(f"{name:<10}{scores['near_copies']:>12.3f}{scores['near_copies_unseen']:>11.3f}"
                     f"{scores['near_copies_p']:>9.2g}{scores['threshold']:>11.4g}"
                     f"{scores['authenticity']:>11.3f}{scores['authenticity_unseen']:>11.3f}")
    lines.append(f"(n: {record['n_synthetic']} synthetic, {record['n_tested']} tested; {record['n_train']} "
                 f"training; {record['n_unseen']} unseen, {record['n_reference']} in the reference; near "
                 f"copy: no farther from its nearest training image than the reference's "
                 f"{record['quantile']:.0%} quantile, ties included)")
    lines.append(summary_line(record))
    if record.get("pairs"):
        lines.append(f"closest pairs: {record['pairs']}")
    lines += [f"note: {note}" for note in record["notes"]]
    return "\n".join(lines)


def write_record(folder: str | Path, record: dict[str, Any], in_run: bool = False) -> Path:
    """Write ``record`` in a set's folder, or (``in_run``) in its run's folder, where a
    conditional run keeps one record per class."""
    path = Path(folder) / memorisation_files(record_class(record) if in_run else None)[0]
    atomic.write_json(path, record)
    return path


def record_class(record: dict[str, Any]) -> int | None:
    """The class a record's run folder files it under: its target for a conditional run, else None."""
    return int(record["target"]) if record.get("conditional") else None


def recorded(folder: str | Path, sha256: str | None = None,
             target: int | None = None) -> dict[str, Any] | None:
    """The memorisation record in ``folder``; with ``sha256``, only if it is of that generator,
    with ``target``, that class's record of a conditional run's folder."""
    try:
        record = json.loads((Path(folder) / memorisation_files(target)[0]).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or "scores" not in record:
        return None
    if sha256 is not None and (record.get("generator") or {}).get("sha256") != sha256:
        return None
    if target is not None and record.get("target") != target:
        return None
    return record
