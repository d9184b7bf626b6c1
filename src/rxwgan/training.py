"""The WGAN-GP training loop for one class of one fold, with exact resume.

``train(config)`` is the whole job: validate inputs, decide between a fresh run, a
resume from the folder's checkpoint, or the old tool's restart from epoch files, then
run epochs. Every epoch ends with a full checkpoint, so a lost machine costs at most
the epoch in progress; SIGINT/SIGTERM finish the current step and checkpoint mid-epoch.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rxwgan import atomic
from rxwgan.cache import ImageCache
from rxwgan.checkpoint import FOLDER, POINTER, has_checkpoint, load_checkpoint, save_checkpoint
from rxwgan.config import TrainConfig, environment
from rxwgan.dataset import XrayDataset
from rxwgan.devices import autocast, resolve_device, resolve_precision
from rxwgan.divergences import pair_divergences
from rxwgan.errors import RxwganError
from rxwgan.losses import critic_loss, generator_loss, gradient_penalty, interpolate, penalty
from rxwgan.models import build_critic, build_generator, load_model, save_model
from rxwgan.plots import save_curves, save_grid
from rxwgan.progress import progress_bar
from rxwgan.splits import partition
from rxwgan.table import read_table

DIVERGENCE_KEYS = [f"{m}_{p}" for m in ("kl", "js", "l1", "l2") for p in ("rr", "rf")]
HISTORY_KEYS = (["train_critic_loss", "train_gen_loss", "train_reg_loss"]
                + [f"train_{k}" for k in DIVERGENCE_KEYS]
                + ["val_critic_loss", "val_gen_loss"]
                + [f"val_{k}" for k in DIVERGENCE_KEYS])
RUN_FILE_PATTERNS = ("config.json", POINTER, "history.json", "history_epoch_*.json",
                     "generator_epoch_*", "critic_epoch_*", "generator_trained*", "critic_trained*",
                     "fake_samples_epoch_*.png", "loss_curves.png", "split.csv")
GRID_SIDE = 5
MIN_EVAL_IMAGES = 6  # precision/recall look at 5 nearest neighbours
Log = Callable[[str], None]


@dataclass
class TrainResult:
    output: Path
    epoch: int
    history: dict[str, list[float | None]]
    interrupted: bool = False


class _Stop(Exception):
    """Raised inside the loop once a requested stop has been checkpointed."""


def train(config: TrainConfig, log: Log = print) -> TrainResult:
    """Train (or resume) one run as ``config`` says; the Python face of ``rxwgan train``."""
    config.check()
    return Trainer(config, log).fit()


class Trainer:
    def __init__(self, config: TrainConfig, log: Log = print):
        self.config = config
        self.log = log
        self.out = Path(config.output)
        self.device = resolve_device(config.device)
        self.precision = resolve_precision(config.precision, self.device)
        self.stop_requested = False
        self.partial: dict[str, Any] | None = None
        self.critic_steps = 0
        self.epoch = 0
        self.history: dict[str, list[float | None]] = {key: [] for key in HISTORY_KEYS}

        checkpoint = self._decide_start()
        self._load_data()
        self._build(checkpoint)

    # --- setting up ------------------------------------------------------------------

    def _decide_start(self) -> dict[str, Any] | None:
        """Fresh run, resume from this folder's checkpoint, or the old tool's restart."""
        config = self.config
        legacy_restart = config.start_from_epoch > 1
        if has_checkpoint(self.out) and not config.overwrite:
            checkpoint = load_checkpoint(self.out, map_location="cpu")
            if legacy_restart:
                if checkpoint["epoch"] >= config.start_from_epoch:
                    raise RxwganError(
                        f"{self.out} holds a checkpoint at epoch {checkpoint['epoch']}, later than "
                        f"--start_from_epoch {config.start_from_epoch}: run without -g/-c/--history/"
                        f"--start_from_epoch to resume from it, or pass --overwrite")
                return None
            saved = TrainConfig.from_dict(checkpoint["config"])
            changed = config.differences(saved)
            if changed:
                raise RxwganError(f"{self.out} holds a run with other settings ({'; '.join(changed)}): "
                                  f"use another -o, or --overwrite to start afresh")
            return checkpoint
        if config.resume:
            raise RxwganError(f"--resume: {self.out} holds no checkpoint ({POINTER} not found)")
        previous = self._previous_run_files()
        if previous and not legacy_restart:
            if not config.overwrite:
                raise RxwganError(f"{self.out} already holds another run's files ({previous[0].name}"
                                  f" and {len(previous) - 1} more); pass --overwrite to replace them")
            for path in previous:
                path.unlink()
            self.log(f"--overwrite: removed {len(previous)} file(s) of the previous run in {self.out}")
        return None

    def _previous_run_files(self) -> list[Path]:
        if not self.out.is_dir():
            return []
        found = {p for pattern in RUN_FILE_PATTERNS for p in self.out.glob(pattern) if p.is_file()}
        found |= set((self.out / FOLDER).glob("*.pt"))
        return sorted(found)

    def _load_data(self) -> None:
        config = self.config
        table = read_table(config.input, config.path_column, config.target_column, target=config.target)
        parts = partition(table.targets, config.split)
        self.out.mkdir(parents=True, exist_ok=True)
        table.write(self.out / "split.csv", {"partition": parts.labels(len(table))})
        targets = table.targets
        train_rows = [int(i) for i in parts.train if targets[i] == config.target]
        val_rows = [int(i) for i in parts.val if targets[i] == config.target]
        if len(train_rows) < 2:
            raise RxwganError(f"{config.input}: only {len(train_rows)} training row(s) of target "
                              f"{config.target} in {config.split.name}; at least 2 are needed")
        size = self._image_size()
        cache = ImageCache(config.cache_dir)

        def load(rows: list[int]) -> torch.Tensor:
            images = XrayDataset.from_table(table, size, rows, cache, config.progress,
                                            bit_depth=config.bit_depth).images
            return self._to_device(images)

        self.train_images = load(train_rows)
        self.val_images = load(val_rows) if val_rows else None
        self.log(f"{config.split.name}, target {config.target}: {len(train_rows)} training and "
                 f"{len(val_rows)} validation images at {size}px on {self.device} ({self.precision})")

    def _image_size(self) -> int:
        if self.config.generator:
            return int(self._initial_model("generator").image_size)
        from rxwgan.models import model_info

        return model_info(self.config.model).image_size

    def _to_device(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device)
        if self.config.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def _initial_model(self, role: str) -> nn.Module:
        """The network a run starts from: a user's file (-g/-c) or a fresh one of --model."""
        cached = getattr(self, f"_initial_{role}", None)
        if cached is not None:
            return cached
        path = getattr(self.config, role)
        overrides = {} if self.config.dropout is None else {"dropout": self.config.dropout}
        if path:
            loaded = load_model(path, role=role)
            module = (build_generator if role == "generator" else build_critic)(
                loaded.arch, **{**loaded.hparams, **overrides})
            module.load_state_dict(loaded.state_dict())
        else:
            torch.manual_seed(self.config.seed + (0 if role == "generator" else 1))
            module = (build_generator if role == "generator" else build_critic)(
                self.config.model, **overrides)
        setattr(self, f"_initial_{role}", module)
        return module

    def _build(self, checkpoint: dict[str, Any] | None) -> None:
        config = self.config
        self.generator = self._initial_model("generator")
        self.critic = self._initial_model("critic")
        if self.generator.arch != self.critic.arch:
            raise RxwganError(f"-g holds a {self.generator.arch} generator but -c a "
                              f"{self.critic.arch} critic")
        config.model = self.generator.arch
        # Batching reals, fakes and x_hat in one critic call is exact only without batch statistics.
        self.joint_critic_batches = not any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                            for m in self.critic.modules())
        memory = torch.channels_last if config.channels_last else torch.contiguous_format
        for net in (self.generator, self.critic):
            net.to(self.device, memory_format=memory)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=config.lr, betas=config.betas)
        self.opt_d = torch.optim.Adam(self.critic.parameters(), lr=config.lr, betas=config.betas)
        self.rng = torch.Generator(device=self.device).manual_seed(config.seed)
        torch.manual_seed(config.seed)  # dropout draws from the global generator
        latent = self.generator.latent_dim
        self.fixed_z = torch.randn(GRID_SIDE**2, latent, generator=self.rng, device=self.device)

        if checkpoint is not None:
            self._restore(checkpoint)
            where = f"epoch {self.epoch}" + (f", batch {self.partial['batch']} of epoch "
                                             f"{self.partial['epoch']}" if self.partial else "")
            self.log(f"resuming from the checkpoint in {self.out} ({where})")
        elif config.start_from_epoch > 1:
            self._restore_legacy_history()
        if config.eval_for_each:
            from rxwgan.metrics.registry import resolve_metrics

            resolve_metrics(list(config.eval_metrics))  # an unknown name fails now, not at epoch N
            available = 0 if self.val_images is None else len(self.val_images)
            if available < MIN_EVAL_IMAGES:
                raise RxwganError(f"--eval_for_each needs at least {MIN_EVAL_IMAGES} validation images "
                                  f"of target {config.target}; {config.split.name} has {available}")
        self._write_config()

    def _restore(self, checkpoint: dict[str, Any]) -> None:
        self.generator.load_state_dict(checkpoint["generator"])
        self.critic.load_state_dict(checkpoint["critic"])
        self.opt_g.load_state_dict(checkpoint["opt_g"])
        self.opt_d.load_state_dict(checkpoint["opt_d"])
        self.rng.set_state(checkpoint["rng"]["train"])
        torch.set_rng_state(checkpoint["rng"]["torch"])
        if self.device.type == "cuda" and "cuda" in checkpoint["rng"]:
            torch.cuda.set_rng_state(checkpoint["rng"]["cuda"], self.device)
        self.fixed_z = checkpoint["fixed_z"].to(self.device)
        self.epoch = int(checkpoint["epoch"])
        self.critic_steps = int(checkpoint["critic_steps"])
        self.history = {key: list(values) for key, values in checkpoint["history"].items()}
        self.partial = checkpoint.get("partial")

    def _restore_legacy_history(self) -> None:
        """The old tool's restart: weights from -g/-c, history from --history, epochs from N+1."""
        done = self.config.start_from_epoch - 1
        if self.config.history:
            try:
                loaded = json.loads(Path(self.config.history).read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise RxwganError(f"--history {self.config.history}: cannot read ({exc})") from None
            lengths = {len(v) for v in loaded.values() if isinstance(v, list)}
            if lengths and max(lengths) < done:
                raise RxwganError(f"--history {self.config.history} holds {max(lengths)} epochs, "
                                  f"fewer than the {done} before --start_from_epoch")
            for key, values in loaded.items():
                if isinstance(values, list):
                    self.history[key] = values[:done]
        for key in HISTORY_KEYS:
            values = self.history.setdefault(key, [])
            values.extend([None] * (done - len(values)))
        self.epoch = done
        self.log(f"restarting at epoch {self.config.start_from_epoch} from {self.config.generator} "
                 f"and {self.config.critic}")

    def _write_config(self) -> None:
        atomic.write_json(self.out / "config.json", {
            "config": self.config.to_dict(), "environment": environment(),
            "split": self.config.split.name, "image_size": int(self.generator.image_size),
            "generator": {"arch": self.generator.arch, "hparams": self.generator.hparams},
            "critic": {"arch": self.critic.arch, "hparams": self.critic.hparams},
            "device": str(self.device), "precision": self.precision,
            "train_images": len(self.train_images),
            "val_images": 0 if self.val_images is None else len(self.val_images),
        })

    # --- the loop --------------------------------------------------------------------

    def fit(self) -> TrainResult:
        config = self.config
        if self.epoch >= config.epochs and self.partial is None:
            self.log(f"{self.out}: the run is complete (epoch {self.epoch} of {config.epochs}); "
                     f"nothing to do")
            return TrainResult(self.out, self.epoch, self.history)
        writer = _summary_writer(self.out / "tensorboard", purge_step=self.epoch + 1)
        try:
            with self._stop_on_signals():
                for epoch in range(self.epoch + 1, config.epochs + 1):
                    start = time.perf_counter()
                    values = self._train_epoch(epoch)
                    values.update(self._validate())
                    values.update(self._evaluate(epoch))
                    self._end_epoch(epoch, values, time.perf_counter() - start, writer)
                    if self.stop_requested and epoch < config.epochs:
                        raise _Stop
        except _Stop:
            self.log(f"stopped; resume with the same command (or add --resume): everything up to "
                     f"here is in {self.out}")
            return TrainResult(self.out, self.epoch, self.history, interrupted=True)
        finally:
            writer.close()
        self._finish()
        return TrainResult(self.out, self.epoch, self.history)

    def _train_epoch(self, epoch: int) -> dict[str, float | None]:
        config = self.config
        count = len(self.train_images)
        batch = min(config.batch_size, count)
        n_batches = count // batch  # equal batches; the remainder differs each epoch
        if self.partial is not None and self.partial["epoch"] == epoch:
            order, first = self.partial["order"].to(self.device), self.partial["batch"]
            sums, counts = defaultdict(float, self.partial["sums"]), defaultdict(int, self.partial["counts"])
        else:
            order, first = torch.randperm(count, generator=self.rng, device=self.device), 0
            sums, counts = defaultdict(float), defaultdict(int)
        self.partial = None
        bar = progress_bar(range(first, n_batches), desc=f"epoch {epoch}", leave=False, unit="batch",
                   disable=not (config.progress and sys.stderr.isatty()))
        for index in bar:
            real = self.train_images[order[index * batch:(index + 1) * batch]]
            values = self.critic_step(real, epoch, index)
            if self.critic_steps % config.critic_steps == 0:
                values.update(self.generator_step(batch, epoch, index))
            for key, value in values.items():
                sums[key] += value
                counts[key] += 1
            if self.stop_requested and index + 1 < n_batches:
                self.partial = {"epoch": epoch, "batch": index + 1, "order": order.cpu(),
                                "sums": dict(sums), "counts": dict(counts)}
                self._checkpoint()
                raise _Stop
        return {f"train_{key}": sums[key] / counts[key] if counts[key] else None
                for key in ("critic_loss", "gen_loss", "reg_loss", *DIVERGENCE_KEYS)}

    def critic_step(self, real: torch.Tensor, epoch: int, index: int) -> dict[str, float]:
        self.generator.train()
        self.critic.train()
        z = torch.randn(len(real), self.generator.latent_dim, generator=self.rng, device=self.device)
        with autocast(self.device, self.precision):
            with torch.no_grad():
                fake = self.generator(z).float()
            x_hat = interpolate(real, fake, self.rng)
            if self.joint_critic_batches:  # one call scores reals, fakes and x_hat together
                d_real, d_fake, d_hat = self.critic(torch.cat([real, fake, x_hat])).split(len(real))
            else:
                d_real, d_fake, d_hat = self.critic(real), self.critic(fake), self.critic(x_hat)
            wasserstein = critic_loss(d_real, d_fake)
            gp = penalty(d_hat, x_hat)
        loss = wasserstein + self.config.gp_weight * gp
        value = _finite_value(loss, "critic", epoch, index, self)
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        self.critic_steps += 1
        values = {"critic_loss": value, "reg_loss": self.config.gp_weight * gp.item()}
        values.update(_unit_divergences(real, fake))
        return values

    def generator_step(self, batch: int, epoch: int, index: int) -> dict[str, float]:
        z = torch.randn(batch, self.generator.latent_dim, generator=self.rng, device=self.device)
        self.critic.requires_grad_(False)  # no critic weight gradients needed here
        try:
            with autocast(self.device, self.precision):
                loss = generator_loss(self.critic(self.generator(z)))
            value = _finite_value(loss, "generator", epoch, index, self)
            self.opt_g.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_g.step()
        finally:
            self.critic.requires_grad_(True)
        return {"gen_loss": value}

    def _validate(self) -> dict[str, float | None]:
        """Critic and generator losses on the validation rows, same latents every epoch, no update."""
        empty = {f"val_{key}": None for key in ("critic_loss", "gen_loss", *DIVERGENCE_KEYS)}
        if self.val_images is None:
            return empty
        self.generator.eval()
        self.critic.eval()
        rng = torch.Generator(device=self.device).manual_seed(self.config.seed)
        sums: dict[str, float] = defaultdict(float)
        counts: dict[str, int] = defaultdict(int)
        batch = self.config.batch_size
        for start in range(0, len(self.val_images), batch):
            real = self.val_images[start:start + batch]
            z = torch.randn(len(real), self.generator.latent_dim, generator=rng, device=self.device)
            with autocast(self.device, self.precision):
                with torch.no_grad():
                    fake = self.generator(z).float()
                    d_fake = self.critic(fake)
                    values = {"critic_loss": critic_loss(self.critic(real), d_fake).item(),
                              "gen_loss": generator_loss(d_fake).item()}
                gp = gradient_penalty(self.critic, real, fake, generator=rng, create_graph=False)
            values["critic_loss"] += self.config.gp_weight * gp.item()
            if len(real) >= 2:
                values.update(_unit_divergences(real, fake))
            for key, value in values.items():
                sums[key] += value * len(real)
                counts[key] += len(real)
        empty.update({f"val_{key}": sums[key] / counts[key] for key in counts})
        return empty

    def _evaluate(self, epoch: int) -> dict[str, float]:
        """--eval_for_each: KID, precision/recall... of the generator against the validation rows."""
        config = self.config
        if not config.eval_for_each or epoch % config.eval_for_each or self.val_images is None:
            return {}
        from rxwgan.metrics import evaluate_generator

        results = evaluate_generator(self.generator, self.val_images.float().contiguous().cpu(),
                                     list(config.eval_metrics), config.eval_features, seed=config.seed,
                                     cache_key=f"{self.out.resolve()}:val")
        return {key: float(value) for key, value in results.items()}

    def _end_epoch(self, epoch: int, values: dict[str, float | None], seconds: float,
                   writer: Any) -> None:
        config = self.config
        self.epoch = epoch
        for key in [*HISTORY_KEYS, *(k for k in self.history if k not in HISTORY_KEYS),
                    *(k for k in values if k not in self.history and k not in HISTORY_KEYS)]:
            column = self.history.setdefault(key, [])
            column.extend([None] * (epoch - 1 - len(column)))  # a key first seen now (evaluation)
            column.append(values.get(key))
        for key, value in values.items():
            if value is not None:
                tag = key.replace("_", "/", 1) if key.startswith(("train_", "val_")) else f"eval/{key}"
                writer.add_scalar(tag, value, epoch)
        if epoch % config.save_for_each == 0:
            save_model(self.generator, self.out / f"generator_epoch_{epoch}.safetensors")
            save_model(self.critic, self.out / f"critic_epoch_{epoch}.safetensors")
            atomic.write_json(self.out / f"history_epoch_{epoch}.json", self.history)
        if epoch % config.disp_for_each == 0 or epoch == config.epochs:
            samples = self.samples()
            save_grid(samples, self.out / f"fake_samples_epoch_{epoch}.png", GRID_SIDE)
            save_curves(self.history, self.out / "loss_curves.png")
            writer.add_image("samples", (samples[:, 0:1] + 1) / 2, epoch, dataformats="NCHW")
        atomic.write_json(self.out / "history.json", self.history)
        self._checkpoint()
        self.log(_epoch_line(epoch, config.epochs, values, seconds))

    def samples(self) -> torch.Tensor:
        """The fixed-latent sample grid's images, from the generator in inference mode."""
        self.generator.eval()
        with torch.no_grad():
            return self.generator(self.fixed_z).float().cpu()

    def _checkpoint(self) -> None:
        rng = {"train": self.rng.get_state(), "torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        state = {
            "format": "rxwgan-checkpoint", "config": self.config.to_dict(), "epoch": self.epoch,
            "critic_steps": self.critic_steps, "partial": self.partial, "history": self.history,
            "generator": self.generator.state_dict(), "critic": self.critic.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "rng": rng,
            "fixed_z": self.fixed_z.cpu(),
        }
        save_checkpoint(self.out, state, f"step_{self.critic_steps:09d}")

    def _finish(self) -> None:
        save_model(self.generator, self.out / "generator_trained.safetensors")
        save_model(self.critic, self.out / "critic_trained.safetensors")
        atomic.write_json(self.out / "history.json", self.history)
        self.log(f"done: {self.config.epochs} epochs; generator, critic, history, samples and "
                 f"curves in {self.out}")

    @contextmanager
    def _stop_on_signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM ask the loop to stop after the current step, with a checkpoint."""
        if not _in_main_thread():
            yield
            return

        def request(signum: int, _frame: Any) -> None:
            if self.stop_requested:  # a second signal: stop now
                raise KeyboardInterrupt
            self.stop_requested = True
            self.log(f"{signal.Signals(signum).name}: finishing the current step, then saving "
                     f"a checkpoint (send again to stop at once)")

        previous = {sig: signal.signal(sig, request) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _unit_divergences(real: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
    """The old tool's per-pair histogram metrics, on intensities mapped to [0, 1]."""
    return pair_divergences((real.float() + 1) / 2, (fake.float() + 1) / 2)


def _finite_value(loss: torch.Tensor, which: str, epoch: int, index: int, trainer: Trainer) -> float:
    """The loss as a number (one device sync per step), or a clear stop when it is NaN/inf."""
    value = loss.item()
    if not math.isfinite(value):
        raise RxwganError(f"epoch {epoch}, batch {index + 1}: the {which} loss became {value}; "
                          f"training stopped. The last good checkpoint (epoch {trainer.epoch}) "
                          f"stays in {trainer.out}")
    return value


def _epoch_line(epoch: int, epochs: int, values: dict[str, float | None], seconds: float) -> str:
    def show(key: str) -> str:
        value = values.get(key)
        return "n/a" if value is None else f"{value:.4g}"

    return (f"epoch {epoch}/{epochs}  critic {show('train_critic_loss')}  gen {show('train_gen_loss')}"
            f"  gp {show('train_reg_loss')} | val critic {show('val_critic_loss')}  gen "
            f"{show('val_gen_loss')}  kl_rf {show('val_kl_rf')}  js_rf {show('val_js_rf')}"
            + (f" | kid {show('kid')}" if "kid" in values else "")
            + (f"  fid {show('fid')}" if "fid" in values else "")
            + f" | {seconds:.1f} s")


def _summary_writer(folder: Path, purge_step: int) -> Any:
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(folder), purge_step=purge_step)
