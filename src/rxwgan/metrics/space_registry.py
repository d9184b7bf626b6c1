"""Feature spaces registered by name: each one decorated builder with its description.

A space is either *fitted* on real images (``trained``, ``random``) or *pretrained* (a
published network whose weights file the user supplies: ``xrv``, ``inception``). The
decorators record what ``rxwgan.metrics.space_builder`` needs to build one (its optional
package, where its weights are looked for) and what the CLI shows (``feature_choices``,
``features_help``). ``auto`` is not a space but a rule over ``AUTO_ORDER``.

This module imports no torch at import time (builders import it when called), so a
parser can read it and ``rxwgan --help`` stays instant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor, nn

    from rxwgan.metrics.space_types import FeatureSpace

AUTO = "auto"
# auto: the first usable pretrained space of these, else the last (fitted, so always usable).
AUTO_ORDER = ("xrv", "trained")
XRV_WEIGHTS_ENV = "RXWGAN_XRV_WEIGHTS"
INCEPTION_WEIGHTS_ENV = "RXWGAN_INCEPTION_WEIGHTS"
# The file names the upstream packages download these weights as.
XRV_WEIGHTS_FILE = ("nih-pc-chex-mimic_ch-google-openi-kaggle-densenet121-d121-tw-lr001-rot45-"
                    "tr15-sc15-seed0-best.pt")
INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
XRV_SIZE = 224
XRV_RANGE = 1024.0

# A pretrained builder: (imported package, weights file) -> (network, extract(network, batch)).
Extract = Callable[["nn.Module", "Tensor"], "Tensor"]
PretrainedBuilder = Callable[[ModuleType, Path], tuple["nn.Module", Extract]]
# A fitted builder: (images, labels, seed, cache folder, space id) -> the fitted space.
FittedBuilder = Callable[["Tensor", "np.ndarray | None", int, "str | Path | None", str], "FeatureSpace"]


@dataclass(frozen=True)
class Weights:
    """Where a pretrained space's weights file is looked for, and how messages name it."""

    env: str  # environment variable naming the file, or a folder holding it
    file: str  # the upstream file name
    what: str
    folders: Callable[[], list[Path]]  # the upstream package's own download folders


@dataclass(frozen=True)
class SpaceInfo:
    """One registered space: ``module``, ``pip``, ``weights`` and ``dim`` only when pretrained."""

    name: str
    description: str
    build: Callable[..., Any]
    fitted: bool
    module: str = ""  # the module to import, e.g. torch_fidelity.feature_extractor_inceptionv3
    pip: str = ""  # what to pip install for it
    weights: Weights | None = None
    dim: int = 0

    def help(self) -> str:
        """The space as ``--features`` help lists it."""
        needs = f", needs {self.pip} and its weights" if not self.fitted else ""
        return f"{self.name}: {self.description}{needs}"


SPACES: dict[str, SpaceInfo] = {}


def _add(info: SpaceInfo) -> None:
    if info.name in SPACES or info.name == AUTO:
        raise ValueError(f"feature space {info.name!r} is registered twice or reserved")
    SPACES[info.name] = info


def fitted_space(name: str, description: str) -> Callable[[FittedBuilder], FittedBuilder]:
    """Register a space fitted on the real images by ``builder``."""

    def decorator(builder: FittedBuilder) -> FittedBuilder:
        _add(SpaceInfo(name, description, builder, fitted=True))
        return builder

    return decorator


def pretrained_space(name: str, description: str, *, dim: int, module: str, pip: str,
                     weights: Weights) -> Callable[[PretrainedBuilder], PretrainedBuilder]:
    """Register a published network of ``dim`` features, from ``module`` and a weights file."""

    def decorator(builder: PretrainedBuilder) -> PretrainedBuilder:
        _add(SpaceInfo(name, description, builder, fitted=False, module=module, pip=pip,
                       weights=weights, dim=dim))
        return builder

    return decorator


def space_names() -> tuple[str, ...]:
    """Every registered space, in registration order."""
    return tuple(SPACES)


def pretrained_names() -> tuple[str, ...]:
    """The registered spaces that need a package and a weights file."""
    return tuple(name for name, info in SPACES.items() if not info.fitted)


def is_fitted(name: str) -> bool:
    """Whether ``name`` is a registered space fitted on real images (not a file, not pretrained)."""
    return name in SPACES and SPACES[name].fitted


def feature_choices() -> tuple[str, ...]:
    """What ``--features`` / ``--eval_features`` accept besides a space file."""
    return (AUTO, *SPACES)


def features_help(lead: str = "feature space") -> str:
    """Help text for ``--features`` / ``--eval_features``: every space, the auto rule, files."""
    rule = ", else ".join(f"{name} if usable" for name in AUTO_ORDER[:-1])
    return (f"{lead}; {'; '.join(info.help() for info in SPACES.values())}; "
            f"{AUTO}: {rule}, else {AUTO_ORDER[-1]}; or a study's space file "
            f"(STUDY/eval_space.safetensors) to measure in the space its runs were measured in")


