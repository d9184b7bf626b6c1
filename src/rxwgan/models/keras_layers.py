"""The layers the Keras-era networks are built from, matching Keras to the last pixel.

Keras 'same' padding is reproduced exactly, including its asymmetric cases (extra pixel at
the bottom/right), because networks imported from the old tool must give its numbers.
BatchNorm uses Keras' eps 1e-3 and momentum 0.99 (0.01 here); the Keras initialisers are
in ``inits``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rxwgan.models.penalty_layers import compute_dtype, conv2d

BN_EPS = 1e-3
BN_MOMENTUM = 0.01
LEAKY_SLOPE = 0.3


def tf_same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) zero padding TF uses for a 'same' convolution over ``size`` pixels."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """Conv2d with TF 'same' padding, computed from the input size like TF does."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = tf_same_pads(x.shape[-2], self.kernel_size[0], self.stride[0])
        left, right = tf_same_pads(x.shape[-1], self.kernel_size[1], self.stride[1])
        if top == bottom and left == right:  # let the conv pad: no extra copy
            return conv2d(x, self.weight, self.bias, self.stride, (top, left))
        return conv2d(F.pad(x, (left, right, top, bottom)), self.weight, self.bias, self.stride, (0, 0))


class SameConvTranspose2d(nn.ConvTranspose2d):
    """ConvTranspose2d whose output is exactly ``input * stride`` like TF's 'same'.

    TF crops ``max(k - s, 0)`` pixels off the full transposed output, the odd one at the
    bottom/right; PyTorch's symmetric ``padding`` crops the even part, we drop the rest.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        if kernel_size < stride:
            raise ValueError("'same' transposed convolution needs kernel_size >= stride")
        crop = kernel_size - stride
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=crop // 2)
        self.extra_crop = crop % 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding)
        if self.extra_crop:
            y = y[..., : y.shape[-2] - self.extra_crop, : y.shape[-1] - self.extra_crop]
        return y


class _ConvTranspose2d(torch.autograd.Function):
    """F.conv_transpose2d whose bias gradient is a plain sum over the output gradient.

    oneDNN's bf16 bias gradient is slow: in v1's last up-block it took 0.22 s of a 0.56 s
    backward, where a channel sum of the same gradient takes a few milliseconds. The
    forward is F.conv_transpose2d itself (with autocast's casts), so outputs are unchanged.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                stride: tuple[int, int], padding: tuple[int, int]) -> torch.Tensor:
        dtype = compute_dtype(x)
        x_c, w_c = x.to(dtype), weight.to(dtype)
        ctx.save_for_backward(x_c, w_c)
        ctx.stride, ctx.padding = stride, padding
        ctx.dtypes = (x.dtype, weight.dtype)
        with torch.autocast(x.device.type, enabled=False):
            return F.conv_transpose2d(x_c, w_c, None if bias is None else bias.to(dtype), stride, padding)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x_c, w_c = ctx.saved_tensors
        x_dtype, w_dtype = ctx.dtypes
        grad_x, grad_w = torch.ops.aten.convolution_backward(
            grad, x_c, w_c, None, ctx.stride, ctx.padding, (1, 1), True, (0, 0), 1,
            (ctx.needs_input_grad[0], ctx.needs_input_grad[1], False))[:2]
        grad_b = None
        if ctx.needs_input_grad[2]:  # summed in fp32 at least: bf16 would round a sum of millions
            grad_b = grad.sum((0, 2, 3), dtype=torch.promote_types(grad.dtype, torch.float32)).to(w_dtype)
        return (None if grad_x is None else grad_x.to(x_dtype),
                None if grad_w is None else grad_w.to(w_dtype), grad_b, None, None)


def conv_transpose2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                     stride: tuple[int, int], padding: tuple[int, int]) -> torch.Tensor:
    """F.conv_transpose2d (no output padding, dilation or groups) with a cheap bias gradient."""
    if not torch.is_grad_enabled():
        return F.conv_transpose2d(x, weight, bias, stride, padding)
    return _ConvTranspose2d.apply(x, weight, bias, stride, padding)


class Dropout(nn.Module):
    """Inverted dropout whose mask comes from 16-bit random integers.

    ``torch.bernoulli_`` draws one float per element, which made dropout about a sixth
    of a v1 training step on a CPU; 64-bit random words split into four 16-bit draws
    cost a fraction of that. On the CPU the words come from numpy's SFC64, seeded per
    call from torch's global generator (so ``--seed`` and a checkpoint's RNG state still
    decide every mask): about three times faster than torch's Mersenne Twister, which
    spent a tenth of a v1 step on the generator's 67M-element dropout alone.
    The drop probability is ``p`` rounded to a multiple of 1/65536 (0.3 becomes
    0.300003); the mask is a constant to autograd, so the double backward of the
    gradient penalty passes through it like any product.
    """

    LEVELS = 1 << 16

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.threshold = round(p * self.LEVELS) - self.LEVELS // 2  # keep draws >= threshold
        kept = 1.0 - (self.threshold + self.LEVELS // 2) / self.LEVELS
        self.scale = 1.0 / kept if kept > 0 else 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        draws = random_words(-(-x.numel() // 4), x.device).view(torch.int16)
        draws = draws[: x.numel()].as_strided(x.shape, x.stride())
        # 0 or 1/(1-p). Through uint8: torch converts bool to floats several times slower.
        keep = (draws >= self.threshold).view(torch.uint8).to(x.dtype).mul_(self.scale)
        return x * keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


def random_words(count: int, device: torch.device) -> torch.Tensor:
    """``count`` uniform 64-bit random integers, decided by torch's global generator."""
    if device.type == "cpu":
        seed = int(torch.randint(0, 1 << 62, (), dtype=torch.int64))
        return torch.from_numpy(np.random.SFC64(seed).random_raw(count).view(np.int64))
    words = torch.empty(count, dtype=torch.int64, device=device)
    return words.random_(**{"from": -(1 << 63), "to": None})  # all 64 bits, sign bit included
