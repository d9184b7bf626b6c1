"""Writing a synthetic data set from a trained generator, traceable image by image.

Every image is traced to (generator file sha256, seed, latent index); ``synth.sampling`` makes
the latents and images, this module encodes and writes them as they are made, a few threads
overlapping the next batch's forward pass. One process at a time writes a folder
(``base.folder_lock``); what the folder holds and what a re-run reuses is ``synth.set_folder``'s,
mixing the set with a real table ``synth.mixing``'s. A conditional generator (both classes in one
network) samples the class ``target`` names, and has no default one.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from torch import nn

import rxwgan
from rxwgan.base import atomic, folder_lock
from rxwgan.base.devices import resolve_device
from rxwgan.base.errors import RxwganError, require_at_least
from rxwgan.base.layout import (
    CONFIG_FILE,
    MEMORISATION_PAIRS,
    MIXED_TABLE,
    SPLIT_FILE,
    SYNTHETIC_SETTINGS,
    SYNTHETIC_TABLE,
)
from rxwgan.base.progress import progress_bar
from rxwgan.data.table import Table
from rxwgan.models.conditioning import classes_of
from rxwgan.models.files import resolve_model_path
from rxwgan.synth.card import check_card_is_ours, write_card
from rxwgan.synth.memorisation import check_memorisation as check_run
from rxwgan.synth.memorisation import write_record
from rxwgan.synth.mixing import mix_tables
from rxwgan.synth.sampling import (
    LATENT_SCHEME,
    generate_images,
    generation_precision,
    latent_vectors,
    load_generator,
)
from rxwgan.synth.set_folder import FORMATS, TableWriter, finished_rows, relative_path, remove_stale
from rxwgan.train.run_info import RunInfo, read_run, run_of_generator

PER_CLASS_TARGET = 1  # a per-class generator's set is labelled TB unless --target says otherwise
PNG_COMPRESS_LEVEL = 6
WRITER_THREADS = 4  # encoding and fsync-bound writes overlap the next batch's forward pass


# --- encoding ----------------------------------------------------------------------------

def _to_arrays(images: torch.Tensor, fmt: str) -> np.ndarray:
    """[-1, 1] batch -> what each file stores: uint8 / uint16 pixels or float32 in [0, 1]."""
    unit = ((images[:, 0].float() + 1.0) / 2.0).clamp(0.0, 1.0)
    if fmt == "png":
        return (unit * 255.0).round().to(torch.uint8).numpy()
    if fmt == "png16":
        return (unit * 65535.0).round().to(torch.int32).numpy().astype(np.uint16)
    return unit.numpy().astype(np.float32)


def _encode(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    if fmt == "npy":
        np.save(buffer, array, allow_pickle=False)
    else:
        # Pillow writes no timestamp or other varying chunk: same pixels, same bytes. A png16
        # file says (sBIT) that all 16 bits are significant, so a table mixing it with 12-bit
        # X-rays never rescales it by the table's depth.
        info = None
        if fmt == "png16":
            info = PngInfo()
            info.add(b"sBIT", bytes([16]))
        Image.fromarray(array).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL, pnginfo=info)
    return buffer.getvalue()


def _write_image(path: Path, array: np.ndarray, fmt: str) -> str:
    data = _encode(array, fmt)
    atomic.write_bytes(path, data)
    return hashlib.md5(data).hexdigest()


# --- the data set on disk -----------------------------------------------------------------

@dataclass(frozen=True)
class GenerateResult:
    """What a ``generate`` call left in its folder."""

    table: Path
    n: int
    written: int
    kept: int
    image_size: int
    generator_sha256: str
    seconds: float  # writing the images (and mixed.csv), without the memorisation check
    mixed: pd.DataFrame | None = None  # the mixed table, when ``mix`` was given
    card: Path | None = None
    memorisation: dict | None = None  # the check's record, with ``check_memorisation``


def generate(generator: str | os.PathLike, n: int, output: str | os.PathLike, target: int | None = None,
             seed: int = 0, batch_size: int = 64, fmt: str = "png", size: int | None = None,
             overwrite: bool = False, progress: bool = True, mix: Table | None = None,
             ratio: float = 1.0, device: str = "auto", precision: str = "auto",
             weights: str = "ema", check_memorisation: bool = False) -> GenerateResult:
    """Write ``n`` images, ``output/synthetic.csv`` and ``output/CARD.md``; resume a cut run
    of the same settings.

    ``target``: the class a conditional generator samples (it has no default), or the label a
    per-class generator's set gets (PER_CLASS_TARGET by default). Refuses a folder holding a set
    made with other settings (another target included) unless ``overwrite``, and a folder
    another process is generating into. With ``mix``, also writes ``mixed.csv``
    (see ``mix_tables``) while still holding the folder. ``check_memorisation``: compare
    the written images with the training and validation rows of the run the generator
    file lives in (refused before any work when it is in none), record the result in the
    folder and in the run folder, and put it on the card.
    """
    _check_arguments(n, target, seed, batch_size, fmt, size)
    start_time = time.perf_counter()
    folder = Path(output)
    check_card_is_ours(folder)
    source = resolve_model_path(Path(generator)).resolve()
    run = _run_to_check(source) if check_memorisation else None
    where = resolve_device(device)
    module, sha = load_generator(source, where, weights, target)
    target = PER_CLASS_TARGET if target is None else target
    run = run.for_class(target) if run is not None else None
    settings = {"generator_sha256": sha, "seed": seed, "target": target, "format": fmt,
                "size": size or module.image_size, "latent_scheme": LATENT_SCHEME,
                "weights": module.weights, "precision": generation_precision(precision, where),
                **({"conditional": True, "sampled_class": target} if classes_of(module) else {})}
    with folder_lock.hold(folder, "-o"):
        done = {} if overwrite else finished_rows(folder, settings, n)
        remove_stale(folder, {relative_path(i, settings) for i in done})
        atomic.write_json(folder / SYNTHETIC_SETTINGS, {
            **settings, "n": n, "generator_file": source.name,
            "model": module.arch, "model_image_size": module.image_size,
            "latent_dim": module.latent_dim, "rxwgan_version": rxwgan.__version__,
            "torch_version": torch.__version__})
        table = TableWriter(folder / SYNTHETIC_TABLE, settings)
        table.write(done)  # from here on the table lists nothing that is gone
        kept = len(done)
        _write_missing(module, n, folder, settings, batch_size, done, table, progress)
        mixed = None if mix is None else mix_tables(mix, table.path, folder / MIXED_TABLE, ratio)
        seconds = time.perf_counter() - start_time
        record = None
        if run is not None:
            record = check_run(run, table.path, device=where, pairs=folder / MEMORISATION_PAIRS,
                               generator={"file": str(source), "sha256": sha, "weights": module.weights})
            write_record(folder, record)
            write_record(run.folder, record, in_run=True)  # the run's latest check, for its report
        card = write_card(folder, {**settings, "n": n, "model": module.arch,
                                   "model_image_size": module.image_size}, source, record)
    return GenerateResult(table.path, n, n - kept, kept, settings["size"], sha, seconds, mixed, card,
                          record)


def target_of_set(generator: str | os.PathLike, target: int | None) -> int:
    """The target a set of ``generator`` gets: ``target``; without one PER_CLASS_TARGET, but a
    conditional generator has no default class and is refused (one line naming --target)."""
    if target is None:
        load_generator(generator)  # refuses a conditional generator
        return PER_CLASS_TARGET
    return target


def _run_to_check(generator: Path) -> RunInfo:
    """The run whose rows ``--check-memorisation`` compares with, read before any work."""
    run = run_of_generator(generator)
    if run is None:
        raise RxwganError(f"--check-memorisation: {generator} is not in a run folder (no {CONFIG_FILE} and "
                          f"{SPLIT_FILE} beside it), so the rows it was trained on are unknown; use "
                          f"the file in its run folder")
    return read_run(run)


def _write_missing(module: nn.Module, n: int, folder: Path, settings: dict, batch_size: int,
                   done: dict[int, str], table: TableWriter, progress: bool) -> None:
    """Generate and write every index below ``n`` not in ``done``, recording each in ``done``."""
    seed, fmt = settings["seed"], settings["format"]
    bar = progress_bar(total=n, initial=len(done), unit="img", desc="generate", disable=not progress)
    pending: list[tuple[int, Future]] = []
    try:
        with ThreadPoolExecutor(WRITER_THREADS) as pool:
            for start in range(0, n, batch_size):
                missing = [i for i in range(start, min(start + batch_size, n)) if i not in done]
                if not missing:
                    continue
                z = latent_vectors(seed, range(start, start + batch_size), module.latent_dim)
                arrays = _to_arrays(generate_images(module, z, settings["size"], batch_size,
                                                    settings["precision"]), fmt)
                bar.update(_collect(pending, done))
                pending = [(i, pool.submit(_write_image, folder / relative_path(i, settings),
                                           arrays[i - start], fmt)) for i in missing]
                table.write_if_due(done)
            bar.update(_collect(pending, done))
    finally:
        # Also on Ctrl-C or an error: every file finished so far is in the table.
        _collect([(i, f) for i, f in pending if f.done() and not f.exception()], done)
        table.write(done)
        bar.close()


def _check_arguments(n: int, target: int | None, seed: int, batch_size: int, fmt: str,
                     size: int | None) -> None:
    if n < 1:
        raise RxwganError(f"-n must be at least 1, got {n}")
    if target not in (None, 0, 1):
        raise RxwganError(f"--target must be 0 or 1, got {target}")
    if seed < 0:
        raise RxwganError(f"--seed must be 0 or more, got {seed}")
    require_at_least("--batch_size", batch_size, 1)
    if fmt not in FORMATS:
        raise RxwganError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if size is not None and size < 1:
        raise RxwganError(f"--size must be at least 1 pixel, got {size}")


def _collect(pending: list[tuple[int, Future]], done: dict[int, str]) -> int:
    """Wait for written files and record their md5s; return how many."""
    for index, future in pending:
        done[index] = future.result()
    count = len(pending)
    pending.clear()
    return count


