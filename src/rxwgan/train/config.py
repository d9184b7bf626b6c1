"""One typed config per training run, saved beside its outputs as ``config.json``."""

from __future__ import annotations

import dataclasses
import math
import platform
from dataclasses import dataclass
from typing import Any

from rxwgan import __version__
from rxwgan.base.errors import RxwganError, require_at_least
from rxwgan.data.images import check_bit_depth
from rxwgan.data.splits import DEFAULT_SEED, SplitSpec

PRECISIONS = ("auto", "fp32", "bf16")
CLASS_BALANCES = ("balanced", "table")  # a conditional run's batches: half each class, or the table's mix
TARGETS = (0, 1)  # the classes of a table; a conditional network takes both
INITS = ("standard", "keras")
DEFAULT_MODEL = "resnet128"  # a fresh run's network: the ResNet WGAN-GP, at v1's 128 px
KERAS_MODEL = "v1"  # what the old tool's create_models.py and run_wgangp.py build
# The old tool's per-pair histogram metrics need two images in every batch.
MIN_BATCH_SIZE = 2

# Fields that change what a run computes: resuming with any of them changed is refused. The
# table is compared by content (run_folder) and the architecture by what the run built.
IDENTITY_FIELDS = ("target", "split", "seed", "batch_size", "init", "augment", "ema_kimg", "n_critic",
                   "lr", "betas", "gp_weight", "dropout", "path_column", "target_column", "bit_depth",
                   "conditional", "class_balance", "fade_kimg")


