"""The ``evaluate`` verb: how close synthetic X-rays are to real ones, in numbers.

Prints a small table (every number beside the sample sizes it came from, the feature
space, and the caveats) and with ``--json`` writes all of it with the versions used. A
conditional generator (both classes in one network) is scored one class at a time against
the real rows of that class: the class --target names, else each class in turn.
"""

from __future__ import annotations

import argparse
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from rxwgan.base.errors import RxwganError, require_at_least
from rxwgan.base.layout import (
    CONFIG_FILE,
    MEMORISATION_PAIRS,
    MEMORISATION_RECORD,
    RUN_FILE_PATTERNS,
    SPLIT_FILE,
    TRAINED_GENERATOR,
    memorisation_files,
)
from rxwgan.cli.common import add_split_flags, add_table_flags, refuse_existing
from rxwgan.metrics.space_registry import SPACES, feature_choices, features_help, pretrained_names

_SPREAD = {"kid": "kid_std"}
FEATURE_CHOICES = feature_choices()  # from the registry, which imports no torch
# Spelled out, not imported: building the parser must not import torch (rxwgan --help
# stays instant). A test checks they match rxwgan.metrics.
DEFAULT_METRICS = ("fid", "kid", "pr", "dc", "hist")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rxwgan.base import atomic
    from rxwgan.base.devices import resolve_device
    from rxwgan.metrics import versions
    from rxwgan.synth.sampling import generation_precision

    _check_flags(args)
    out = Path(args.json) if args.json else None
    if out is not None:
        refuse_existing(out, args.overwrite)
    if args.memorisation is not None:
        return _memorisation(args, out)
    if args.real is None:
        raise RxwganError("evaluate: --real is required (or --memorisation RUN_FOLDER)")
    if args.fake is None:
        raise RxwganError("evaluate: --fake is required (or --memorisation RUN_FOLDER)")
    if args.pairs is not None:
        raise RxwganError("--pairs draws the closest pairs of --memorisation RUN_FOLDER")
    if args.table is not None:
        raise RxwganError("--table says where the table of --memorisation RUN_FOLDER is now; a --real "
                          "table is named by --real itself")
    device = resolve_device(args.device)
    precision = generation_precision(args.precision, device)
    results = {target: _scores(args, target, device, precision) for target in _fake_classes(args)}
    several = len(results) > 1  # each class of a conditional generator: one report per class
    print("\n\n".join((f"class {target}:\n" if several else "") + format_report(result)
                      for target, result in results.items()))
    if out is not None:
        spaces = [SPACES.get(result.get("features")) for result in results.values()]
        found = versions(sorted({space.pip for space in spaces if space is not None and space.pip}))
        reports = {str(target): report_json(result, args.seed, found) for target, result in results.items()}
        atomic.write_json(out, {"per_class": reports} if several else next(iter(reports.values())))
        print(f"wrote {out}")
    return 0


def _fake_classes(args: argparse.Namespace) -> list[int | None]:
    """The classes to score: [None] for a --fake that is no conditional generator, else the
    class --target names or, against a table's rows, each class in turn."""
    from rxwgan.metrics.sources import conditional_classes

    classes = conditional_classes(args.fake)
    if not classes:
        return [None]
    if args.target is not None:
        return [args.target]
    if not _is_table(args.real):
        raise RxwganError(f"--fake {args.fake} is a conditional generator (both classes): give the class to "
                          f"score with --target, or a table --real to score each class against its rows")
    return list(range(classes))


def _scores(args: argparse.Namespace, target: int | None, device: Any, precision: str) -> dict[str, Any]:
    """compute_metrics of the --real and --fake sets; with ``target``, of that class of a
    conditional --fake generator against the --real rows of that class."""
    from rxwgan.metrics import compute_metrics
    from rxwgan.metrics.sources import load_images, native_size

    fake = args.fake
    if target is not None:
        fake = load_images(fake, args.size or native_size(fake), n=args.n, seed=args.seed, device=device,
                           precision=precision, sampled_class=target)
    return compute_metrics(
        args.real, fake, args.metrics or DEFAULT_METRICS, args.features, weights=args.weights, n=args.n,
        seed=args.seed, size=args.size, cache_dir=args.cache_dir, device=device, precision=precision,
        **_table_options(args, target))


def _check_flags(args: argparse.Namespace) -> None:
    """Refuse what would be ignored or fail late, before anything is computed."""
    from rxwgan.base.plots import FIGURE_FORMATS, figure_format

    require_at_least("-n", args.n, 1)
    if args.size is not None:
        require_at_least("--size", args.size, 1)
    if args.pairs is not None and figure_format(args.pairs) not in FIGURE_FORMATS:
        endings = ", ".join(f".{ending}" for ending in FIGURE_FORMATS)
        raise RxwganError(f"--pairs {args.pairs}: name a picture file ({endings})")
    if args.json is not None:
        out = Path(args.json)
        if out.suffix.lower() != ".json":
            raise RxwganError(f"--json {out}: name a .json file")
        if (out.parent / CONFIG_FILE).is_file() and any(fnmatch(out.name, p) for p in RUN_FILE_PATTERNS):
            raise RxwganError(f"--json {out}: a file of the run in {out.parent}; write elsewhere")


