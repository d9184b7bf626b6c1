"""Networks by name (resnet64/128/256, v1-v3, tiny, small), their self-describing files, Keras import."""

from __future__ import annotations

from rxwgan.models import compact, keras_era, resnet  # noqa: F401  (register tiny, small, v1-v3, resnet*)
from rxwgan.models.files import file_sha256, load_model, save_model
from rxwgan.models.keras_import import is_keras_h5, load_keras_model
from rxwgan.models.registry import (
    ModelInfo,
    available_models,
    build,
    build_critic,
    build_generator,
    model_info,
    register,
)

__all__ = [
    "ModelInfo",
    "available_models",
    "build",
    "build_critic",
    "build_generator",
    "file_sha256",
    "is_keras_h5",
    "load_keras_model",
    "load_model",
    "model_info",
    "register",
    "save_model",
]
