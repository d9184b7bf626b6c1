"""What decides a ``utility`` result besides the study: the plan's and the classifier's settings.

Apart from the modules that train, so that the command line reads these defaults (and
``rxwgan utility --help`` states them) without importing torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from rxwgan.base.errors import RxwganError

CONTROLS = ("swapped", "duplicated")
# Which runs of a split give its generators (``utility --runs``): a run per class, or its one
# conditional run; ``auto`` takes the only kind the study holds.
AUTO, PER_CLASS, CONDITIONAL = "auto", "per-class", "conditional"
RUN_KINDS = (AUTO, PER_CLASS, CONDITIONAL)


@dataclass(frozen=True)
class ClassifierSettings:
    """How the classifier is built and trained; the defaults train ~100 images in 10-20 s on one core."""

    size: int = 64  # images are resized to this before the classifier
    max_epochs: int = 60
    patience: int = 10  # stop after this many epochs in a row without a better stop score
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    width: int = 16  # channels of the first block; each later block doubles them
    blocks: int = 4  # each halves the resolution: 64 px ends at 4 x 4 before pooling
    max_shift: float = 0.0625  # largest random translation, as a fraction of the side
    monitor: str = "auc"  # the stop rows' "auc" (ties: lower loss) or "loss" chooses the epoch

    def check(self) -> None:
        for name in ("size", "max_epochs", "patience", "batch_size", "width", "blocks"):
            if getattr(self, name) < 1:
                raise RxwganError(f"classifier: {name} must be at least 1, not {getattr(self, name)}")
        if self.size < 2 ** self.blocks:
            raise RxwganError(f"classifier: size {self.size} is too small for {self.blocks} blocks "
                              f"(each halves it); use at least {2 ** self.blocks} px")
        if self.monitor not in ("auc", "loss"):
            raise RxwganError(f"classifier: monitor must be auc or loss, not {self.monitor!r}")
        if self.lr <= 0 or self.weight_decay < 0 or not 0 <= self.max_shift < 0.5:
            raise RxwganError("classifier: lr must be > 0, weight_decay >= 0 and max_shift within 0..0.5")


@dataclass(frozen=True)
class UtilitySettings:
    """Everything that decides a ``utility`` result besides the study itself."""

    ratios: tuple[float, ...] = (1.0,)
    repeats: int = 3
    seed: int = 0
    control: tuple[str, ...] = ()  # controls to train too: swapped, duplicated
    weights: str = "ema"  # the generators' moving average, or "raw"
    stop_share: float = 0.2  # of the fold's real training rows, kept for early stopping
    classifier: ClassifierSettings = field(default_factory=ClassifierSettings)

    def check(self) -> None:
        self.classifier.check()
        if not self.ratios or any(not 0 < r <= 100 for r in self.ratios):
            raise RxwganError(f"--ratio: each ratio must be above 0 and at most 100, not "
                              f"{','.join(f'{r:g}' for r in self.ratios) or 'none'}")
        if len(set(self.ratios)) != len(self.ratios):
            raise RxwganError("--ratio: a ratio is listed twice")
        if self.repeats < 1:
            raise RxwganError(f"--repeats must be at least 1, not {self.repeats}")
        unknown = [name for name in self.control if name not in CONTROLS]
        if unknown or len(set(self.control)) != len(self.control):
            raise RxwganError(f"--control: each of {', '.join(CONTROLS)} at most once, not "
                              f"{','.join(self.control)}")
        if self.weights not in ("ema", "raw"):
            raise RxwganError(f"--weights must be ema or raw, not {self.weights!r}")
        if not 0.05 <= self.stop_share <= 0.5:
            raise RxwganError(f"--stop_share must be within 0.05..0.5, not {self.stop_share}")

    @property
    def seeds(self) -> list[int]:
        return [self.seed + k for k in range(self.repeats)]

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ratios": list(self.ratios), "control": list(self.control)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UtilitySettings:
        control = data.get("control") or ()  # one name or none, as recorded before a list
        return cls(**{**data, "ratios": tuple(data["ratios"]),
                      "control": (control,) if isinstance(control, str) else tuple(control),
                      "classifier": ClassifierSettings(**data["classifier"])})
