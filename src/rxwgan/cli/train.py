"""Verbs of models and training: ``create-models`` and ``train`` (and their legacy names)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rxwgan.base.errors import RxwganError
from rxwgan.cli.common import add_split_flags, add_table_flags, refuse_existing, split_spec
from rxwgan.cli.data import add_bit_depth_flag


def cmd_create_models(args: argparse.Namespace) -> int:
    import torch

    from rxwgan.base.folder_lock import check_writable_folder
    from rxwgan.models import build_critic, build_generator, save_model

    out = Path(args.output)
    builders = {"generator": build_generator, "critic": build_critic}
    paths = {role: out / f"{role}.safetensors" for role in builders}
    for path in paths.values():  # both checked first: a refusal leaves no half of the pair
        refuse_existing(path, args.overwrite)
    check_writable_folder(out, "-o")
    overrides = {"init": args.init, **({} if args.dropout is None else {"dropout": args.dropout})}
    torch.manual_seed(args.seed)
    networks = {role: build(args.model, **overrides) for role, build in builders.items()}
    for role, path in paths.items():
        save_model(networks[role], path)
        print(f"wrote {path} ({args.model} {role})")
    return 0


def add_create_flags(parser: argparse.ArgumentParser, default_output: str | None) -> None:
    from rxwgan.train.config import KERAS_MODEL

    parser.add_argument("--model", default=KERAS_MODEL, help=f"architecture name (default {KERAS_MODEL}, "
                        "the old tool's)")
    parser.add_argument("-o", "--output", default=default_output, required=default_output is None,
                        help="folder to write generator.safetensors and critic.safetensors")
    parser.add_argument("--dropout", type=float, help="dropout rate (default: the architecture's)")
    add_init_flag(parser)
    parser.add_argument("--seed", type=int, default=_default("seed"),
                        help="initialisation seed (default %(default)s)")
    parser.add_argument("--overwrite", action="store_true")
    parser.set_defaults(handler=cmd_create_models)


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    """Every flag of the old run_wgangp.py, plus ours."""
    parser.add_argument("-i", "--input", required=True, help="the table (CSV)")
    parser.add_argument("-o", "--output", required=True, help="folder for this run's files")
    add_model_flags(parser)
    parser.add_argument("-t", "--target", type=int, default=_default("target"),
                        help="class to learn, 0 or 1 (default %(default)s)")
    add_split_flags(parser)
    add_loop_flags(parser)
    parser.add_argument("--history", help="old-style restart: history_epoch_N.json")
    parser.add_argument("--start_from_epoch", "--start-from-epoch", dest="start_from_epoch", type=int,
                        default=_default("start_from_epoch"),
                        help="old-style restart: first epoch to run (N+1)")
    parser.add_argument("--resume", action="store_true", help="require a checkpoint in -o and continue it")
    parser.add_argument("--overwrite", action="store_true", help="replace another run's files in -o")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    parser.set_defaults(handler=cmd_train)


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """Which networks a run starts from (shared with ``sweep``)."""
    from rxwgan.train.config import DEFAULT_MODEL

    parser.add_argument("-g", "--generator", help="generator file to start from (.safetensors or old .h5)")
    parser.add_argument("-c", "--critic", help="critic file to start from (.safetensors or old .h5)")
    parser.add_argument("--model", help=f"architecture when -g/-c are not given (default {DEFAULT_MODEL}; "
                        "a resumed run keeps its own)")


def add_init_flag(parser: argparse.ArgumentParser) -> None:
    from rxwgan.train.config import INITS

    parser.add_argument("--init", choices=INITS, default=_default("init"),
                        help="initialisation of fresh networks: standard (default; tanh not saturated) "
                             "or keras (the old tool's, for reproducing it)")


def augment_policy(text: str) -> str:
    """argparse type for --augment: the policy in canonical form, or the flag's error."""
    from rxwgan.base.errors import RxwganError
    from rxwgan.train.augment import parse_policy

    try:
        return ",".join(parse_policy(text))
    except RxwganError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--augment ")) from None


def _default(name: str):
    """TrainConfig's default for a field: the single source of every default."""
    from rxwgan.train.config import TrainConfig

    return TrainConfig.default(name)


