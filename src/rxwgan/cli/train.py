"""Verbs of models and training: ``create-models`` and ``train`` (and their legacy names)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rxwgan.cli.common import add_split_flags, add_table_flags, refuse_existing
from rxwgan.cli.data import add_bit_depth_flag


def cmd_create_models(args: argparse.Namespace) -> int:
    import torch

    from rxwgan.folder_lock import check_writable_folder
    from rxwgan.models import build_critic, build_generator, save_model

    out = Path(args.output)
    builders = {"generator": build_generator, "critic": build_critic}
    paths = {role: out / f"{role}.safetensors" for role in builders}
    for path in paths.values():  # both checked first: a refusal leaves no half of the pair
        refuse_existing(path, args.overwrite)
    check_writable_folder(out, "-o")
    overrides = {} if args.dropout is None else {"dropout": args.dropout}
    torch.manual_seed(args.seed)
    networks = {role: build(args.model, **overrides) for role, build in builders.items()}
    for role, path in paths.items():
        save_model(networks[role], path)
        print(f"wrote {path} ({args.model} {role})")
    return 0


def add_create_flags(parser: argparse.ArgumentParser, default_output: str | None) -> None:
    parser.add_argument("--model", default="v1", help="architecture name (default v1)")
    parser.add_argument("-o", "--output", default=default_output, required=default_output is None,
                        help="folder to write generator.safetensors and critic.safetensors")
    parser.add_argument("--dropout", type=float, help="dropout rate (default: the architecture's)")
    parser.add_argument("--seed", type=int, default=512, help="initialisation seed")
    parser.add_argument("--overwrite", action="store_true")
    parser.set_defaults(handler=cmd_create_models)


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    """Every flag of the old run_wgangp.py, plus ours."""
    parser.add_argument("-i", "--input", required=True, help="the table (CSV)")
    parser.add_argument("-o", "--output", required=True, help="folder for this run's files")
    add_model_flags(parser)
    parser.add_argument("-t", "--target", type=int, default=1, help="class to learn, 0 or 1 (default 1)")
    add_split_flags(parser)
    add_loop_flags(parser)
    parser.add_argument("--history", help="old-style restart: history_epoch_N.json")
    parser.add_argument("--start_from_epoch", "--start-from-epoch", dest="start_from_epoch", type=int,
                        default=1, help="old-style restart: first epoch to run (N+1)")
    parser.add_argument("--resume", action="store_true", help="require a checkpoint in -o and continue it")
    parser.add_argument("--overwrite", action="store_true", help="replace another run's files in -o")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    parser.set_defaults(handler=cmd_train)


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """Which networks a run starts from (shared with ``sweep``)."""
    parser.add_argument("-g", "--generator", help="generator file to start from (.safetensors or old .h5)")
    parser.add_argument("-c", "--critic", help="critic file to start from (.safetensors or old .h5)")
    parser.add_argument("--model", help="architecture when -g/-c are not given (default v1; a resumed "
                        "run keeps its own)")


def add_loop_flags(parser: argparse.ArgumentParser) -> None:
    """How a run trains, the same for every run of a study (shared with ``sweep``)."""
    parser.add_argument("--batch_size", "--batch-size", dest="batch_size", type=training_batch_size,
                        default=16, help="images per critic step (at least 2)")
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--n_critic", "--n_discr", "--n-critic", dest="n_critic", type=int, default=5,
                        help="critic steps per generator step (0: one of each per batch)")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--betas", type=float, nargs=2, default=(0.5, 0.9), metavar=("B1", "B2"))
    parser.add_argument("--gp_weight", "--gp-weight", dest="gp_weight", type=float, default=10.0)
    parser.add_argument("--dropout", type=float, help="dropout rate (default: the architecture's)")
    parser.add_argument("--save_for_each", "--save-for-each", dest="save_for_each", type=int, default=50)
    parser.add_argument("--disp_for_each", "--disp-for-each", dest="disp_for_each", type=int, default=50)
    parser.add_argument("--eval_for_each", "--eval-for-each", dest="eval_for_each", type=int, default=0,
                        help="every N epochs, evaluate the generator against the validation rows")
    parser.add_argument("--eval_metrics", "--eval-metrics", dest="eval_metrics", default="kid,pr",
                        help="metrics for --eval_for_each (fid, kid, pr, dc, hist)")
    parser.add_argument("--eval_features", "--eval-features", dest="eval_features", default="auto",
                        help="feature space for --eval_for_each (auto, xrv, inception, trained, random)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                        help="keep tensors in the default memory layout")
    parser.add_argument("--cache-dir", "--cache_dir", dest="cache_dir", help="image cache folder")
    add_bit_depth_flag(parser)
    add_table_flags(parser)


def training_batch_size(text: str) -> int:
    """argparse type for --batch_size: refused at parse time, naming the flag."""
    from rxwgan.config import check_batch_size
    from rxwgan.errors import RxwganError

    try:
        value = int(text)
        check_batch_size(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    except RxwganError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--batch_size ")) from None
    return value


def train_config(args: argparse.Namespace):
    from rxwgan.config import TrainConfig

    values = {name: getattr(args, name) for name in TrainConfig.__dataclass_fields__ if hasattr(args, name)}
    values["betas"] = tuple(values["betas"])
    values["eval_metrics"] = tuple(m.strip() for m in values["eval_metrics"].split(",") if m.strip())
    config = TrainConfig(**values)
    if config.test is None and config.sort is None:
        # The old README's example, --fold 0 --n_splits 5, when either is left out.
        config.fold = 0 if config.fold is None else config.fold
        config.n_splits = 5 if config.n_splits is None else config.n_splits
    return config


def cmd_train(args: argparse.Namespace) -> int:
    from rxwgan.training import train

    result = train(train_config(args))
    return 130 if result.interrupted else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from rxwgan.demo import DemoSettings, run_demo

    run_demo(args.output, DemoSettings(model=args.model, epochs=args.epochs))
    return 0


def register(verbs: argparse._SubParsersAction) -> None:
    """Add ``create-models``, ``train`` and ``demo``."""
    demo = verbs.add_parser("demo", help="the whole pipeline on the shipped phantom X-rays")
    demo.add_argument("-o", "--output", default="demo_out", help="folder for everything (default demo_out)")
    demo.add_argument("--model", default="small", help="architecture (default small, 64 px)")
    demo.add_argument("--epochs", type=int, default=250, help="epochs per class (default 250)")
    demo.set_defaults(handler=cmd_demo)
    add_create_flags(verbs.add_parser("create-models", help="write an initialised generator and critic"),
                     default_output=".")
    add_train_flags(verbs.add_parser("train", help="train a WGAN-GP on one class of one fold"))
