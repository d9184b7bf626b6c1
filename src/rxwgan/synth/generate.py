"""Synthetic data sets from a trained generator, traceable image by image.

Every image is traced to (generator file sha256, seed, latent index); ``synth.sampling`` makes
the latents and images, this module the folder. Files are written as
they are made; ``synthetic.csv`` lists the finished ones (with md5s), so a re-run keeps what
is intact and writes only the rest.

The folder holds one set, written by one process at a time (``base.folder_lock``). A run first
removes the images an earlier run recorded (its table, or its settings' N) that it does not
keep, and any temporary file a killed run left, so after a run the folder holds exactly the
images its table lists, besides the user's own files.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
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
    CARD_FILE,
    MEMORISATION_PAIRS,
    MEMORISATION_RECORD,
    MIXED_TABLE,
    SYNTHETIC_IMAGES,
    SYNTHETIC_SETTINGS,
    SYNTHETIC_TABLE,
)
from rxwgan.base.progress import progress_bar
from rxwgan.data.table import TABLE_COLUMNS, Table, md5_of_file, read_table, write_frame
from rxwgan.models.files import resolve_model_path
from rxwgan.synth.card import check_card_is_ours, write_card
from rxwgan.synth.memorisation import check_memorisation as check_run
from rxwgan.synth.memorisation import recorded, write_record
from rxwgan.synth.sampling import (
    LATENT_SCHEME,
    generate_images,
    generation_precision,
    latent_vectors,
    load_generator,
)
from rxwgan.train.run_info import read_run, run_of_generator

FORMATS = {"png": ".png", "png16": ".png", "npy": ".npy"}
SYNTHETIC_COLUMNS = ["synthetic", "generator_sha256", "seed", "latent_index"]
IMAGE_NAME = re.compile(r"synthetic_\d+_\d{6,}\.(?:png|npy)")  # image_name()'s, and only those
PNG_COMPRESS_LEVEL = 6
TABLE_EVERY_S = 2.0  # the table is rewritten at most this often during a run, and at the end
TABLE_SHARE = 0.1  # ... and for a huge N, no more than this share of the run's time
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


def image_name(target: int, index: int, fmt: str) -> str:
    return f"synthetic_{target}_{index:06d}{FORMATS[fmt]}"


def generate(generator: str | os.PathLike, n: int, output: str | os.PathLike, target: int = 1,
             seed: int = 0, batch_size: int = 64, fmt: str = "png", size: int | None = None,
             overwrite: bool = False, progress: bool = True, mix: Table | None = None,
             ratio: float = 1.0, device: str = "cpu", precision: str = "auto",
             weights: str = "ema", check_memorisation: bool = False) -> GenerateResult:
    """Write ``n`` images, ``output/synthetic.csv`` and ``output/CARD.md``; resume a cut run
    of the same settings.

    Refuses a folder holding a set made with other settings unless ``overwrite``, and a
    folder another process is generating into. With ``mix``, also writes ``mixed.csv``
    (see ``mix_tables``) while still holding the folder. ``check_memorisation``: compare
    the written images with the training and validation rows of the run the generator
    file lives in (refused before any work when it is in none), record the result in the
    folder and in the run folder, and put it on the card.
    """
    _check_arguments(n, target, seed, batch_size, fmt, size)
    start_time = time.perf_counter()
    folder = Path(output)
    check_card_is_ours(folder)
    run = _run_to_check(generator) if check_memorisation else None
    where = resolve_device(device)
    module, sha = load_generator(generator, where, weights)
    settings = {"generator_sha256": sha, "seed": seed, "target": target, "format": fmt,
                "size": size or module.image_size, "latent_scheme": LATENT_SCHEME,
                "weights": module.weights, "precision": generation_precision(precision, where)}
    with folder_lock.hold(folder, "-o"):
        done = {} if overwrite else _finished_rows(folder, settings, n)
        _remove_stale(folder, {_relative_path(i, settings) for i in done})
        atomic.write_json(folder / SYNTHETIC_SETTINGS, {
            **settings, "n": n, "generator_file": resolve_model_path(Path(generator)).name,
            "model": module.arch, "model_image_size": module.image_size,
            "latent_dim": module.latent_dim, "rxwgan_version": rxwgan.__version__,
            "torch_version": torch.__version__})
        table = _TableWriter(folder / SYNTHETIC_TABLE, settings)
        table.write(done)  # from here on the table lists nothing that is gone
        kept = len(done)
        _write_missing(module, n, folder, settings, batch_size, done, table, progress)
        mixed = None if mix is None else mix_tables(mix, table.path, folder / MIXED_TABLE, ratio)
        seconds = time.perf_counter() - start_time
        source = resolve_model_path(Path(generator)).resolve()
        record = None
        if run is not None:
            record = check_run(run, table.path, device=where, pairs=folder / MEMORISATION_PAIRS,
                               generator={"file": str(source), "sha256": sha, "weights": module.weights})
            write_record(folder, record)
            write_record(run, record)  # the run's latest check, for its report
        card = write_card(folder, {**settings, "n": n, "model": module.arch,
                                   "model_image_size": module.image_size}, source, record)
    return GenerateResult(table.path, n, n - kept, kept, settings["size"], sha, seconds, mixed, card,
                          record)


def _run_to_check(generator: str | os.PathLike) -> Path:
    """The run folder whose rows ``--check-memorisation`` compares with, checked before any work."""
    run = run_of_generator(generator)
    if run is None:
        raise RxwganError(f"--check-memorisation: {generator} is not in a run folder (no config.json and "
                          f"split.csv beside it), so the rows it was trained on are unknown; use "
                          f"the file in its run folder")
    read_run(run)
    return run


def _write_missing(module: nn.Module, n: int, folder: Path, settings: dict, batch_size: int,
                   done: dict[int, str], table: _TableWriter, progress: bool) -> None:
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
                pending = [(i, pool.submit(_write_image, folder / _relative_path(i, settings),
                                           arrays[i - start], fmt)) for i in missing]
                table.write_if_due(done)
            bar.update(_collect(pending, done))
    finally:
        # Also on Ctrl-C or an error: every file finished so far is in the table.
        _collect([(i, f) for i, f in pending if f.done() and not f.exception()], done)
        table.write(done)
        bar.close()


def _remove_stale(folder: Path, keep: set[str]) -> None:
    """Delete the earlier set's images not in ``keep`` and killed writers' temporary files.

    Only files rxwgan recorded are touched: those the earlier table lists and those its
    settings say it was writing, named as ``image_name`` names them. A mixed table goes too
    when an image goes, as it may list that image.
    """
    removed = False
    for relative in sorted(_recorded_images(folder) - keep):
        path = folder / relative
        if path.is_file():
            path.unlink()
            removed = True
    if removed:
        (folder / MIXED_TABLE).unlink(missing_ok=True)
    if recorded(folder) is not None:  # an earlier set's check: this run makes its own, or none
        (folder / MEMORISATION_RECORD).unlink()
        (folder / MEMORISATION_PAIRS).unlink(missing_ok=True)
    own_files = {SYNTHETIC_TABLE, SYNTHETIC_SETTINGS, MIXED_TABLE, CARD_FILE, MEMORISATION_RECORD,
                 MEMORISATION_PAIRS}
    for path in [*folder.glob(".*"), *(folder / SYNTHETIC_IMAGES).glob(".*")]:
        target = atomic.temporary_target(path.name) or ""
        ours = target in own_files if path.parent == folder else IMAGE_NAME.fullmatch(target)
        if ours and path.is_file():
            path.unlink()


def _recorded_images(folder: Path) -> set[str]:
    """Image paths (relative to ``folder``) an earlier run listed or was writing."""
    recorded: set[str] = set()
    try:
        previous = json.loads((folder / SYNTHETIC_SETTINGS).read_text())
        recorded |= {_relative_path(i, previous) for i in range(int(previous.get("n", 0)))}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        pass  # no settings, or not ours: the table alone says what is ours
    try:
        recorded |= set(pd.read_csv(folder / SYNTHETIC_TABLE, usecols=["raw_image_path"], dtype=str,
                                    keep_default_na=False)["raw_image_path"])
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        pass
    prefix = f"{SYNTHETIC_IMAGES}/"
    return {p for p in recorded if p.startswith(prefix) and IMAGE_NAME.fullmatch(p[len(prefix):])}


def _check_arguments(n: int, target: int, seed: int, batch_size: int, fmt: str,
                     size: int | None) -> None:
    if n < 1:
        raise RxwganError(f"-n must be at least 1, got {n}")
    if target not in (0, 1):
        raise RxwganError(f"--target must be 0 or 1, got {target}")
    if seed < 0:
        raise RxwganError(f"--seed must be 0 or more, got {seed}")
    require_at_least("--batch_size", batch_size, 1)
    if fmt not in FORMATS:
        raise RxwganError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if size is not None and size < 1:
        raise RxwganError(f"--size must be at least 1 pixel, got {size}")


def _relative_path(index: int, settings: dict) -> str:
    return f"{SYNTHETIC_IMAGES}/{image_name(settings['target'], index, settings['format'])}"


def _collect(pending: list[tuple[int, Future]], done: dict[int, str]) -> int:
    """Wait for written files and record their md5s; return how many."""
    for index, future in pending:
        done[index] = future.result()
    count = len(pending)
    pending.clear()
    return count


class _TableWriter:
    """Rewrites ``synthetic.csv`` from {latent index: md5}, during a run only when due."""

    def __init__(self, path: Path, settings: dict) -> None:
        self.path = path
        self.settings = settings
        self.last = time.monotonic()
        self.cost = 0.0

    def write_if_due(self, done: dict[int, str]) -> None:
        if time.monotonic() - self.last >= max(TABLE_EVERY_S, self.cost / TABLE_SHARE):
            self.write(done)

    def write(self, done: dict[int, str]) -> None:
        start = time.monotonic()
        write_frame(_table_frame(done, self.settings), self.path)
        self.last = time.monotonic()
        self.cost = self.last - start


def _table_frame(done: dict[int, str], settings: dict) -> pd.DataFrame:
    """The users' table columns plus the provenance of each synthetic image."""
    indices = sorted(done)
    paths = [_relative_path(i, settings) for i in indices]
    return pd.DataFrame({
        "target": settings["target"], "image_ID": [Path(p).stem for p in paths],
        "raw_image_path": paths, "raw_image_md5": [done[i] for i in indices], "age": None,
        "sex": None, "comment": "synthetic", "synthetic": 1,
        "generator_sha256": settings["generator_sha256"], "seed": settings["seed"],
        "latent_index": indices}, columns=TABLE_COLUMNS + SYNTHETIC_COLUMNS)


