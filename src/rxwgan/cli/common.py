"""What every verb's parser shares: one-line errors, common flags, the runner.

Errors a user can cause come up as RxwganError and leave as one line on stderr with
exit status 2; argparse's own errors are shortened to one line too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rxwgan.base.errors import RxwganError

EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (no usage dump) and exits 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        # "rxwgan: error:", not "rxwgan train: error:": one prefix whatever the verb.
        self.exit(EXIT_USAGE, f"{self.prog.split()[0]}: error: {message} (see {self.prog} --help)\n")


def add_table_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--path-column", "--path_column", dest="path_column",
                        default="raw_image_path", help="column holding image paths")
    parser.add_argument("--target-column", "--target_column", dest="target_column",
                        default="target", help="column holding the 0/1 target")


def add_split_flags(parser: argparse.ArgumentParser, what: str = "") -> None:
    """--fold/--n_splits (k-fold), --test/--sort (the old 10x10 scheme) and --split-seed."""
    from rxwgan.data.splits import DEFAULT_N_SPLITS

    parser.add_argument("--fold", type=int, help=f"{what}k-fold scheme: the validation fold")
    parser.add_argument("--n_splits", "--n-splits", dest="n_splits", type=int,
                        help=f"{what}k-fold scheme: number of folds (default {DEFAULT_N_SPLITS})")
    parser.add_argument("--test", type=int, help=f"{what}stratified scheme: test fold 0..9")
    parser.add_argument("--sort", type=int, help=f"{what}stratified scheme: validation fold 0..9 within it")
    add_split_seed_flag(parser)


def add_split_seed_flag(parser: argparse.ArgumentParser) -> None:
    from rxwgan.data.splits import DEFAULT_SEED

    parser.add_argument("--split-seed", "--split_seed", dest="split_seed", type=int, default=DEFAULT_SEED,
                        help=f"seed that shuffles the folds (default {DEFAULT_SEED}, the old tool's)")


def split_spec(args: argparse.Namespace, default_fold: bool = True):
    """The partition the flags name (k-fold 0 of 5 when none, if ``default_fold``), checked."""
    from rxwgan.data.splits import SplitSpec

    values = {"fold": args.fold, "n_splits": args.n_splits, "test": args.test, "sort": args.sort,
              "seed": args.split_seed}
    spec = SplitSpec.from_flags(**values) if default_fold else SplitSpec(**values)
    spec.check()
    return spec


def refuse_existing(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise RxwganError(f"{path} already exists; pass --overwrite to replace it")


def normalise_dashes(argv: Sequence[str]) -> list[str]:
    """Accept ``----batch_size`` (the old README's typo) as ``--batch_size``, with a warning."""
    fixed = []
    for arg in argv:
        if arg.startswith("---") and len(arg.lstrip("-")) > 0:
            repaired = "--" + arg.lstrip("-")
            print(f"rxwgan: warning: read {arg!r} as {repaired!r}", file=sys.stderr)
            arg = repaired
        fixed.append(arg)
    return fixed


def run(argv: Sequence[str], parser: argparse.ArgumentParser) -> int:
    """Parse, call the verb's handler, and turn user errors into one line and exit 2."""
    try:
        args = parser.parse_args(normalise_dashes(argv))
    except SystemExit as exit_:  # --help, --version, or a bad flag already reported in one line
        return int(exit_.code or 0)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except RxwganError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
