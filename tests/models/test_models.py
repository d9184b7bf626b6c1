"""Architectures (shapes, sizes, settings) and self-describing model files."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from rxwgan.base.errors import RxwganError
from rxwgan.models import (
    available_models,
    build_critic,
    build_generator,
    file_sha256,
    load_model,
    model_info,
    save_model,
)

# Trainable parameters. v1 is the old tool's documented count; v2/v3 are the Keras totals
# in the fixtures' info.json minus BatchNorm moving statistics (2 x channels per BN layer).
TRAINABLE = {
    "v1": (1_520_961, 1_047_233),
    "v2": (2_803_585 - 2 * (64 + 64 + 128 + 128), 1_454_881),
    "v3": (3_360_305 - 2 * (16 + 32 + 64), 82_097),
}


def _trainable(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _randomise_running_stats(module: nn.Module) -> None:
    """Make BatchNorm buffers non-default so a file that dropped them would be caught."""
    for layer in module.modules():
        if isinstance(layer, nn.BatchNorm2d):
            layer.running_mean.normal_()
            layer.running_var.uniform_(0.5, 2.0)


def test_registry_lists_the_ports_and_compact_models() -> None:
    assert available_models() == ["resnet128", "resnet256", "resnet64", "small", "tiny", "v1", "v2", "v3"]
    assert (model_info("v1").image_size, model_info("v1").latent_dim) == (128, 100)
    assert model_info("v2").image_size == model_info("v3").image_size == 256


@pytest.mark.parametrize("arch", ["v1", "v2", "v3"])
def test_shapes(arch: str) -> None:
    torch.manual_seed(0)
    size = model_info(arch).image_size
    generator, critic = build_generator(arch).eval(), build_critic(arch).eval()
    with torch.no_grad():
        images = generator(torch.randn(2, 100))
        scores = critic(images)
    assert images.shape == (2, 1, size, size)
    assert images.abs().max() <= 1.0
    assert scores.shape == (2, 1)


@pytest.mark.parametrize("arch", ["v1", "v2", "v3"])
def test_trainable_parameter_counts(arch: str) -> None:
    with torch.device("meta"):
        generator, critic = build_generator(arch), build_critic(arch)
    assert (_trainable(generator), _trainable(critic)) == TRAINABLE[arch]


def test_modules_describe_themselves() -> None:
    generator = build_generator("v3", dropout=0, latent_dim=64)
    assert (generator.arch, generator.role) == ("v3", "generator")
    assert generator.hparams == {"dropout": 0.0, "latent_dim": 64, "init": "standard", "classes": 0}
    assert json.loads(json.dumps(generator.hparams)) == generator.hparams
    assert build_critic("v2", init="keras").hparams == {"dropout": 0.3, "init": "keras", "classes": 0}


def test_keras_initialisation() -> None:
    """He-uniform conv kernels fill (-sqrt(6/fan_in), +sqrt(6/fan_in)); biases start at zero."""
    torch.manual_seed(0)
    conv = build_critic("v1").features[3]
    bound = math.sqrt(6 / (256 * 5 * 5))
    assert 0.95 * bound < conv.weight.abs().max() <= bound
    assert not conv.bias.any()


def test_dropout_is_settable() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 1, 128, 128)
    plain, noisy = build_critic("v1", dropout=0).train(), build_critic("v1", dropout=0.5).train()
    noisy.load_state_dict(plain.state_dict())
    assert torch.equal(plain(x), plain(x))
    assert not torch.equal(noisy(x), noisy(x))


@pytest.mark.parametrize("bad", [{"dropout": 1.0}, {"dropout": -0.1}, {"dropout": "high"},
                                 {"latent_dim": 0}, {"latent_dim": 2.5}, {"width": 3},
                                 {"init": "he"}, {"init": 1}])
def test_bad_hyper_parameters_refused(bad: dict) -> None:
    with pytest.raises(RxwganError, match=next(iter(bad))):
        build_generator("v1", **bad)


def test_unknown_architecture_refused() -> None:
    with pytest.raises(RxwganError, match=r"'v9'.*available: resnet128, resnet256, resnet64, small, tiny"):
        build_generator("v9")
    with pytest.raises(RxwganError, match="tiny, v1, v2, v3"):
        model_info("v9")


@pytest.mark.parametrize("role", ["generator", "critic"])
def test_save_load_round_trip(tmp_path, role: str) -> None:
    torch.manual_seed(0)
    original = (build_generator("v1", dropout=0.1) if role == "generator"
                else build_critic("v1", dropout=0.2))
    _randomise_running_stats(original)
    original.eval()
    path = tmp_path / f"{role}.safetensors"
    save_model(original, path)
    loaded = load_model(path)
    x = torch.randn(2, 100) if role == "generator" else torch.rand(2, 1, 128, 128)
    with torch.no_grad():
        assert torch.equal(original(x), loaded(x))
    assert (loaded.arch, loaded.role, loaded.hparams) == ("v1", role, original.hparams)
    assert not loaded.training
    assert all(p.requires_grad for p in loaded.parameters())
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind


def test_path_without_suffix_and_role_check(tmp_path) -> None:
    save_model(build_critic("v3"), tmp_path / "critic_epoch_100.safetensors")
    assert load_model(tmp_path / "critic_epoch_100", role="critic").role == "critic"
    with pytest.raises(RxwganError, match="holds a critic, expected a generator"):
        load_model(str(tmp_path / "critic_epoch_100"), role="generator")


def test_missing_file_refused(tmp_path) -> None:
    with pytest.raises(RxwganError, match="not found.*nothing_here"):
        load_model(tmp_path / "nothing_here")


def test_garbage_file_refused(tmp_path) -> None:
    path = tmp_path / "notes.safetensors"
    path.write_bytes(b"this is not a model at all" * 10)
    with pytest.raises(RxwganError, match="notes.safetensors"):
        load_model(path)


def test_safetensors_without_metadata_refused(tmp_path) -> None:
    path = tmp_path / "foreign.safetensors"
    save_file(build_critic("v3").state_dict(), str(path))
    with pytest.raises(RxwganError, match="foreign.safetensors.*without rxwgan model metadata"):
        load_model(path)


def test_file_naming_unknown_architecture_refused(tmp_path) -> None:
    path = tmp_path / "odd.safetensors"
    meta = {"format": "rxwgan", "role": "critic", "arch": "v9", "hparams": "{}"}
    save_file({"w": torch.zeros(1)}, str(path), metadata=meta)
    with pytest.raises(RxwganError, match=r"odd.safetensors.*'v9'.*available"):
        load_model(path)


def test_file_with_wrong_weights_refused(tmp_path) -> None:
    path = tmp_path / "mislabelled.safetensors"
    meta = {"format": "rxwgan", "role": "critic", "arch": "v1", "hparams": "{}"}
    save_file(build_critic("v3").state_dict(), str(path), metadata=meta)
    with pytest.raises(RxwganError, match="mislabelled.safetensors.*do not fit the v1 critic"):
        load_model(path)


def test_file_sha256(tmp_path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"abc")
    assert file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_channels_last_matches_contiguous() -> None:
    torch.manual_seed(0)
    generator, critic = build_generator("v1").eval(), build_critic("v1").eval()
    z = torch.randn(2, 100)
    with torch.no_grad():
        images = generator(z)
        scores = critic(images)
        generator.to(memory_format=torch.channels_last)
        critic.to(memory_format=torch.channels_last)
        images_cl = generator(z)
        scores_cl = critic(images.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(images_cl, images, atol=1e-5, rtol=0)
    torch.testing.assert_close(scores_cl, scores, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("p", [0.0, 0.3, 0.5])
def test_dropout_rate_scale_and_modes(p: float) -> None:
    from rxwgan.models.keras_layers import Dropout

    layer = Dropout(p).train()
    x = torch.ones(8, 16, 32, 32).contiguous(memory_format=torch.channels_last)
    y = layer(x)
    assert abs((y == 0).float().mean().item() - p) < 0.01
    assert abs(y.mean().item() - 1.0) < 0.02  # inverted dropout keeps the expectation
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert not torch.equal(layer(x), y) or p == 0.0  # a fresh mask each call
    assert torch.equal(layer.eval()(x), x)


def test_dropout_mask_has_no_pattern_across_channels() -> None:
    from rxwgan.models.keras_layers import Dropout

    kept = (Dropout(0.5).train()(torch.ones(4, 64, 16, 16)) != 0).float()
    per_position = kept.mean(dim=(0, 1))  # each of 256 positions over 256 draws
    assert per_position.min() > 0.3 and per_position.max() < 0.7
    neighbours = (kept.flatten()[:-1] == kept.flatten()[1:]).float().mean().item()
    assert abs(neighbours - 0.5) < 0.02  # consecutive draws independent


def test_dropout_passes_double_backward() -> None:
    from rxwgan.models.keras_layers import Dropout

    torch.manual_seed(0)
    layer = Dropout(0.3).train()
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    (grad,) = torch.autograd.grad((layer(x) ** 2).sum(), x, create_graph=True)
    grad.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


SAVE_IN_A_FRESH_PROCESS = """
import sys, torch
from rxwgan.models import build_generator, file_sha256, save_model
torch.manual_seed(0)
generator = build_generator("tiny")
ema = build_generator("tiny")
save_model(generator, sys.argv[1], ema=ema)
print(file_sha256(sys.argv[1]))
"""


def test_same_weights_give_the_same_file_bytes_in_every_process(tmp_path) -> None:
    """The sha256 that traces every synthetic image to its generator must be reproducible."""
    import subprocess
    import sys

    def saved_digest(name: str) -> str:
        command = [sys.executable, "-c", SAVE_IN_A_FRESH_PROCESS, str(tmp_path / name)]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()

    digests = {saved_digest(f"g{i}.safetensors") for i in range(3)}
    assert len(digests) == 1
    reloaded = load_model(tmp_path / "g0.safetensors", role="generator")
    assert reloaded.arch == "tiny" and reloaded.weights == "ema"
