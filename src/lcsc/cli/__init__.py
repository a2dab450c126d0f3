"""The ``lcsc`` command line: a thin layer over the Python API.

Each command group lives in its own module with a ``register(subparsers)`` function. A user error
(bad file, mismatched checkpoints, bad arguments) prints one line naming what is at fault and
exits with status 1, without a traceback; outputs are written atomically, so a failed command
never leaves a partial file behind.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lcsc import threads

threads.prepare_environment()  # before the command modules import torch, numpy, OpenMP

from lcsc import __version__  # noqa: E402
from lcsc.cli import core, demo, generative  # noqa: E402
from lcsc.errors import LcscError  # noqa: E402

COMMAND_GROUPS = [core, generative, demo]


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # `lcsc --threads N cmd`, or `lcsc cmd --threads N` for the commands that take it
    chosen = getattr(args, "threads", None)
    try:
        with threads.using(args.global_threads if chosen is None else chosen, "--threads"):
            return args.func(args)
    except LcscError as exc:
        print(f"lcsc: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lcsc: interrupted", file=sys.stderr)
        return 130
