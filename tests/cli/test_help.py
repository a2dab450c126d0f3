"""Every option and positional of every ``lcsc`` and ``checkfree`` command explains itself."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator

import pytest

from checkfree.cli import build_parser as checkfree_parser
from lcsc.cli import build_parser as lcsc_parser


def _commands(
    parser: argparse.ArgumentParser, name: str
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """``parser`` and every (nested) subcommand's parser, with the command line naming it."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, child in action.choices.items():
                yield from _commands(child, f"{name} {sub}")


COMMANDS = dict(_commands(lcsc_parser(), "lcsc")) | dict(_commands(checkfree_parser(), "checkfree"))


def test_both_clis_are_walked() -> None:
    """The walk reaches every command (a registration that bypasses it would go unchecked)."""
    lcsc = {c.removeprefix("lcsc ") for c in COMMANDS if c.startswith("lcsc ")}
    assert {
        "inspect",
        "merge",
        "search",
        "landscape",
        "train",
        "sample",
        "demo",
        "evaluate",
    } <= lcsc
    assert "checkfree train" in COMMANDS


def _arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    skip = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)
    return [a for a in parser._actions if not isinstance(a, skip)]


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help text ``--help`` prints for ``action``, before line wrapping."""
    return parser._get_formatter()._expand_help(action)


def _name(action: argparse.Action) -> str:
    return action.option_strings[-1] if action.option_strings else str(action.metavar)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_argument_has_help_and_shows_its_default(command: str) -> None:
    parser = COMMANDS[command]
    chosen = {a for g in parser._mutually_exclusive_groups if g.required for a in g._group_actions}
    for action in _arguments(parser):
        text = _help(parser, action)
        where = f"{command} {_name(action)}: {text!r}"
        assert action.help and action.help != argparse.SUPPRESS and len(action.help) > 10, where
        default = action.default
        if action.required or action in chosen or not action.option_strings:
            continue  # always given (one of a required group): no default to state
        if action.nargs == 0:
            continue  # a flag: off unless given
        if default is None or default == []:
            # Not given means something other than a value: the help says what, in words.
            assert "default" in text, where
        else:
            assert f"(default: {default})" in text, where
            assert text.count("(default: ") == 1, where


def test_defaults_appear_in_the_printed_help() -> None:
    """What a user sees, ``--help`` itself, in a fresh process: the formatter is installed."""
    for argv, shown in (
        (["-m", "lcsc", "demo", "--help"], "(default: 6000)"),
        (["-m", "lcsc", "search", "--help"], "(default: subspace)"),
        (["-m", "checkfree", "train", "--help"], "(default: checkfree)"),
    ):
        proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert shown in " ".join(proc.stdout.split()), argv


def test_defaults_shown_are_the_ones_used() -> None:
    """Defaults in the help are the configs' own, so they cannot drift apart."""
    from checkfree.config import ModelConfig as CheckfreeModel
    from checkfree.config import TrainConfig as CheckfreeTrain
    from lcsc.reference.digits.demo import DemoConfig
    from lcsc.reference.generative.networks import ModelConfig
    from lcsc.reference.generative.train_config import TrainConfig

    def defaults(command: str) -> dict[str, object]:
        return {a.dest: a.default for a in _arguments(COMMANDS[command])}

    demo = defaults("lcsc demo")
    config = DemoConfig()
    for name in ("iterations", "budget", "method", "seed", "search_samples", "penalty"):
        assert demo[name] == getattr(config, name), name
    train = defaults("lcsc train")
    run = TrainConfig(kind="dm", model=ModelConfig())
    assert (train["lr"], train["batch_size"], train["ema_rate"]) == (
        run.lr,
        run.batch_size,
        run.ema_rate,
    )
    assert (train["width"], train["depth"], train["channels"]) == (
        run.model.width,
        run.model.depth,
        run.model.channels,
    )
    cf = defaults("checkfree train")
    cf_run = CheckfreeTrain()
    assert (cf["lr"], cf["iterations"], cf["stages"]) == (
        cf_run.lr,
        cf_run.iterations,
        CheckfreeModel().stages,
    )
