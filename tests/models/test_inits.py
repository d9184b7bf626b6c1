"""The ``init`` hyper-parameter: "standard" does not saturate tanh, "keras" is the old init bit for bit."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from rxwgan.base.errors import RxwganError
from rxwgan.models import available_models, build_critic, build_generator, load_model, model_info
from rxwgan.models.inits import effective_fan_in

SATURATED = 0.99
MAX_SATURATED_SHARE = 0.05

# SHA-256 of the state dicts built under torch.manual_seed(0) (generator) and (1) (critic) by
# the code before ``init`` existed (commit fc4bf3b): init="keras" must draw the same bits.
KERAS_DIGESTS = {
    "v1": ("71cbffb37991370a80efa1cc3ae630c53fe050b86e6eb066484084f8cbab28f6",
           "5cac1d8ca3f3c98de35e3e9bc0d68173e685316dd39eb36630190b6257c73cc0"),
    "tiny": ("513221d7d65c4fbc8bfefb3e6f1f746b3be231f9c4d057f5c7af4793fd59078d",
             "0505388e955fa12ec50666336a3f8cd00b695c2efdf4b4cea522c2cce6e77023"),
}


def _digest(module: nn.Module) -> str:
    digest = hashlib.sha256()
    for key, value in module.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _saturated_share(arch: str, **hparams) -> float:
    """Share of output pixels with |x| > 0.99 at step 0 (train mode, as the first step runs)."""
    info = model_info(arch)
    torch.manual_seed(0)
    generator = build_generator(arch, **hparams).train()
    batch = 2 if info.image_size >= 256 else 4
    with torch.no_grad():
        images = generator(torch.randn(batch, info.latent_dim))
    return (images.abs() > SATURATED).float().mean().item()


@pytest.mark.parametrize("arch", available_models())
def test_default_init_does_not_saturate(arch: str) -> None:
    assert build_generator(arch).hparams["init"] == "standard"
    assert _saturated_share(arch) <= MAX_SATURATED_SHARE


def test_keras_init_saturates_v1() -> None:
    """The reason for "standard": the old init starts most of v1's pixels at +-1."""
    assert _saturated_share("v1", init="keras") > 0.5


@pytest.mark.parametrize("arch", sorted(KERAS_DIGESTS))
def test_keras_init_is_the_old_init_bit_for_bit(arch: str) -> None:
    torch.manual_seed(0)
    generator = build_generator(arch, init="keras")
    torch.manual_seed(1)
    critic = build_critic(arch, init="keras")
    assert (_digest(generator), _digest(critic)) == KERAS_DIGESTS[arch]


def test_standard_changes_only_the_generator_output_layer() -> None:
    torch.manual_seed(0)
    keras = build_generator("v1", init="keras").state_dict()
    torch.manual_seed(0)
    standard = build_generator("v1").state_dict()
    differ = sorted(key for key in keras if not torch.equal(keras[key], standard[key]))
    assert differ == ["to_image.weight"]
    std = standard["to_image.weight"].std().item()
    assert std == pytest.approx(0.5 / (256 * 4 * 4) ** 0.5, rel=0.05)  # 4096 inputs per pixel


def test_effective_fan_in_counts_inputs_per_output_pixel() -> None:
    assert effective_fan_in(nn.Conv2d(8, 1, 3)) == 72
    assert effective_fan_in(nn.ConvTranspose2d(8, 1, 4, stride=2)) == 32
    assert effective_fan_in(nn.ConvTranspose2d(8, 1, 4, stride=1)) == 128


@pytest.mark.parametrize("arch", ["tiny", "resnet64"])
@pytest.mark.parametrize("init", ["standard", "keras"])
def test_init_is_deterministic_under_manual_seed(arch: str, init: str) -> None:
    hparams = {"init": init, **({"width": 2} if arch.startswith("resnet") else {})}
    digests = []
    for _ in range(2):
        torch.manual_seed(3)
        digests.append((_digest(build_generator(arch, **hparams)), _digest(build_critic(arch, **hparams))))
    assert digests[0] == digests[1]


def test_unknown_init_refused() -> None:
    with pytest.raises(RxwganError, match="init must be one of standard, keras"):
        build_critic("resnet64", init="orthogonal")


def test_file_from_before_init_reads_as_keras(tmp_path) -> None:
    """Every network saved before ``init`` existed was Keras-initialised; its file says so now."""
    critic = build_critic("tiny", init="keras")
    path = tmp_path / "old.safetensors"
    meta = {"format": "rxwgan", "format_version": "1", "role": "critic", "arch": "tiny",
            "hparams": json.dumps({"dropout": 0.3})}
    save_file({k: v.contiguous() for k, v in critic.state_dict().items()}, str(path), metadata=meta)
    assert load_model(path).hparams == {"dropout": 0.3, "init": "keras", "classes": 0}
