"""Which classifier results may be used: each result file carries what it depends on.

A result depends on the task (fold, condition, ratio, seed), on the settings that shape
one training (the classifier's, the weights asked for, the stopping share) and on the
fold's inputs (the table's fingerprint, the partition, and per class its generator's sha256
and the weights it gave: a conditional run's one file is there under each class it is bound
to, so a key tells it from per-class generators). The last two are hashed into the task's *key*, a folder of
``utility/runs/<split>/``: results of other settings or of earlier generators stay beside
the current ones, untouched, and are never read as theirs. ``read_result`` accepts a file
only when every dependency it records matches.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rxwgan.base.layout import UTILITY_RUNS_FOLDER
from rxwgan.models.files import stored_weights
from rxwgan.utility.plan import FoldInputs, UtilityTask
from rxwgan.utility.settings import UtilitySettings

METRICS = ("auc", "sp_index", "sens_at_spec90", "spec_at_sens90")
CSV_COLUMNS = ["split", "condition", "ratio", "seed", *METRICS, "sp_threshold", "n_test", "n_positive",
               "n_fit_real", "n_fit_synthetic", "n_stop"]
RESULT_KEYS = (*CSV_COLUMNS, "seconds", "test_labels", "test_scores", "depends")  # what is read back
DIGEST_CHARACTERS = 10  # of each half of a key: settings, then inputs


@dataclass(frozen=True)
class FoldKey:
    """What one fold's results depend on, and its key: ``<settings digest>-<inputs digest>``."""

    depends: dict[str, Any]

    @property
    def key(self) -> str:
        return f"{_digest(self.depends['settings'])}-{_digest(self.depends['inputs'])}"

    @property
    def settings_digest(self) -> str:
        return _digest(self.depends["settings"])


def fold_key(settings: UtilitySettings, fold: FoldInputs) -> FoldKey:
    """The dependencies of ``fold``'s results under ``settings``; a generator's weights are what
    its file holds, not what was asked (one trained with --ema_kimg 0 has no moving average)."""
    shaping = {"classifier": settings.to_dict()["classifier"], "weights": settings.weights,
               "stop_share": settings.stop_share}
    inputs = {"table_sha256": fold.table_sha256, "split": fold.split.to_dict(),
              "test_partition": fold.test_partition,
              "generators": {str(t): {"sha256": fold.generator_sha256[t],
                                      "weights": stored_weights(path, settings.weights)}
                             for t, path in sorted(fold.generators.items())}}
    return FoldKey({"settings": shaping, "inputs": inputs})


def _digest(part: dict[str, Any]) -> str:
    text = json.dumps(part, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARACTERS]


def read_result(out: Path, task: UtilityTask, depends: dict[str, Any]) -> dict[str, Any] | None:
    """``task``'s finished result in the utility folder ``out``; None when it is missing, cut
    short, or not made for this task and these dependencies (a damaged file is never counted:
    it is run again)."""
    try:
        record = json.loads((out / task.path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or any(key not in record for key in RESULT_KEYS):
        return None
    if record["depends"] != depends:
        return None
    return record if all(record.get(key) == value for key, value in task.to_dict().items()) else None


@dataclass(frozen=True)
class SetAside:
    """Result files of a split kept on disk but not used: made with other generators (or
    another table) under the current settings, or under other settings."""

    stale: int
    other_settings: int


def set_aside(out: Path, split: str, current: FoldKey) -> SetAside:
    """Count the result files under ``runs/<split>/`` that are not of ``current``'s key."""
    folder = out / UTILITY_RUNS_FOLDER / split
    stale = other = 0
    for path in _result_files(folder):
        key = path.parent.name if path.parent != folder else ""
        if key == current.key:
            continue
        if key.startswith(f"{current.settings_digest}-"):
            stale += 1
        else:
            other += 1
    return SetAside(stale, other)


def _result_files(folder: Path) -> Iterable[Path]:
    """Result files by their names (``<condition>_x<ratio>_seed<seed>.json``), in key folders
    or, as written before keys, in the split's folder; a user's own files are not counted."""
    return [*folder.glob("*/*_seed*.json"), *folder.glob("*_seed*.json")]