# --- the spaces ------------------------------------------------------------------------

@pretrained_space("xrv", "torchxrayvision DenseNet-121 (densenet121-res224-all), pooled, 1024-d",
                  dim=1024, module="torchxrayvision", pip="torchxrayvision",
                  weights=Weights(XRV_WEIGHTS_ENV, XRV_WEIGHTS_FILE, "densenet121-res224-all weights",
                                  lambda: [Path.home() / ".torchxrayvision" / "models_data"]))
def _xrv(package: ModuleType, path: Path) -> tuple[nn.Module, Extract]:
    """ReLU + global-average-pooled final DenseNet features; images scaled from [-1, 1] to the
    model's [-1024, 1024] and resized to 224 px, one channel."""
    import torch.nn.functional as F

    from rxwgan.metrics.space_types import resize

    def extract(model: nn.Module, batch: Tensor) -> Tensor:
        maps = F.relu(model.features(resize(batch * XRV_RANGE, XRV_SIZE)))
        return F.adaptive_avg_pool2d(maps, 1).flatten(1)

    model = package.models.DenseNet(weights=None)
    _load_densenet_trunk(model, path)
    return model, extract


def _load_densenet_trunk(model: nn.Module, path: Path) -> None:
    """Load the DenseNet's convolutional trunk (``features.*``) from a weights file.

    torchxrayvision ships whole pickled models (``.pt``): those are unpickled, so only
    name files you trust; a ``.safetensors`` state dict is read without unpickling.
    """
    import torch
    from torch import nn

    from rxwgan.base.errors import RxwganError

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


def _torch_hub_checkpoints() -> list[Path]:
    import torch

    return [Path(torch.hub.get_dir()) / "checkpoints"]


@pretrained_space("inception", "Inception-v3 FID network (torch-fidelity), pool3, 2048-d",
                  dim=2048, module="torch_fidelity.feature_extractor_inceptionv3", pip="torch-fidelity",
                  weights=Weights(INCEPTION_WEIGHTS_ENV, INCEPTION_WEIGHTS_FILE, "Inception-v3 FID weights",
                                  _torch_hub_checkpoints))
def _inception(package: ModuleType, path: Path) -> tuple[nn.Module, Extract]:
    """torch-fidelity's FID network; numbers comparable with papers that report FID/KID so."""
    import torch

    def extract(model: nn.Module, batch: Tensor) -> Tensor:
        # The FID network takes 8-bit RGB and resizes to 299 px itself (as papers did).
        x = ((batch + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).repeat(1, 3, 1, 1)
        return model(x)[0].reshape(len(batch), -1)

    model = package.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                                feature_extractor_weights_path=str(path))
    return model, extract


@fitted_space("trained", "compact encoder trained on the real rows")
def _trained(images: Tensor, labels: np.ndarray | None, seed: int, cache_dir: str | Path | None,
             key: str) -> FeatureSpace:
    """The compact encoder trained on the real rows, read from the cache when trained before.

    In-domain; the default when no xrv weights are found. Numbers compare generators within
    one space, not with papers.
    """
    import dataclasses

    from rxwgan.metrics import encoder as enc
    from rxwgan.metrics.space_types import EncoderSpace
    from rxwgan.metrics.stats_cache import encoder_path, load_state, save_state

    size = int(images.shape[-1])
    path = encoder_path(cache_dir, key)
    loaded = load_state(path)
    if loaded is not None:
        state, info = loaded
        network = enc.seeded_encoder(int(info.get("n_classes", 2)), 0)  # weights loaded below
        try:
            network.load_state_dict(state)
            return EncoderSpace("trained", network, size, key, {**info, "cached": str(path)},
                        SPACES["trained"].description)
        except RuntimeError:
            pass  # a damaged or foreign file: train again and replace it
    network, training = enc.train_encoder(images, labels, seed)
    info = {"seed": seed, "size": size, "version": enc.ENCODER_VERSION,
            "n_classes": network.class_head.out_features, **dataclasses.asdict(training)}
    save_state(path, network.state_dict(), info)
    return EncoderSpace("trained", network, size, key, {**info, "cached": str(path)},
                        SPACES["trained"].description)


@fitted_space("random", "untrained seeded encoder, for tests and gross failures only")
def _random(images: Tensor, labels: np.ndarray | None, seed: int, cache_dir: str | Path | None,
            key: str) -> FeatureSpace:
    """The same encoder untrained (seeded), standardised on the real set: nothing learned."""
    from rxwgan.metrics import encoder as enc
    from rxwgan.metrics.space_types import EncoderSpace

    info = {"seed": seed, "fitted_on": len(images), "trained": False}
    return EncoderSpace("random", enc.random_encoder(images, seed), int(images.shape[-1]), key, info,
                        SPACES["random"].description)
