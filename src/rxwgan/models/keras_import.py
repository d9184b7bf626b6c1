"""Import the old tool's Keras ``.h5`` model files with h5py alone (no TensorFlow needed).

The architecture and role are recognised from the weighted layers' classes and shapes,
compared against every registered architecture, so the user never has to say which it is.
Weight layouts converted:

- Dense kernel (in, out) -> Linear weight (out, in); the generator's Dense output and the
  critic's flattened input are channels-last in Keras, so those axes are reordered to CHW;
- Conv2D kernel (kh, kw, in, out) -> (out, in, kh, kw);
- Conv2DTranspose kernel (kh, kw, out, in) -> (in, out, kh, kw) (no spatial flip: both
  frameworks compute the gradient of a cross-correlation);
- BatchNormalization gamma/beta/moving_mean/moving_variance -> weight/bias/running stats.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import nn

from rxwgan.base.errors import RxwganError
from rxwgan.models import registry

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


@dataclass(frozen=True)
class _KerasLayer:
    name: str
    class_name: str | None  # None when the file has no model_config
    weights: tuple[np.ndarray, ...]

    @property
    def shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(w.shape for w in self.weights)


def is_keras_h5(path: str | os.PathLike) -> bool:
    """True when ``path`` is a readable file starting with the HDF5 signature."""
    try:
        with open(path, "rb") as handle:
            return handle.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE
    except OSError:
        return False


def load_keras_model(path: str | os.PathLike) -> nn.Module:
    """Rebuild an old-tool generator or critic from its Keras .h5 file, in eval mode."""
    layers, dropout = _read_file(Path(path))
    arch, role, hparams = _identify(path, layers, dropout)
    module = registry.build(arch, role, **hparams)
    targets = [m for m in module.modules()
               if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d))]
    with torch.no_grad():
        for target, layer in zip(targets, layers, strict=True):
            _copy_layer(target, layer, module)
    return module.eval()


def _read_file(path: Path) -> tuple[list[_KerasLayer], float | None]:
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise RxwganError(f"{path}: not a readable HDF5 file ({err})") from None
    with handle:
        root = handle["model_weights"] if "model_weights" in handle else handle
        if "layer_names" not in root.attrs:
            raise RxwganError(f"{path}: HDF5 file holds no Keras model weights "
                              "(no model_weights group or layer_names attribute)")
        config = _model_config(handle)
        classes = {layer.get("name", layer.get("config", {}).get("name")): layer.get("class_name")
                   for layer in config}
        try:
            layers = [_read_layer(root, name, classes)
                      for name in _strings(root.attrs["layer_names"])]
        except (KeyError, ValueError, OSError) as err:
            raise RxwganError(f"{path}: malformed Keras model weights ({err})") from None
    dropout = next((layer.get("config", {}).get("rate") for layer in config
                    if layer.get("class_name") == "Dropout"), None)
    return [layer for layer in layers if layer.weights], dropout


def _model_config(handle: h5py.File) -> list[dict]:
    """The Keras layer list from the root model_config attribute ([] when absent or odd)."""
    raw = handle.attrs.get("model_config")
    if raw is None:
        return []
    try:
        config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        layers = config["config"]["layers"]
    except (ValueError, KeyError, TypeError):
        return []
    return [layer for layer in layers if isinstance(layer, dict)]


def _read_layer(root: h5py.Group, name: str, classes: dict) -> _KerasLayer:
    group = root[name]
    names = _strings(group.attrs.get("weight_names", []))
    weights = tuple(np.asarray(group[weight], np.float32) for weight in names)
    return _KerasLayer(name, classes.get(name), weights)


def _strings(values: Iterable) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _identify(path: str | os.PathLike, layers: list[_KerasLayer],
              dropout: float | None) -> tuple[str, str, dict[str, float | int | str]]:
    """(arch, role, hparams) of the registered network whose layout the file matches."""
    for arch in registry.available_models():
        for role in registry.ROLES:
            hparams: dict[str, float | int | str] = {"init": "keras"}  # Keras initialised it
            if dropout is not None:
                hparams["dropout"] = float(dropout)
            if role == "generator" and layers and len(layers[0].shapes[0]) == 2:
                hparams["latent_dim"] = int(layers[0].shapes[0][0])
            try:
                with torch.device("meta"):
                    candidate = registry.build(arch, role, **hparams)
            except RxwganError:
                continue
            if _matches(_expected_layout(candidate), layers):
                return arch, role, hparams
    found = ", ".join(f"{layer.class_name or '?'} {'x'.join(map(str, layer.shapes[0]))}"
                      for layer in layers)
    raise RxwganError(f"{path}: Keras model with {len(layers)} weighted layers ({found}) matches "
                      f"no known architecture ({', '.join(registry.available_models())}, "
                      "generator or critic)")


def _expected_layout(module: nn.Module) -> list[tuple[str, tuple[tuple[int, ...], ...]]]:
    """The (Keras class, weight shapes) list our module would have had in Keras."""
    layout = []
    for m in module.modules():
        if isinstance(m, nn.Linear):
            layout.append(("Dense", ((m.in_features, m.out_features), (m.out_features,))))
        elif isinstance(m, nn.ConvTranspose2d):
            kh, kw = m.kernel_size
            layout.append(("Conv2DTranspose", ((kh, kw, m.out_channels, m.in_channels),
                                               (m.out_channels,))))
        elif isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            layout.append(("Conv2D", ((kh, kw, m.in_channels, m.out_channels), (m.out_channels,))))
        elif isinstance(m, nn.BatchNorm2d):
            layout.append(("BatchNormalization", ((m.num_features,),) * 4))
    return layout


def _matches(expected: list[tuple[str, tuple[tuple[int, ...], ...]]],
             layers: list[_KerasLayer]) -> bool:
    return len(expected) == len(layers) and all(
        shapes == layer.shapes and layer.class_name in (None, cls)
        for (cls, shapes), layer in zip(expected, layers, strict=False))


def _copy_layer(target: nn.Module, layer: _KerasLayer, network: nn.Module) -> None:
    w = layer.weights
    if isinstance(target, nn.BatchNorm2d):
        tensors = {"weight": w[0], "bias": w[1], "running_mean": w[2], "running_var": w[3]}
    elif isinstance(target, nn.Linear):  # each network has exactly one Dense
        tensors = _dense(w[0], w[1], network)
    else:  # Conv2D (kh,kw,in,out) and Conv2DTranspose (kh,kw,out,in) take the same permutation
        tensors = {"weight": w[0].transpose(3, 2, 0, 1), "bias": w[1]}
    for key, value in tensors.items():
        getattr(target, key).copy_(torch.from_numpy(np.ascontiguousarray(value)))


def _dense(kernel: np.ndarray, bias: np.ndarray, network: nn.Module) -> dict[str, np.ndarray]:
    """Dense -> Linear, reordering the channels-last side (generator output, critic input)."""
    if network.role == "generator":  # (in, H*W*C) -> (C*H*W, in)
        c, h, w = network.start_shape
        weight = kernel.reshape(-1, h, w, c).transpose(3, 1, 2, 0).reshape(c * h * w, -1)
        bias = bias.reshape(h, w, c).transpose(2, 0, 1).reshape(-1)
    else:  # critic: (H*W*C, out) -> (out, C*H*W)
        c, h, w = network.feature_shape
        weight = kernel.reshape(h, w, c, -1).transpose(3, 2, 0, 1).reshape(-1, c * h * w)
    return {"weight": weight, "bias": bias}
