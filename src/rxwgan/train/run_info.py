"""What a run folder says about itself: its settings, its rows, the images its generator saw.

Read from the run's own ``config.json`` and ``split.csv`` (the table's rows with the
partition each was in), never guessed from flags: ``split.csv`` names every image with a
path that resolves from the run folder, so the rows are found even if the original table
moved. A generator file inside a run folder is traced back to its run here.

A per-class run reads the rows of its own class. A conditional run learned both classes, so
what reads its rows names the class first (``for_class``): its ``config.target`` means nothing.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rxwgan.base.errors import RxwganError
from rxwgan.base.layout import CONFIG_FILE, PARTITION_COLUMN, SPLIT_FILE
from rxwgan.data.splits import SplitSpec
from rxwgan.train.config import TrainConfig


@dataclass
class RunInfo:
    """One run folder's record: ``config.json`` as written, and its settings as a TrainConfig;
    ``chosen``: the class a conditional run's rows are read of (None until ``for_class``)."""

    folder: Path
    record: dict[str, Any]
    config: TrainConfig
    chosen: int | None = None

    @property
    def image_size(self) -> int:
        """The generator's size: what its training images were resized to."""
        return int(self.record["image_size"])

    @property
    def conditional(self) -> bool:
        return self.config.conditional

    @property
    def target(self) -> int:
        """The class whose rows this reads: a per-class run's own, a conditional run's chosen one."""
        if not self.conditional:
            return self.config.target
        if self.chosen is None:
            raise RxwganError(f"{self.folder} is a conditional run (both classes): give the class to "
                              f"compare with, --target 0 or 1")
        return self.chosen

    def for_class(self, target: int | None) -> RunInfo:
        """This run reading the rows of class ``target``: a conditional run's choice (None: as it
        is); a per-class run always reads its own class, as its generator only makes that one."""
        if not self.conditional or target is None:
            return self
        if target not in self.config.classes:
            raise RxwganError(f"--target {target}: {self.folder} learned targets "
                              f"{' and '.join(map(str, self.config.classes))}")
        return dataclasses.replace(self, chosen=target)

    @property
    def split(self) -> SplitSpec:
        return self.config.split

    @property
    def split_csv(self) -> Path:
        return self.folder / SPLIT_FILE

    def rows(self, partition: str) -> np.ndarray:
        """Positions in ``split.csv`` of this run's class in ``partition`` (train, val, test)."""
        table = self._table()
        labels = table.frame[PARTITION_COLUMN].astype(str).to_numpy()
        return np.flatnonzero((labels == partition) & (table.targets == self.target))

    def names(self, partition: str) -> list[str]:
        """How pictures name the rows of ``partition``: their image_ID, else their row label."""
        table = self._table()
        column = table.frame["image_ID"] if "image_ID" in table.frame.columns else None
        return [str(column.iloc[i]) if column is not None else table.row_label(i)
                for i in self.rows(partition)]

    def images(self, partition: str, cache_dir: str | Path | None = None) -> Any:
        """The class's rows of ``partition`` as an ``ImageSet`` at the generator's size,
        decoded as training decoded them (the run's cache folder and bit depth)."""
        from rxwgan.data.cache import ImageCache
        from rxwgan.metrics.sources import ImageSet

        positions = self.rows(partition)
        what = f"{self.split.name} {partition} rows of target {self.target}"
        if len(positions) < 2:
            raise RxwganError(f"{self.split_csv}: {len(positions)} {what}; at least 2 are needed")
        cache = ImageCache(cache_dir if cache_dir is not None else self.config.cache_dir)
        images = cache.load_rows(self._table(), self.image_size, positions, progress=False,
                                 bit_depth=self.config.bit_depth)
        info = {"kind": "run rows", "run": str(self.folder), "split": self.split.name,
                "partition": partition, "target": self.target, "rows": len(positions),
                "size": self.image_size}
        return ImageSet(torch.from_numpy(images), f"{self.folder.name}: {len(positions)} {what} "
                        f"(from {SPLIT_FILE}) at {self.image_size} px", info)

    def space_config(self) -> TrainConfig:
        """The run's settings reading its rows from ``split.csv`` (same rows, same order)."""
        return dataclasses.replace(self.config, input=str(self.split_csv))

    def _table(self) -> Any:
        from rxwgan.data.table import read_table

        table = read_table(self.split_csv, self.config.path_column, self.config.target_column,
                           check_files=False)
        if PARTITION_COLUMN not in table.frame.columns:
            raise RxwganError(f"{self.split_csv}: no {PARTITION_COLUMN!r} column (not a run's split)")
        return table


def read_run(folder: str | Path, target: int | None = None) -> RunInfo:
    """The run in ``folder`` (a conditional one reading class ``target``: ``for_class``); one
    line naming what is missing when it is not a run folder."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise RxwganError(f"{folder}: no such run folder")
    config_file, split_file = folder / CONFIG_FILE, folder / SPLIT_FILE
    missing = [path.name for path in (config_file, split_file) if not path.is_file()]
    if missing:
        raise RxwganError(f"{folder}: not a run folder ({' and '.join(missing)} missing; "
                          f"rxwgan train writes both)")
    try:
        record = json.loads(config_file.read_text())
        config = TrainConfig.from_dict(record["config"])
        int(record["image_size"])
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise RxwganError(f"{config_file}: not a run's config ({type(exc).__name__}: {exc})") from None
    return RunInfo(folder.resolve(), record, config).for_class(target)


def run_of_generator(path: str | Path) -> Path | None:
    """The run folder a generator file lives in, or None when it is not in one."""
    from rxwgan.models.files import resolve_model_path

    folder = resolve_model_path(Path(path)).resolve().parent
    if (folder / CONFIG_FILE).is_file() and (folder / SPLIT_FILE).is_file():
        return folder
    return None
