"""Self-describing model files: safetensors weights plus the metadata needed to rebuild.

A file names its architecture, role and hyper-parameters, so ``load_model`` needs nothing
else. Files are never unpickled (no ``torch.load``): opening an untrusted model is safe.
A generator file may also hold the moving average of its weights (keys ``ema.*``): that is
what ``load_model`` returns by default (what sampling wants), and ``weights="raw"`` gives
the trained weights themselves (what training continues from).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import nn

import rxwgan
from rxwgan.base.atomic import write_bytes
from rxwgan.base.errors import RxwganError
from rxwgan.models import registry
from rxwgan.models.keras_import import is_keras_h5, load_keras_model

FORMAT = "rxwgan"
FORMAT_VERSION = "1"
_KERAS_SUFFIXES = (".h5", ".hdf5")
MODEL_SUFFIXES = (".safetensors", *_KERAS_SUFFIXES)  # what a model file's name ends with
_FALLBACK_SUFFIXES = ("", ".safetensors", ".h5")
# What a file written before a hyper-parameter existed was built with: every network saved
# before ``init`` was added had the Keras initialisation.
_BEFORE_HPARAM_EXISTED = {"init": "keras"}
EMA_PREFIX = "ema."
WEIGHTS = ("ema", "raw")


def save_model(module: nn.Module, path: str | os.PathLike, ema: nn.Module | None = None) -> None:
    """Write weights, BatchNorm running stats and identity metadata atomically to ``path``.

    ``ema``: the moving average of ``module`` (same architecture), kept in the same file.
    """
    module = getattr(module, "_orig_mod", module)  # a torch.compile wrapper saves its model
    try:
        metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "role": module.role,
                    "arch": module.arch, "hparams": json.dumps(module.hparams, sort_keys=True),
                    "rxwgan_version": rxwgan.__version__}
    except AttributeError:
        raise ValueError("save_model needs a module built by rxwgan.models "
                         "(it carries arch, role and hparams)") from None
    tensors = {key: value.detach().cpu().contiguous()
               for key, value in module.state_dict().items()}
    if ema is not None:
        tensors.update({EMA_PREFIX + key: value.detach().cpu().contiguous()
                        for key, value in ema.state_dict().items()})
        metadata["ema"] = "1"
    write_bytes(path, _sorted_metadata(save(tensors, metadata=metadata)))


def _sorted_metadata(data: bytes) -> bytes:
    """The same safetensors bytes with the metadata keys in sorted order.

    safetensors writes ``__metadata__`` from a hash map whose order changes from process to
    process, so the same weights would get another sha256 each time (and every synthetic
    image records its generator's sha256). Sorting changes no length, so the header keeps
    its size and padding and the tensor offsets stay valid.
    """
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    if len(text) > length:  # cannot happen for a reordering; refuse rather than corrupt offsets
        raise ValueError("safetensors header grew when its metadata was sorted")
    return data[:8] + text.ljust(length) + data[8 + length:]


def load_model(path: str | os.PathLike, role: str | None = None,
               map_location: str | torch.device = "cpu", weights: str = "ema") -> nn.Module:
    """Rebuild a saved (or old-tool Keras) network from its file alone, in eval mode.

    ``path`` may omit its suffix (``generator_epoch_100``), as the old tool's users typed it.
    With ``role`` given, a file holding the other network is refused. ``weights``: "ema"
    (the moving average where the file holds one, else the trained weights) or "raw". The
    module's ``weights`` attribute says which it holds.
    """
    if role is not None and role not in registry.ROLES:
        raise ValueError(f"role must be one of {registry.ROLES} or None, got {role!r}")
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")
    resolved = resolve_model_path(Path(path))
    if resolved.suffix.lower() in _KERAS_SUFFIXES or is_keras_h5(resolved):
        module = load_keras_model(resolved)
        _check_role(resolved, module.role, role)
        module.weights = "raw"
        return module.to(map_location)
    return _load_safetensors(resolved, role, torch.device(map_location), weights)


def stored_weights(path: str | os.PathLike, weights: str = "ema") -> str:
    """The weights ``load_model(path, weights=weights)`` gives ("ema" or "raw"), from the file's
    header alone: "ema" only where the file holds a moving average (an .h5 never does)."""
    resolved = resolve_model_path(Path(path))
    if weights != "ema" or resolved.suffix.lower() in _KERAS_SUFFIXES or is_keras_h5(resolved):
        return "raw"
    try:
        with safe_open(resolved, framework="pt") as handle:
            averaged = any(key.startswith(EMA_PREFIX) for key in handle.keys())
    except (SafetensorError, OSError) as err:
        raise RxwganError(f"{resolved} is not a readable safetensors model file ({err})") from None
    return "ema" if averaged else "raw"


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in chunks so large checkpoints stay out of memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_model_path(path: str | Path) -> Path:
    """The file a user meant: ``path`` as given, else with ``.safetensors`` or ``.h5`` added."""
    candidates = [Path(f"{path}{suffix}") for suffix in _FALLBACK_SUFFIXES]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates[1:])
    raise RxwganError(f"model file not found: {path} (also tried {tried})")


def _load_safetensors(path: Path, role: str | None, device: torch.device, weights: str) -> nn.Module:
    try:
        with safe_open(path, framework="pt", device=str(device)) as handle:
            arch, found_role, hparams = _identity(path, handle.metadata() or {})
            _check_role(path, found_role, role)
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise RxwganError(f"{path} is not a readable safetensors model file ({err})") from None
    try:
        hparams = _with_older_defaults(arch, found_role, hparams)
        with torch.device("meta"):  # skip random init: every tensor comes from the file
            module = registry.build(arch, found_role, **hparams)
    except RxwganError as err:
        raise RxwganError(f"{path}: {err}") from None
    # Fresh allocations, not the file's buffers: those can be misaligned, which sends BLAS
    # down another path and breaks bit-exact reproduction of the saved model's outputs.
    module.to_empty(device=device)
    averaged = {key[len(EMA_PREFIX):]: value for key, value in tensors.items() if key.startswith(EMA_PREFIX)}
    module.weights = "ema" if averaged and weights == "ema" else "raw"
    if module.weights == "ema":
        tensors = averaged
    else:
        tensors = {key: value for key, value in tensors.items() if not key.startswith(EMA_PREFIX)}
    try:
        module.load_state_dict(tensors)
    except RuntimeError as err:
        detail = str(err).splitlines()[-1].strip()
        raise RxwganError(f"{path}: weights do not fit the {arch} {found_role} "
                          f"({detail})") from None
    return module.eval()


def _identity(path: Path, metadata: dict[str, str]) -> tuple[str, str, dict[str, Any]]:
    """(arch, role, hparams) from our metadata; RxwganError for foreign safetensors files."""
    if metadata.get("format") != FORMAT:
        raise RxwganError(f"{path} is a safetensors file without rxwgan model metadata")
    role = metadata.get("role")
    if role not in registry.ROLES:
        raise RxwganError(f"{path}: metadata role {role!r} is not generator or critic")
    try:
        hparams = json.loads(metadata.get("hparams", "{}"))
    except ValueError:
        hparams = None
    if not isinstance(hparams, dict):
        raise RxwganError(f"{path}: metadata hparams is not a JSON object")
    return metadata.get("arch", ""), role, hparams


def _with_older_defaults(arch: str, role: str, hparams: dict[str, Any]) -> dict[str, Any]:
    """``hparams`` plus the value an older file implied for each key it predates."""
    accepted = registry.hparam_defaults(arch, role)
    implied = {key: value for key, value in _BEFORE_HPARAM_EXISTED.items()
               if key in accepted and key not in hparams}
    return {**hparams, **implied}


def _check_role(path: Path, found: str, expected: str | None) -> None:
    if expected is not None and found != expected:
        raise RxwganError(f"{path} holds a {found}, expected a {expected}")
