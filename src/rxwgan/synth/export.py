"""ONNX export of a generator, checked against PyTorch before the file is kept.

The graph takes ``z`` (batch, latent_dim) and returns ``images`` (batch, 1, S, S) in [-1, 1]
with a dynamic batch axis. A conditional generator's graph also takes ``target`` (batch,
int64): each latent's class, so one file serves every class. The export runs onnxruntime on
random latents at two batch sizes (for every class, when conditional) and keeps the file
only when its outputs equal PyTorch's within the tolerance, so a file on disk has been
proven to compute the same images.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rxwgan.base.atomic import atomic_path
from rxwgan.base.errors import RxwganError
from rxwgan.base.extras import require
from rxwgan.models import load_model
from rxwgan.models.conditioning import classes_of

DEFAULT_OPSET = 17
TOLERANCE = 1e-4
CHECK_BATCH_SIZES = (1, 7)
INPUT_NAME = "z"
CLASS_INPUT_NAME = "target"  # a conditional generator's second input: each sample's class
OUTPUT_NAME = "images"


@dataclass(frozen=True)
class ExportResult:
    """Where the model went and how closely onnxruntime reproduced PyTorch."""

    path: Path
    arch: str
    opset: int
    exporter: str
    max_abs_diff: float
    batch_sizes: tuple[int, ...]
    tolerance: float
    inputs: tuple[str, ...] = (INPUT_NAME,)
    classes: int = 0  # a conditional generator's classes, each checked; 0: not conditional


def export_onnx(generator: str | os.PathLike, out: str | os.PathLike, overwrite: bool = False,
                opset: int = DEFAULT_OPSET, tolerance: float = TOLERANCE, seed: int = 0,
                weights: str = "ema") -> ExportResult:
    """Export a generator file (.safetensors or the old tool's .h5) to ONNX, verified.

    Refuses an existing ``out`` unless ``overwrite``; writes nothing if the check fails.
    """
    require(("onnx", "onnxruntime"), "export", "rxwgan export --onnx")
    target = Path(out)
    if target.is_dir():
        raise RxwganError(f"--onnx {target}: is a folder; name the .onnx file to write")
    if target.exists() and not overwrite:
        raise RxwganError(f"{target} already exists; pass --overwrite to replace it")
    if opset < DEFAULT_OPSET:
        raise RxwganError(f"--opset must be {DEFAULT_OPSET} or newer, got {opset}")
    module = load_model(generator, role="generator", weights=weights).float().eval()
    with atomic_path(target) as tmp:
        exporter = _export(module, tmp, opset)
        diff = _max_difference(module, tmp, seed)
        if not diff <= tolerance:
            raise RxwganError(f"{target}: onnxruntime differs from PyTorch by {diff:.2e} "
                              f"(> {tolerance:g}); nothing written")
    return ExportResult(target, module.arch, opset, exporter, diff, CHECK_BATCH_SIZES, tolerance,
                        _input_names(module), classes_of(module))


def _input_names(module: nn.Module) -> tuple[str, ...]:
    return (INPUT_NAME, CLASS_INPUT_NAME) if classes_of(module) else (INPUT_NAME,)


def _inputs(module: nn.Module, z: torch.Tensor, target: int) -> tuple[torch.Tensor, ...]:
    """The graph's inputs for latents ``z``: with every sample of class ``target`` when conditional."""
    if not classes_of(module):
        return (z,)
    return z, torch.full((len(z),), target, dtype=torch.long)


def _export(module: nn.Module, path: Path, opset: int) -> str:
    """Write the graph; the torch.export-based exporter when onnxscript is installed."""
    example = _inputs(module, torch.zeros(2, module.latent_dim), 0)
    input_names = _input_names(module)
    names = {"input_names": list(input_names), "output_names": [OUTPUT_NAME], "opset_version": opset}
    if importlib.util.find_spec("onnxscript") is not None:
        batch = torch.export.Dim("batch")
        torch.onnx.export(module, example, path, dynamo=True, external_data=False,
                          dynamic_shapes=tuple({0: batch} for _ in example), **names)
        return "torch.export"
    with warnings.catch_warnings():
        # The TorchScript exporter warns that it is deprecated; it is the one installed here. Its
        # tracer warns that a conditional generator's strength becomes a constant: it is 1 when
        # sampling, and the check below runs the graph on every class.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(module, example, path, dynamo=False,
                          dynamic_axes={name: {0: "batch"} for name in (*input_names, OUTPUT_NAME)}, **names)
    return "torchscript"


def _max_difference(module: nn.Module, path: Path, seed: int) -> float:
    """Largest |onnxruntime - PyTorch| over random latents at each check batch size, for each
    class of a conditional generator."""
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types for a graph it cannot load
        raise RxwganError(f"onnxruntime cannot load the exported graph ({exc})") from None
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    for batch in CHECK_BATCH_SIZES:
        z = torch.randn(batch, module.latent_dim, generator=generator)
        for target in range(max(classes_of(module), 1)):
            inputs = _inputs(module, z, target)
            with torch.inference_mode():
                expected = module(*inputs).numpy()
            feed = {name: x.numpy() for name, x in zip(_input_names(module), inputs, strict=True)}
            (actual,) = session.run([OUTPUT_NAME], feed)
            if actual.shape != expected.shape:
                raise RxwganError(f"exported graph gives shape {actual.shape} for batch {batch}, "
                                  f"PyTorch {expected.shape}")
            worst = max(worst, float(np.max(np.abs(actual - expected))))
    return worst
