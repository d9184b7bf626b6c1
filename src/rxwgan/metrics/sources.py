"""Turn what a user names (a table, a folder, a generator file, a tensor) into images.

Every set becomes an ``ImageSet``: float32 images (N, 1, S, S) in [-1, 1] on the CPU, the
generator's output range, plus a description and JSON-able details for the report. Table
and folder images go through the decode-once image cache. A real table also carries all
its rows (both classes, every fold) for the ``trained`` space to be fitted on, so every
study on one table shares one encoder. A conditional generator (both classes in one network)
gives the images of one class: the class is asked for (``bound_generator``), never guessed.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rxwgan.base.devices import autocast
from rxwgan.base.errors import RxwganError
from rxwgan.data.cache import ImageCache
from rxwgan.data.table import IMAGE_SUFFIXES, read_table
from rxwgan.models.conditioning import ClassBound, classes_of
from rxwgan.models.files import MODEL_SUFFIXES, file_sha256, resolve_model_path

PARTITIONS = ("train", "val", "test", "all")
DEFAULT_SIZE = 128


@dataclass
class ImageSet:
    images: Tensor
    label: str
    info: dict[str, Any] = field(default_factory=dict)
    fit_images: Tensor | None = None  # what a trained/random space is fitted on
    fit_labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.images)


def kind_of(source: Any) -> str:
    """``tensor``, ``generator``, ``table`` or ``folder``; RxwganError when it is none."""
    if isinstance(source, ImageSet):
        return "images"
    if isinstance(source, (Tensor, np.ndarray)):
        return "tensor"
    if isinstance(source, nn.Module):
        return "generator"
    path = Path(os.fspath(source)).expanduser()
    if path.is_dir():
        return "folder"
    if path.suffix.lower() == ".csv":
        if not path.is_file():
            raise RxwganError(f"{path}: table not found")
        return "table"
    if path.suffix.lower() in MODEL_SUFFIXES or any(Path(f"{path}{s}").is_file() for s in MODEL_SUFFIXES):
        return "generator"
    if path.is_file():
        raise RxwganError(f"{path}: not a table (.csv), a folder of images or a generator file "
                          f"(.safetensors or the old .h5)")
    raise RxwganError(f"{path}: no such table, folder or generator file")


def native_size(source: Any) -> int | None:
    """The pixel size a source fixes by itself (a generator's output, a tensor's side)."""
    kind = kind_of(source)
    if kind == "images":
        return int(source.images.shape[-1])
    if kind == "tensor":
        return int(torch.as_tensor(source).shape[-1])
    if kind == "generator":
        return int(_generator(source).image_size)
    return None


def load_images(source: Any, size: int, *, n: int | None = None, seed: int = 0, with_fit: bool = False,
                cache_dir: str | Path | None = None, device: str | torch.device = "cpu",
                precision: str = "fp32", sampled_class: int | None = None, **table_options: Any) -> ImageSet:
    """Any source as an ``ImageSet`` at ``size`` px.

    ``n``: how many images a generator samples (with ``seed``, in ``precision``), or at most
    how many rows of a table or folder are used (a seeded pick). ``sampled_class``: the class
    a conditional generator samples (which needs one; every other source ignores it).
    ``table_options`` go to ``table_images`` (split, partition, target, path and target columns).
    """
    kind = kind_of(source)
    flags = {"split": "--fold/--test", "partition": "--partition", "target": "--target"}
    chosen = [flag for key, flag in flags.items() if table_options.get(key) is not None]
    if chosen and kind != "table":
        raise RxwganError(f"{', '.join(chosen)} select rows of a table, and this set is a {kind}")
    if kind == "images":
        found = source
    elif kind == "tensor":
        found = tensor_images(source)
    elif kind == "generator":
        found = generator_images(source, n or 1000, seed, device=device, precision=precision,
                                 sampled_class=sampled_class)
    elif kind == "table":
        found = table_images(source, size, cache_dir=cache_dir, **table_options)
    else:
        found = folder_images(source, size, cache_dir=cache_dir)
    if kind in ("table", "folder") and n is not None and n < len(found):
        found = _pick(found, n, seed)
    images = _to_size(found.images, size)
    fit = found.fit_images if found.fit_images is not None else (images if with_fit else None)
    return dataclasses.replace(found, images=images, fit_images=None if fit is None else _to_size(fit, size))


def tensor_images(images: Tensor | np.ndarray, label: str = "tensor") -> ImageSet:
    """A tensor (N, 1, S, S) or (N, S, S) with values in [-1, 1]."""
    x = torch.as_tensor(images).detach().to("cpu", torch.float32)
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4 or x.shape[1] != 1 or x.shape[-1] != x.shape[-2]:
        raise RxwganError(f"{label}: expected square one-channel images (N, 1, S, S), got {tuple(x.shape)}")
    return ImageSet(x, f"{label} ({len(x)} images at {x.shape[-1]} px)",
                    {"kind": "tensor", "n": len(x), "size": int(x.shape[-1])})


def _generator(source: Any) -> nn.Module:
    if isinstance(source, nn.Module):
        return source
    from rxwgan.models import load_model

    return load_model(source, role="generator")


def conditional_classes(source: Any) -> int:
    """How many classes ``source`` samples when it is a conditional generator not yet bound to
    one; 0 for any other source."""
    if kind_of(source) != "generator" or isinstance(source, ClassBound):
        return 0
    return classes_of(_generator(source))


def bound_generator(generator: nn.Module, target: int | None, name: str) -> nn.Module:
    """A conditional generator bound to class ``target`` (``z -> images`` like any other); any
    other generator as it is. A conditional one without a class is refused in one line."""
    if isinstance(generator, ClassBound):
        if target is not None and target != generator.target:
            raise RxwganError(f"--target {target}: {name} is bound to class {generator.target}")
        return generator
    classes = classes_of(generator)
    if not classes:
        return generator
    if target is None:
        raise RxwganError(f"{name} is a conditional generator (both classes): give the class to sample "
                          f"with --target 0 or 1")
    if not 0 <= target < classes:
        raise RxwganError(f"--target {target}: {name} knows classes 0 to {classes - 1}")
    return ClassBound(generator, target).train(generator.training)


@torch.no_grad()
def sample_generator(generator: nn.Module, n: int, seed: int, batch_size: int = 256,
                     precision: str = "fp32") -> Tensor:
    """``n`` images from latents drawn on the CPU with ``seed`` (the same on any device), the
    forward passes in ``precision`` (fp32 or bf16).

    The generator runs in eval mode and is put back in the mode it was in; the global RNG
    is not touched.
    """
    if n < 1:
        raise RxwganError(f"-n must be at least 1, not {n}")
    device = next(generator.parameters()).device
    rng = torch.Generator().manual_seed(seed)
    was_training = generator.training
    generator.eval()
    try:
        batches = []
        for start in range(0, n, batch_size):
            z = torch.randn(min(batch_size, n - start), generator.latent_dim, generator=rng)
            with autocast(device, precision):
                batches.append(generator(z.to(device)).float().cpu())
    finally:
        generator.train(was_training)
    return torch.cat(batches)


def generator_images(source: Any, n: int, seed: int, device: str | torch.device = "cpu",
                     precision: str = "fp32", sampled_class: int | None = None) -> ImageSet:
    """``n`` samples of a generator (of class ``sampled_class``, for a conditional one)."""
    name = "generator" if isinstance(source, nn.Module) else str(source)
    generator = _generator(source)
    if not isinstance(source, nn.Module):
        generator = generator.to(device)
    generator = bound_generator(generator, sampled_class, name)
    images = sample_generator(generator, n, seed, precision=precision)
    info = {"kind": "generator", "arch": getattr(generator, "arch", None), "n": n, "seed": seed,
            "precision": precision,
            "size": int(images.shape[-1])}
    which = ""
    if isinstance(generator, ClassBound):
        info.update({"conditional": True, "target": generator.target})
        which = f", class {generator.target} of a conditional generator"
    if not isinstance(source, nn.Module):
        path = resolve_model_path(source).resolve()
        info.update({"path": str(path), "sha256": file_sha256(path)})
    label = f"{name} ({info['arch']}{which}, {n} samples, seed {seed}, {images.shape[-1]} px)"
    return ImageSet(images, label, info)


def table_images(csv: str | Path, size: int, *, split=None, partition: str | None = None,
                 target: int | None = None, path_column: str = "raw_image_path",
                 target_column: str = "target", cache_dir: str | Path | None = None,
                 progress: bool = False) -> ImageSet:
    """The rows of one partition (``split``, a SplitSpec) and class of a table.

    ``partition`` defaults to ``val`` with a split and ``all`` without. Every row of the
    table is loaded too (``fit_images``): the trained space is fitted on all of them.
    """
    from rxwgan.data.splits import partition_table

    table = read_table(csv, path_column, target_column, target=target)
    partition = partition or ("val" if split is not None else "all")
    if partition not in PARTITIONS:
        raise RxwganError(f"--partition must be one of {', '.join(PARTITIONS)}, not {partition!r}")
    if partition != "all" and split is None:
        raise RxwganError(f"--partition {partition} needs a split: --fold K --n_splits N "
                          f"or --test T --sort S")
    targets = table.targets
    rows = np.arange(len(table)) if partition == "all" else getattr(partition_table(table, split), partition)
    if target is not None:
        rows = rows[targets[rows] == target]
    where = f"{split.name} {partition}" if split is not None else "all rows"
    which = f", target {target}" if target is not None else ""
    if len(rows) == 0:
        raise RxwganError(f"{table.source}: no rows in {where}{which}")
    everything = ImageCache(cache_dir).load(table.paths, size,
                                            labels=[table.row_label(i) for i in range(len(table))],
                                            progress=progress)
    fit = torch.from_numpy(everything)
    info = {"kind": "table", "path": str(table.source), "rows": len(rows), "table_rows": len(table),
            "split": split.name if split is not None else None, "partition": partition,
            "target": target, "size": size}
    return ImageSet(fit[torch.as_tensor(rows)], f"{table.source.name} {where}{which} "
                    f"({len(rows)} of {len(table)} rows at {size} px)", info, fit, targets)


def folder_images(folder: str | Path, size: int, cache_dir: str | Path | None = None) -> ImageSet:
    """Every image file under ``folder`` (recursively, in path order)."""
    root = Path(folder)
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise RxwganError(f"{root}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    images = torch.from_numpy(ImageCache(cache_dir).load(paths, size, progress=False))
    info = {"kind": "folder", "path": str(root), "n": len(paths), "size": size}
    return ImageSet(images, f"{root} ({len(paths)} images at {size} px)", info)


def _pick(found: ImageSet, n: int, seed: int) -> ImageSet:
    rows = torch.randperm(len(found), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    info = {**found.info, "used": n}
    return ImageSet(found.images[rows], f"{found.label}, {n} picked with seed {seed}", info,
                    found.fit_images, found.fit_labels)


def _to_size(images: Tensor, size: int) -> Tensor:
    from rxwgan.metrics.space_types import resize

    return resize(images, size)
