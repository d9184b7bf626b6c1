"""Everything a run carries from step to step, and its round trip through a checkpoint.

The networks, their optimisers, the random generators, the fixed latents of the sample
grid, the counters, the history and a half-done epoch: ``RunState.checkpoint()`` writes
all of it, ``restore()`` puts it back, so a resumed run continues bit for bit.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rxwgan.base.errors import RxwganError
from rxwgan.base.layout import HISTORY_KEYS
from rxwgan.base.progress import Log
from rxwgan.models import build_critic, build_generator, load_model
from rxwgan.train.checkpoint import FORMAT
from rxwgan.train.config import TrainConfig
from rxwgan.train.ema import GeneratorEMA, new_ema

GRID_SIDE = 5  # the fixed latents: a GRID_SIDE x GRID_SIDE grid of samples each epoch
# A conditional run's grid: GRID_SIDE columns, and for each of these rows of latents one row
# per class, so each latent shows the same chest under each class.
CONDITIONAL_GRID_ROWS = 3


def empty_history() -> dict[str, list[float | None]]:
    return {key: [] for key in HISTORY_KEYS}


def append_epoch(history: dict[str, list[float | None]], epoch: int,
                 values: dict[str, float | None]) -> None:
    """Add epoch ``epoch``'s values; a key first seen now (an evaluation) is padded with None."""
    keys = [*HISTORY_KEYS, *(k for k in history if k not in HISTORY_KEYS),
            *(k for k in values if k not in history and k not in HISTORY_KEYS)]
    for key in keys:
        column = history.setdefault(key, [])
        column.extend([None] * (epoch - 1 - len(column)))
        column.append(values.get(key))


@dataclass
class PartialEpoch:
    """An epoch under way: its shuffled order, the batches done and the running sums of its
    step values. A stop mid-epoch checkpoints it, so resume continues the same order and sums."""

    epoch: int
    order: torch.Tensor  # the epoch's permutation of the training images
    batch: int = 0  # batches done
    sums: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.sums[key] += value
            self.counts[key] += 1

    def means(self, keys: Iterable[str]) -> dict[str, float | None]:
        """Each key's mean over the steps that gave it; None where none did (no generator step)."""
        return {key: self.sums[key] / self.counts[key] if self.counts.get(key) else None for key in keys}

    def to_dict(self) -> dict[str, Any]:
        """As a checkpoint holds it: plain values and a CPU tensor, what ``weights_only`` loads
        (the same dict checkpoints held before this class existed)."""
        return {"epoch": self.epoch, "batch": self.batch, "order": self.order.cpu(),
                "sums": dict(self.sums), "counts": dict(self.counts)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], device: torch.device) -> PartialEpoch:
        return cls(int(data["epoch"]), data["order"].to(device), int(data["batch"]),
                   defaultdict(float, data["sums"]), defaultdict(int, data["counts"]))


