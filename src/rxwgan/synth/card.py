"""``CARD.md``: what a synthetic set is, where it came from, and what is known about it.

Written by ``generate`` beside ``synthetic.csv``, for the person who receives the set: the
generator file's sha256 and, when that file lives in a run folder, the run it came from
(the table's content hash, split, class, training length, model, seed); the metrics the
run recorded for that generator; the memorisation check when one was made; the date and
the versions. Facts only from files; what is unknown says so.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from rxwgan.base.errors import RxwganError
from rxwgan.base.json_files import is_number, read_json
from rxwgan.base.layout import (
    BEST_GENERATOR,
    BEST_RECORD,
    CARD_FILE,
    HISTORY_FILE,
    HISTORY_KEYS,
    RUN_SPACE_RECORD,
)
from rxwgan.synth.memorisation import recorded, summary_line
from rxwgan.train.run_info import RunInfo, read_run, run_of_generator

MARK = "<!-- rxwgan synthetic data card -->"
SHOWN_HISTORY = ("val_kl_rf", "val_js_rf")  # besides the evaluation metrics (kid, precision...)


def check_card_is_ours(folder: Path) -> None:
    """Refuse a folder whose CARD.md someone else wrote: generate would replace it."""
    path = folder / CARD_FILE
    if path.is_file() and not path.read_text(errors="replace").startswith(MARK):
        raise RxwganError(f"{path} was not written by rxwgan and generate writes its card there: "
                          f"move it, or use another -o")


def write_card(folder: Path, settings: dict[str, Any], generator: Path,
               memorisation: dict[str, Any] | None = None) -> Path:
    """Write ``folder/CARD.md`` for the set ``settings`` describes (``generate``'s settings + n)."""
    from rxwgan.base import atomic
    from rxwgan.metrics import versions

    conditional = bool(settings.get("conditional"))
    run_folder = run_of_generator(generator)
    run = read_run(run_folder, settings["target"]) if run_folder is not None else None
    sha = settings["generator_sha256"]
    weights = "moving average (EMA) of the weights" if settings["weights"] == "ema" else "raw trained weights"
    if memorisation is None and run is not None:
        memorisation = recorded(run.folder, sha, settings["target"] if conditional else None)
    lines = [MARK, f"# Synthetic data card: {folder.name}", "",
             f"{settings['n']} synthetic chest X-rays of target {settings['target']}, "
             f"{settings['size']} px, {settings['format']}, listed in synthetic.csv (each row with its "
             f"generator sha256, seed and latent index).", "",
             "## Generator", "",
             f"- file: `{generator}`",
             f"- sha256: `{sha}`",
             f"- model: {settings['model']} ({settings['model_image_size']} px), {weights}",
             *([f"- conditional: one network for both classes, told the class; this set samples class "
                f"{settings['target']}"] if conditional else []),
             f"- latent seed {settings['seed']} ({settings['latent_scheme']}), "
             f"precision {settings['precision']}",
             ""]
    lines += _run_lines(run)
    lines += ["## Metrics recorded for this generator", ""] + _metric_lines(run, generator) + [""]
    lines += ["## Memorisation", ""] + _memorisation_lines(memorisation, run) + [""]
    found = versions(("matplotlib", "pandas"))
    lines += ["## Made", "", f"- {time.strftime('%Y-%m-%d %H:%M:%S %z')} by rxwgan generate",
              "- versions: " + ", ".join(f"{name} {version}" for name, version in found.items()), ""]
    path = folder / CARD_FILE
    atomic.write_text(path, "\n".join(lines))
    return path


def _run_lines(run: RunInfo | None) -> list[str]:
    if run is None:
        return ["## Training run", "", "Unknown: the generator file is not in a run folder (no config.json "
                "and split.csv beside it), so its training data cannot be traced from here.", ""]
    config, record = run.config, run.record
    length = [f"{record.get('epochs', config.epochs)} epochs"]
    if config.kimg is not None:
        length.append(f"{config.kimg:g} kimg")
    if config.gen_steps is not None:
        length.append(f"{config.gen_steps} generator steps")
    return ["## Training run", "",
            f"- run folder: `{run.folder}`",
            f"- table: `{config.input}`, content sha256 `{record.get('table_sha256', 'not recorded')}`",
            f"- split: {run.split.name} ({config.split.scheme}, splitter seed {run.split.seed}); "
            f"{_classes(run)}; {record.get('train_images', '?')} training and "
            f"{record.get('val_images', '?')} validation images",
            f"- training: {', '.join(length)}, batch {config.batch_size}, model "
            f"{record.get('generator', {}).get('arch', config.model)}, EMA half-life "
            f"{config.ema_kimg:g} kimg{' (off)' if not config.ema_kimg else ''}, seed {config.seed}",
            ""]


def _classes(run: RunInfo) -> str:
    """The run's class, or a conditional run's two and the one this set samples."""
    if not run.conditional:
        return f"target {run.target}"
    return f"{run.config.what}, this set of target {run.target}"


def _metric_lines(run: RunInfo | None, generator: Path) -> list[str]:
    """best.json for generator_best; the history at the file's epoch for the others."""
    if run is None:
        return ["None known (no run folder)."]
    space = read_json(run.folder / RUN_SPACE_RECORD).get("id")
    in_space = f" (feature space {space})" if space else ""
    name = generator.name
    if name == BEST_GENERATOR:
        best = read_json(run.folder / BEST_RECORD)
        if is_number(best.get("kid")):
            return [f"- lowest validation KID {best['kid']:.5g} at epoch {best.get('epoch')}"
                    f" (best.json; feature space {best.get('space_id')})"]
        return ["None: best.json records no KID."]
    history = read_json(run.folder / HISTORY_FILE)
    match = re.fullmatch(r"generator_epoch_(\d+)\.safetensors", name)
    epochs = len(next(iter(history.values()), [])) if history else 0
    epoch = int(match.group(1)) if match else epochs
    keys = [*SHOWN_HISTORY, *(key for key in history if key not in HISTORY_KEYS)]
    found = []
    for key in keys:
        values = history.get(key, [])
        value = values[epoch - 1] if 0 < epoch <= len(values) else None
        if is_number(value):
            found.append(f"- {key}: {value:.5g}" + (in_space if key not in SHOWN_HISTORY else
                                                    " (validation rows, intensity histograms)"))
    if not found:
        return [f"None recorded at epoch {epoch} (history.json)."]
    return [f"At epoch {epoch} of the run's history.json:", *found]


def _memorisation_lines(record: dict[str, Any] | None, run: RunInfo | None) -> list[str]:
    if record is None and run is None:
        return ["Not computed: the generator is not in a run folder, so its training rows are unknown."]
    if record is None:
        return [f"Not computed (`rxwgan generate --check-memorisation`, or `rxwgan evaluate "
                f"--memorisation {run.folder}`, computes it)."]
    features, pixels = record["scores"]["features"], record["scores"]["pixels"]
    return [summary_line(record), "",
            "| space | near copies | unseen reference | p | authentic | unseen reference |",
            "| --- | --- | --- | --- | --- | --- |",
            *(f"| {name} | {s['near_copies']:.3f} | {s['near_copies_unseen']:.3f} | {s['near_copies_p']:.2g} "
              f"| {s['authenticity']:.3f} | {s['authenticity_unseen']:.3f} |"
              for name, s in (("features " + record["space_id"], features), ("pixels", pixels))),
            "",
            f"Sets: {record['n_synthetic']} synthetic ({record['sets']['fake']['label']}), "
            f"{record['n_train']} training and {record['n_unseen']} unseen real images of the run, "
            f"checked {record['date']}. A near copy is no farther from its nearest training "
            f"image than the unseen real images' {record['quantile']:.0%} quantile (their own share is "
            f"the reference; p: the chance of as many near copies from unseen real images). This is "
            f"evidence about copying, not a privacy guarantee."]
