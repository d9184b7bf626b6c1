"""Verbs of whole studies: ``sweep`` (every fold and target, or every fold with --conditional,
on Ray) and ``report``."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rxwgan.base.errors import RxwganError
from rxwgan.base.layout import REPORT_FOLDER, SWEEP_FILE
from rxwgan.cli.common import (
    Lazy,
    add_group_column_flag,
    add_setting,
    add_split_seed_flag,
    given,
    setting_value,
)
from rxwgan.cli.train import add_loop_flags, add_model_flags, add_recipe_flag, typed_settings
from rxwgan.data.splits import DEFAULT_N_SPLITS, STRATIFIED_FOLDS
from rxwgan.study.sweep import SweepOptions
from rxwgan.train.config import TARGETS, TrainConfig

if TYPE_CHECKING:
    from rxwgan.study.plan import RunPlan


def add_sweep_flags(parser: argparse.ArgumentParser) -> None:
    train = partial(add_setting, parser, TrainConfig)
    train("input", "-i", "--input", help="the table (CSV)")
    train("output", "-o", "--output", help="the study folder: one sub-folder per run")
    add_model_flags(parser)
    every = f"0-{STRATIFIED_FOLDS - 1}"
    parser.add_argument("--scheme", choices=["kfold", "stratified"],
                        help=f"kfold, or stratified ({STRATIFIED_FOLDS} tests x {STRATIFIED_FOLDS} sorts) "
                             "(default: kfold, stratified with --tests or --sorts)")
    parser.add_argument("--n_splits", "--n-splits", dest="n_splits", type=int,
                        help=f"kfold: number of folds (default: {DEFAULT_N_SPLITS})")
    parser.add_argument("--folds", help="kfold: folds to run, e.g. 0-4 or 0,2 (default: all)")
    parser.add_argument("--tests", help=f"stratified: test folds, e.g. 0-3 (default: {every})")
    parser.add_argument("--sorts", help=f"stratified: sorts within each test (default: {every})")
    add_split_seed_flag(parser)
    add_group_column_flag(parser)
    parser.add_argument("--targets", help=f"classes to learn, one run each (default: "
                                          f"{','.join(map(str, TARGETS))}; with --conditional one run "
                                          f"per split learns both)")
    add_recipe_flag(parser)
    add_loop_flags(parser)
    parser.add_argument("--eval_fit_all", "--eval-fit-all", dest="eval_fit_all", action="store_true",
                        help="fit the study's trained feature space on every row of the table, even "
                             "those the runs validate or test on (without it: only the rows none does)")
    train("overwrite", "--overwrite", action="store_true",
          help="start every run afresh, replacing its files (not for continuing)")
    sweep = partial(add_setting, parser, SweepOptions)
    sweep("address", "--address", help="join this Ray cluster (auto or HOST:PORT)",
          unset="a private Ray instance on this machine")
    sweep("gpus_per_run", "--gpus_per_run", "--gpus-per-run", type=float,
          help="GPUs per run, fractions allowed", unset="1 where the cluster has GPUs")
    sweep("cpus_per_run", "--cpus_per_run", "--cpus-per-run", type=int,
          help="CPUs (and torch threads) per run", unset="the CPUs shared out")
    sweep("max_concurrent", "--max_concurrent", "--max-concurrent", type=int,
          help="at most this many runs at once", unset="as many as fit")
    sweep("max_retries", "--max_retries", "--max-retries", type=int,
          help="times a run whose worker dies is restarted")
    sweep("refresh", "--refresh", type=float, help="seconds between status tables",
          unset="2 on a terminal, else 30")
    parser.add_argument("--status", metavar="STUDY", help="print the study's status table and exit")
    parser.set_defaults(handler=cmd_sweep)


def sweep_plan(args: argparse.Namespace) -> tuple[TrainConfig, list[RunPlan]]:
    """The base config and the runs the flags ask for."""
    from rxwgan.study.plan import parse_indices, plan_runs, plan_splits

    for flag in ("input", "output"):
        if not getattr(args, flag, None):
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
                         args.split_seed, args.group_column)
    base = dataclasses.replace(sweep_config(args), progress=False)
    if base.conditional:
        if args.targets is not None:
            raise RxwganError("--targets picks the classes of per-class runs; a --conditional sweep trains "
                              "one run per split on both (give one of the two)")
        return base, plan_runs(splits, conditional=True)
    targets = TARGETS if args.targets is None else parse_indices(args.targets, "--targets")
    return base, plan_runs(splits, targets)


def sweep_config(args: argparse.Namespace) -> TrainConfig:
    """The study's shared settings: the typed flags over a recipe (by the device its runs get), or
    over what the study's sweep.json recorded when it continues."""
    from rxwgan.base.devices import resolve_device
    from rxwgan.base.json_files import read_json
    from rxwgan.train.recipes import resolved_settings

    values = typed_settings(args)
    gpus = getattr(args, "gpus_per_run", None)
    if gpus is None:
        device = resolve_device(values.get("device", "auto")).type
    else:
        device = "cuda" if gpus else "cpu"
    recorded = None if values.get("overwrite") else read_json(Path(args.output) / SWEEP_FILE).get("config")
    settings, line = resolved_settings(values, device, None if recorded is None else
                                       TrainConfig.from_dict(recorded))
    print(line.replace("the run recorded", "the study recorded"))
    return TrainConfig(**settings)


def cmd_sweep(args: argparse.Namespace) -> int:
    if args.status:  # the study's files alone: no Ray needed
        from rxwgan.study.plan import study_status
        from rxwgan.study.status import format_status

        print(format_status(study_status(args.status)))
        return 0
    from rxwgan.study.sweep import run_sweep

    base, runs = sweep_plan(args)
    options = given(args, SweepOptions)
    for name, least in {"max_concurrent": 1, "cpus_per_run": 1, "max_retries": 0}.items():
        value = options.get(name)
        if value is not None and value < least:
            raise RxwganError(f"--{name} must be at least {least}, not {value}")
    result = run_sweep(base, Path(args.output), runs, SweepOptions(**options), eval_fit_all=args.eval_fit_all)
    return 0 if result.ok else 1


def _write_report() -> Any:
    """The report's owner, ``write_report``, whose module imports torch."""
    from rxwgan.report.render import write_report

    return write_report


def add_report_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", help="the study folder (rxwgan sweep's -o)")
    parser.add_argument("-o", "--output", help=f"folder for the report (default: STUDY/{REPORT_FOLDER})")
    add_setting(parser, Lazy(_write_report), "select", "--select",
                help="history key whose smallest last value picks the best run per test and target; kid "
                     "or fid when recorded, ranked only among runs measured in one feature space")
    parser.set_defaults(handler=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from rxwgan.report.render import write_report

    report = write_report(args.study, args.output, select=setting_value(args, write_report, "select"),
                          log=lambda line: print(line, file=sys.stderr))
    print(f"wrote {report.html} ({len(report.runs)} runs"
          f"{', partial results: some runs are not finished' if report.partial else ''})")
    return 0 if report.ok else 1  # a failed or damaged run: best.csv was chosen without it


def register(verbs: argparse._SubParsersAction) -> None:
    """Add ``sweep`` and ``report``."""
    add_sweep_flags(verbs.add_parser("sweep", help="train every fold and target of a study on Ray "
                                                   "(--conditional: one run per fold for both targets)"))
    add_report_flags(verbs.add_parser("report", help="the study's runs, curves and best generators"))
