"""Verbs of models and training: ``create-models``, ``train`` and ``demo`` (and their legacy names)."""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path
from typing import Any

from rxwgan.base.errors import RxwganError, require_at_least
from rxwgan.base.progress import Log
from rxwgan.cli.common import (
    add_setting,
    add_split_flags,
    add_table_flags,
    given,
    refuse_existing,
    setting_value,
    split_spec,
)
from rxwgan.cli.data import add_bit_depth_flag
from rxwgan.demo import DemoSettings, run_demo
from rxwgan.metrics.space_registry import feature_choices, features_help
from rxwgan.train.config import CLASS_BALANCES, INITS, KERAS_MODEL, PRECISIONS, TrainConfig
from rxwgan.train.recipes import RECIPES


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
    overrides = {"init": setting_value(args, TrainConfig, "init"),
                 **({} if args.dropout is None else {"dropout": args.dropout})}
    torch.manual_seed(setting_value(args, TrainConfig, "seed"))
    networks = {role: build(args.model, **overrides) for role, build in builders.items()}
    for role, path in paths.items():
        save_model(networks[role], path)
        print(f"wrote {path} ({args.model} {role})")
    return 0


def add_create_flags(parser: argparse.ArgumentParser, default_output: str | None) -> None:
    parser.add_argument("--model", default=KERAS_MODEL,
                        help="architecture name, as the old tool built (default %(default)s)")
    parser.add_argument("-o", "--output", default=default_output, required=default_output is None,
                        help="folder to write generator.safetensors and critic.safetensors")
    parser.add_argument("--dropout", type=float, help="dropout rate (default: the architecture's)")
    add_init_flag(parser)
    add_setting(parser, TrainConfig, "seed", "--seed", type=int, help="initialisation seed")
    parser.add_argument("--overwrite", action="store_true")
    parser.set_defaults(handler=cmd_create_models)


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    """Every flag of the old run_wgangp.py, plus ours."""
    setting = partial(add_setting, parser, TrainConfig)
    setting("input", "-i", "--input", required=True, help="the table (CSV)")
    setting("output", "-o", "--output", required=True, help="folder for this run's files")
    add_model_flags(parser)
    add_recipe_flag(parser)
    setting("target", "-t", "--target", type=int, help="class to learn, 0 or 1")
    add_split_flags(parser)
    add_loop_flags(parser)
    setting("history", "--history", help="old-style restart: history_epoch_N.json")
    setting("start_from_epoch", "--start_from_epoch", "--start-from-epoch", type=int,
            help="old-style restart: first epoch to run (N+1)")
    setting("resume", "--resume", action="store_true", help="require a checkpoint in -o and continue it")
    setting("overwrite", "--overwrite", action="store_true", help="replace another run's files in -o")
    setting("progress", "--no-progress", action="store_false", help="no progress bar")
    parser.set_defaults(handler=cmd_train)


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """Which networks a run starts from (shared with ``sweep``)."""
    setting = partial(add_setting, parser, TrainConfig)
    setting("generator", "-g", "--generator", help="generator file to start from (.safetensors or old .h5)")
    setting("critic", "-c", "--critic", help="critic file to start from (.safetensors or old .h5)")
    setting("model", "--model", help="architecture when -g/-c are not given; a resumed run keeps its own",
            unset="the recipe's")


def add_recipe_flag(parser: argparse.ArgumentParser) -> None:
    add_setting(parser, TrainConfig, "recipe", "--recipe", choices=tuple(RECIPES),
                help="named settings (architecture, batch, critic steps, Adam): cpu (learns in minutes on "
                     "a CPU), gpu (resnet128 at 128 px), keras (the old tool's); typed flags win",
                unset="cpu on a CPU, gpu on a GPU, keras with -g/-c; a resumed run keeps its own")


