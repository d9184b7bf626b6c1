"""The generator EMA: the formula, convergence, buffers, checkpoint round trip, model files."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from rxwgan.models import build_generator, load_model, save_model
from rxwgan.train.ema import GeneratorEMA, new_ema


def _tiny(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_generator("tiny")


def _train_a_little(generator: nn.Module, seed: int) -> None:
    """One forward in train mode (moves BatchNorm statistics) and a change of every weight."""
    generator.train()
    with torch.no_grad():
        generator(torch.randn(4, generator.latent_dim, generator=torch.Generator().manual_seed(seed)))
        for p in generator.parameters():
            p.add_(0.01 * (seed + 1))


def test_off_when_ema_kimg_is_not_positive():
    generator = _tiny()
    assert new_ema(generator, 0) is None and new_ema(generator, -1.0) is None
    with pytest.raises(ValueError, match="ema_kimg"):
        GeneratorEMA(generator, 0)


def test_beta_follows_the_half_life_in_images_and_the_ramp_up():
    generator = _tiny()
    ema = GeneratorEMA(generator, ema_kimg=2.0, rampup=None)
    assert ema.beta(16) == 0.5 ** (16 / 2000)
    assert ema.beta(2000) == pytest.approx(0.5)  # one half-life in one update
    ramped = GeneratorEMA(generator, ema_kimg=2.0, rampup=0.05)
    assert ramped.beta(16) == 0.0  # nothing seen yet: the first update copies
    ramped.nimg = 1000  # half-life min(2000, 0.05 * 1000) = 50 images
    assert ramped.beta(16) == 0.5 ** (16 / 50)
    ramped.nimg = 10**6
    assert ramped.beta(16) == 0.5 ** (16 / 2000)


def test_update_averages_weights_copies_buffers_and_counts_images():
    generator = _tiny()
    ema = GeneratorEMA(generator, ema_kimg=1.0, rampup=None)
    before = {k: v.clone() for k, v in ema.module.state_dict().items()}
    _train_a_little(generator, seed=1)
    beta = ema.beta(16)
    ema.update(generator, 16)
    assert ema.nimg == 16
    live = dict(generator.named_parameters())
    for name, p in ema.module.named_parameters():
        assert torch.allclose(p, beta * before[name] + (1 - beta) * live[name], atol=1e-6)
        assert not p.requires_grad and p.grad is None
    for name, b in ema.module.named_buffers():
        assert torch.equal(b, dict(generator.named_buffers())[name])
    assert any(not torch.equal(b, before[n]) for n, b in ema.module.named_buffers())
    assert not ema.module.training


def test_converges_to_constant_weights_and_the_ramp_copies_first():
    generator = _tiny()
    ema = GeneratorEMA(generator, ema_kimg=0.05, rampup=None)  # half-life 50 images
    _train_a_little(generator, seed=2)
    for _ in range(60):  # 60 x 16 images = ~19 half-lives
        ema.update(generator, 16)
    for p, q in zip(ema.module.parameters(), generator.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)
    fresh = _tiny()
    ramped = GeneratorEMA(fresh, ema_kimg=10.0)
    _train_a_little(fresh, seed=3)
    ramped.update(fresh, 16)
    assert all(torch.equal(p, q) for p, q in zip(ramped.module.parameters(), fresh.parameters(), strict=True))


def test_no_gradient_tracking_and_the_live_generator_is_untouched():
    generator = _tiny()
    ema = GeneratorEMA(generator, ema_kimg=1.0)
    generator(torch.randn(2, generator.latent_dim)).sum().backward()
    ema.update(generator, 2)
    assert all(p.grad is not None for p in generator.parameters())
    assert all(p.requires_grad for p in generator.parameters()) and generator.training
    out = ema.module(torch.randn(2, generator.latent_dim))
    assert not out.requires_grad
    assert ema.module is not generator


def test_state_round_trip_through_a_weights_only_checkpoint_is_bit_exact():
    generator = _tiny()
    ema = GeneratorEMA(generator, ema_kimg=0.5)
    for seed in range(3):
        _train_a_little(generator, seed)
        ema.update(generator, 16)
    buffer = io.BytesIO()
    torch.save({"ema": ema.state_dict()}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)["ema"]
    other = GeneratorEMA(_tiny(seed=5), ema_kimg=9.0)
    other.load_state_dict(loaded)
    assert (other.nimg, other.ema_kimg, other.rampup) == (48, 0.5, 0.05)
    for (name, a), b in zip(ema.module.state_dict().items(), other.module.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    _train_a_little(generator, seed=7)  # and both continue identically
    ema.update(generator, 16)
    other.update(generator, 16)
    pairs = zip(ema.module.parameters(), other.module.parameters(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


def test_channels_last_model_and_model_file(tmp_path):
    generator = _tiny().to(memory_format=torch.channels_last)
    ema = GeneratorEMA(generator, ema_kimg=1.0)
    _train_a_little(generator, seed=4)
    ema.update(generator, 16)
    for p, q in zip(ema.module.parameters(), generator.parameters(), strict=True):
        assert p.stride() == q.stride()
    for attribute in ("arch", "role", "hparams", "image_size", "latent_dim"):
        assert getattr(ema.module, attribute) == getattr(generator, attribute)
    save_model(ema.module, tmp_path / "generator_ema.safetensors")
    loaded = load_model(tmp_path / "generator_ema.safetensors", role="generator")
    z = torch.randn(3, generator.latent_dim)
    assert torch.allclose(loaded(z), ema.module(z), atol=1e-6)  # conv kernels differ by layout
    pairs = zip(loaded.state_dict().values(), ema.module.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
