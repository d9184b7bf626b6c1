"""An exponential moving average of the generator's weights, for sampling and saving.

A GAN's generator wanders from step to step around the point it is converging to; the
average of its recent weights draws better images than any one of them (Karras et al.,
StyleGAN2-ADA). As there, the averaging horizon is a half-life counted in images the
generator has been trained on, ``ema_kimg`` thousand of them, so it does not depend on
the batch size: after each generator update on ``batch_size`` images

    beta = 0.5 ** (batch_size / (ema_kimg * 1000))
    ema  = beta * ema + (1 - beta) * weights

Ramp-up (on by default, ``rampup=0.05``, StyleGAN2-ADA's value): the half-life is at
most ``rampup`` times the images trained on so far, so the average does not drag the
random initial weights along for thousands of images; the first update copies the
generator outright. With ~100 images and a few thousand steps the ramp governs most of
a run: the half-life is then 5 % of the training so far. ``rampup=None`` turns it off.

Buffers (BatchNorm running statistics) are copied from the generator, not averaged, as
in StyleGAN2-ADA: they are the live generator's statistics, a close match to averaged
weights that move slowly. The averaged copy keeps the original's ``arch``, ``role``,
``hparams``, ``image_size`` and ``latent_dim``, so ``rxwgan.models.save_model`` writes it
as an ordinary generator file.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

DEFAULT_RAMPUP = 0.05


class GeneratorEMA:
    """The averaged generator (``.module``, eval mode, no gradients) and its image count."""

    def __init__(self, generator: nn.Module, ema_kimg: float, rampup: float | None = DEFAULT_RAMPUP):
        if not ema_kimg > 0:
            raise ValueError(f"ema_kimg must be positive (new_ema turns 0 or less into no EMA), "
                             f"got {ema_kimg}")
        if rampup is not None and not rampup > 0:
            raise ValueError(f"rampup must be positive or None, got {rampup}")
        self.ema_kimg = float(ema_kimg)
        self.rampup = None if rampup is None else float(rampup)
        self.nimg = 0  # images the generator has been updated on, as counted by update()
        self.module = copy.deepcopy(_unwrapped(generator)).eval().requires_grad_(False)
        for parameter in self.module.parameters():
            parameter.grad = None

    def beta(self, batch_size: int) -> float:
        """The weight the average keeps at the next update on ``batch_size`` images."""
        half_life = self.ema_kimg * 1000
        if self.rampup is not None:
            half_life = min(half_life, self.nimg * self.rampup)
        return 0.5 ** (batch_size / max(half_life, 1e-8))

    @torch.no_grad()
    def update(self, generator: nn.Module, batch_size: int) -> None:
        """Fold in ``generator``'s weights after one update of it on ``batch_size`` images."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        live = _unwrapped(generator)
        averaged, current = list(self.module.parameters()), list(live.parameters())
        buffers, live_buffers = list(self.module.buffers()), list(live.buffers())
        if len(averaged) != len(current) or len(buffers) != len(live_buffers):
            raise ValueError("update() needs the generator this EMA was made from")
        beta = self.beta(batch_size)
        # ema + (1 - beta) * (w - ema), fused over all tensors; lerp is exact at weight 1.
        torch._foreach_lerp_(averaged, [p.detach() for p in current], 1.0 - beta)
        for mine, theirs in zip(buffers, live_buffers, strict=True):
            mine.copy_(theirs)
        self.nimg += int(batch_size)

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain values only (a checkpoint loads it with weights_only=True).

        Like ``nn.Module.state_dict`` the tensors are the live ones: save before the next update.
        """
        return {"module": self.module.state_dict(), "nimg": self.nimg, "ema_kimg": self.ema_kimg,
                "rampup": self.rampup}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore weights and image count (the half-life and ramp-up come from the saved run)."""
        self.module.load_state_dict(state["module"])
        self.nimg = int(state["nimg"])
        self.ema_kimg = float(state["ema_kimg"])
        self.rampup = None if state["rampup"] is None else float(state["rampup"])


def new_ema(generator: nn.Module, ema_kimg: float,
            rampup: float | None = DEFAULT_RAMPUP) -> GeneratorEMA | None:
    """A ``GeneratorEMA`` of ``generator``, or None when ``ema_kimg <= 0`` (averaging off)."""
    return GeneratorEMA(generator, ema_kimg, rampup) if ema_kimg > 0 else None


def _unwrapped(module: nn.Module) -> nn.Module:
    return getattr(module, "_orig_mod", module)  # a torch.compile wrapper averages its model
