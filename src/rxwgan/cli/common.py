"""What every verb's parser shares: one-line errors, flags bound to settings, the runner.

Errors a user can cause come up as RxwganError and leave as one line on stderr with
exit status 2; argparse's own errors are shortened to one line too.

A flag that sets a setting is bound to it (``add_setting``): the setting's owner, a dataclass
or a function whose keyword parameters are its settings, holds the default and ``--help``
reads it from there. A bound flag the user did not type is absent from the parsed namespace
(``argparse.SUPPRESS``): ``given(args, Owner)`` is what they typed, even a value equal to the
default, and ``Owner(**given(args, Owner))`` leaves the rest to the owner.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from rxwgan.base.errors import RxwganError
from rxwgan.data.splits import DEFAULT_N_SPLITS, DEFAULT_SEED, SplitSpec
from rxwgan.data.table import DEFAULT_PATH_COLUMN, DEFAULT_TARGET_COLUMN

EXIT_USAGE = 2
NO_DEFAULT = dataclasses.MISSING  # a setting the owner gives no default (a required one)


@dataclasses.dataclass(frozen=True)
class Lazy:
    """An owner in a module that imports torch: ``load`` imports and returns it when ``--help``
    or a handler reads it, so building the parser imports no torch."""

    load: Callable[[], Any]


class Setting(NamedTuple):
    """A flag's binding (its action's ``setting``): ``owner``'s setting ``name``; ``unset``
    says in words what a default of None or "" means."""

    owner: Any
    name: str
    unset: str | None = None


def resolve(owner: Any) -> Any:
    return owner.load() if isinstance(owner, Lazy) else owner


def setting_defaults(owner: Any) -> dict[str, Any]:
    """Every setting of ``owner`` and its default (NO_DEFAULT where it has none)."""
    owner = resolve(owner)
    if dataclasses.is_dataclass(owner):
        return {field.name: _field_default(field) for field in dataclasses.fields(owner) if field.init}
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name: NO_DEFAULT if p.default is p.empty else p.default
            for p in inspect.signature(owner).parameters.values() if p.kind in keyword}


def _field_default(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def add_setting(parser: argparse.ArgumentParser, owner: Any, name: str, *flags: str, help: str,
                unset: str | None = None, **options: Any) -> argparse.Action:
    """A flag for ``owner``'s setting ``name``: absent from the namespace unless typed, and its
    help ends with the owner's default, ``(default X)``, or ``(default: unset)`` for None."""
    action = parser.add_argument(*flags, dest=name, default=argparse.SUPPRESS, help=help, **options)
    action.setting = Setting(owner, name, unset)  # type: ignore[attr-defined]
    return action


def given(args: argparse.Namespace, owner: Any) -> dict[str, Any]:
    """``owner``'s settings the command line set: typed, or a legacy parser's ``set_defaults``."""
    return {name: getattr(args, name) for name in setting_defaults(owner) if hasattr(args, name)}


def setting_value(args: argparse.Namespace, owner: Any, name: str) -> Any:
    """A setting as the command line set it, else its owner's default."""
    return getattr(args, name) if hasattr(args, name) else setting_defaults(owner)[name]


def format_default(value: Any, nargs: int | str | None = None) -> str | None:
    """A default as a user types it (lists space-separated for a flag of several values, else
    comma-separated); None where there is no value to show (None, "", a switch)."""
    if value is NO_DEFAULT or value is None or isinstance(value, bool) or value in ("", ()):
        return None
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (tuple, list)):
        return (" " if nargs else ",").join(str(format_default(item)) for item in value)
    return str(value)


def stated_default(action: argparse.Action) -> str:
    """What a bound flag's help says of its default; "" for a switch and an unbound flag."""
    binding: Setting | None = getattr(action, "setting", None)
    if binding is None or action.nargs == 0:
        return ""
    value = action.default  # a parser's set_defaults replaces the owner's default
    if value is argparse.SUPPRESS:
        value = setting_defaults(binding.owner)[binding.name]
    shown = format_default(value, action.nargs)
    if shown is not None:
        return f"(default {shown})"
    return f"(default: {binding.unset})" if binding.unset and value is not NO_DEFAULT else ""


