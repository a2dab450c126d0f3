"""The ``lcsc`` command line: a thin layer over the Python API.

Each command group lives in its own module with a ``register(subparsers)`` function. A user error
prints one line, ``lcsc: error: ...``, naming the file, key, argument or objective at fault, and
exits with status 1, without a traceback; outputs are written atomically and checked before any
work (never an input, never inside the trajectory's folder), so a failed command never leaves a
partial file behind nor touches an existing one.

User errors versus lcsc bugs: every user-facing failure is raised as an
:class:`~lcsc.errors.LcscError`, converted where it arises: bad files and arguments by the
parsers and validators; OS errors on the user's paths (read-only or full disk, a folder where a
file is expected) by the I/O layer (:mod:`lcsc.atomic`, checkpoint reading, the search's
workdir); any exception raised by the user's objective module, factory or objective (syntax
errors included) where lcsc calls it. Only ``LcscError`` is turned into one line
(:func:`lcsc.cli.common.run_command`), so any other exception escaping from lcsc's own code is
a bug in lcsc and keeps its traceback.
See docs/reliability.md.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from lcsc import threads

threads.prepare_environment()  # before the command modules import torch, numpy, OpenMP

from lcsc import __version__  # noqa: E402
from lcsc.cli import core, demo, generative, landscape  # noqa: E402
from lcsc.cli.common import explain_defaults, run_command  # noqa: E402

COMMAND_GROUPS = [core, landscape, generative, demo]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lcsc", description="Linear Combination of Saved Checkpoints."
    )
    parser.add_argument("--version", action="version", version=f"lcsc {__version__}")
    parser.add_argument(
        "--threads",
        type=int,
        dest="global_threads",
        metavar="N",
        help="torch CPU threads for any command (default: OMP_NUM_THREADS, else half the CPUs)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.register(sub)
    return explain_defaults(parser)  # every option's help shows its default


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # `lcsc --threads N cmd`, or `lcsc cmd --threads N` for the commands that take it
    chosen = getattr(args, "threads", None)

    def command() -> int:
        with threads.using(args.global_threads if chosen is None else chosen, "--threads"):
            return args.func(args)

    return run_command("lcsc", command)
