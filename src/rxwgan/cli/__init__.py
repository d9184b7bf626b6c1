"""The command line: parse flags, build a config, call the Python API. Nothing else.

One module per group of verbs; each has ``register(verbs)`` adding its sub-commands.
``create_models.py`` and ``run_wgangp.py`` are the old tool's entry points, same flags.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from rxwgan import __version__
from rxwgan.cli import data, evaluate, generate, sweep, train, utility
from rxwgan.cli.common import OneLineParser, run
from rxwgan.train.config import KERAS_MODEL

VERB_GROUPS = (data, train, sweep, utility, generate, evaluate)


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="rxwgan", description="WGAN-GP on chest X-rays under cross-validation")
    parser.add_argument("--version", action="version", version=f"rxwgan {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=OneLineParser)
    for group in VERB_GROUPS:
        group.register(verbs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run(sys.argv[1:] if argv is None else argv, build_parser())


def build_create_models_parser() -> OneLineParser:
    """The old tool's ``create_models.py``: v1 models in the current folder by default."""
    parser = OneLineParser(prog="create_models.py")
    train.add_create_flags(parser, default_output=".")
    return parser


def build_run_wgangp_parser() -> OneLineParser:
    """The old tool's ``run_wgangp.py``, every flag accepted."""
    parser = OneLineParser(prog="run_wgangp.py")
    train.add_train_flags(parser)
    parser.set_defaults(model=KERAS_MODEL, recipe="keras")  # the old tool's v1 and settings, always
    return parser


def create_models_main(argv: Sequence[str] | None = None) -> int:
    return run(sys.argv[1:] if argv is None else argv, build_create_models_parser())


def run_wgangp_main(argv: Sequence[str] | None = None) -> int:
    return run(sys.argv[1:] if argv is None else argv, build_run_wgangp_parser())
