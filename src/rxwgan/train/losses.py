"""WGAN-GP losses (Gulrajani et al. 2017) as pure functions of critic scores.

The losses are reduced in float32 even when the critic runs under bf16 autocast:
the WGAN losses are small differences of large means, which bf16 rounds badly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from rxwgan.models.penalty_layers import input_gradient_only


def critic_loss(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """mean(D(fake)) - mean(D(real)): minimising it widens the critic's real-fake margin."""
    return d_fake.float().mean() - d_real.float().mean()


def generator_loss(d_fake: Tensor) -> Tensor:
    """-mean(D(fake)): minimising it makes the critic score fakes higher."""
    return -d_fake.float().mean()


def gradient_penalty(
    critic: Callable[[Tensor], Tensor],
    real: Tensor,
    fake: Tensor,
    generator: torch.Generator | None = None,
    create_graph: bool = True,
) -> Tensor:
    """mean over samples of (||grad_x D(x_hat)||_2 - 1)^2, x_hat between a real and a fake.

    One eps ~ U[0, 1) per sample (drawn as shape (N, 1, 1, 1) on ``real``'s device with
    ``generator``) puts x_hat on the segment between the two images, as the paper asks.
    The gradient is taken with ``create_graph=True`` so the penalty trains the critic;
    ``fake`` is detached so the penalty never reaches the generator.
    """
    x_hat = interpolate(real, fake, generator)
    with input_gradient_only():
        scores = critic(x_hat)
    return penalty(scores, x_hat, create_graph)


def interpolate(real: Tensor, fake: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """x_hat = eps * real + (1 - eps) * fake, one eps ~ U[0, 1) per sample, ready for autograd.

    Split from ``penalty`` so a training loop can score reals, fakes and x_hat in one
    critic call (the critic has no batch statistics, so batching them changes nothing).
    """
    if real.shape != fake.shape:
        raise ValueError(f"real and fake shapes differ: {tuple(real.shape)} vs {tuple(fake.shape)}")
    real, fake = real.detach(), fake.detach()
    eps_shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    eps = torch.rand(eps_shape, generator=generator, device=real.device, dtype=real.dtype)
    return (eps * real + (1 - eps) * fake).requires_grad_(True)


def penalty(scores: Tensor, x_hat: Tensor, create_graph: bool = True) -> Tensor:
    """mean of (||d scores / d x_hat||_2 - 1)^2 for critic ``scores`` of ``x_hat``.

    ``create_graph=False`` (validation, no update) skips building the double-backward graph.
    """
    (grad,) = torch.autograd.grad(
        outputs=scores, inputs=x_hat, grad_outputs=torch.ones_like(scores), create_graph=create_graph
    )
    # Outside autocast so the norm and the square stay float32 whatever the critic ran in.
    with torch.autocast(device_type=x_hat.device.type, enabled=False):
        norms = torch.linalg.vector_norm(grad.float().flatten(1), ord=2, dim=1)
        return (norms - 1).square().mean()