class SettingsHelpFormatter(argparse.HelpFormatter):
    """argparse's help, a bound flag's ending with its owner's default, read at ``--help`` time."""

    def _get_help_string(self, action: argparse.Action) -> str:
        stated = stated_default(action).replace("%", "%%")
        return " ".join(text for text in (action.help, stated) if text)


def help_text(action: argparse.Action) -> str:
    """A flag's help as ``--help`` shows it, on one line (argparse's own expansion of it)."""
    return SettingsHelpFormatter("")._expand_help(action)


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (no usage dump) and exits 2."""

    def __init__(self, *args: Any, formatter_class: type[argparse.HelpFormatter] = SettingsHelpFormatter,
                 **kwargs: Any) -> None:
        super().__init__(*args, formatter_class=formatter_class, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        # "rxwgan: error:", not "rxwgan train: error:": one prefix whatever the verb.
        self.exit(EXIT_USAGE, f"{self.prog.split()[0]}: error: {message} (see {self.prog} --help)\n")


def add_table_flags(parser: argparse.ArgumentParser, owner: Any = None) -> None:
    """--path-column and --target-column, bound to ``owner``'s settings when it has them."""
    flags = {"path_column": ("--path-column", "--path_column", "column holding image paths"),
             "target_column": ("--target-column", "--target_column", "column holding the 0/1 target")}
    defaults = {"path_column": DEFAULT_PATH_COLUMN, "target_column": DEFAULT_TARGET_COLUMN}
    for name, (*names, text) in flags.items():
        if owner is None:
            parser.add_argument(*names, dest=name, default=defaults[name],
                                help=f"{text} (default %(default)s)")
        else:
            add_setting(parser, owner, name, *names, help=text)


def add_split_flags(parser: argparse.ArgumentParser, what: str = "", default_fold: bool = True) -> None:
    """--fold/--n_splits (k-fold), --test/--sort (the old 10x10 scheme), --split-seed and
    --group-column; ``default_fold``: without them, the split is k-fold 0 of DEFAULT_N_SPLITS."""
    folds = f" (default: {DEFAULT_N_SPLITS})" if default_fold else ""
    parser.add_argument("--fold", type=int, help=f"{what}k-fold scheme: the validation fold")
    parser.add_argument("--n_splits", "--n-splits", dest="n_splits", type=int,
                        help=f"{what}k-fold scheme: number of folds{folds}")
    parser.add_argument("--test", type=int, help=f"{what}stratified scheme: test fold 0..9")
    parser.add_argument("--sort", type=int, help=f"{what}stratified scheme: validation fold 0..9 within it")
    add_split_seed_flag(parser)
    add_group_column_flag(parser)


def add_split_seed_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split-seed", "--split_seed", dest="split_seed", type=int, default=DEFAULT_SEED,
                        help="seed that shuffles the folds, as in the old tool (default %(default)s)")


def add_group_column_flag(parser: argparse.ArgumentParser) -> None:
    """--group-column: patient-level folds. A plain flag, not a bound setting: it sets a field of
    the run's SplitSpec, as the other split flags do, and its default is SplitSpec's."""
    parser.add_argument("--group-column", "--group_column", dest="group_column", metavar="COL",
                        default=setting_defaults(SplitSpec)["group_column"],
                        help="column of the table whose rows stay together, e.g. a patient id: every value "
                             "lands whole on one side of every split; recorded with the run (default: none, "
                             "rows are split one by one as in the old tool)")


def split_spec(args: argparse.Namespace, default_fold: bool = True) -> SplitSpec:
    """The partition the flags name (k-fold 0 of 5 when none, if ``default_fold``), checked."""
    values = {"fold": args.fold, "n_splits": args.n_splits, "test": args.test, "sort": args.sort,
              "seed": args.split_seed, "group_column": args.group_column}
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
