"""The ResNet WGAN-GP (resnet64/128/256): layout, sizes, files, channels-last and bf16."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rxwgan.base.errors import RxwganError
from rxwgan.models import build_critic, build_generator, load_model, model_info, save_model
from rxwgan.train.losses import gradient_penalty
from rxwgan.train.steps import has_batch_statistics

SIZES = {"resnet64": 64, "resnet128": 128, "resnet256": 256}
# Parameters (all trainable) at the default width 32, generator and critic. resnet64's
# generator: Linear 128 -> 256x4x4 (528,384), up-blocks 256->256, 256->128, 128->64, 64->32
# (1,180,672 + 475,904 + 119,168 + 29,888), BN 64, conv 32->1 (289).
PARAMETERS = {
    "resnet64": (2_334_369, 1_814_785),
    "resnet128": (3_515_041, 2_994_945),
    "resnet256": (4_695_713, 4_175_105),
}


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_registered_sizes_and_defaults() -> None:
    for arch, size in SIZES.items():
        info = model_info(arch)
        assert (info.image_size, info.latent_dim) == (size, 128)
        assert build_generator(arch, width=1).hparams == {"latent_dim": 128, "width": 1,
                                                          "init": "standard", "classes": 0}
        assert build_critic(arch, width=1).hparams == {"width": 1, "norm": "none", "init": "standard",
                                                       "classes": 0}


@pytest.mark.parametrize("arch", sorted(SIZES))
def test_parameter_counts(arch: str) -> None:
    with torch.device("meta"):
        generator, critic = build_generator(arch), build_critic(arch)
    assert (_count(generator), _count(critic)) == PARAMETERS[arch]


@pytest.mark.parametrize("arch", sorted(SIZES))
def test_layout(arch: str) -> None:
    """Generator: 4x4 start, one up-block per doubling; critic: one block per halving + one at 4x4."""
    size = SIZES[arch]
    with torch.device("meta"):
        generator, critic = build_generator(arch, width=4), build_critic(arch, width=4)
    doublings = size.bit_length() - 3  # log2(size / 4)
    assert generator.start_shape == (32, 4, 4)  # 8 x width: the multiplier is capped at 8
    assert len(generator.blocks) == doublings
    assert generator.to_image.in_channels == 4 and generator.to_image.kernel_size == (3, 3)
    assert len(critic.blocks) == doublings + 1
    assert critic.blocks[0].main[0].out_channels == 4
    assert critic.head.in_features == 32


@pytest.mark.parametrize("arch", sorted(SIZES))
def test_shapes_and_output_ranges(arch: str) -> None:
    torch.manual_seed(0)
    size = SIZES[arch]
    generator, critic = build_generator(arch, width=2), build_critic(arch, width=2)
    with torch.no_grad():
        images = generator.train()(torch.randn(2, 128))
        scores = critic(images)
    assert images.shape == (2, 1, size, size)
    assert images.abs().max() <= 1.0 and images.std() > 0.05  # in range, not a flat image
    assert scores.shape == (2, 1) and torch.isfinite(scores).all()


@pytest.mark.parametrize("norm", ["none", "layer"])
def test_critic_has_no_batch_statistics(norm: str) -> None:
    """Each sample's score depends on that sample alone: the penalty is per sample."""
    torch.manual_seed(0)
    critic = build_critic("resnet64", width=2, norm=norm).train()
    assert not has_batch_statistics(critic)
    x = torch.rand(3, 1, 64, 64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(critic(x)[:1], critic(x[:1]), atol=1e-5, rtol=1e-5)
    if norm == "layer":
        assert any(isinstance(m, nn.GroupNorm) and m.num_groups == 1 for m in critic.modules())


@pytest.mark.parametrize("bad", [{"width": 0}, {"norm": "batch"}, {"init": "xavier"},
                                 {"dropout": 0.3}])
def test_bad_hyper_parameters_refused(bad: dict) -> None:
    with pytest.raises(RxwganError, match=next(iter(bad))):
        build_critic("resnet64", **bad)


@pytest.mark.parametrize("role", ["generator", "critic"])
def test_save_load_round_trip(tmp_path, role: str) -> None:
    torch.manual_seed(0)
    if role == "generator":
        original = build_generator("resnet128", width=2, latent_dim=16, init="keras")
        for layer in original.modules():  # non-default running stats: a file must keep them
            if isinstance(layer, nn.BatchNorm2d):
                layer.running_mean.normal_()
                layer.running_var.uniform_(0.5, 2.0)
        x = torch.randn(2, 16)
    else:
        original = build_critic("resnet128", width=2, norm="layer")
        x = torch.rand(2, 1, 128, 128) * 2 - 1
    original.eval()
    save_model(original, tmp_path / "model.safetensors")
    loaded = load_model(tmp_path / "model")
    assert (loaded.arch, loaded.role, loaded.hparams) == ("resnet128", role, original.hparams)
    with torch.no_grad():
        assert torch.equal(original(x), loaded(x))


def test_channels_last_matches_contiguous() -> None:
    torch.manual_seed(0)
    generator = build_generator("resnet64", width=2).eval()
    critic = build_critic("resnet64", width=2, norm="layer").eval()
    z = torch.randn(2, 128)
    with torch.no_grad():
        images, scores = generator(z), critic(generator(z))
        generator.to(memory_format=torch.channels_last)
        critic.to(memory_format=torch.channels_last)
        images_cl = generator(z)
        scores_cl = critic(images.contiguous(memory_format=torch.channels_last))
    assert images_cl.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(images_cl, images, atol=1e-5, rtol=0)
    torch.testing.assert_close(scores_cl, scores, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm", ["none", "layer"])
def test_bf16_channels_last_forward_backward_and_penalty_finite(norm: str) -> None:
    torch.manual_seed(0)
    generator = build_generator("resnet64", width=2).to(memory_format=torch.channels_last)
    critic = build_critic("resnet64", width=2, norm=norm).to(memory_format=torch.channels_last)
    real = (torch.rand(2, 1, 64, 64) * 2 - 1).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fake = generator(torch.randn(2, 128))
        gp = gradient_penalty(critic, real, fake.detach().float())
        loss = critic(fake).mean() - critic(real).mean() + 10 * gp
    assert fake.dtype == torch.bfloat16
    loss.backward()
    assert torch.isfinite(loss)
    for net in (generator, critic):
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
