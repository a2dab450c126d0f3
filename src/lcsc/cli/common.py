"""Argument helpers shared by several commands."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from lcsc.errors import LcscError
from lcsc.trajectory import Trajectory
from lcsc.trajectory.sources import parse_steps


def _steps(text: str) -> list[int]:
    try:
        return parse_steps(text)
    except LcscError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_source(p: argparse.ArgumentParser) -> None:
    """Positional checkpoint paths plus how to find the weights in them."""
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="one run folder (lcsc Recorder directory, diffusers/accelerate checkpoint-<step>/"
        " folders, Lightning epoch=E-step=S.ckpt or timm checkpoint-<epoch>.pth.tar files, or"
        " any folder of .safetensors/.pt/.pth/.bin/.ckpt files), or checkpoint files and"
        " checkpoint-<step>/ folders",
    )
    p.add_argument(
        "--steps",
        type=_steps,
        metavar="LIST",
        help="training step (iteration) of each checkpoint, in the order found (by step number"
        " in the names, else by name): 10,20,30 or START:STOP:STEP with STOP included"
        " (default: read from lcsc's files, the file names or the checkpoint-<step> folders)",
    )
    p.add_argument(
        "--component",
        metavar="NAME",
        help="model component inside checkpoint-<step>/ folders, e.g. unet_ema or model"
        " (default: unet, else the only one; inspect lists them)",
    )
    p.add_argument(
        "--key",
        metavar="NAME",
        help="entry of .pt/.pth/.ckpt files that holds the weights, e.g. ema or state_dict_ema"
        " (default: the file itself if it maps names to tensors, else the first present of"
        " state_dict, model, module, model_state_dict, net)",
    )
    p.add_argument(
        "--strip-prefix",
        metavar="PREFIX",
        help="keep only the weights whose names start with PREFIX, without it, e.g. 'model.'"
        " for a LightningModule's self.model (DDP's 'module.' and torch.compile's"
        " '_orig_mod.' are removed without asking when every name has them; default: none)",
    )


def source_options(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`add_source`'s options as keyword arguments of :meth:`Trajectory.from_paths`."""
    return {
        "steps": args.steps,
        "component": args.component,
        "key": args.key,
        "strip_prefix": args.strip_prefix,
    }


def add_selection(p: argparse.ArgumentParser) -> None:
    """:func:`add_source` plus the window/interval selection options."""
    add_source(p)
    p.add_argument(
        "--start", type=int, metavar="STEP", help="first step of the window (default: the first)"
    )
    p.add_argument(
        "--stop", type=int, metavar="STEP", help="last step of the window (default: the last)"
    )
    p.add_argument(
        "--every",
        type=int,
        default=1,
        metavar="N",
        help="keep every N-th checkpoint of the window, counted back from the last",
    )


def run_command(prog: str, command: Callable[[], int]) -> int:
    """Run a command: a user error (:class:`LcscError`) prints one line ``prog: error: ...``
    and returns 1, Ctrl-C prints ``prog: interrupted`` and returns 130, a reader that stops
    early (``lcsc inspect DIR | head``) ends the command quietly with 141 as a shell's
    SIGPIPE would; anything else is a bug and keeps its traceback. Shared by ``lcsc`` and
    ``checkfree``."""
    try:
        return command()
    except LcscError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Python flushes stdout again at exit: point it at /dev/null so that nothing is printed.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def add_objective(p: argparse.ArgumentParser) -> None:
    """``--objective MODULE:FUNCTION`` and its repeatable ``--objective-arg KEY=VALUE``."""
    p.add_argument(
        "--objective",
        required=True,
        metavar="MODULE:FUNCTION",
        help="factory returning a callable state_dict -> float (lower is better); MODULE may be"
        " a FILE.py",
    )
    p.add_argument(
        "--objective-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keyword argument passed, as a string, to the objective factory; repeat it for"
        " several (default: none)",
    )


def add_threads(p: argparse.ArgumentParser) -> None:
    """``--threads N``, applied by :func:`lcsc.cli.main` (see :mod:`lcsc.threads`)."""
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="torch CPU threads (default: OMP_NUM_THREADS, else half the CPUs)",
    )


def open_selection(args: argparse.Namespace) -> Trajectory:
    """The trajectory named by :func:`add_selection`'s arguments."""
    traj = Trajectory.from_paths(args.paths, **source_options(args))
    if args.start is not None or args.stop is not None or args.every != 1:
        traj = traj.select(args.start, args.stop, args.every)
    return traj


class StageBars:
    """One tqdm progress bar per stage of a long job: a :class:`lcsc.progress.Progress`.

    A bar opens at its stage's first report, so errors raised during set-up print alone;
    ``info`` numbers are shown beside the bar; ``done`` may go back (a CheckFree rollback).
    """

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self._bars: dict[str, object] = {}

    def __call__(self, stage: str, done: int, total: int, **info: float) -> None:
        from tqdm import tqdm

        bar = self._bars.get(stage)
        if bar is None:
            for other in self._bars.values():
                other.close()  # type: ignore[attr-defined]
            desc = f"{self.prefix}{stage}"
            bar = self._bars[stage] = tqdm(total=total, desc=desc, unit="it", leave=True)
        if info:
            shown = {k: f"{v:.4g}" if isinstance(v, float) else v for k, v in info.items()}
            bar.set_postfix(shown, refresh=False)  # type: ignore[attr-defined]
        bar.update(done - bar.n)  # type: ignore[attr-defined]  # tqdm throttles redraws

    def __enter__(self) -> StageBars:
        return self

    def __exit__(self, *exc: object) -> None:
        for bar in self._bars.values():
            bar.close()  # type: ignore[attr-defined]


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with ``(default: VALUE)``, from its argparse default.

    Appended unless the help already says ``(default: ...)``; not for defaults that are not a
    value (None, a flag's False, an empty repeatable list): there the help says in words what
    happens when the option is not given. tests/cli/test_help.py holds every command to it.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            shows_default(action)
            and "%(default)" not in text
            and "(default: " not in text
            and (
                action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE)
            )
        ):
            text += " (default: %(default)s)"
        return text


def shows_default(action: argparse.Action) -> bool:
    """Whether ``action``'s default is a value that its help must show."""
    default = action.default
    no_value = default is None or default is False or default == [] or default == argparse.SUPPRESS
    return not (action.required or no_value)  # `is`: 0 == False, yet seed 0 is a value


def explain_defaults(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give ``parser`` and all its subcommands' parsers :class:`HelpFormatter`."""
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                explain_defaults(sub)
    return parser