def add_loop_flags(parser: argparse.ArgumentParser) -> None:
    """How a run trains, the same for every run of a study (shared with ``sweep``)."""
    from rxwgan.metrics.space_registry import feature_choices, features_help
    from rxwgan.train.config import PRECISIONS

    def number(name: str, *flags: str, kind: type = int, **options) -> None:
        options.setdefault("help", "")
        options["help"] += " (default %(default)s)"
        parser.add_argument(*flags, dest=name, type=kind, default=_default(name), **options)

    number("seed", "--seed", help="seed of the initialisation, shuffling, latents and dropout")
    number("batch_size", "--batch_size", "--batch-size", kind=training_batch_size,
           help="images per critic step (at least 2)")
    number("epochs", "--epochs", help="passes over the class's training rows (the old tool's length)")
    number("kimg", "--kimg", kind=float,
           help="length in thousands of real images shown to the critic (instead of --epochs)")
    number("gen_steps", "--gen_steps", "--gen-steps", help="length in generator steps (instead of --epochs)")
    number("n_critic", "--n_critic", "--n_discr", "--n-critic",
           help="critic steps per generator step (0: one of each per batch)")
    number("lr", "--lr", kind=float, help="Adam learning rate of both networks")
    parser.add_argument("--betas", type=float, nargs=2, default=_default("betas"), metavar=("B1", "B2"),
                        help="Adam betas (default %(default)s)")
    number("gp_weight", "--gp_weight", "--gp-weight", kind=float, help="gradient penalty weight")
    parser.add_argument("--dropout", type=float, help="dropout rate (default: the architecture's)")
    add_init_flag(parser)
    parser.add_argument("--augment", default=_default("augment"), type=augment_policy,
                        help="DiffAugment before the critic: comma-separated from brightness, contrast, "
                             "translation, cutout, flip (or color); 'none' (default) for none")
    number("ema_kimg", "--ema_kimg", "--ema-kimg", kind=float,
           help="half-life of the generator's moving average in thousands of images (0: off)")
    number("save_for_each", "--save_for_each", "--save-for-each", help="epochs between epoch files")
    number("disp_for_each", "--disp_for_each", "--disp-for-each", help="epochs between sample grids")
    number("eval_for_each", "--eval_for_each", "--eval-for-each",
           help="every N epochs, evaluate the generator against the validation rows (0: never)")
    parser.add_argument("--eval_metrics", "--eval-metrics", dest="eval_metrics",
                        default=",".join(_default("eval_metrics")),
                        help="metrics for --eval_for_each (fid, kid, pr, dc, hist; default %(default)s)")
    parser.add_argument("--eval_features", "--eval-features", dest="eval_features",
                        default=_default("eval_features"),
                        metavar="{" + ",".join(feature_choices()) + "} or FILE",
                        help=features_help("feature space for --eval_for_each"))
    parser.add_argument("--precision", default=_default("precision"), choices=PRECISIONS)
    parser.add_argument("--device", default=_default("device"), help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                        help="keep tensors in the default memory layout")
    parser.add_argument("--release-cpu-memory", "--release_cpu_memory", dest="reuse_cpu_memory",
                        action="store_false",
                        help="on the CPU, give freed memory back to the system at once: a smaller "
                             "resident peak, slower steps (by default an epoch's steps reuse the "
                             "memory they free)")
    parser.add_argument("--cache-dir", "--cache_dir", dest="cache_dir", help="image cache folder")
    add_bit_depth_flag(parser)
    add_table_flags(parser)


def training_batch_size(text: str) -> int:
    """argparse type for --batch_size: refused at parse time, naming the flag."""
    from rxwgan.base.errors import RxwganError
    from rxwgan.train.config import check_batch_size

    try:
        value = int(text)
        check_batch_size(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    except RxwganError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--batch_size ")) from None
    return value


def train_config(args: argparse.Namespace):
    from rxwgan.train.config import TrainConfig

    values = {name: getattr(args, name) for name in TrainConfig.__dataclass_fields__ if hasattr(args, name)}
    values["betas"] = tuple(values["betas"])
    values["eval_metrics"] = tuple(m.strip() for m in values["eval_metrics"].split(",") if m.strip())
    if hasattr(args, "fold"):  # train names its partition; a sweep plans one per run
        values["split"] = split_spec(args)
    return TrainConfig(**values)


def cmd_train(args: argparse.Namespace) -> int:
    from rxwgan.train.loop import train

    result = train(train_config(args))
    return 130 if result.interrupted else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from rxwgan.demo import DemoSettings, run_demo

    chosen = {name: getattr(args, name) for name in ("model", "kimg", "synthetic", "utility_repeats",
                                                       "utility_epochs")}
    for flag in ("synthetic", "utility_repeats", "utility_epochs"):
        if chosen[flag] is not None and chosen[flag] < 1:
            raise RxwganError(f"--{flag.replace('_', '-')} must be at least 1, not {chosen[flag]}")
    run_demo(args.output, DemoSettings(**{k: v for k, v in chosen.items() if v is not None}))
    return 0


def register(verbs: argparse._SubParsersAction) -> None:
    """Add ``create-models``, ``train`` and ``demo``."""
    demo = verbs.add_parser("demo", help="the whole pipeline on the shipped phantom X-rays")
    demo.add_argument("-o", "--output", default="demo_out", help="folder for everything (default demo_out)")
    # Defaults live in rxwgan.demo.DemoSettings (importing it here would pull torch into --help).
    demo.add_argument("--model", help="architecture (default small, 64 px)")
    demo.add_argument("--kimg", type=float, help="thousands of real images shown per class (default 20)")
    demo.add_argument("--synthetic", type=int, help="synthetic images generated per class (default 200)")
    demo.add_argument("--utility-repeats", dest="utility_repeats", type=int,
                      help="classifier seeds per condition in the utility table (default 2)")
    demo.add_argument("--utility-epochs", dest="utility_epochs", type=int,
                      help="the utility classifier's most epochs (default 30)")
    demo.set_defaults(handler=cmd_demo)
    add_create_flags(verbs.add_parser("create-models", help="write an initialised generator and critic"),
                     default_output=".")
    add_train_flags(verbs.add_parser("train", help="train a WGAN-GP on one class of one fold"))