def _memorisation(args: argparse.Namespace, out: Path | None) -> int:
    """``--memorisation RUN``: the run's generator (or --fake) against its own rows."""
    from rxwgan.base import atomic
    from rxwgan.base.devices import resolve_device
    from rxwgan.metrics import versions
    from rxwgan.synth.memorisation import check_memorisation, format_memorisation, write_record
    from rxwgan.train.folder import check_split_file
    from rxwgan.train.run_info import read_run

    taken = {"--real": args.real, "--metrics": args.metrics, "--fold": args.fold, "--n_splits": args.n_splits,
             "--test": args.test, "--sort": args.sort, "--size": args.size}
    given = [flag for flag, value in taken.items() if value is not None]
    if given:
        raise RxwganError(f"--memorisation takes the rows, split, class and size from the run folder; "
                          f"drop {', '.join(given)}")
    run = read_run(args.memorisation, args.target)
    if args.target is not None and not run.conditional:
        raise RxwganError(f"--memorisation takes the class from the run folder ({run.folder} learned target "
                          f"{run.target} only); drop --target")
    check_split_file(run.split_csv, run.config)  # a grouped run's rows, as its groups split them
    fake = args.fake or str(run.folder / TRAINED_GENERATOR)
    pairs = Path(args.pairs) if args.pairs else run.folder / memorisation_files(args.target)[1]
    if args.pairs:
        refuse_existing(pairs, args.overwrite)
    features = None if args.features == "auto" else args.features
    record = check_memorisation(run, fake, n=args.n, seed=args.seed, unseen=args.partition or "val",
                                features=features, device=resolve_device(args.device),
                                cache_dir=args.cache_dir, pairs=pairs, table=args.table)
    print(format_memorisation(record))
    print(f"wrote {write_record(run.folder, record, in_run=True)}")
    if out is not None:
        atomic.write_json(out, {**record, "seed": args.seed, "versions": versions()})
        print(f"wrote {out}")
    return 0


def _is_table(source: str | None) -> bool:
    return str(source).lower().endswith(".csv")


def _table_options(args: argparse.Namespace, sampled: int | None = None) -> dict[str, Any]:
    """Row selection for a table ``--real``; only what the user set, so other sets refuse it.
    ``sampled``: the class of a conditional --fake generator, whose rows a table gives."""
    from rxwgan.data.splits import SplitSpec

    options: dict[str, Any] = {}
    if any(v is not None for v in (args.fold, args.n_splits, args.test, args.sort)):
        spec = SplitSpec(fold=args.fold, n_splits=args.n_splits, test=args.test, sort=args.sort,
                         seed=args.split_seed)
        spec.check()
        options["split"] = spec
    if args.partition is not None:
        options["partition"] = args.partition
    if sampled is not None:
        if _is_table(args.real):
            options["target"] = sampled
    elif args.target is not None:
        options["target"] = args.target
    if _is_table(args.real):
        options.update(path_column=args.path_column, target_column=args.target_column)
    return options


def _numbers(result: dict[str, Any]) -> dict[str, float]:
    skip = {"n_real", "n_fake", "image_size", "feature_dim"}
    return {k: v for k, v in result.items() if isinstance(v, (int, float)) and k not in skip}


def format_report(result: dict[str, Any]) -> str:
    """The terminal table: value, spread where there is one, and the sizes behind each number."""
    from rxwgan.base.layout import DIVERGENCE_KEYS

    lines = [f"real:     {result['sets']['real']['label']}",
             f"fake:     {result['sets']['fake']['label']}"]
    if "feature_space" in result:
        lines.append(f"features: {result['feature_space']['description']} (id {result['space_id']})")
    lines.append(f"{'metric':<16}{'value':>12}{'std':>10}{'n_real':>8}{'n_fake':>8}")
    spreads = set(_SPREAD.values())
    for key, value in _numbers(result).items():
        if key in spreads or key in ("kid_subset_size", "nearest_k", "hist_n", "c2st_n"):
            continue
        spread = result.get(_SPREAD.get(key, ""), None)
        # Histogram pairs and the two-sample test use subsets of the sets: say how many.
        subset = {"c2st_accuracy": result.get("c2st_n")}.get(key)
        subset = result["hist_n"] if key in DIVERGENCE_KEYS else subset
        n_real, n_fake = (subset, subset) if subset is not None else (result["n_real"], result["n_fake"])
        shown = f"{spread:>10.4g}" if spread is not None else " " * 10
        lines.append(f"{key:<16}{value:>12.5g}{shown}{n_real:>8}{n_fake:>8}")
    details = []
    if "kid_subset_size" in result:
        details.append(f"KID over subsets of {result['kid_subset_size']}")
    if "nearest_k" in result:
        details.append(f"k-NN manifolds with k={result['nearest_k']}")
    if "hist_n" in result:
        details.append(f"histograms over {result['hist_n']} x {result['hist_n']} image pairs")
    if details:
        lines.append("(" + "; ".join(details) + ")")
    lines += [f"note: {note}" for note in result["notes"]]
    return "\n".join(lines)