def _finished_rows(folder: Path, settings: dict, n: int) -> dict[int, str]:
    """{latent index: md5} of an earlier run's files that are intact (same settings, index < n)."""
    table, saved = folder / SYNTHETIC_TABLE, folder / SYNTHETIC_SETTINGS
    if not table.exists() and not saved.exists():
        return {}
    try:
        previous = json.loads(saved.read_text())
    except (OSError, ValueError):
        raise RxwganError(f"{folder} holds {table.name} but no readable {saved.name} (not made by "
                          f"rxwgan generate?); pass --overwrite to replace it") from None
    changed = [f"{key} {previous.get(key)!r} (now {value!r})" for key, value in settings.items()
               if previous.get(key) != value]
    if changed:
        raise RxwganError(f"{folder} holds synthetic images made with other settings: "
                          f"{', '.join(changed)}; pass --overwrite or use another folder")
    if not table.exists():
        return {}
    try:
        frame = pd.read_csv(table, keep_default_na=False, dtype={"raw_image_md5": str})
        records = frame.to_dict("records")
        done = {}
        for record in records:
            index = int(record["latent_index"])
            if index < n and _intact(folder, record, index, settings):
                done[index] = record["raw_image_md5"]
    except (KeyError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise RxwganError(f"{table}: not a synthetic table ({exc}); pass --overwrite to "
                          f"replace it") from None
    return done


def _intact(folder: Path, record: dict, index: int, settings: dict) -> bool:
    expected = _relative_path(index, settings)
    path = folder / expected
    return (record["raw_image_path"] == expected
            and record["generator_sha256"] == settings["generator_sha256"]
            and path.is_file() and md5_of_file(path) == record["raw_image_md5"])


# --- mixing with a real table -----------------------------------------------------------

def synthetic_needed(real: Table, target: int, ratio: float) -> int:
    """How many synthetic images of ``target`` give ``ratio`` per real row of that target."""
    if ratio < 0:
        raise RxwganError(f"--ratio must be 0 or more, got {ratio}")
    return math.floor(ratio * int((real.targets == target).sum()) + 0.5)  # half up, not to even


def mix_tables(real: Table | str | os.PathLike, synthetic_csv: str | os.PathLike,
               out_csv: str | os.PathLike, ratio: float = 1.0) -> pd.DataFrame:
    """Write real rows (``synthetic=0``) plus ``ratio`` synthetic rows per real row of each
    target the synthetic set holds (lowest latent indices first); paths resolve from
    ``out_csv``'s folder. Refuses when the synthetic set is too small.
    """
    if not isinstance(real, Table):
        real = read_table(real)
    synthetic = read_table(synthetic_csv)
    out_dir = Path(out_csv).resolve().parent
    if "synthetic" in real.frame.columns and (
            pd.to_numeric(real.frame["synthetic"], errors="coerce") == 1).any():
        raise RxwganError(f"{real.source}: already holds synthetic rows (synthetic=1); "
                          f"mix a table of real images")
    real_rows = real.frame.reset_index(drop=True)
    real_rows[real.path_column] = real.paths_from(out_dir)
    real_rows["synthetic"] = 0
    fake_rows = synthetic.frame.assign(raw_image_path=synthetic.paths_from(out_dir))
    chosen = []
    for target in sorted(set(synthetic.targets.tolist())):
        need = synthetic_needed(real, target, ratio)
        rows = fake_rows[synthetic.targets == target]
        if need > len(rows):
            count = int((real.targets == target).sum())
            raise RxwganError(f"--ratio {ratio:g} needs {need} synthetic target-{target} images for "
                              f"{count} real rows, {synthetic.source} lists {len(rows)}; "
                              f"generate with -n {need}")
        chosen.append(rows.sort_values("latent_index").head(need))
    fake = pd.concat(chosen).rename(columns={"raw_image_path": real.path_column,
                                             "target": real.target_column})
    columns = list(real_rows.columns) + [c for c in fake.columns if c not in real_rows.columns]
    mixed = pd.concat([real_rows, fake], ignore_index=True)[columns]
    for column in ("synthetic", "seed", "latent_index"):  # empty for real rows, never "3.0"
        mixed[column] = mixed[column].astype("Int64")
    write_frame(mixed, out_csv, index=real.has_index_column)
    return mixed
