"""The tiny study the utility and report tests share: two folds of 40 phantoms at 32 px, each
class's ``tiny`` generator trained one epoch, and a short utility run over both folds.

Built once per test session (``tiny_study`` in conftest.py); a test that changes it works on
``copy_of`` it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from rxwgan.base.layout import LOCK_FILE, UTILITY_FOLDER
from rxwgan.utility.settings import ClassifierSettings, UtilitySettings
from rxwgan.utility.workers import UtilityOptions

SETTINGS = UtilitySettings(repeats=1, control=("swapped",),
                           classifier=ClassifierSettings(size=32, max_epochs=2, patience=1))
LOCAL = UtilityOptions(local=True, workers=1)


def train_study(table: Path, study: Path, folds: tuple[int, ...], group_column: str | None = None,
                **overrides) -> None:
    """Train both class runs of each fold of a 2-fold study, one epoch of the tiny model
    (``group_column``: patient-level folds; ``overrides``: other TrainConfig fields, such as
    another seed)."""
    from rxwgan.data.splits import SplitSpec
    from rxwgan.train.config import TrainConfig
    from rxwgan.train.loop import train

    for fold in folds:
        for target in (0, 1):
            split = SplitSpec(fold=fold, n_splits=2, group_column=group_column)
            train(TrainConfig(input=str(table), output=str(study / f"fold_{fold}" / f"target_{target}"),
                              model="tiny", epochs=1, batch_size=4, n_critic=1,
                              split=split, target=target, save_for_each=10, disp_for_each=10,
                              precision="fp32", cache_dir=str(table.parent / "cache"), progress=False,
                              **overrides), log=lambda _: None)


def build_tiny_study(root: Path) -> Path:
    from rxwgan.data.phantoms import write_demo_data
    from rxwgan.utility.driver import run_utility

    table = write_demo_data(root / "data", n_images=40, size=32, seed=3)
    train_study(table, root / "study", (0, 1))
    run_utility(root / "study", SETTINGS, LOCAL, log=lambda _: None)
    return root / "study"


def copy_of(study: Path, tmp_path: Path) -> Path:
    """A copy of the study (its table stays where the runs recorded it) to change freely."""
    copy = tmp_path / "study"
    shutil.copytree(study, copy)
    return copy


def results_of(study: Path) -> dict[str, bytes]:
    """Every file of the study's utility folder but its lock, by relative path."""
    folder = study / UTILITY_FOLDER
    return {str(path.relative_to(folder)): path.read_bytes() for path in folder.rglob("*")
            if path.is_file() and path.name != LOCK_FILE}
