"""Weight initialisations, chosen by the ``init`` hyper-parameter every architecture accepts.

- ``"keras"``: the old tool's initialisers (He-uniform convolutions, Glorot-uniform Dense,
  zero biases), exactly as before ``init`` existed, so seeded runs of v1-v3 are unchanged.
- ``"standard"`` (default): each architecture's own choice, which must not saturate the
  generator's tanh at step 0. For the Keras-era layouts it is the Keras init with one change:
  the generator's output layer gets ``init_tanh_output``. Under the Keras init that layer
  (He-uniform, fan-in counted as Keras does for a transposed conv: out x kh x kw = 16)
  sums 4096 terms with weights of std ~0.35, so v1's tanh input has std ~20 and 92 % of
  its pixels start beyond |0.99|, where tanh passes almost no gradient.

``init`` is a hyper-parameter, not a separate build argument, so a model file records how
its network was first initialised; files written before it existed read as ``"keras"``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rxwgan.base.errors import RxwganError

INITS = ("standard", "keras")
TANH_INPUT_GAIN = 0.5


def checked_init(init: str) -> str:
    if init not in INITS:
        raise RxwganError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    return init


def init_like_keras(module: nn.Module) -> None:
    """Keras' initialisers: HeUniform convs, GlorotUniform dense, zero biases.

    PyTorch's fan-in for a ConvTranspose weight (in, out, kh, kw) is out*kh*kw, the same
    number Keras derives from its (kh, kw, out, in) kernel, so kaiming_uniform matches.
    """
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
        elif isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
        else:
            continue
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)


def effective_fan_in(layer: nn.Conv2d | nn.ConvTranspose2d) -> int:
    """How many inputs one output pixel sums: in x kh x kw, divided by the stride for a transposed conv."""
    kh, kw = layer.kernel_size
    fan = layer.in_channels // layer.groups * kh * kw
    if isinstance(layer, nn.ConvTranspose2d):
        fan //= layer.stride[0] * layer.stride[1]
    return max(fan, 1)


@torch.no_grad()
def init_tanh_output(layer: nn.Conv2d | nn.ConvTranspose2d, gain: float = TANH_INPUT_GAIN) -> None:
    """Weights N(0, gain^2 / fan_in), zero bias: the tanh input's std is ``gain`` x the input's RMS.

    The layer's input comes out of BatchNorm and a (leaky) ReLU, RMS 0.7-0.9, so the tanh
    input starts with std ~0.4: no pixel near saturation, images near mid-grey with texture.
    """
    layer.weight.normal_(0.0, gain / math.sqrt(effective_fan_in(layer)))
    if layer.bias is not None:
        layer.bias.zero_()
