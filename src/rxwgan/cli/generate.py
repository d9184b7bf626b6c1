"""Verbs of trained generators: ``generate`` (a synthetic data set) and ``export`` (ONNX)."""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path
from typing import Any

from rxwgan.base.errors import RxwganError
from rxwgan.base.layout import CARD_FILE, MIXED_TABLE, SYNTHETIC_TABLE
from rxwgan.cli.common import Lazy, add_setting, add_table_flags, given, setting_value

FORMAT_CHOICES = ("png", "png16", "npy")  # rxwgan.synth.generate.FORMATS, without importing torch here


def _generate() -> Any:
    """``generate``, whose keyword parameters are the verb's settings; its module imports torch."""
    from rxwgan.synth.generate import generate

    return generate


def _export_onnx() -> Any:
    """``export_onnx``, whose keyword parameters are the verb's settings; its module imports torch."""
    from rxwgan.synth.export import export_onnx

    return export_onnx


def cmd_generate(args: argparse.Namespace) -> int:
    from rxwgan.data.table import read_table
    from rxwgan.synth.generate import generate, target_of_set
    from rxwgan.synth.mixing import synthetic_needed

    settings = given(args, generate)
    real = None
    if args.mix_table is None and "ratio" in settings:
        raise RxwganError("--ratio needs --mix TABLE.csv")
    if args.mix_table is not None:
        # Check the real table and the ratio before spending minutes generating.
        real = read_table(args.mix_table, args.path_column, args.target_column)
        target = target_of_set(args.generator, setting_value(args, generate, "target"))
        ratio = setting_value(args, generate, "ratio")
        need = synthetic_needed(real, target, ratio)
        if need > args.n:
            raise RxwganError(f"--ratio {ratio:g} needs {need} synthetic target-{target} "
                              f"images for {args.mix_table}, -n is {args.n}")
    # The mixed table is written inside generate, under the folder's lock.
    result = generate(**settings, mix=real)
    rate = f", {result.written / result.seconds:.1f} images/s" if result.written else ""
    print(f"wrote {result.table}: {result.n} images at {result.image_size}px "
          f"({result.written} written, {result.kept} kept from an earlier run{rate})")
    if real is not None and result.mixed is not None:
        counts = result.mixed.groupby([real.target_column, "synthetic"]).size()
        print(f"wrote {Path(args.output) / MIXED_TABLE}: " + ", ".join(
            f"target {t}: {count} {'synthetic' if s else 'real'}" for (t, s), count in counts.items()))
    if result.memorisation is not None:
        from rxwgan.synth.memorisation import summary_line

        print(summary_line(result.memorisation))
        print(f"closest pairs: {result.memorisation['pairs']}")
    print(f"wrote {result.card}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from rxwgan.synth.export import export_onnx

    result = export_onnx(**given(args, export_onnx))
    sizes = " and ".join(str(b) for b in result.batch_sizes)
    inputs = ("input" if len(result.inputs) == 1 else "inputs") + " " + " and ".join(
        f"'{name}'" for name in result.inputs)
    classes = f" of each of its {result.classes} classes" if result.classes else ""
    print(f"wrote {result.path} ({result.arch} generator, opset {result.opset}, {inputs} -> output "
          f"'images', dynamic batch axis, {result.exporter} exporter)")
    print(f"checked with onnxruntime: outputs equal PyTorch's within {result.tolerance:g} "
          f"(max |diff| {result.max_abs_diff:.1e} on random latents{classes} at batch sizes {sizes})")
    return 0


def register(verbs: argparse._SubParsersAction) -> None:
    """Add ``generate`` and ``export``."""
    gen = verbs.add_parser("generate", help="write a synthetic data set from a trained generator")
    setting = partial(add_setting, gen, Lazy(_generate))
    setting("generator", "-g", "--generator", required=True,
            help="generator file (.safetensors, or the old tool's .h5)")
    setting("n", "-n", type=int, required=True, help="number of images")
    setting("output", "-o", "--output", required=True,
            help=f"folder for images/, {SYNTHETIC_TABLE} (and {MIXED_TABLE})")
    setting("target", "-t", "--target", type=int,
            help="target written in the table, 0 or 1; for a conditional generator (both classes), the "
                 "class it samples", unset="1 for a per-class generator, none for a conditional one")
    setting("seed", "--seed", type=int, help="latent seed")
    setting("batch_size", "--batch_size", "--batch-size", type=int, help="images per forward pass")
    setting("fmt", "--format", choices=FORMAT_CHOICES,
            help="png: 8-bit grayscale; png16: 16-bit grayscale; npy: float32 in [0, 1]")
    setting("size", "--size", type=int, help="output side in pixels", unset="the model's")
    setting("device", "--device", help="auto (a GPU when there is one), cpu, cuda or cuda:N")
    setting("precision", "--precision", choices=["auto", "fp32", "bf16"],
            help="auto: bf16 on a GPU that has it, fp32 on a CPU (the same bytes as always)")
    setting("weights", "--raw", action="store_const", const="raw",
            help="use the generator's trained weights rather than their moving average (used where the "
                 "file has one)")
    setting("check_memorisation", "--check-memorisation", "--check_memorisation", action="store_true",
            help="compare the set with the training and validation rows of the run the generator file "
                 f"lives in (near copies, authenticity); the result goes on {CARD_FILE}")
    gen.add_argument("--mix", dest="mix_table", metavar="TABLE.csv",
                     help=f"also write {MIXED_TABLE}: this table's rows plus synthetic ones")
    setting("ratio", "--ratio", type=float,
            help=f"synthetic rows per real row of the same target in {MIXED_TABLE}")
    add_table_flags(gen)
    setting("overwrite", "--overwrite", action="store_true",
            help="replace a set in FOLDER made with other settings")
    setting("progress", "--no-progress", action="store_false", help="no progress bar")
    gen.set_defaults(handler=cmd_generate)

    export = verbs.add_parser("export", help="export a generator to ONNX, checked with onnxruntime "
                                             "(needs the extra rxwgan[export])")
    setting = partial(add_setting, export, Lazy(_export_onnx))
    setting("generator", "-g", "--generator", required=True,
            help="generator file (.safetensors, or the old tool's .h5)")
    setting("out", "--onnx", required=True, metavar="OUT.onnx", help="file to write")
    setting("opset", "--opset", type=int, help="ONNX opset; none older is accepted")
    setting("weights", "--raw", action="store_const", const="raw",
            help="export the trained weights, not their moving average")
    setting("overwrite", "--overwrite", action="store_true", help="replace OUT.onnx")
    export.set_defaults(handler=cmd_export)