@dataclass
class RunState:
    generator: nn.Module
    critic: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    rng: torch.Generator  # shuffling, latents and interpolation weights
    fixed_z: torch.Tensor  # the sample grid's latents, the same every epoch
    epoch: int = 0  # epochs done
    critic_updates: int = 0
    history: dict[str, list[float | None]] = field(default_factory=empty_history)
    partial: PartialEpoch | None = None  # where a stopped epoch got to
    ema: GeneratorEMA | None = None  # the generator's moving average: what samples come from
    best: dict[str, Any] | None = None  # {"epoch", "kid", "space_id"} of generator_best

    @property
    def sampler(self) -> nn.Module:
        """The generator pictures and metrics use: the moving average when there is one."""
        return self.ema.module if self.ema is not None else self.generator

    def checkpoint(self, config: TrainConfig, device: torch.device, precision: str,
                   table: dict[str, Any]) -> dict[str, Any]:
        """The checkpoint's contents: tensors and plain values only (loadable with weights_only)."""
        rng = {"train": self.rng.get_state(), "torch": torch.get_rng_state()}
        if device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(device)
        partial = None if self.partial is None else self.partial.to_dict()
        return {
            "format": FORMAT, "config": config.to_dict(), "epoch": self.epoch,
            "critic_steps": self.critic_updates, "partial": partial, "history": self.history,
            "generator": self.generator.state_dict(), "critic": self.critic.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "rng": rng,
            "fixed_z": self.fixed_z.cpu(), "arch": self.generator.arch, "table": table,
            "device": device.type, "precision": precision,
            "ema": None if self.ema is None else self.ema.state_dict(), "best": self.best,
        }

    def restore(self, checkpoint: dict[str, Any], device: torch.device, precision: str, seed: int,
                log: Log) -> None:
        self.generator.load_state_dict(checkpoint["generator"])
        self.critic.load_state_dict(checkpoint["critic"])
        self.opt_g.load_state_dict(checkpoint["opt_g"])
        self.opt_d.load_state_dict(checkpoint["opt_d"])
        torch.set_rng_state(checkpoint["rng"]["torch"])
        was = (checkpoint.get("device", device.type), checkpoint.get("precision", precision))
        if was == (device.type, precision):
            self.rng.set_state(checkpoint["rng"]["train"])
            if device.type == "cuda" and "cuda" in checkpoint["rng"]:
                torch.cuda.set_rng_state(checkpoint["rng"]["cuda"], device)
        else:
            # A CUDA generator's state cannot seed a CPU one (nor the reverse): new streams.
            self.rng.manual_seed(seed + int(checkpoint["epoch"]) + 1)
            log(f"warning: this run was checkpointed on {was[0]} in {was[1]} and continues on "
                f"{device.type} in {precision}: the weights and optimisers carry on, but the result "
                f"will not be bit-identical to an uninterrupted run (pass --device {was[0]} "
                f"--precision {was[1]} for that)")
        self.fixed_z = checkpoint["fixed_z"].to(device)
        self.epoch = int(checkpoint["epoch"])
        self.critic_updates = int(checkpoint["critic_steps"])
        self.history = {key: list(values) for key, values in checkpoint["history"].items()}
        partial = checkpoint.get("partial")
        self.partial = None if partial is None else PartialEpoch.from_dict(partial, device)
        self.best = checkpoint.get("best")
        if self.ema is not None:
            if checkpoint.get("ema") is not None:
                self.ema.load_state_dict(checkpoint["ema"])
            else:  # a checkpoint from before the moving average: it starts from here
                self.ema = new_ema(self.generator, self.ema.ema_kimg)
                log("warning: the checkpoint holds no moving average of the generator; it starts "
                    "from the restored weights")

    def restore_legacy(self, config: TrainConfig, log: Log) -> None:
        """The old tool's restart: weights from -g/-c, history from --history, epochs from N+1."""
        done = config.start_from_epoch - 1
        if config.history:
            try:
                loaded = json.loads(Path(config.history).read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise RxwganError(f"--history {config.history}: cannot read ({exc})") from None
            lengths = {len(v) for v in loaded.values() if isinstance(v, list)}
            if lengths and max(lengths) < done:
                raise RxwganError(f"--history {config.history} holds {max(lengths)} epochs, "
                                  f"fewer than the {done} before --start_from_epoch")
            for key, values in loaded.items():
                if isinstance(values, list):
                    self.history[key] = values[:done]
        for key in HISTORY_KEYS:
            values = self.history.setdefault(key, [])
            values.extend([None] * (done - len(values)))
        self.epoch = done
        log(f"restarting at epoch {config.start_from_epoch} from {config.generator} and {config.critic}")


def initial_network(config: TrainConfig, role: str, arch: str | None = None) -> nn.Module:
    """The network a run starts from: the user's file (-g/-c), else a fresh ``arch`` seeded by --seed."""
    path = config.generator if role == "generator" else config.critic
    overrides = {} if config.dropout is None else {"dropout": config.dropout}
    build = build_generator if role == "generator" else build_critic
    classes = len(config.classes) if config.conditional else 0
    if path:  # training continues the trained weights, not their moving average
        loaded = load_model(path, role=role, weights="raw")
        if int(loaded.hparams.get("classes", 0)) != classes:
            flag = "-g" if role == "generator" else "-c"
            kind = "a conditional" if loaded.hparams.get("classes") else "a per-class"
            raise RxwganError(f"{flag} {path} holds {kind} {role}; "
                              f"{'drop' if classes == 0 else 'add'} --conditional to train it")
        module = build(loaded.arch, **{**loaded.hparams, **overrides})
        module.load_state_dict(loaded.state_dict())
        return module
    torch.manual_seed(config.seed + (0 if role == "generator" else 1))
    return build(arch or config.architecture, init=config.init, classes=classes, **overrides)


def new_state(config: TrainConfig, generator: nn.Module, critic: nn.Module, device: torch.device) -> RunState:
    """Networks on ``device`` with fresh optimisers and generators seeded by --seed."""
    if generator.arch != critic.arch:
        raise RxwganError(f"-g holds a {generator.arch} generator but -c a {critic.arch} critic")
    memory = torch.channels_last if config.channels_last else torch.contiguous_format
    for net in (generator, critic):
        net.to(device, memory_format=memory)
    rng = torch.Generator(device=device).manual_seed(config.seed)
    torch.manual_seed(config.seed)  # dropout draws from the global generator
    return RunState(
        generator=generator, critic=critic,
        opt_g=torch.optim.Adam(generator.parameters(), lr=config.lr, betas=config.betas),
        opt_d=torch.optim.Adam(critic.parameters(), lr=config.lr, betas=config.betas),
        rng=rng,
        fixed_z=torch.randn(grid_latents(config), generator.latent_dim, generator=rng, device=device),
        ema=new_ema(generator, config.ema_kimg))


def grid_latents(config: TrainConfig) -> int:
    """How many fixed latents the sample grid draws from."""
    return GRID_SIDE * CONDITIONAL_GRID_ROWS if config.conditional else GRID_SIDE**2


def grid_batch(fixed_z: torch.Tensor, classes: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The grid's latents and classes: each row of GRID_SIDE latents once per class, one row
    under another, so a column shows one latent under every class (classes 0: as they are)."""
    if not classes:
        return fixed_z, None
    rows = fixed_z.unflatten(0, (-1, GRID_SIDE))  # (rows, GRID_SIDE, latent)
    z = rows.unsqueeze(1).expand(-1, classes, -1, -1).flatten(0, 2)
    labels = torch.arange(classes, device=fixed_z.device).repeat_interleave(GRID_SIDE).repeat(len(rows))
    return z, labels
