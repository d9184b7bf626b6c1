"""Every default a flag's help states is the one its settings hold: read from there, not restated."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

from rxwgan.cli import build_create_models_parser, build_parser, build_run_wgangp_parser, main
from rxwgan.cli.common import (
    NO_DEFAULT,
    OneLineParser,
    add_setting,
    format_default,
    given,
    help_text,
    resolve,
    setting_defaults,
)
from rxwgan.cli.train import train_config
from rxwgan.data.phantoms import write_demo_data
from rxwgan.demo import DemoSettings
from rxwgan.study.sweep import SweepOptions
from rxwgan.synth.export import export_onnx
from rxwgan.synth.generate import generate
from rxwgan.train.config import KERAS_MODEL, TrainConfig
from rxwgan.utility.settings import ClassifierSettings, UtilitySettings
from rxwgan.utility.workers import UtilityOptions

STATED_VALUE = re.compile(r"\(default (?P<value>[^)]*)\)")  # "(default 30)"
STATED_IN_WORDS = re.compile(r"\(default: [^)]*\)")  # "(default: the model's)", for None
# The settings each verb's flags set; a flag whose dest names one of them must be bound to it.
VERB_SETTINGS = {
    "rxwgan train": (TrainConfig,),
    "run_wgangp.py": (TrainConfig,),
    "rxwgan sweep": (TrainConfig, SweepOptions),
    "rxwgan demo": (DemoSettings,),
    "rxwgan utility": (UtilitySettings, ClassifierSettings, UtilityOptions),
    "rxwgan generate": (generate,),
    "rxwgan export": (export_onnx,),
    "rxwgan demo-data": (write_demo_data,),
}


def leaf_parsers() -> dict[str, argparse.ArgumentParser]:
    """Every verb's parser (``table check`` included) and the old tool's two, by prog."""
    found = {}

    def walk(parser: argparse.ArgumentParser) -> None:
        verbs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not verbs:
            found[parser.prog] = parser
        for action in verbs:
            for child in action.choices.values():
                walk(child)

    for parser in (build_parser(), build_create_models_parser(), build_run_wgangp_parser()):
        walk(parser)
    return found


PARSERS = leaf_parsers()


def expected_default(action: argparse.Action) -> object:
    """What a parse without the flag leaves: the owner's default for a bound flag."""
    binding = getattr(action, "setting", None)
    if binding is None or action.default is not argparse.SUPPRESS:
        return action.default
    return setting_defaults(binding.owner)[binding.name]


def help_problems(parser: argparse.ArgumentParser) -> list[str]:
    """Flags whose help states a default other than the one a parse without them leaves."""
    problems = []
    for action in parser._actions:
        if not action.help or action.nargs == 0:  # a switch has no value to state
            continue
        flag, text = "/".join(action.option_strings) or action.dest, help_text(action)
        values = [match.group("value") for match in STATED_VALUE.finditer(text)]
        in_words = STATED_IN_WORDS.findall(text)
        if text.count("default") != len(values) + len(in_words):
            problems.append(f"{flag}: says 'default' other than as '(default X)' or '(default: words)'")
        expected = expected_default(action)
        shown = format_default(expected, action.nargs)
        problems += [f"{flag}: help says default {value!r}, the setting is {shown!r}"
                     for value in values if value != shown]
        if in_words and (shown is not None or expected is NO_DEFAULT):
            problems.append(f"{flag}: describes in words a default that is a value ({shown!r})")
    return problems


def binding_problems(parser: argparse.ArgumentParser, owners: tuple) -> list[str]:
    """Flags that set one of ``owners``' settings without being bound to it."""
    names = {name for owner in owners for name in setting_defaults(owner)}
    problems = []
    for action in parser._actions:
        binding = getattr(action, "setting", None)
        if binding is None and action.dest in names:
            problems.append(f"{action.dest}: a setting of the verb, not bound to it")
        elif binding is not None and (resolve(binding.owner) not in owners or binding.name != action.dest):
            problems.append(f"{action.dest}: bound to {binding}, not to the verb's settings")
    return problems


def test_every_verb_and_the_old_tools_parsers_are_checked():
    verbs = ("train", "sweep", "create-models", "demo", "utility", "generate", "export", "evaluate",
             "table check", "table build", "table split", "cache", "demo-data", "report")
    assert {f"rxwgan {verb}" for verb in verbs} | {"create_models.py", "run_wgangp.py"} <= set(PARSERS)


