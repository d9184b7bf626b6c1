"""Feature spaces, chosen by name: ``xrv``, ``inception``, ``trained``, ``random``.

Every distance between image sets is computed in some feature space, and the number
means little without it: a reported FID names its space and its sample sizes.

- ``xrv``: torchxrayvision's DenseNet-121 chest X-ray model (``densenet121-res224-all``),
  ReLU + global-average-pooled final features (1024-d); images scaled from [-1, 1] to
  the model's [-1024, 1024] and resized to 224 px, one channel. Its weights are never
  downloaded: name the file with ``--weights`` or ``RXWGAN_XRV_WEIGHTS``.
- ``inception``: the Inception-v3 FID network of torch-fidelity (pool3, 2048-d), which
  resizes to 299 px itself; grayscale replicated to three 8-bit channels. Numbers are
  comparable with papers that report FID/KID this way. Weights: ``--weights`` or
  ``RXWGAN_INCEPTION_WEIGHTS``.
- ``trained``: the compact encoder of ``rxwgan.metrics.encoder`` trained on the real
  table's rows (cached per image content, size and seed). In-domain; the default when no
  xrv weights are found. Numbers compare generators within one space, not with papers.
- ``random``: the same encoder untrained (seeded), standardised on the real set. For
  tests and gross failures only: nothing in it was learned from X-rays.

A space's ``key`` is its id: numbers from two spaces with different ids are not
comparable. The pretrained spaces need no fitting (their id is fixed by the weights
file); a fitted one can be saved to a file (``save_space``) and named instead of a space
(``--features path/to/space.safetensors``), so that every run of a study measures in the
one space fitted for it.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os
from collections import OrderedDict
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rxwgan.errors import RxwganError
from rxwgan.metrics import encoder as enc
from rxwgan.metrics.stats_cache import cache_root, encoder_path, images_md5, load_state, save_state
from rxwgan.models.files import file_sha256

FEATURE_SPACES = ("xrv", "inception", "trained", "random")
FITTED = ("trained", "random")  # the spaces fitted on real images (the others are pretrained)
XRV_WEIGHTS_ENV = "RXWGAN_XRV_WEIGHTS"
INCEPTION_WEIGHTS_ENV = "RXWGAN_INCEPTION_WEIGHTS"
# The file names the upstream packages download these weights as.
XRV_WEIGHTS_FILE = ("nih-pc-chex-mimic_ch-google-openi-kaggle-densenet121-d121-tw-lr001-rot45-"
                    "tr15-sc15-seed0-best.pt")
INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
XRV_SIZE = 224
XRV_RANGE = 1024.0
SPACE_FILE_FORMAT = "rxwgan-feature-space"
_MEMO_SIZE = 8


class FeatureSpace:
    """A named map from images (N, 1, S, S) in [-1, 1] to features (N, D) float64.

    ``key`` identifies the space exactly (weights and preprocessing included): the
    reference-feature cache is keyed by it.
    """

    name: str = ""
    batch_size: int = 64

    def __init__(self, key: str, dim: int, description: str, info: dict[str, Any],
                 device: torch.device):
        self.key = key
        self.dim = dim
        self.description = description
        self.info = info
        self.device = device

    @torch.no_grad()
    def __call__(self, images: Tensor) -> Tensor:
        if images.dim() != 4 or images.shape[1] != 1:
            raise ValueError(f"expected images (N, 1, H, W), got {tuple(images.shape)}")
        out = [self._extract(images[i:i + self.batch_size].to(self.device, torch.float32))
               .to("cpu", torch.float64) for i in range(0, len(images), self.batch_size)]
        if not out:
            return torch.empty(0, self.dim, dtype=torch.float64)
        return torch.cat(out)

    def _extract(self, batch: Tensor) -> Tensor:
        raise NotImplementedError


class EncoderSpace(FeatureSpace):
    """``trained`` or ``random``: the compact encoder at the size it was fitted at."""

    batch_size = 256

    def __init__(self, name: str, network: enc.XrayEncoder, size: int, key: str,
                 info: dict[str, Any]):
        dim = enc.embedding_dim()
        what = ("compact encoder trained on the real rows" if name == "trained"
                else "untrained seeded encoder, for tests and gross failures only")
        super().__init__(key, dim, f"{name}: {what}, {dim}-d at {size} px", info,
                         torch.device("cpu"))
        self.name = name
        self.network = network.eval()
        self.size = size

    def _extract(self, batch: Tensor) -> Tensor:
        return self.network.embed(resize(batch, self.size))


class PretrainedSpace(FeatureSpace):
    """A published network loaded from a user's weights file, keyed by that file's content."""

    batch_size = 32
    dim: int
    package: str
    description: str

    def __init__(self, model: nn.Module, weights: Path, device: torch.device, version: str):
        digest = file_sha256(weights)
        super().__init__(f"{self.name}-v1-{digest[:16]}", self.dim, self.description,
                         {"weights": str(weights), "weights_sha256": digest, self.package: version},
                         device)
        self.model = model.to(device).eval()


class XrvSpace(PretrainedSpace):
    name = "xrv"
    dim = 1024
    package = "torchxrayvision"
    description = "xrv: torchxrayvision DenseNet-121 (densenet121-res224-all), pooled, 1024-d"

    def _extract(self, batch: Tensor) -> Tensor:
        x = resize(batch * XRV_RANGE, XRV_SIZE)
        maps = F.relu(self.model.features(x))
        return F.adaptive_avg_pool2d(maps, 1).flatten(1)


class InceptionSpace(PretrainedSpace):
    name = "inception"
    dim = 2048
    package = "torch_fidelity"
    description = "inception: Inception-v3 FID network (torch-fidelity), pool3, 2048-d"

    def _extract(self, batch: Tensor) -> Tensor:
        # The FID network takes 8-bit RGB and resizes to 299 px itself (as papers did).
        x = ((batch + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).repeat(1, 3, 1, 1)
        return self.model(x)[0].reshape(len(batch), -1)


def resize(images: Tensor, size: int) -> Tensor:
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=True)


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
    if name == "auto":
        usable, reason = xrv_status(weights)
        name = "xrv" if usable else "trained"
        note = f"features: {name} (auto: {reason})"
    elif name in FEATURE_SPACES:
        note = f"features: {name}"
    else:
        raise RxwganError(f"--features must be auto, one of {', '.join(FEATURE_SPACES)} or a "
                          f"feature-space file (.safetensors), not {name!r}")
    if name in FITTED:
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
                   cache_dir: str | Path | None, content: str) -> EncoderSpace:
    images = images.detach().to("cpu", torch.float32)
    size = int(images.shape[-1])
    key = encoder_key(name, content, size, seed)
    if name == "random":
        info = {"seed": seed, "fitted_on": len(images), "trained": False}
        return EncoderSpace(name, enc.random_encoder(images, seed), size, key, info)
    path = encoder_path(cache_dir, key)
    loaded = load_state(path)
    if loaded is not None:
        state, info = loaded
        network = enc.seeded_encoder(int(info.get("n_classes", 2)), 0)  # weights loaded below
        try:
            network.load_state_dict(state)
            return EncoderSpace(name, network, size, key, {**info, "cached": str(path)})
        except RuntimeError:
            pass  # a damaged or foreign file: train again and replace it
    network, training = enc.train_encoder(images, labels, seed)
    info = {"seed": seed, "size": size, "version": enc.ENCODER_VERSION,
            "n_classes": network.class_head.out_features, **dataclasses.asdict(training)}
    save_state(path, network.state_dict(), info)
    return EncoderSpace(name, network, size, key, {**info, "cached": str(path)})


def encoder_key(name: str, content: str, size: int, seed: int) -> str:
    """The id of a ``trained``/``random`` space fitted on images with this MD5."""
    return f"{name}-v{enc.ENCODER_VERSION}-{content[:16]}-{size}px-seed{seed}"


# --- feature-space files: one fitted space shared by many runs ---------------------------

def is_space_file(name: str | Path) -> bool:
    """Whether ``--features`` names a file rather than a space."""
    return str(name).endswith(".safetensors") or (str(name) not in ("auto", *FEATURE_SPACES)
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
                             {**info["info"], "fitted_on": info["fitted_on"], "file": str(path)})
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


_WEIGHTS = {
    "xrv": (XRV_WEIGHTS_ENV, XRV_WEIGHTS_FILE, "densenet121-res224-all weights",
            lambda: [Path.home() / ".torchxrayvision" / "models_data"]),
    "inception": (INCEPTION_WEIGHTS_ENV, INCEPTION_WEIGHTS_FILE, "Inception-v3 FID weights",
                  lambda: [Path(torch.hub.get_dir()) / "checkpoints"]),
}
_PACKAGES = {"xrv": ("torchxrayvision", "torchxrayvision"),
             "inception": ("torch_fidelity.feature_extractor_inceptionv3", "torch-fidelity")}


def find_weights(space: str, weights: str | Path | None = None) -> tuple[Path | None, list[str]]:
    """The weights file of ``xrv`` or ``inception``, and the places looked in.

    Order: ``weights`` (a file, or a folder holding the upstream file name), the
    environment variable, then the upstream package's own download folder and
    ``<rxwgan cache>/weights``.
    """
    env, filename, _, defaults = _WEIGHTS[space]
    places: list[Path] = []
    if weights is not None:
        places.append(Path(weights).expanduser())
    elif os.environ.get(env):
        places.append(Path(os.environ[env]).expanduser())
    else:
        places += [*defaults(), cache_root() / "weights"]
    for place in places:
        candidate = place / filename if place.is_dir() else place
        if candidate.is_file():
            return candidate, [str(p) for p in places]
    return None, [str(p) for p in places]


def _missing_message(space: str, package_reason: str, places: list[str],
                     weights: str | Path | None) -> str:
    env, filename, what, _ = _WEIGHTS[space]
    _, pip_name = _PACKAGES[space]
    missing = []
    if package_reason:
        missing.append(f"the package ({package_reason}; pip install {pip_name})")
    if places:
        source = "--weights" if weights is not None else (env if os.environ.get(env) else "looked in")
        missing.append(f"the {what} file {filename} ({source}: {', '.join(places)})")
    return (f"--features {space} is not usable: missing {' and '.join(missing)}; put the weights "
            f"file at --weights PATH or set {env}=PATH (the file, or a folder holding it); "
            f"--features trained needs neither")


def xrv_status(weights: str | Path | None = None) -> tuple[bool, str]:
    """Whether the xrv space can be built here, and a short reason when it cannot."""
    module, reason = _import_optional("torchxrayvision")
    path, _ = find_weights("xrv", weights)
    if module is None:
        return False, reason
    if path is None:
        return False, f"no {XRV_WEIGHTS_FILE} weights file found (--weights or {XRV_WEIGHTS_ENV})"
    return True, f"torchxrayvision weights found at {path}"


def _pretrained_space(name: str, weights: str | Path | None, device: torch.device) -> FeatureSpace:
    """The network built on the CPU, its initialisation's draws undone (``fork_rng`` over the
    CPU generator, the only one building draws from: no CUDA generator is touched).
    """
    with torch.random.fork_rng(devices=[]):
        return _build_pretrained(name, weights, device)


def _build_pretrained(name: str, weights: str | Path | None, device: torch.device) -> FeatureSpace:
    module_name, _ = _PACKAGES[name]
    module, reason = _import_optional(module_name)
    path, places = find_weights(name, weights)
    if module is None or path is None:
        raise RxwganError(_missing_message(name, reason, [] if path else places, weights))
    if name == "xrv":
        model = module.models.DenseNet(weights=None)
        _load_features(model, path)
        return XrvSpace(model, path, device, getattr(module, "__version__", "?"))
    model = module.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                               feature_extractor_weights_path=str(path))
    package = importlib.import_module("torch_fidelity")
    return InceptionSpace(model, path, device, getattr(package, "__version__", "?"))


def _load_features(model: nn.Module, path: Path) -> None:
    """Load the DenseNet's convolutional trunk (``features.*``) from a weights file.

    torchxrayvision ships whole pickled models (``.pt``): those are unpickled, so only
    name files you trust; a ``.safetensors`` state dict is read without unpickling.
    """
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            loaded = torch.load(path, map_location="cpu", weights_only=False)
            state = loaded.state_dict() if isinstance(loaded, nn.Module) else loaded
            state = state.get("state_dict", state) if isinstance(state, dict) else state
        trunk = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        model.features.load_state_dict(trunk)
    except Exception as exc:  # noqa: BLE001 - any failure means the file is not these weights
        raise RxwganError(f"{path}: not a torchxrayvision DenseNet-121 weights file "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
