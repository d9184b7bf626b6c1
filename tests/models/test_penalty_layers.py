from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rxwgan.models import build_critic
from rxwgan.models.keras_layers import SameConv2d, SameConvTranspose2d, conv_transpose2d
from rxwgan.models.penalty_layers import MaskReLU, conv2d, input_gradient_only
from rxwgan.train.losses import gradient_penalty


class PlainSameConv2d(SameConv2d):
    """The same layer on F.conv2d, PyTorch's own formulas all the way down."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (1, 2, 1, 2)), self.weight, self.bias, self.stride)


def plain(critic: nn.Module) -> nn.Module:
    """A copy of the 16 px v1-style critic below with nn.ReLU and F.conv2d layers."""
    critic = copy.deepcopy(critic)
    for index, layer in enumerate(critic.features):
        if isinstance(layer, MaskReLU):
            critic.features[index] = nn.ReLU()
        elif isinstance(layer, SameConv2d):
            swapped = PlainSameConv2d(layer.in_channels, layer.out_channels, 5, 2).double()
            swapped.load_state_dict(layer.state_dict())
            critic.features[index] = swapped
    return critic


CONVOLUTIONS = [  # (ours, PyTorch's, input shape, weight shape, stride, padding)
    *((conv2d, F.conv2d, (1, 2, 7, 6), (2, 2, 3, 2), stride, padding)
      for stride, padding in [((1, 1), (0, 0)), ((2, 2), (1, 1)), ((2, 1), (1, 0))]),
    *((conv_transpose2d, F.conv_transpose2d, (2, 3, 5, 4), (3, 2, 8, 8), stride, padding)
      for stride, padding in [((1, 1), (0, 0)), ((2, 2), (1, 1)), ((2, 2), (3, 3))]),
]


@pytest.mark.parametrize(("ours", "pytorchs", "x_shape", "w_shape", "stride", "padding"), CONVOLUTIONS)
def test_convolution_gradients_and_double_backward_match_pytorch(ours, pytorchs, x_shape, w_shape,
                                                                 stride, padding) -> None:
    torch.manual_seed(0)
    x = torch.randn(x_shape, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(w_shape, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(w_shape[0] if ours is conv2d else w_shape[1], dtype=torch.float64, requires_grad=True)

    def layer(x, weight, bias):
        return ours(x, weight, bias, stride, padding)

    assert torch.autograd.gradcheck(layer, (x, weight, bias))
    assert torch.autograd.gradgradcheck(layer, (x, weight, bias))
    torch.testing.assert_close(layer(x, weight, bias), pytorchs(x, weight, bias, stride, padding))


def test_mask_relu_is_relu_with_a_constant_mask() -> None:
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(MaskReLU(), (x,))
    torch.testing.assert_close(MaskReLU()(x), F.relu(x))
    (grad,) = torch.autograd.grad(MaskReLU()(x).sum(), x, create_graph=True)
    assert grad.requires_grad is False  # the mask is a constant: nothing to differentiate twice


def test_penalty_weight_gradients_match_pytorchs_layers() -> None:
    """v1's critic layers at 16 px: the penalty's weight gradients equal the plain layers' ones."""
    from rxwgan.models.keras_era import Critic, CriticSpec

    torch.manual_seed(0)
    ours = Critic(CriticSpec(image_size=16, channels=(6, 5), kernel_size=5), dropout=0.0).double()
    reference = plain(ours)
    real, fake = torch.rand(2, 4, 1, 16, 16, dtype=torch.float64) * 2 - 1
    for critic in (ours, reference):
        gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(3)).backward()
    for (name, mine), theirs in zip(ours.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(gradient(mine), gradient(theirs), msg=name)
    assert gradient(ours.features[0].weight).abs().sum() > 0


def gradient(parameter: torch.Tensor) -> torch.Tensor:
    """A parameter's gradient, zeros where none reached it (the biases, under a penalty alone)."""
    return torch.zeros_like(parameter) if parameter.grad is None else parameter.grad


def test_input_gradient_only_leaves_weight_gradients_to_the_double_backward() -> None:
    torch.manual_seed(0)
    critic = build_critic("v1").eval()
    x = torch.rand(1, 1, 128, 128, requires_grad=True)
    with input_gradient_only():
        scores = critic(x)
    (grad,) = torch.autograd.grad(scores.sum(), x, create_graph=True)
    assert all(p.grad is None for p in critic.parameters())
    grad.square().sum().backward()
    assert critic.features[0].weight.grad.abs().sum() > 0
    assert critic.features[0].bias.grad is None  # biases do not move the input gradient


def test_transposed_layer_outputs_are_pytorchs_bytes_under_autocast() -> None:
    """The generator's outputs (and so `generate`'s images) do not change with the fast backward."""
    torch.manual_seed(0)
    layer = SameConvTranspose2d(4, 3, 4, stride=2).to(memory_format=torch.channels_last)
    x = torch.randn(2, 4, 9, 9).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = layer(x)
        theirs = nn.ConvTranspose2d.forward(layer, x)[..., :18, :18]
    assert ours.dtype == torch.bfloat16
    assert torch.equal(ours, theirs)
    grads = torch.autograd.grad(ours.float().square().sum(), (x, layer.weight, layer.bias))
    expected = torch.autograd.grad(theirs.float().square().sum(), (x, layer.weight, layer.bias))
    for mine, reference in zip(grads, expected, strict=True):
        assert mine.dtype == reference.dtype
        torch.testing.assert_close(mine, reference, rtol=2e-2, atol=2e-2)