def add_init_flag(parser: argparse.ArgumentParser) -> None:
    add_setting(parser, TrainConfig, "init", "--init", choices=INITS,
                help="initialisation of fresh networks: standard (tanh not saturated) or keras (the old "
                     "tool's, for reproducing it)")


def augment_policy(text: str) -> str:
    """argparse type for --augment: the policy in canonical form, or the flag's error."""
    from rxwgan.train.augment import parse_policy

    try:
        return ",".join(parse_policy(text))
    except RxwganError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--augment ")) from None


def metric_names(text: str) -> tuple[str, ...]:
    """argparse type for --eval_metrics: the comma-separated names."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def add_loop_flags(parser: argparse.ArgumentParser) -> None:
    """How a run trains, the same for every run of a study (shared with ``sweep``)."""
    setting = partial(add_setting, parser, TrainConfig)
    setting("seed", "--seed", type=int, help="seed of the initialisation, shuffling, latents and dropout")
    setting("batch_size", "--batch_size", "--batch-size", type=training_batch_size,
            help="images per critic step (at least 2)")
    setting("epochs", "--epochs", type=int,
            help="passes over the class's training rows (the old tool's length)")
    setting("kimg", "--kimg", type=float,
            help="length in thousands of real images shown to the critic (instead of --epochs)")
    setting("gen_steps", "--gen_steps", "--gen-steps", type=int,
            help="length in generator steps (instead of --epochs)")
    setting("n_critic", "--n_critic", "--n_discr", "--n-critic", type=int,
            help="critic steps per generator step (0: one of each per batch)")
    setting("lr", "--lr", type=float, help="Adam learning rate of both networks")
    setting("betas", "--betas", type=float, nargs=2, metavar=("B1", "B2"), help="Adam betas")
    setting("gp_weight", "--gp_weight", "--gp-weight", type=float, help="gradient penalty weight")
    setting("conditional", "--conditional", action="store_true",
            help="one generator for both classes, told each image's class (conditional BatchNorm or a "
                 "class embedding; a projection critic)")
    setting("class_balance", "--class_balance", "--class-balance", choices=CLASS_BALANCES,
            help="--conditional batches: balanced (half each class) or table (the table's mix)")
    setting("fade_kimg", "--fade_kimg", "--fade-kimg", type=float,
            help="--conditional: grow the class terms from 0 to full over this many kimg (0: full at once)")
    setting("dropout", "--dropout", type=float, help="dropout rate", unset="the architecture's")
    add_init_flag(parser)
    setting("augment", "--augment", type=augment_policy, unset="none",
            help="DiffAugment before the critic: comma-separated from brightness, contrast, translation, "
                 "cutout, flip (or color), or none")
    setting("ema_kimg", "--ema_kimg", "--ema-kimg", type=float,
            help="half-life of the generator's moving average in thousands of images (0: off)")
    setting("save_for_each", "--save_for_each", "--save-for-each", type=int,
            help="epochs between epoch files")
    setting("disp_for_each", "--disp_for_each", "--disp-for-each", type=int,
            help="epochs between sample grids")
    setting("eval_for_each", "--eval_for_each", "--eval-for-each", type=int,
            help="every N epochs, evaluate the generator against the validation rows (0: never)")
    setting("eval_metrics", "--eval_metrics", "--eval-metrics", type=metric_names,
            help="metrics for --eval_for_each, comma-separated from fid, kid, pr, dc, hist")
    setting("eval_features", "--eval_features", "--eval-features",
            metavar="{" + ",".join(feature_choices()) + "} or FILE",
            help=features_help("feature space for --eval_for_each"))
    setting("precision", "--precision", choices=PRECISIONS,
            help="auto: bf16 where the hardware computes it natively, fp32 elsewhere")
    setting("device", "--device", help="auto (a GPU when there is one), cpu, cuda or cuda:N")
    setting("channels_last", "--no-channels-last", action="store_false",
            help="keep tensors in the default memory layout")
    setting("reuse_cpu_memory", "--release-cpu-memory", "--release_cpu_memory", action="store_false",
            help="on the CPU, give freed memory back to the system at once: a smaller resident peak, "
                 "slower steps (by default an epoch's steps reuse the memory they free)")
    setting("cache_dir", "--cache-dir", "--cache_dir", help="image cache folder")
    add_bit_depth_flag(parser, TrainConfig)
    add_table_flags(parser, TrainConfig)


def training_batch_size(text: str) -> int:
    """argparse type for --batch_size: refused at parse time, naming the flag."""
    from rxwgan.train.config import check_batch_size

    try:
        value = int(text)
        check_batch_size(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    except RxwganError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--batch_size ")) from None
    return value


LENGTH_SETTINGS = ("epochs", "kimg", "gen_steps")


def typed_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the flags set, checked against each other."""
    values = given(args, TrainConfig)
    lengths = [f"--{name}" for name in LENGTH_SETTINGS if name in values]
    if len(lengths) > 1:  # TrainConfig cannot tell a typed --epochs from its default
        raise RxwganError(f"{' and '.join(lengths)} each set the training length: give one")
    if values.get("conditional") and "target" in values:
        raise RxwganError("--target picks the class of a per-class run; a --conditional run learns both "
                          "(give one of the two)")
    if "betas" in values:
        values["betas"] = tuple(values["betas"])
    if hasattr(args, "fold"):  # train names its partition; a sweep plans one per run
        values["split"] = split_spec(args)
    return values


