"""The ``utility`` verb: a TB classifier per fold, with and without the study's synthetic data."""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path
from typing import Any

from rxwgan.base.errors import RxwganError
from rxwgan.base.layout import UTILITY_ROC, UTILITY_SUMMARY, UTILITY_SUMMARY_MARKDOWN, UTILITY_TABLE
from rxwgan.cli.common import Lazy, add_setting, given
from rxwgan.utility.settings import (
    AUTO,
    CONDITIONAL,
    CONTROLS,
    PER_CLASS,
    RUN_KINDS,
    ClassifierSettings,
    UtilitySettings,
)

AT_LEAST_ONE = {"max_epochs": "--epochs", "size": "--size"}  # named by flag (the rest: UtilityOptions.check)


def _utility_options() -> Any:
    """``UtilityOptions``, whose module imports torch."""
    from rxwgan.utility.workers import UtilityOptions

    return UtilityOptions


def cmd_utility(args: argparse.Namespace) -> int:
    if args.status:
        from rxwgan.utility.driver import utility_status

        print(utility_status(args.study))
        return 0
    from rxwgan.utility.driver import run_utility
    from rxwgan.utility.summary import comparison_line
    from rxwgan.utility.workers import UtilityOptions

    classifier, options = given(args, ClassifierSettings), given(args, UtilityOptions)
    for name, flag in AT_LEAST_ONE.items():
        if classifier.get(name, 1) < 1:
            raise RxwganError(f"{flag} must be at least 1, not {classifier[name]}")
    chosen = given(args, UtilitySettings)
    if "ratios" in chosen:
        chosen["ratios"] = _ratios(chosen["ratios"])
    if "control" in chosen:
        chosen["control"] = tuple(name.strip() for name in chosen["control"].split(",") if name.strip())
    settings = UtilitySettings(**chosen, classifier=ClassifierSettings(**classifier))
    result = run_utility(args.study, settings, UtilityOptions(**options), table=args.table,
                         folds=_folds(args.folds), runs=args.runs, overwrite=args.overwrite)
    summary = result.folder / UTILITY_SUMMARY_MARKDOWN
    blocks = summary.read_text().split("\n\n")
    print("\n\n".join(blocks[:2] if result.headline else blocks[:1]))  # the headline, then the table
    for comparison in result.comparisons:
        print(comparison_line(comparison))
    for line in summary.read_text().splitlines():  # the warnings, and the folds covered or not
        if line.startswith("> "):
            print(line.removeprefix("> "))
    print(f"wrote {result.folder / UTILITY_TABLE}, {UTILITY_SUMMARY}, {UTILITY_SUMMARY_MARKDOWN} and "
          f"{UTILITY_ROC} in {result.folder}")
    return 0 if result.ok else 1


def _ratios(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise RxwganError(f"--ratio {text!r}: write numbers like 1 or 0.5,1,2") from None


def _folds(text: str | None) -> list[str] | None:
    """Split names (fold_0, test_1_sort_2), or k-fold numbers such as 0-2."""
    if text is None:
        return None
    from rxwgan.study.plan import parse_indices

    parts = [part.strip() for part in text.split(",") if part.strip()]
    if all(part.replace("-", "").isdigit() for part in parts):
        return [f"fold_{i}" for i in parse_indices(text, "--folds")]
    return parts


def register(verbs: argparse._SubParsersAction) -> None:
    """Add ``utility``."""
    parser = verbs.add_parser("utility", help="does the synthetic data help? a TB classifier per fold, "
                                              "with and without it")
    parser.add_argument("study", type=Path, help="the study folder (rxwgan sweep's -o, or the demo's)")
    plan = partial(add_setting, parser, UtilitySettings)
    plan("ratios", "--ratio", metavar="RATIO",
         help="synthetic images per real image of each class in real+synth; a list (0.5,1,2) runs each")
    plan("repeats", "--repeats", type=int, help="classifier seeds per condition")
    plan("seed", "--seed", type=int, help="first seed")
    plan("control", "--control", metavar="CONTROL",
         help=f"controls to train too, a list of {', '.join(CONTROLS)}: swapped (real+synth with the "
              f"synthetic labels swapped; must score below real), duplicated (the real rows repeated "
              f"to real+synth's count; real+synth must beat it)")
    plan("weights", "--weights", choices=["ema", "raw"],
         help="ema: the generators' moving average; raw: their raw weights")
    parser.add_argument("--folds", help="compute only these splits: fold_0,fold_2 or 0-2 (default: every "
                                        "split whose runs have finished); the tables still cover every "
                                        "fold with valid results")
    parser.add_argument("--runs", choices=RUN_KINDS, default=AUTO,
                        help=f"the runs that give each fold's generators: {PER_CLASS} (one per class) or "
                             f"{CONDITIONAL} (one for both classes); {AUTO}: the only kind the study holds "
                             f"(default %(default)s)")
    parser.add_argument("--table", help="the table, when it moved since the runs trained on it")
    classifier = partial(add_setting, parser, ClassifierSettings)
    classifier("size", "--size", type=int, help="classifier input size in pixels")
    classifier("max_epochs", "--epochs", type=int, metavar="EPOCHS",
               help="classifier's most epochs, with early stopping")
    where = partial(add_setting, parser, Lazy(_utility_options))
    where("local", "--local", action="store_true", help="run in local processes instead of Ray")
    where("workers", "--workers", type=int, help="--local: processes at once",
          unset="the CPUs over --cpus_per_task")
    where("address", "--address", help="join this Ray cluster", unset="a private local instance")
    where("cpus_per_task", "--cpus_per_task", "--cpus-per-task", type=int,
          help="CPUs (torch threads) per classifier run")
    where("gpus_per_task", "--gpus_per_task", "--gpus-per-task", type=float,
          help="GPUs per classifier run on Ray, fractions allowed")
    where("max_retries", "--max_retries", "--max-retries", type=int,
          help="times a task whose worker dies is restarted")
    parser.add_argument("--overwrite", action="store_true",
                        help="run the asked folds again: delete their results of these settings and "
                             "generators (no other file)")
    parser.add_argument("--status", action="store_true", help="print how far the runs are and exit")
    parser.set_defaults(handler=cmd_utility)