def report_json(result: dict[str, Any], seed: int, found_versions: dict[str, str]) -> dict[str, Any]:
    """Every number, the sample sizes, the sets, the feature space and the versions."""
    report = {
        "metrics": _numbers(result),
        "n_real": result["n_real"],
        "n_fake": result["n_fake"],
        "image_size": result["image_size"],
        "seed": seed,
        "sets": result["sets"],
        "notes": result["notes"],
        "versions": found_versions,
    }
    if "feature_space" in result:
        report["space_id"] = result["space_id"]  # numbers from spaces with other ids do not compare
        report["features"] = result["feature_space"]
    return report


def register(verbs: argparse._SubParsersAction) -> None:
    """Add ``evaluate``."""
    parser = verbs.add_parser("evaluate", help="FID, KID, precision/recall, density/coverage and "
                              "histogram divergences of synthetic against real images")
    parser.add_argument("--real", help="the real images: a table (.csv) or a folder")
    parser.add_argument("--fake",
                        help="the synthetic images: a generator file, a table (.csv) or a folder "
                             f"(default: with --memorisation, the run's {TRAINED_GENERATOR})")
    parser.add_argument("--memorisation", metavar="RUN_FOLDER",
                        help="are the synthetic images copies of training images? Compares them with "
                             "the run's training rows of its class (a conditional run's: the class "
                             "--target names), and its val rows (--partition "
                             f"test: test rows) as the unseen reference, all from the run's {SPLIT_FILE}; "
                             "in the run's feature space (unless --features) and in pixels; records "
                             f"RUN_FOLDER/{MEMORISATION_RECORD} (a conditional run: one per --target) "
                             f"and draws the closest pairs")
    parser.add_argument("--pairs", metavar="FILE.png",
                        help="with --memorisation: the picture of the 16 synthetic images closest to a "
                             f"training image (default: RUN_FOLDER/{MEMORISATION_PAIRS})")
    parser.add_argument("--table", metavar="TABLE.csv",
                        help="with --memorisation: the table the run trained on, where it is now (a run "
                             "folder moved or copied away from its images); refused unless its rows and "
                             "images are the run's")
    parser.add_argument("-n", type=int, default=1000,
                        help="images sampled from a generator, or at most used from a fake table "
                             "or folder (default %(default)s)")
    parser.add_argument("--metrics",
                        help=f"comma-separated, from {', '.join(DEFAULT_METRICS)}, c2st (or prdc, or single "
                             f"keys such as precision) (default: {','.join(DEFAULT_METRICS)})")
    parser.add_argument("--features", default="auto", metavar="{" + ",".join(FEATURE_CHOICES) + "} or FILE",
                        help=features_help() + " (with --memorisation, auto means the run's own space)")
    pretrained = pretrained_names()
    parser.add_argument("--weights",
                        help=f"weights file (or folder) for --features {' or '.join(pretrained)}")
    parser.add_argument("--seed", type=int, default=0,
                        help="sampling seed (latents, picks, KID subsets, the trained encoder)")
    parser.add_argument("--size", type=int,
                        help="compare at this many pixels (default: the generator's size, else 128)")
    add_split_flags(parser, what="real table, ", default_fold=False)
    parser.add_argument("--partition", choices=["train", "val", "test", "all"],
                        help="real rows of the split to use (default: val with a split, else all)")
    parser.add_argument("-t", "--target", type=int,
                        help="real rows of this class only (0 or 1); of a conditional --fake generator, also "
                             "the class it samples (without it, each class is scored against a table's rows "
                             "of that class); with --memorisation of a conditional run, the class checked")
    add_table_flags(parser)
    parser.add_argument("--json", help="write every number, sample size, and version here")
    parser.add_argument("--cache-dir", "--cache_dir", dest="cache_dir",
                        help="cache folder (decoded images, real-set features, trained encoders)")
    parser.add_argument("--device", default="auto",
                        help=f"device for the generator and {'/'.join(pretrained)} features: auto (a GPU "
                             "when there is one), cpu, cuda, cuda:N (default %(default)s)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="of a --fake generator's forward passes: auto (bf16 on a GPU that has it, "
                             "fp32 on a CPU: the same numbers as always), fp32 or bf16")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    parser.set_defaults(handler=cmd_evaluate)
