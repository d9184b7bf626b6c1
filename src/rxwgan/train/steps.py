"""The WGAN-GP maths of one training step: a critic update, a generator update, a validation pass.

Functions of networks, optimisers, tensors and one ``StepSettings``: no files, no run folder,
no config object, so a notebook or a benchmark calls exactly what ``rxwgan train`` runs.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

from rxwgan.base.devices import autocast
from rxwgan.metrics.histogram_divergences import pair_divergences
from rxwgan.models.penalty_layers import input_gradient_only
from rxwgan.train.augment import Policy, augment
from rxwgan.train.losses import critic_loss, generator_loss, gradient_penalty, interpolate, penalty


@dataclass(frozen=True)
class StepSettings:
    """What every step of a run shares, fixed for the run: one object instead of a list of
    positional flags that a caller could pass in the wrong order."""

    gp_weight: float  # the gradient penalty's weight in the critic's loss
    precision: str  # fp32 or bf16 (resolved): the autocast the networks run under
    device: torch.device  # where the generator step draws its latents
    policy: Policy = ()  # the DiffAugment operations before the critic


@dataclass(frozen=True)
class Classes:
    """A conditional run's batch: each image's class, and the strength of the class terms
    (below 1 while the condition fades in). Unconditional runs pass None instead."""

    labels: Tensor
    strength: float = 1.0

    def rows(self, index: slice | Tensor) -> Classes:
        return Classes(self.labels[index], self.strength)

    def twice(self) -> Classes:
        """For one call that scores reals and fakes of the same classes together."""
        return Classes(torch.cat([self.labels, self.labels]), self.strength)


def _given(classes: Classes | None) -> tuple:
    """The extra arguments a network takes for ``classes``: none when the run is unconditional."""
    return () if classes is None else (classes.labels, classes.strength)


class NonFiniteLoss(Exception):
    """A loss became NaN or infinite; raised before the update so the weights stay good."""

    def __init__(self, which: str, value: float):
        super().__init__(f"the {which} loss became {value}")
        self.which, self.value = which, value


def has_batch_statistics(critic: nn.Module) -> bool:
    """Whether the critic normalises over the batch (then reals, fakes and x_hat need separate calls)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in critic.modules())


def critic_step(generator: nn.Module, critic: nn.Module, optimizer: torch.optim.Optimizer, real: Tensor,
                rng: torch.Generator, settings: StepSettings,
                classes: Classes | None = None) -> dict[str, float]:
    """One critic update on ``real``: Wasserstein loss plus ``settings.gp_weight`` x gradient penalty.

    With a DiffAugment ``settings.policy`` the critic sees augmented reals and fakes (and x_hat
    between them); the history's divergences compare the images themselves. A conditional run
    (``classes``) draws each fake in its real's class, so every x_hat lies between two images of
    one class and is scored as that class.
    """
    generator.train()
    critic.train()
    z = torch.randn(len(real), generator.latent_dim, generator=rng, device=real.device)
    with autocast(real.device, settings.precision):
        with torch.no_grad():
            fake = generator(z, *_given(classes)).float()
        seen_real, seen_fake = augment(real, settings.policy, rng), augment(fake, settings.policy, rng)
        x_hat = interpolate(seen_real, seen_fake, rng)
        if has_batch_statistics(critic):
            d_real, d_fake = critic(seen_real, *_given(classes)), critic(seen_fake, *_given(classes))
        else:  # one call scores reals and fakes together: exact without batch statistics
            both = None if classes is None else classes.twice()
            d_real, d_fake = critic(torch.cat([seen_real, seen_fake]), *_given(both)).split(len(real))
        # x_hat in a call of its own: the penalty's backward and double backward run over its
        # rows only, and its first backward skips the weight gradients the penalty never uses.
        with input_gradient_only():
            d_hat = critic(x_hat, *_given(classes))
        wasserstein = critic_loss(d_real, d_fake)
        gp = penalty(d_hat, x_hat)
    loss = wasserstein + settings.gp_weight * gp
    value = _finite(loss, "critic")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {"critic_loss": value, "reg_loss": settings.gp_weight * gp.item(), **unit_divergences(real, fake)}


def generator_step(generator: nn.Module, critic: nn.Module, optimizer: torch.optim.Optimizer, batch: int,
                   rng: torch.Generator, settings: StepSettings,
                classes: Classes | None = None) -> dict[str, float]:
    """One generator update: raise the critic's score of ``batch`` fresh (augmented) fakes (of
    the batch's ``classes`` in a conditional run)."""
    z = torch.randn(batch, generator.latent_dim, generator=rng, device=settings.device)
    critic.requires_grad_(False)  # no critic weight gradients needed here
    try:
        with autocast(settings.device, settings.precision):
            fake = augment(generator(z, *_given(classes)), settings.policy, rng)
            loss = generator_loss(critic(fake, *_given(classes)))
        value = _finite(loss, "generator")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    finally:
        critic.requires_grad_(True)
    return {"gen_loss": value}


def validation_losses(generator: nn.Module, critic: nn.Module, images: Tensor, settings: StepSettings, *,
             seed: int, batch_size: int, classes: Classes | None = None) -> dict[str, float]:
    """Mean critic loss (with penalty), generator loss and divergences on ``images`` (of
    ``classes`` in a conditional run), no update.

    The latents and interpolation weights come from ``seed`` alone, so epochs compare; no
    augmentation: the numbers describe the images themselves.
    """
    generator.eval()
    critic.eval()
    device = images.device
    rng = torch.Generator(device=device).manual_seed(seed)
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for start in range(0, len(images), batch_size):
        real = images[start:start + batch_size]
        given = _given(None if classes is None else classes.rows(slice(start, start + batch_size)))
        z = torch.randn(len(real), generator.latent_dim, generator=rng, device=device)
        with autocast(device, settings.precision):
            with torch.no_grad():
                fake = generator(z, *given).float()
                d_fake = critic(fake, *given)
                values = {"critic_loss": critic_loss(critic(real, *given), d_fake).item(),
                          "gen_loss": generator_loss(d_fake).item()}
            gp = gradient_penalty(partial(_score, critic, given), real, fake, generator=rng,
                                  create_graph=False)
        values["critic_loss"] += settings.gp_weight * gp.item()
        if len(real) >= 2:
            values.update(unit_divergences(real, fake))
        for key, value in values.items():
            sums[key] += value * len(real)
            counts[key] += len(real)
    return {key: sums[key] / counts[key] for key in counts}


def _score(critic: nn.Module, given: tuple, images: Tensor) -> Tensor:
    return critic(images, *given)


def unit_divergences(real: Tensor, fake: Tensor) -> dict[str, float]:
    """The old tool's per-pair histogram metrics, on intensities mapped to [0, 1]."""
    return pair_divergences((real.float() + 1) / 2, (fake.float() + 1) / 2)


def _finite(loss: Tensor, which: str) -> float:
    """The loss as a number (one device sync per step), or NonFiniteLoss before any update."""
    value = loss.item()
    if not math.isfinite(value):
        raise NonFiniteLoss(which, value)
    return value
