"""The ``utility`` verb: a TB classifier per fold, with and without the study's synthetic data."""

from __future__ import annotations

import argparse
from pathlib import Path

from rxwgan.base.errors import RxwganError


def cmd_utility(args: argparse.Namespace) -> int:
    if args.status:
        from rxwgan.utility.driver import utility_status

        print(utility_status(args.study))
        return 0
    from rxwgan.utility.classifier import ClassifierSettings
    from rxwgan.utility.driver import UtilityOptions, comparison_line, run_utility
    from rxwgan.utility.plan import UtilitySettings

    for flag in ("cpus_per_task", "workers", "epochs", "size"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise RxwganError(f"--{flag} must be at least 1, not {value}")
    if args.max_retries < 0:
        raise RxwganError(f"--max_retries must be 0 or more, not {args.max_retries}")
    classifier = {"size": args.size, "max_epochs": args.epochs}
    settings = UtilitySettings(ratios=_ratios(args.ratio), repeats=args.repeats, seed=args.seed,
                               control=args.control, weights=args.weights,
                               classifier=ClassifierSettings(**{k: v for k, v in classifier.items()
                                                                if v is not None}))
    options = UtilityOptions(local=args.local, workers=args.workers, address=args.address,
                             cpus_per_task=args.cpus_per_task, gpus_per_task=args.gpus_per_task,
                             max_retries=args.max_retries)
    result = run_utility(args.study, settings, options, table=args.table, folds=_folds(args.folds),
                         overwrite=args.overwrite)
    print((result.folder / "summary.md").read_text().split("\n\n")[0])
    for comparison in result.comparisons:
        print(comparison_line(comparison))
    print(f"wrote {result.folder / 'utility.csv'}, summary.csv, summary.md and roc.png in {result.folder}")
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
    parser.add_argument("--ratio", default="1",
                        help="synthetic images per real image of each class in real+synth; a list "
                             "(0.5,1,2) runs each (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="classifier seeds per condition (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--control", choices=["swapped"],
                        help="swapped: also train real+synth with the synthetic labels swapped, a "
                             "control that must score below real")
    parser.add_argument("--weights", choices=["ema", "raw"], default="ema",
                        help="the generators' moving average (default) or their raw weights")
    parser.add_argument("--folds", help="only these splits: fold_0,fold_2 or 0-2 (default: every "
                                        "split whose two class runs have finished)")
    parser.add_argument("--table", help="the table, when it moved since the runs trained on it")
    parser.add_argument("--size", type=int, help="classifier input size in pixels (default 64)")
    parser.add_argument("--epochs", type=int, help="classifier's most epochs (default 40, early stopping)")
    parser.add_argument("--local", action="store_true", help="run in local processes instead of Ray")
    parser.add_argument("--workers", type=int, help="--local: processes at once (default: CPUs)")
    parser.add_argument("--address", help="join this Ray cluster (default: a private local instance)")
    parser.add_argument("--cpus_per_task", "--cpus-per-task", dest="cpus_per_task", type=int, default=1,
                        help="CPUs (torch threads) per classifier run (default 1)")
    parser.add_argument("--gpus_per_task", "--gpus-per-task", dest="gpus_per_task", type=float, default=0.0,
                        help="GPUs per classifier run on Ray, fractions allowed (default 0)")
    parser.add_argument("--max_retries", "--max-retries", dest="max_retries", type=int, default=3,
                        help="times a task whose worker dies is restarted (default 3)")
    parser.add_argument("--overwrite", action="store_true", help="replace this study's utility results")
    parser.add_argument("--status", action="store_true", help="print how far the runs are and exit")
    parser.set_defaults(handler=cmd_utility)
