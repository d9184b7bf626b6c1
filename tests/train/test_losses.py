from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rxwgan.train.losses import critic_loss, generator_loss, gradient_penalty


def small_critic(seed: int = 0) -> nn.Module:
    """A nonlinear conv critic whose gradient norm depends on where it is evaluated."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=2, padding=1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(4, 8, 3, stride=2, padding=1),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 1),
    )


def batch(n: int = 5, size: int = 16, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    real = torch.rand(n, 1, size, size, generator=g) * 2 - 1
    fake = torch.rand(n, 1, size, size, generator=g) * 2 - 1
    return real, fake


def reference_gp(
    critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor
) -> torch.Tensor:
    """One sample at a time, one autograd.grad call each: the definition written out."""
    terms = []
    for i in range(real.shape[0]):
        x = (eps[i] * real[i] + (1 - eps[i]) * fake[i]).unsqueeze(0).requires_grad_(True)
        (g,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
        terms.append((g.flatten().norm() - 1) ** 2)
    return torch.stack(terms).mean()


def weight_params(critic: nn.Module) -> list[torch.Tensor]:
    """The parameters the input gradient depends on (the last bias shifts D, not grad_x D)."""
    return [p for name, p in critic.named_parameters() if name.endswith("weight")]


def linear_critic(w: torch.Tensor):
    return lambda x: (x.flatten(1) * w.flatten()).sum(dim=1, keepdim=True)


def test_gp_matches_per_sample_reference_value_and_param_grads():
    critic = small_critic()
    real, fake = batch()
    eps = torch.rand(real.shape[0], 1, 1, 1, generator=torch.Generator().manual_seed(7))

    gp = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(7))
    ref = reference_gp(critic, real, fake, eps)
    assert gp.item() > 1e-3  # a penalty that is not trivially zero
    torch.testing.assert_close(gp, ref, rtol=1e-5, atol=1e-7)

    weights = weight_params(critic)
    got = torch.autograd.grad(gp, weights)
    want = torch.autograd.grad(ref, weights)
    for a, b in zip(got, want, strict=True):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_gp_is_zero_for_unit_norm_linear_critic():
    w = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    w /= w.norm()
    real, fake = batch(size=8)
    gp = gradient_penalty(linear_critic(w), real, fake)
    assert gp.item() == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize("norm", [0.25, 2.0, 5.0])
def test_gp_is_squared_norm_gap_for_linear_critic(norm: float):
    w = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    w *= norm / w.norm()
    real, fake = batch(size=8)
    gp = gradient_penalty(linear_critic(w), real, fake)
    assert gp.item() == pytest.approx((norm - 1) ** 2, rel=1e-5)


def test_gp_trains_critic_but_not_generator():
    critic = small_critic()
    generator = nn.Linear(4, 16 * 16)
    real, _ = batch(n=3)
    fake = generator(torch.randn(3, 4)).view(3, 1, 16, 16)  # not detached by the caller
    gradient_penalty(critic, real, fake).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in weight_params(critic))
    assert all(p.grad is None for p in generator.parameters())


def test_gp_uses_the_given_generator():
    critic = small_critic()
    real, fake = batch()
    a = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(11))
    b = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(11))
    c = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(12))
    assert a.item() == b.item()
    assert a.item() != c.item()


def test_gp_channels_last_matches_contiguous():
    critic = small_critic()
    real, fake = batch()
    want = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(5))
    critic_cl = small_critic().to(memory_format=torch.channels_last)
    got = gradient_penalty(
        critic_cl,
        real.to(memory_format=torch.channels_last),
        fake.to(memory_format=torch.channels_last),
        generator=torch.Generator().manual_seed(5),
    )
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_gp_under_bf16_autocast_is_float32_and_close_to_fp32():
    critic = small_critic()
    real, fake = batch(n=8)
    want = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(9))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(9))
    assert got.dtype == torch.float32
    assert math.isfinite(got.item())
    assert got.item() == pytest.approx(want.item(), rel=0.05)
    got.backward()
    assert all(torch.isfinite(p.grad).all() for p in weight_params(critic))


def test_gp_rejects_mismatched_shapes():
    real, fake = batch()
    with pytest.raises(ValueError, match="shapes differ"):
        gradient_penalty(small_critic(), real, fake[:-1])


def test_critic_loss_is_negative_when_reals_score_higher():
    d_real = torch.tensor([[2.0], [3.0]])
    d_fake = torch.tensor([[-1.0], [0.0]])
    assert critic_loss(d_real, d_fake).item() == pytest.approx(-3.0)
    assert critic_loss(d_fake, d_real).item() == pytest.approx(3.0)


def test_generator_loss_decreases_as_fakes_score_higher():
    low = generator_loss(torch.tensor([[0.0], [1.0]]))
    high = generator_loss(torch.tensor([[2.0], [3.0]]))
    assert low.item() == pytest.approx(-0.5)
    assert high.item() < low.item()


def test_losses_reduce_bf16_scores_in_float32():
    d = torch.full((4, 1), 1.5, dtype=torch.bfloat16)
    assert critic_loss(d, d).dtype == torch.float32
    assert generator_loss(d).dtype == torch.float32
