"""Verbs of whole studies: ``sweep`` (every fold and target on Ray) and ``report``."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from rxwgan.base.errors import RxwganError
from rxwgan.cli.common import add_split_seed_flag
from rxwgan.cli.train import add_loop_flags, add_model_flags, train_config

if TYPE_CHECKING:
    from rxwgan.study.plan import RunPlan
    from rxwgan.train.config import TrainConfig


def add_sweep_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--input", help="the table (CSV)")
    parser.add_argument("-o", "--output", help="the study folder: one sub-folder per run")
    add_model_flags(parser)
    parser.add_argument("--scheme", choices=["kfold", "stratified"],
                        help="kfold (default) or stratified (10 tests x 10 sorts)")
    parser.add_argument("--n_splits", "--n-splits", dest="n_splits", type=int,
                        help="kfold: number of folds (default 5)")
    parser.add_argument("--folds", help="kfold: folds to run, e.g. 0-4 or 0,2 (default all)")
    parser.add_argument("--tests", help="stratified: test folds, e.g. 0-9 (default 0-9)")
    parser.add_argument("--sorts", help="stratified: sorts within each test (default 0-9)")
    add_split_seed_flag(parser)
    parser.add_argument("--targets", default="0,1", help="classes to learn (default 0,1)")
    add_loop_flags(parser)
    parser.add_argument("--eval_fit_all", "--eval-fit-all", dest="eval_fit_all", action="store_true",
                        help="fit the study's trained feature space on every row of the table, even "
                             "those the runs validate or test on (default: only the rows none does)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start every run afresh, replacing its files (not for continuing)")
    parser.add_argument("--address", help="join this Ray cluster (auto or HOST:PORT); default: a "
                        "private Ray instance on this machine")
    parser.add_argument("--gpus_per_run", "--gpus-per-run", dest="gpus_per_run", type=float,
                        help="GPUs per run, fractions allowed (default 1 where the cluster has GPUs)")
    parser.add_argument("--cpus_per_run", "--cpus-per-run", dest="cpus_per_run", type=int,
                        help="CPUs (and torch threads) per run (default: the CPUs shared out)")
    parser.add_argument("--max_concurrent", "--max-concurrent", dest="max_concurrent", type=int,
                        help="at most this many runs at once (default: as many as fit)")
    parser.add_argument("--max_retries", "--max-retries", dest="max_retries", type=int, default=3,
                        help="times a run whose worker dies is restarted (default 3)")
    parser.add_argument("--refresh", type=float,
                        help="seconds between status tables (default 2 on a terminal, else 30)")
    parser.add_argument("--status", metavar="STUDY", help="print the study's status table and exit")
    parser.set_defaults(handler=cmd_sweep)


def sweep_plan(args: argparse.Namespace) -> tuple[TrainConfig, list[RunPlan]]:
    """The base config and the runs the flags ask for."""
    from rxwgan.study.plan import parse_indices, plan_runs, plan_splits

    for flag in ("input", "output"):
        if not getattr(args, flag):
            raise RxwganError(f"--{flag} is required (or --status STUDY)")
    stratified_flags = [f"--{name}" for name in ("tests", "sorts") if getattr(args, name) is not None]
    kfold_flags = [f"--{name}" for name in ("n_splits", "folds") if getattr(args, name) is not None]
    scheme = args.scheme or ("stratified" if stratified_flags else "kfold")
    wrong = kfold_flags if scheme == "stratified" else stratified_flags
    if wrong:
        raise RxwganError(f"{' and '.join(wrong)} do not go with --scheme {scheme}")
    if args.n_splits is not None and args.n_splits < 2:
        raise RxwganError(f"--n_splits must be at least 2, not {args.n_splits}")

    def indices(flag: str) -> list[int] | None:
        value = getattr(args, flag)
        return None if value is None else parse_indices(value, f"--{flag}")

    splits = plan_splits(scheme, args.n_splits, indices("folds"), indices("tests"), indices("sorts"),
                         args.split_seed)
    base = dataclasses.replace(train_config(args), progress=False)
    return base, plan_runs(splits, parse_indices(args.targets, "--targets"))


def cmd_sweep(args: argparse.Namespace) -> int:
    if args.status:  # the study's files alone: no Ray needed
        from rxwgan.study.plan import study_status
        from rxwgan.study.status import format_status

        print(format_status(study_status(args.status)))
        return 0
    from rxwgan.study.sweep import SweepOptions, run_sweep

    base, runs = sweep_plan(args)
    for flag in ("max_concurrent", "cpus_per_run", "max_retries"):
        value = getattr(args, flag)
        if value is not None and value < (0 if flag == "max_retries" else 1):
            raise RxwganError(f"--{flag} must be at least {0 if flag == 'max_retries' else 1}, not {value}")
    options = SweepOptions(address=args.address, gpus_per_run=args.gpus_per_run,
                           cpus_per_run=args.cpus_per_run, max_concurrent=args.max_concurrent,
                           max_retries=args.max_retries, refresh=args.refresh)
    result = run_sweep(base, Path(args.output), runs, options, eval_fit_all=args.eval_fit_all)
    return 0 if result.ok else 1


def add_report_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", help="the study folder (rxwgan sweep's -o)")
    parser.add_argument("-o", "--output", help="folder for the report (default STUDY/report)")
    parser.add_argument("--select", default="val_kl_rf",
                        help="history key whose smallest last value picks the best run per test and "
                             "target (default val_kl_rf; kid or fid when recorded, ranked only among "
                             "runs measured in one feature space)")
    parser.set_defaults(handler=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from rxwgan.report.render import write_report

    report = write_report(args.study, args.output, select=args.select)
    print(f"wrote {report.html} ({len(report.runs)} runs"
          f"{', study still running: partial results' if report.partial else ''})")
    return 0


def register(verbs: argparse._SubParsersAction) -> None:
    """Add ``sweep`` and ``report``."""
    add_sweep_flags(verbs.add_parser("sweep", help="train every fold and target of a study on Ray"))
    add_report_flags(verbs.add_parser("report", help="the study's runs, curves and best generators"))
