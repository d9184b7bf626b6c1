"""Small members of the v1 family, for tests, demos and quick looks on a CPU.

Same layer pattern as the old tool's v1 (transposed-conv up-blocks with BatchNorm,
strided-conv critic), fewer pixels and channels: ``tiny`` (32 px) trains in seconds,
``small`` (64 px) in minutes on two cores. Not for results in a paper.
"""

from __future__ import annotations

from rxwgan.models.keras_era import CriticSpec, GeneratorSpec
from rxwgan.models.registry import register


@register("tiny")
def _tiny() -> tuple[GeneratorSpec, CriticSpec]:
    return (GeneratorSpec(start_shape=(16, 8, 8), channels=(16, 8), kernel_size=4, latent_dim=32),
            CriticSpec(image_size=32, channels=(8, 16), kernel_size=5))


@register("small")
def _small() -> tuple[GeneratorSpec, CriticSpec]:
    return (GeneratorSpec(start_shape=(32, 8, 8), channels=(64, 32, 16), kernel_size=4),
            CriticSpec(image_size=64, channels=(32, 64, 64), kernel_size=5))
