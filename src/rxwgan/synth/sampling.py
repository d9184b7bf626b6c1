"""Latent vectors and generated images: the Python face of a trained generator.

Latent ``i`` comes from a fixed chunk of 1024 normal draws seeded by
``SeedSequence(seed).spawn`` child ``i // 1024``, so it does not depend on N, the batch
size, or a resume. The batch size can still move a float's last bit (the kernels differ),
so the generator always runs on whole aligned windows ``[k * batch, (k + 1) * batch)``
(draws past N are computed and dropped): one batch size gives the same bytes however N
grows or a run was cut.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rxwgan.base.devices import autocast, resolve_precision
from rxwgan.base.errors import RxwganError, require_at_least
from rxwgan.metrics.sources import bound_generator
from rxwgan.models import file_sha256, load_model
from rxwgan.models.files import resolve_model_path

LATENT_CHUNK = 1024
LATENT_SCHEME = "randn-chunks-1024-seedsequence-spawn"  # recorded; a change must not mix sets


def latent_vectors(seed: int, indices: Iterable[int], latent_dim: int) -> torch.Tensor:
    """Latent vectors (len(indices), latent_dim) float32; row ``i`` depends on (seed, i) only."""
    if seed < 0:
        raise RxwganError(f"--seed must be 0 or more, got {seed}")
    idx = torch.as_tensor(list(indices), dtype=torch.long).reshape(-1)
    if len(idx) and int(idx.min()) < 0:
        raise RxwganError("latent indices must be 0 or more")
    out = torch.empty(len(idx), latent_dim)
    chunks = torch.div(idx, LATENT_CHUNK, rounding_mode="floor")
    for chunk in chunks.unique().tolist():
        rows = chunks == chunk
        out[rows] = _latent_chunk(seed, chunk, latent_dim)[idx[rows] - chunk * LATENT_CHUNK]
    return out


def _latent_chunk(seed: int, chunk: int, latent_dim: int) -> torch.Tensor:
    words = np.random.SeedSequence(seed, spawn_key=(chunk,)).generate_state(2, dtype=np.uint32)
    generator = torch.Generator().manual_seed(int(words[0]) << 32 | int(words[1]))
    return torch.randn(LATENT_CHUNK, latent_dim, generator=generator)


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu",
                   weights: str = "ema", target: int | None = None) -> tuple[nn.Module, str]:
    """(generator in eval mode, fp32, channels-last, on ``device``; sha256 of its file).

    ``weights``: the file's moving average ("ema", where it has one) or its trained weights
    ("raw"). .h5 works too. A critic or a non-model file is refused with an RxwganError.
    A conditional generator is bound to class ``target`` (``z -> images`` like any other;
    refused without one); a per-class generator ignores ``target``: its class is its run's.
    """
    module = load_model(path, role="generator", weights=weights)
    sha = file_sha256(resolve_model_path(Path(path)))
    module = module.float().eval().to(device, memory_format=torch.channels_last)
    return bound_generator(module, target, str(path)), sha


def generation_precision(precision: str, device: torch.device) -> str:
    """``auto``: bf16 on a GPU that has it, fp32 elsewhere, so CPU files keep their bytes."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    return resolve_precision(precision, device)


def generate_images(generator: nn.Module, z: torch.Tensor, size: int | None = None,
                    batch_size: int = 64, precision: str = "fp32") -> torch.Tensor:
    """Images (N, 1, S, S) float32 in [-1, 1] for latents ``z``, resized to ``size`` if given.

    Runs in inference mode on the generator's device, ``batch_size`` latents at a time, so
    memory does not grow with N.
    """
    require_at_least("--batch_size", batch_size, 1)
    side = size or generator.image_size
    device = next(generator.parameters()).device
    with torch.inference_mode(), autocast(device, precision):
        parts = [_forward(generator, z[start:start + batch_size].to(device), size).cpu()
                 for start in range(0, len(z), batch_size)]
    return torch.cat(parts) if parts else torch.empty(0, 1, side, side)


def synthetic_images(generator: str | os.PathLike | nn.Module, indices: Sequence[int], seed: int = 0,
                     size: int | None = None, batch_size: int = 64) -> torch.Tensor:
    """The images ``generate`` writes for these latent indices, as [-1, 1] floats.

    Equal to the files' pixels up to their quantisation when ``generator`` is the file (or
    ``load_generator``'s module) and ``batch_size`` is the one ``generate`` used.
    """
    require_at_least("--batch_size", batch_size, 1)
    module = generator if isinstance(generator, nn.Module) else load_generator(generator)[0]
    starts = sorted({i // batch_size * batch_size for i in indices})
    windows = {start: generate_images(module, latent_vectors(seed, range(start, start + batch_size),
                                                             module.latent_dim), size, batch_size)
               for start in starts}
    if not windows:
        return generate_images(module, torch.empty(0, module.latent_dim), size, batch_size)
    return torch.stack([windows[i // batch_size * batch_size][i % batch_size] for i in indices])


def _forward(generator: nn.Module, z: torch.Tensor, size: int | None) -> torch.Tensor:
    images = generator(z.float()).float()
    if size is not None and size != images.shape[-1]:
        images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True,
                               align_corners=False).clamp(-1.0, 1.0)
    return images.contiguous()
