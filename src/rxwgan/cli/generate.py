"""Verbs of trained generators: ``generate`` (a synthetic data set) and ``export`` (ONNX)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rxwgan.base.errors import RxwganError
from rxwgan.cli.common import add_table_flags

FORMAT_CHOICES = ("png", "png16", "npy")  # rxwgan.synth.generate.FORMATS, without importing torch here


def cmd_generate(args: argparse.Namespace) -> int:
    from rxwgan.base.layout import MIXED_TABLE
    from rxwgan.data.table import read_table
    from rxwgan.synth.generate import generate
    from rxwgan.synth.mixing import synthetic_needed

    real = None
    if args.mix is None and args.ratio is not None:
        raise RxwganError("--ratio needs --mix TABLE.csv")
    if args.mix is not None:
        # Check the real table and the ratio before spending minutes generating.
        real = read_table(args.mix, args.path_column, args.target_column)
        need = synthetic_needed(real, args.target, _ratio(args))
        if need > args.n:
            raise RxwganError(f"--ratio {_ratio(args):g} needs {need} synthetic target-{args.target} "
                              f"images for {args.mix}, -n is {args.n}")
    # The mixed table is written inside generate, under the folder's lock.
    result = generate(args.generator, args.n, args.output, target=args.target, seed=args.seed,
                      batch_size=args.batch_size, fmt=args.format, size=args.size,
                      overwrite=args.overwrite, progress=args.progress, mix=real,
                      ratio=_ratio(args), device=args.device, precision=args.precision,
                      weights="raw" if args.raw else "ema", check_memorisation=args.check_memorisation)
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


def _ratio(args: argparse.Namespace) -> float:
    return 1.0 if args.ratio is None else args.ratio


def cmd_export(args: argparse.Namespace) -> int:
    from rxwgan.synth.export import export_onnx

    result = export_onnx(args.generator, args.onnx, overwrite=args.overwrite, opset=args.opset,
                         weights="raw" if args.raw else "ema")
    sizes = " and ".join(str(b) for b in result.batch_sizes)
    print(f"wrote {result.path} ({result.arch} generator, opset {result.opset}, input 'z' -> output "
          f"'images', dynamic batch axis, {result.exporter} exporter)")
    print(f"checked with onnxruntime: outputs equal PyTorch's within {result.tolerance:g} "
          f"(max |diff| {result.max_abs_diff:.1e} on random latents at batch sizes {sizes})")
    return 0


def register(verbs: argparse._SubParsersAction) -> None:
    """Add ``generate`` and ``export``."""
    gen = verbs.add_parser("generate", help="write a synthetic data set from a trained generator")
    gen.add_argument("-g", "--generator", required=True,
                     help="generator file (.safetensors, or the old tool's .h5)")
    gen.add_argument("-n", type=int, required=True, help="number of images")
    gen.add_argument("-o", "--output", required=True,
                     help="folder for images/, synthetic.csv (and mixed.csv)")
    gen.add_argument("-t", "--target", type=int, default=1,
                     help="target written in the table, 0 or 1 (default 1)")
    gen.add_argument("--seed", type=int, default=0, help="latent seed (default 0)")
    gen.add_argument("--batch_size", "--batch-size", dest="batch_size", type=int, default=64)
    gen.add_argument("--format", choices=FORMAT_CHOICES, default="png",
                     help="png: 8-bit grayscale; png16: 16-bit grayscale; "
                          "npy: float32 in [0, 1] (default png)")
    gen.add_argument("--size", type=int, help="output side in pixels (default: the model's)")
    gen.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda or cuda:N")
    gen.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                     help="auto: bf16 on a GPU that has it, fp32 on a CPU (the same bytes as always)")
    gen.add_argument("--raw", action="store_true",
                     help="use the generator's trained weights, not their moving average (the default "
                          "where the file has one)")
    gen.add_argument("--check-memorisation", "--check_memorisation", dest="check_memorisation",
                     action="store_true",
                     help="compare the set with the training and validation rows of the run the generator "
                          "file lives in (near copies, authenticity); the result goes on CARD.md")
    gen.add_argument("--mix", metavar="TABLE.csv",
                     help="also write mixed.csv: this table's rows plus synthetic ones")
    gen.add_argument("--ratio", type=float,
                     help="synthetic rows per real row of the same target in mixed.csv (default 1)")
    add_table_flags(gen)
    gen.add_argument("--overwrite", action="store_true",
                     help="replace a set in FOLDER made with other settings")
    gen.add_argument("--no-progress", dest="progress", action="store_false",
                     help="no progress bar")
    gen.set_defaults(handler=cmd_generate)

    export = verbs.add_parser("export", help="export a generator to ONNX, checked with onnxruntime "
                                                    "(needs the extra rxwgan[export])")
    export.add_argument("-g", "--generator", required=True,
                        help="generator file (.safetensors, or the old tool's .h5)")
    export.add_argument("--onnx", required=True, metavar="OUT.onnx", help="file to write")
    export.add_argument("--opset", type=int, default=17, help="ONNX opset, 17 or newer (default 17)")
    export.add_argument("--raw", action="store_true",
                        help="export the trained weights, not their moving average")
    export.add_argument("--overwrite", action="store_true")
    export.set_defaults(handler=cmd_export)
