"""Feature spaces, built by name from ``space_registry``: ``xrv``, ``inception``, ``trained``, ``random``.

Every distance between image sets is computed in some feature space, and the number
means little without it: a reported FID names its space and its sample sizes. What each
space is, and how it is built, is declared in ``rxwgan.metrics.space_registry``; here are
the parts they share: choosing one (``auto`` included), importing its optional package,
finding its weights file, keeping built spaces in memory, and saving a fitted one.

A space's ``key`` is its id: numbers from two spaces with different ids are not
comparable. The pretrained spaces need no fitting (their id is fixed by the weights
file); a fitted one can be saved to a file (``save_space``) and named instead of a space
(``--features path/to/space.safetensors``), so that every run of a study measures in the
one space fitted for it.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections import OrderedDict
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rxwgan.base.errors import RxwganError
from rxwgan.metrics import encoder as enc
from rxwgan.metrics.space_registry import (
    AUTO,
    AUTO_ORDER,
    SPACES,
    Extract,
    SpaceInfo,
    feature_choices,
    is_fitted,
)
from rxwgan.metrics.space_types import EncoderSpace, FeatureSpace
from rxwgan.metrics.stats_cache import cache_root, images_md5, load_state, save_state
from rxwgan.models.files import file_sha256

SPACE_FILE_FORMAT = "rxwgan-feature-space"
_MEMO_SIZE = 8


class PretrainedSpace(FeatureSpace):
    """A published network loaded from a user's weights file, keyed by that file's content."""

    batch_size = 32

    def __init__(self, space: SpaceInfo, model: nn.Module, extract: Extract,
                 weights: Path, device: torch.device, version: str):
        digest = file_sha256(weights)
        package = space.module.split(".")[0]
        super().__init__(f"{space.name}-v1-{digest[:16]}", space.dim, f"{space.name}: {space.description}",
                         {"weights": str(weights), "weights_sha256": digest, package: version}, device)
        self.name = space.name
        self.model = model.to(device).eval()
        self.extract = extract

    def _extract(self, batch: Tensor) -> Tensor:
        return self.extract(self.model, batch)


# --- choosing and building a space --------------------------------------------------

_MEMO: OrderedDict[tuple, FeatureSpace] = OrderedDict()


def resolve_space(name: str, fit_images: Tensor | None = None, fit_labels: np.ndarray | None = None,
                  *, seed: int = 0, weights: str | Path | None = None,
                  cache_dir: str | Path | None = None, device: str | torch.device = "cpu",
                  fit_key: str | None = None) -> tuple[FeatureSpace, str]:
    """The space called ``name`` (or ``auto``, or a file of ``save_space``) and a line
    saying which one and why.

    ``trained`` and ``random`` are fitted on ``fit_images`` (and ``fit_labels``: the
    table's targets); ``fit_key`` names that set instead of hashing its pixels. Built
    spaces are kept in memory, so repeated calls (one per epoch) cost nothing.
    """
    device = torch.device(device)
    if is_space_file(name):
        space = load_space(name)
        return space, f"features: {space.name} from {name} ({space.key})"
    if name == AUTO:
        name, reason = auto_space(weights)
        note = f"features: {name} (auto: {reason})"
    elif name in SPACES:
        note = f"features: {name}"
    else:
        raise RxwganError(f"--features must be {', '.join(feature_choices())} or a "
                          f"feature-space file (.safetensors), not {name!r}")
    if is_fitted(name):
        if fit_images is None or len(fit_images) < 2:
            raise RxwganError(f"the {name} feature space needs at least 2 real images to fit on")
        content = fit_key or images_md5(fit_images, fit_labels)
        memo_key = (name, content, int(fit_images.shape[-1]), seed, str(cache_root(cache_dir)))
        build = functools.partial(_encoder_space, name, fit_images, fit_labels, seed, cache_dir, content)
    else:
        memo_key = (name, str(find_weights(name, weights)[0]), str(device))
        build = functools.partial(_pretrained_space, name, weights, device)
    space = _MEMO.get(memo_key)
    if space is None:
        space = build()
        _MEMO[memo_key] = space
        while len(_MEMO) > _MEMO_SIZE:
            _MEMO.popitem(last=False)
    _MEMO.move_to_end(memo_key)
    return space, note


def _encoder_space(name: str, images: Tensor, labels: np.ndarray | None, seed: int,
                   cache_dir: str | Path | None, content: str) -> FeatureSpace:
    """The fitted space ``name`` built by its registered builder, under its id."""
    images = images.detach().to("cpu", torch.float32)
    key = encoder_key(name, content, int(images.shape[-1]), seed)
    return SPACES[name].build(images, labels, seed, cache_dir, key)


def encoder_key(name: str, content: str, size: int, seed: int) -> str:
    """The id of a ``trained``/``random`` space fitted on images with this MD5."""
    return f"{name}-v{enc.ENCODER_VERSION}-{content[:16]}-{size}px-seed{seed}"


# --- feature-space files: one fitted space shared by many runs ---------------------------

def is_space_file(name: str | Path) -> bool:
    """Whether ``--features`` names a file rather than a space."""
    return str(name).endswith(".safetensors") or (str(name) not in feature_choices()
                                                  and Path(name).is_file())


def save_space(space: FeatureSpace, path: str | Path, fitted_on: dict[str, Any]) -> None:
    """Write a fitted space (its network, id and what it was fitted on) to one file."""
    if not isinstance(space, EncoderSpace):
        raise RxwganError(f"the {space.name} space needs no file: name it (--features {space.name})")
    info = {"format": SPACE_FILE_FORMAT, "name": space.name, "key": space.key, "size": space.size,
            "n_classes": space.network.class_head.out_features, "fitted_on": fitted_on,
            "info": {k: v for k, v in space.info.items() if k not in ("cached", "fitted_on")}}
    save_state(Path(path), space.network.state_dict(), info)


def read_space_info(path: str | Path) -> dict[str, Any]:
    """The metadata of a feature-space file (id, name, size, what it was fitted on)."""
    loaded = load_state(Path(path))
    if loaded is None or loaded[1].get("format") != SPACE_FILE_FORMAT:
        raise RxwganError(f"{path}: not an rxwgan feature-space file (missing or unreadable)")
    return loaded[1]


def load_space(path: str | Path) -> EncoderSpace:
    """The space saved by ``save_space``, with its id and what it was fitted on."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise RxwganError(f"{path}: no such feature-space file")
    stamp = path.stat()
    memo_key = ("file", str(path), stamp.st_mtime_ns, stamp.st_size)
    space = _MEMO.get(memo_key)
    if space is None:
        info = read_space_info(path)
        network = enc.seeded_encoder(int(info["n_classes"]), 0)  # weights loaded below
        try:
            network.load_state_dict(load_state(path)[0])
        except RuntimeError:
            raise RxwganError(f"{path}: a feature-space file of another encoder version") from None
        space = EncoderSpace(info["name"], network, int(info["size"]), info["key"],
                             {**info["info"], "fitted_on": info["fitted_on"], "file": str(path)},
                             SPACES[info["name"]].description)
        _MEMO[memo_key] = space
        while len(_MEMO) > _MEMO_SIZE:
            _MEMO.popitem(last=False)
    return space


# --- the pretrained spaces: optional packages and local weights ------------------------

def _import_optional(module: str) -> tuple[ModuleType | None, str]:
    """The module, or None and why not (absent, or broken beside this torch)."""
    package = module.split(".")[0]
    try:
        return importlib.import_module(module), ""
    except ImportError as exc:
        if exc.name == package:
            return None, f"{package} is not installed"
        return None, f"{package} cannot be imported ({exc})"
    except Exception as exc:  # noqa: BLE001 - e.g. a torchvision build that does not fit this torch
        return None, f"{package} cannot be imported ({type(exc).__name__}: {exc})"


def find_weights(space: str, weights: str | Path | None = None) -> tuple[Path | None, list[str]]:
    """The weights file of a pretrained space, and the places looked in.

    Order: ``weights`` (a file, or a folder holding the upstream file name), the
    environment variable, then the upstream package's own download folder and
    ``<rxwgan cache>/weights``.
    """
    spec = SPACES[space].weights
    places: list[Path] = []
    if weights is not None:
        places.append(Path(weights).expanduser())
    elif os.environ.get(spec.env):
        places.append(Path(os.environ[spec.env]).expanduser())
    else:
        places += [*spec.folders(), cache_root() / "weights"]
    for place in places:
        candidate = place / spec.file if place.is_dir() else place
        if candidate.is_file():
            return candidate, [str(p) for p in places]
    return None, [str(p) for p in places]


def _missing_message(space: str, package_reason: str, places: list[str],
                     weights: str | Path | None) -> str:
    info = SPACES[space]
    env = info.weights.env
    missing = []
    if package_reason:
        missing.append(f"the package ({package_reason}; pip install {info.pip})")
    if places:
        source = "--weights" if weights is not None else (env if os.environ.get(env) else "looked in")
        missing.append(f"the {info.weights.what} file {info.weights.file} ({source}: {', '.join(places)})")
    return (f"--features {space} is not usable: missing {' and '.join(missing)}; put the weights "
            f"file at --weights PATH or set {env}=PATH (the file, or a folder holding it); "
            f"--features trained needs neither")


def pretrained_status(name: str, weights: str | Path | None = None) -> tuple[bool, str]:
    """Whether the pretrained space ``name`` can be built here, and a short reason either way."""
    info = SPACES[name]
    module, reason = _import_optional(info.module)
    path, _ = find_weights(name, weights)
    if module is None:
        return False, reason
    if path is None:
        return False, f"no {info.weights.file} weights file found (--weights or {info.weights.env})"
    return True, f"{info.pip} weights found at {path}"


def auto_space(weights: str | Path | None = None) -> tuple[str, str]:
    """What ``auto`` means here (the first usable pretrained space of ``AUTO_ORDER``, else
    its last, fitted one) and why."""
    *preferred, fallback = AUTO_ORDER
    reason = ""
    for name in preferred:
        usable, reason = pretrained_status(name, weights)
        if usable:
            return name, reason
    return fallback, reason


def _pretrained_space(name: str, weights: str | Path | None, device: torch.device) -> FeatureSpace:
    """The network built on the CPU, its initialisation's draws undone (``fork_rng`` over the
    CPU generator, the only one building draws from: no CUDA generator is touched).
    """
    with torch.random.fork_rng(devices=[]):
        return _build_pretrained(name, weights, device)


def _build_pretrained(name: str, weights: str | Path | None, device: torch.device) -> FeatureSpace:
    info = SPACES[name]
    module, reason = _import_optional(info.module)
    path, places = find_weights(name, weights)
    if module is None or path is None:
        raise RxwganError(_missing_message(name, reason, [] if path else places, weights))
    model, extract = info.build(module, path)
    package, _ = _import_optional(info.module.split(".")[0])
    return PretrainedSpace(info, model, extract, path, device, getattr(package, "__version__", "?"))