@pytest.mark.parametrize("prog", sorted(PARSERS))
def test_every_stated_default_is_the_one_a_parse_leaves(prog):
    assert help_problems(PARSERS[prog]) == []


@pytest.mark.parametrize("prog", sorted(VERB_SETTINGS))
def test_every_flag_of_a_verbs_settings_is_bound_to_them(prog):
    assert binding_problems(PARSERS[prog], VERB_SETTINGS[prog]) == []


@pytest.mark.parametrize("prog", sorted(PARSERS))
def test_every_binding_names_a_setting_of_its_owner(prog):
    for action in PARSERS[prog]._actions:
        binding = getattr(action, "setting", None)
        assert binding is None or binding.name in setting_defaults(binding.owner), action.option_strings


def test_the_checks_catch_the_old_restated_defaults():
    old_demo = OneLineParser(prog="rxwgan demo")  # as it was: a hard-coded text, no binding
    old_demo.add_argument("--kimg", type=float, help="thousands of real images shown per class (default 20)")
    assert help_problems(old_demo) == ["--kimg: help says default '20', the setting is None"]
    assert binding_problems(old_demo, (DemoSettings,)) == ["kimg: a setting of the verb, not bound to it"]

    old_utility = OneLineParser(prog="rxwgan utility")
    old_utility.add_argument("--epochs", type=int, help="most epochs (default 40, early stopping)")
    assert help_problems(old_utility) == [
        "--epochs: help says default '40, early stopping', the setting is None"]

    bound = OneLineParser(prog="bound")  # bound, with the old text left in its help
    add_setting(bound, DemoSettings, "kimg", "--kimg", type=float, help="per class (default 20)")
    assert help_problems(bound) == [f"--kimg: help says default '20', the setting is '{DemoSettings.kimg:g}'"]

    in_words = OneLineParser(prog="words")
    add_setting(in_words, TrainConfig, "epochs", "--epochs", type=int, help="length", unset="the old tool's")
    assert help_problems(in_words) == []  # a value to show: "(default 1000)", the words unused
    in_words.add_argument("--repeats", type=int, default=3, help="seeds (default: a few)")
    assert help_problems(in_words) == ["--repeats: describes in words a default that is a value ('3')"]


def test_given_tells_a_typed_default_from_an_absent_flag():
    epochs = TrainConfig.default("epochs")
    base = ["train", "-i", "table.csv", "-o", "run"]
    typed = build_parser().parse_args([*base, "--epochs", str(epochs)])
    absent = build_parser().parse_args(base)
    assert given(typed, TrainConfig)["epochs"] == epochs
    assert "epochs" not in given(absent, TrainConfig)
    assert train_config(typed).epochs == train_config(absent).epochs == epochs


def test_the_old_run_wgangp_keeps_its_v1_default():
    parser, base = build_run_wgangp_parser(), ["-i", "table.csv", "-o", "run"]
    assert train_config(parser.parse_args(base)).model == KERAS_MODEL
    assert train_config(parser.parse_args([*base, "--model", "tiny"])).model == "tiny"
    model = next(a for a in parser._actions if a.dest == "model")
    assert help_text(model).endswith(f"(default {KERAS_MODEL})")


@pytest.mark.parametrize("argv, stated", [
    (["demo", "--help"], f"(default {DemoSettings.kimg:g})"),
    (["utility", "--help"], f"(default {ClassifierSettings().max_epochs})"),
    (["generate", "--help"], "cuda:N (default auto)"),
])
def test_help_states_the_settings_default(monkeypatch, capsys, argv, stated):
    monkeypatch.setenv("COLUMNS", "1000")  # one line per flag
    assert main(argv) == 0
    assert stated in capsys.readouterr().out


def test_format_default_writes_values_as_typed():
    assert format_default(0.0001) == "0.0001"
    assert format_default(30.0) == "30"
    assert format_default((0.5, 0.9), nargs=2) == "0.5 0.9"
    assert format_default(("kid", "pr")) == "kid,pr"
    assert format_default((1.0,)) == "1"
    assert [format_default(v) for v in (None, "", (), True, False, NO_DEFAULT)] == [None] * 6


def test_the_settings_and_the_parser_import_no_torch():
    code = ("import sys; import rxwgan.demo, rxwgan.utility.settings; from rxwgan.cli import build_parser; "
            "build_parser(); assert 'torch' not in sys.modules, 'torch imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
