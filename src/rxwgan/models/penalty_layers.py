"""Critic layers whose gradient-penalty double backward is cheap.

The penalty differentiates the critic's input gradient with respect to its weights (a
double backward). PyTorch's own formulas do two wasteful things there on a CPU:

- a convolution's double backward forms the weight gradient as a convolution of the
  transposed batch with the transposed output gradient (for v1's first layer, a 64 x 64
  kernel over 48 channels), far slower than the ordinary weight-gradient kernel;
- ReLU's backward depends on its output, so the double backward sends zeros back
  through the whole forward pass of x_hat and pays a full backward for them.

``conv2d`` writes its input gradient as a transposed convolution, whose own backward
uses the ordinary kernels, and ``MaskReLU`` treats its on/off pattern as a constant,
which it is almost everywhere. Same functions, same gradients, less work.

Inside ``input_gradient_only()`` a forward pass records no weight gradients for its
first backward: the penalty's ``autograd.grad(scores, x_hat)`` needs only the input
gradient, and its double backward still reaches the weights through that gradient.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_INPUT_GRADIENT_ONLY = contextvars.ContextVar("input_gradient_only", default=False)


@contextlib.contextmanager
def input_gradient_only() -> Iterator[None]:
    """Forward passes in this block give their weights no gradient in the first backward."""
    token = _INPUT_GRADIENT_ONLY.set(True)
    try:
        yield
    finally:
        _INPUT_GRADIENT_ONLY.reset(token)


def compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype autocast would run a convolution in here (``x``'s own outside autocast)."""
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype


class _Conv2d(torch.autograd.Function):
    """conv2d with an input gradient written as conv_transpose2d (differentiable, fast twice)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, stride: tuple[int, int],
                padding: tuple[int, int], weight_grad: bool) -> Tensor:
        dtype = compute_dtype(x)
        x_c, w_c = x.to(dtype), weight.to(dtype)
        ctx.save_for_backward(x_c, weight)
        ctx.stride, ctx.padding, ctx.weight_grad = stride, padding, weight_grad
        ctx.x_dtype, ctx.x_shape = x.dtype, x.shape
        with torch.autocast(x.device.type, enabled=False):
            return F.conv2d(x_c, w_c, None if bias is None else bias.to(dtype), stride, padding)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x_c, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        w_c = weight.to(grad.dtype)
        if ctx.needs_input_grad[0]:
            out_padding = [ctx.x_shape[d] - ((grad.shape[d] - 1) * ctx.stride[d - 2]
                                             - 2 * ctx.padding[d - 2] + weight.shape[d]) for d in (2, 3)]
            grad_x = F.conv_transpose2d(grad, w_c, None, ctx.stride, ctx.padding, out_padding).to(ctx.x_dtype)
        if ctx.weight_grad and ctx.needs_input_grad[1]:  # differentiable too, by PyTorch's formula
            grad_w = torch.ops.aten.convolution_backward(
                grad, x_c, w_c, None, ctx.stride, ctx.padding, (1, 1), False, (0, 0), 1,
                (False, True, False))[1].to(weight.dtype)
        if ctx.weight_grad and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3)).to(weight.dtype)
        return grad_x, grad_w, grad_b, None, None, None


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None, stride: tuple[int, int],
           padding: tuple[int, int]) -> Tensor:
    """F.conv2d (no dilation, no groups) with a cheap double backward; see the module."""
    return _Conv2d.apply(x, weight, bias, stride, padding, not _INPUT_GRADIENT_ONLY.get())


class _MaskReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        out = F.relu(x)
        ctx.save_for_backward((out > 0).view(torch.uint8))  # torch multiplies by uint8 faster than bool
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (on,) = ctx.saved_tensors
        return grad * on


class MaskReLU(nn.ReLU):
    """ReLU whose derivative is its on/off mask, held as a constant (see the module)."""

    def forward(self, x: Tensor) -> Tensor:
        return _MaskReLU.apply(x) if torch.is_grad_enabled() and x.requires_grad else F.relu(x)
