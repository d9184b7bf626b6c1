"""Architecture registry: a network is named by a string so files and CLI flags can rebuild it.

Every module built here carries ``arch`` (registry name), ``role`` ("generator" or "critic")
and ``hparams`` (the complete, JSON-able keyword set it was built with), which is all
``rxwgan.models.files`` needs to write a self-describing file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from torch import nn

from rxwgan.base.errors import RxwganError

ROLES = ("generator", "critic")


class NetSpec(Protocol):
    """How to build one network of an architecture.

    ``defaults`` lists every accepted hyper-parameter with its default; the type of each
    default is the type the value must have (an int is accepted where a float is expected).
    A generator spec's defaults include ``latent_dim``.
    """

    image_size: int
    defaults: Mapping[str, Any]

    def build(self, **hparams: Any) -> nn.Module: ...


Builder = Callable[[], tuple[NetSpec, NetSpec]]


@dataclass(frozen=True)
class ModelInfo:
    """What callers need before building: the image side in pixels and the latent size."""

    name: str
    image_size: int
    latent_dim: int


_REGISTRY: dict[str, tuple[NetSpec, NetSpec]] = {}
_TYPE_WORDS = {float: "a number", int: "an integer", bool: "true or false", str: "a string"}


def register(name: str) -> Callable[[Builder], Builder]:
    """Register ``builder() -> (generator_spec, critic_spec)`` under ``name``."""

    def decorator(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model architecture {name!r} is registered twice")
        _REGISTRY[name] = builder()
        return builder

    return decorator


def available_models() -> list[str]:
    return sorted(_REGISTRY)


def model_info(name: str) -> ModelInfo:
    generator, _ = _lookup(name)
    return ModelInfo(name=name, image_size=generator.image_size,
                     latent_dim=int(generator.defaults["latent_dim"]))


def hparam_defaults(name: str, role: str) -> dict[str, Any]:
    """Every hyper-parameter ``name``'s ``role`` network accepts, with its default."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    return dict(_lookup(name)[ROLES.index(role)].defaults)


def build_generator(name: str, **hparams: Any) -> nn.Module:
    return _build(name, "generator", hparams)


def build_critic(name: str, **hparams: Any) -> nn.Module:
    return _build(name, "critic", hparams)


def build(name: str, role: str, **hparams: Any) -> nn.Module:
    """Build either network by role, for code that reads the role from a file."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    return _build(name, role, hparams)


def _build(name: str, role: str, hparams: Mapping[str, Any]) -> nn.Module:
    spec = _lookup(name)[ROLES.index(role)]
    full = _complete_hparams(name, role, spec.defaults, hparams)
    module = spec.build(**full)
    module.arch = name
    module.role = role
    module.hparams = full
    return module


def _lookup(name: str) -> tuple[NetSpec, NetSpec]:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise RxwganError(f"unknown model architecture {name!r}; available: "
                          f"{', '.join(available_models())}") from None


def _complete_hparams(name: str, role: str, defaults: Mapping[str, Any],
                      given: Mapping[str, Any]) -> dict[str, Any]:
    """Fill defaults and coerce types so the stored dict round-trips through JSON unchanged."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise RxwganError(f"unknown hyper-parameter(s) {', '.join(unknown)} for the {name} {role}; "
                          f"accepted: {', '.join(sorted(defaults))}")
    full = dict(defaults)
    for key, value in given.items():
        full[key] = _coerce(name, role, key, value, defaults[key])
    return full


def _coerce(name: str, role: str, key: str, value: Any, default: Any) -> Any:
    expected = type(default)
    if isinstance(value, bool) and expected is not bool:
        ok = False
    elif expected is float:
        ok = isinstance(value, (int, float))
    else:
        ok = isinstance(value, expected)
    if not ok:
        kind = _TYPE_WORDS.get(expected, expected.__name__)
        raise RxwganError(f"hyper-parameter {key}={value!r} for the {name} {role} must be {kind}")
    return expected(value)