@dataclass
class TrainConfig:
    """Everything one run needs; defaults are the old tool's where it had one."""

    input: str
    output: str
    model: str | None = None  # None: -g/-c's architecture, a resumed run's, else DEFAULT_MODEL
    recipe: str | None = None  # the named recipe (train.recipes) the command took its settings from
    generator: str | None = None
    critic: str | None = None
    target: int = 1  # the class a per-class run learns; a conditional run learns both
    conditional: bool = False  # one generator for both classes, told the class of each image
    class_balance: str = "balanced"  # conditional batches: "balanced" (half each class) or "table"
    fade_kimg: float = 0.0  # conditional: the class terms grow from 0 to full over this many kimg
    split: SplitSpec = SplitSpec.from_flags()  # which partition; its own seed shuffles the folds
    seed: int = DEFAULT_SEED  # initialisation, shuffling, latents, dropout
    batch_size: int = 16
    epochs: int = 1000  # training length for the old commands; --kimg or --gen_steps replace it
    kimg: float | None = None  # thousands of real images shown to the critic
    gen_steps: int | None = None  # generator updates
    n_critic: int = 5
    lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.9)
    gp_weight: float = 10.0
    dropout: float | None = None  # None: the architecture's default
    init: str = "standard"  # fresh networks: "standard" (tanh not saturated) or "keras" (the old tool's)
    augment: str = ""  # DiffAugment policy before the critic, e.g. "translation,cutout"; "" none
    ema_kimg: float = 2.0  # half-life of the generator's moving average, in thousands of images; 0 off
    save_for_each: int = 50
    disp_for_each: int = 50
    eval_for_each: int = 0  # 0: no evaluation metrics during training
    eval_metrics: tuple[str, ...] = ("kid", "pr")
    eval_features: str = "auto"
    history: str | None = None
    start_from_epoch: int = 1
    precision: str = "auto"
    device: str = "auto"
    channels_last: bool = True
    reuse_cpu_memory: bool = True  # on the CPU, an epoch's steps reuse what they free (devices)
    cache_dir: str | None = None
    bit_depth: int | None = None  # significant bits of wide images; None: sBIT, else the table's
    path_column: str = "raw_image_path"
    target_column: str = "target"
    overwrite: bool = False
    resume: bool = False
    progress: bool = True

    @property
    def architecture(self) -> str:
        """The architecture a fresh run without -g/-c builds."""
        return self.model or DEFAULT_MODEL

    def check(self) -> None:
        """Refuse impossible settings before any work starts, naming the flag."""
        self.split.check()
        check_batch_size(self.batch_size)
        positive = {"--epochs": self.epochs,
                    "--save_for_each": self.save_for_each, "--disp_for_each": self.disp_for_each}
        for flag, value in positive.items():
            require_at_least(flag, value, 1)
        for flag, value in {"--lr": self.lr, "--gp_weight": self.gp_weight,
                            "--betas": self.betas[0] + self.betas[1],
                            "--dropout": self.dropout or 0.0}.items():
            if not math.isfinite(value):
                raise RxwganError(f"{flag} must be a finite number, not {value}")
        if self.target not in TARGETS:
            raise RxwganError(f"--target must be 0 or 1, not {self.target}")
        if self.class_balance not in CLASS_BALANCES:
            raise RxwganError(f"--class_balance must be one of {', '.join(CLASS_BALANCES)}, "
                              f"not {self.class_balance!r}")
        if not math.isfinite(self.fade_kimg) or self.fade_kimg < 0:
            raise RxwganError(f"--fade_kimg must be 0 (no fade-in) or more, not {self.fade_kimg}")
        if self.fade_kimg and not self.conditional:
            raise RxwganError("--fade_kimg fades a class condition in: it needs --conditional")
        if self.n_critic < 0:
            raise RxwganError(f"--n_critic must be 0 or more, not {self.n_critic}")
        if self.lr <= 0:
            raise RxwganError(f"--lr must be positive, not {self.lr}")
        if not all(0 <= b < 1 for b in self.betas):
            raise RxwganError(f"--betas must be in [0, 1), not {self.betas}")
        if self.gp_weight < 0:
            raise RxwganError(f"--gp_weight must be 0 or more, not {self.gp_weight}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise RxwganError(f"--dropout must be in [0, 1), not {self.dropout}")
        check_bit_depth(self.bit_depth)
        if self.init not in INITS:
            raise RxwganError(f"--init must be one of {', '.join(INITS)}, not {self.init!r}")
        from rxwgan.train.augment import parse_policy  # here: the CLI's parser imports this module, not torch

        parse_policy(self.augment)
        if not math.isfinite(self.ema_kimg) or self.ema_kimg < 0:
            raise RxwganError(f"--ema_kimg must be 0 (off) or more, not {self.ema_kimg}")
        if self.kimg is not None and self.gen_steps is not None:
            raise RxwganError("--kimg and --gen_steps both set the training length: give one")
        if self.kimg is not None and not (math.isfinite(self.kimg) and self.kimg > 0):
            raise RxwganError(f"--kimg must be a positive number, not {self.kimg}")
        if self.kimg is not None and self.kimg * 1000 < self.batch_size:
            raise RxwganError(f"--kimg {self.kimg:g} is fewer images than one batch ({self.batch_size}): "
                              f"train at least {self.batch_size / 1000:g} kimg")
        if self.gen_steps is not None:
            require_at_least("--gen_steps", self.gen_steps, 1)
        if self.precision not in PRECISIONS:
            raise RxwganError(f"--precision must be one of {', '.join(PRECISIONS)}")
        if self.eval_for_each < 0:
            raise RxwganError(f"--eval_for_each must be 0 or more, not {self.eval_for_each}")
        if self.start_from_epoch < 1:
            raise RxwganError(f"--start_from_epoch must be at least 1, not {self.start_from_epoch}")
        if self.start_from_epoch > self.epochs:
            raise RxwganError(f"--start_from_epoch {self.start_from_epoch} is past --epochs "
                              f"{self.epochs}")

    def check_length(self, epochs: int, batches_per_epoch: int) -> None:
        """Refuse a --kimg too short to update the generator once (it would end "done", untrained).

        --epochs keeps the old tool's meaning (a short first leg of a run resumed later may end
        before its first generator step); --gen_steps always makes at least one.
        """
        critic_steps = epochs * batches_per_epoch
        if self.kimg is not None and critic_steps // self.critic_steps_per_gen_step == 0:
            raise RxwganError(f"--kimg {self.kimg:g} makes {critic_steps} critic step(s) of batch "
                              f"{self.batch_size} and no generator step (one every "
                              f"{self.critic_steps_per_gen_step} critic steps); train longer")

    def total_epochs(self, batches_per_epoch: int) -> int:
        """Epochs the run lasts: --epochs, or as many as --kimg / --gen_steps take.

        An epoch shows the critic ``batches_per_epoch * batch_size`` images and makes one
        generator step per ``critic_steps_per_gen_step`` batches; the run ends with the epoch
        that reaches the target, so checkpoints and epoch files stay per epoch.
        """
        if self.kimg is not None:
            return max(1, math.ceil(self.kimg * 1000 / (batches_per_epoch * self.batch_size)))
        if self.gen_steps is not None:
            return max(1, math.ceil(self.gen_steps * self.critic_steps_per_gen_step / batches_per_epoch))
        return self.epochs

    @property
    def classes(self) -> tuple[int, ...]:
        """The classes the run learns: both for a conditional run, else its target."""
        return TARGETS if self.conditional else (self.target,)

    @property
    def what(self) -> str:
        """The run's classes in words, for log lines."""
        return "targets 0 and 1 (conditional)" if self.conditional else f"target {self.target}"

    def strength(self, critic_steps: int) -> float:
        """The class terms' strength after ``critic_steps`` batches: full, or growing linearly
        over the first --fade_kimg thousand images."""
        if not self.fade_kimg:
            return 1.0
        return min(1.0, critic_steps * self.batch_size / (1000 * self.fade_kimg))

    @property
    def critic_steps_per_gen_step(self) -> int:
        """Critic steps per generator step; the old tool's 0 meant one of each per batch."""
        return max(self.n_critic, 1)

    @classmethod
    def default(cls, name: str) -> Any:
        """A field's default: the one place the CLI, the sweep and the demo take it from."""
        return cls.__dataclass_fields__[name].default

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["split"] = self.split.to_dict()
        data["betas"] = list(self.betas)
        data["eval_metrics"] = list(self.eval_metrics)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        if isinstance(values.get("split"), dict):
            values["split"] = SplitSpec.from_dict(values["split"])
        elif "split" not in values:  # written before the split was one value: one seed for both
            values["split"] = SplitSpec.from_dict(data)
        for name in ("betas", "eval_metrics"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)

    def identity(self) -> dict[str, Any]:
        data = self.to_dict()
        return {name: data[name] for name in IDENTITY_FIELDS}

    def differences(self, saved: TrainConfig, saved_arch: str | None = None) -> list[str]:
        """Flags whose values differ in what they compute (for a refused resume).

        ``saved_arch`` is the architecture the saved run built; --model counts only when
        given, so the command that started a run from -g/-c files resumes it unchanged.
        """
        mine, theirs = self.identity(), saved.identity()
        changed = [f"--{k} {theirs[k]} -> {mine[k]}" for k in IDENTITY_FIELDS
                   if k != "split" and mine[k] != theirs[k]]
        changed += self.split.changes_from(saved.split)
        built = saved_arch or saved.model
        # With -g, the file decides the architecture; --model counts only when it decides.
        if self.model is not None and not self.generator and built is not None and self.model != built:
            changed.append(f"--model {built} -> {self.model}")
        return changed


def check_batch_size(batch_size: int) -> None:
    """Training batches need two images: the old tool's pair divergences compare them."""
    require_at_least("--batch_size", batch_size, MIN_BATCH_SIZE,
                     "the per-batch divergences compare image pairs")


def environment() -> dict[str, str]:
    """Versions saved beside a run's outputs so a result can be traced to its software."""
    import numpy
    import torch

    return {"rxwgan": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version(), "platform": platform.platform()}

