"""Conditional networks: a class goes in exactly when the network has classes, and at strength 0
a conditional network computes what its unconditional twin computes."""

from __future__ import annotations

import pytest
import torch

from rxwgan.base.errors import RxwganError
from rxwgan.models import build_critic, build_generator
from rxwgan.models.conditioning import ClassBound, classes_of

ARCHS = ("tiny", "resnet64")


def twin_weights(conditional: torch.nn.Module, plain: torch.nn.Module) -> None:
    """Copy the unconditional network's weights into the conditional one where they correspond
    (a conditional BatchNorm's shared norm is the plain BatchNorm; the v1 family's Dense takes the
    class embedding in extra input columns)."""
    mine = conditional.state_dict()
    for key, value in plain.state_dict().items():
        target = key if key in mine else key.rsplit(".", 1)[0] + ".norm." + key.rsplit(".", 1)[1]
        if mine[target].shape != value.shape:
            mine[target][:, :value.shape[1]] = value
        else:
            mine[target] = value
    conditional.load_state_dict(mine)


def randomise_class_terms(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, torch.nn.Embedding):
                layer.weight.normal_(0, 0.5)


@pytest.mark.parametrize("arch", ARCHS)
def test_strength_zero_is_the_unconditional_twin(arch):
    torch.manual_seed(0)
    plain_g, plain_c = build_generator(arch), build_critic(arch)
    cond_g, cond_c = build_generator(arch, classes=2), build_critic(arch, classes=2)
    twin_weights(cond_g, plain_g)
    twin_weights(cond_c, plain_c)
    randomise_class_terms(cond_g)
    randomise_class_terms(cond_c)
    for net in (plain_g, cond_g, plain_c, cond_c):
        net.eval()
    z, labels = torch.randn(4, plain_g.latent_dim), torch.tensor([0, 1, 0, 1])
    with torch.no_grad():
        assert torch.allclose(cond_g(z, labels, 0.0), plain_g(z), atol=1e-6)
        assert not torch.allclose(cond_g(z, labels, 1.0), plain_g(z), atol=1e-3)
        images = plain_g(z)
        assert torch.allclose(cond_c(images, labels, 0.0), plain_c(images), atol=1e-5)
        assert not torch.allclose(cond_c(images, labels, 1.0), plain_c(images), atol=1e-3)


@pytest.mark.parametrize("arch", ARCHS)
def test_same_latent_under_two_classes_gives_two_images(arch):
    torch.manual_seed(1)
    generator = build_generator(arch, classes=2)
    randomise_class_terms(generator)
    generator.eval()
    z = torch.randn(3, generator.latent_dim)
    with torch.no_grad():
        zeros, ones = (ClassBound(generator, target)(z) for target in (0, 1))
    assert zeros.shape == ones.shape == (3, 1, generator.image_size, generator.image_size)
    assert (zeros - ones).abs().mean() > 1e-3


def test_a_class_goes_in_exactly_when_the_network_has_classes():
    plain, conditional = build_generator("tiny"), build_generator("tiny", classes=2)
    z, labels = torch.randn(2, plain.latent_dim), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="not conditional"):
        plain(z, labels)
    with pytest.raises(ValueError, match="give each sample's class"):
        conditional(z)
    with pytest.raises(ValueError, match="not one of"):
        ClassBound(conditional, 2)
    with pytest.raises(ValueError, match="not one of"):
        ClassBound(plain, 0)
    assert (classes_of(plain), classes_of(conditional)) == (0, 2)
    with pytest.raises(RxwganError, match="classes must be 0"):
        build_critic("tiny", classes=1)


def test_unconditional_networks_keep_their_layer_names():
    """Files written before conditioning existed load into today's unconditional networks."""
    assert "blocks.0.main.0.weight" in build_generator("resnet64").state_dict()
    assert not any("projection" in key for key in build_critic("resnet64").state_dict())
    assert "project.weight" in build_generator("tiny").state_dict()
