"""A synthetic set's folder: the images it lists, and what a re-run of the same settings reuses.

``synthetic.csv`` lists every finished image with its md5 and provenance (generator sha256,
seed, latent index); ``synthetic.json`` the settings that made them. A re-run keeps the images
that are intact and listed under the same settings, and removes only files an earlier run
recorded (never the user's own), so after a run the folder holds exactly what its table lists.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pandas as pd

from rxwgan.base import atomic
from rxwgan.base.errors import RxwganError
from rxwgan.base.layout import (
    CARD_FILE,
    MEMORISATION_PAIRS,
    MEMORISATION_RECORD,
    MIXED_TABLE,
    SYNTHETIC_IMAGES,
    SYNTHETIC_SETTINGS,
    SYNTHETIC_TABLE,
)
from rxwgan.data.table import TABLE_COLUMNS, md5_of_file, write_frame
from rxwgan.synth.memorisation import recorded

FORMATS = {"png": ".png", "png16": ".png", "npy": ".npy"}
SYNTHETIC_COLUMNS = ["synthetic", "generator_sha256", "seed", "latent_index"]
IMAGE_NAME = re.compile(r"synthetic_\d+_\d{6,}\.(?:png|npy)")  # image_name()'s, and only those
TABLE_EVERY_S = 2.0  # the table is rewritten at most this often during a run, and at the end
TABLE_SHARE = 0.1  # ... and for a huge N, no more than this share of the run's time


def image_name(target: int, index: int, fmt: str) -> str:
    return f"synthetic_{target}_{index:06d}{FORMATS[fmt]}"


def relative_path(index: int, settings: dict) -> str:
    return f"{SYNTHETIC_IMAGES}/{image_name(settings['target'], index, settings['format'])}"


class TableWriter:
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
        write_frame(table_frame(done, self.settings), self.path)
        self.last = time.monotonic()
        self.cost = self.last - start


def table_frame(done: dict[int, str], settings: dict) -> pd.DataFrame:
    """The users' table columns plus the provenance of each synthetic image."""
    indices = sorted(done)
    paths = [relative_path(i, settings) for i in indices]
    return pd.DataFrame({
        "target": settings["target"], "image_ID": [Path(p).stem for p in paths],
        "raw_image_path": paths, "raw_image_md5": [done[i] for i in indices], "age": None,
        "sex": None, "comment": "synthetic", "synthetic": 1,
        "generator_sha256": settings["generator_sha256"], "seed": settings["seed"],
        "latent_index": indices}, columns=TABLE_COLUMNS + SYNTHETIC_COLUMNS)


def finished_rows(folder: Path, settings: dict, n: int) -> dict[int, str]:
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
    expected = relative_path(index, settings)
    path = folder / expected
    return (record["raw_image_path"] == expected
            and record["generator_sha256"] == settings["generator_sha256"]
            and path.is_file() and md5_of_file(path) == record["raw_image_md5"])


def remove_stale(folder: Path, keep: set[str]) -> None:
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
        recorded |= {relative_path(i, previous) for i in range(int(previous.get("n", 0)))}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        pass  # no settings, or not ours: the table alone says what is ours
    try:
        recorded |= set(pd.read_csv(folder / SYNTHETIC_TABLE, usecols=["raw_image_path"], dtype=str,
                                    keep_default_na=False)["raw_image_path"])
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        pass
    prefix = f"{SYNTHETIC_IMAGES}/"
    return {p for p in recorded if p.startswith(prefix) and IMAGE_NAME.fullmatch(p[len(prefix):])}