def train_config(args: argparse.Namespace, log: Log = print) -> TrainConfig:
    """The config ``train`` runs: the typed flags over a recipe (``train.recipes``), or over what
    the run it resumes recorded; ``log`` is told which."""
    from rxwgan.base.devices import resolve_device
    from rxwgan.train.recipes import resolved_settings, resumed_run

    values = typed_settings(args)
    settings, line = resolved_settings(values, resolve_device(values.get("device", "auto")).type,
                                       resumed_run(values))
    log(line)
    return TrainConfig(**settings)


def cmd_train(args: argparse.Namespace) -> int:
    from rxwgan.train.loop import train

    result = train(train_config(args))
    return 130 if result.interrupted else 0


def cmd_demo(args: argparse.Namespace) -> int:
    settings = given(args, DemoSettings)
    for name in ("synthetic", "utility_repeats", "utility_epochs"):
        if name in settings:
            require_at_least(f"--{name.replace('_', '-')}", settings[name], 1)
    run_demo(args.output, DemoSettings(**settings))
    return 0


def register(verbs: argparse._SubParsersAction) -> None:
    """Add ``demo``, ``create-models`` and ``train``."""
    demo = verbs.add_parser("demo", help="the whole pipeline on the shipped phantom X-rays")
    demo.add_argument("-o", "--output", default="demo_out",
                      help="folder for everything (default %(default)s)")
    setting = partial(add_setting, demo, DemoSettings)
    setting("recipe", "--recipe", choices=tuple(RECIPES), help="the training recipe")
    setting("model", "--model", help="architecture", unset="the recipe's")
    setting("conditional", "--conditional", action=argparse.BooleanOptionalAction,
            help="one conditional generator for both classes instead of one per class")
    setting("kimg", "--kimg", type=float, help="thousands of real images shown per class")
    setting("synthetic", "--synthetic", type=int, help="synthetic images generated per class")
    setting("utility_repeats", "--utility-repeats", type=int,
            help="classifier seeds per condition in the utility table")
    setting("utility_epochs", "--utility-epochs", type=int, help="the utility classifier's most epochs")
    demo.set_defaults(handler=cmd_demo)
    add_create_flags(verbs.add_parser("create-models", help="write an initialised generator and critic"),
                     default_output=".")
    add_train_flags(verbs.add_parser(
        "train", help="train a WGAN-GP on one class of one fold (or both: --conditional)"))
