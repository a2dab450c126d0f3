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
errors included) where lcsc calls it. Only ``LcscError`` is turned into one line here, so any
other exception escaping from lcsc's own code is a bug in lcsc and keeps its traceback.
See docs/reliability.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lcsc import __version__
from lcsc.cli import core, demo, generative, landscape
from lcsc.errors import LcscError

COMMAND_GROUPS = [core, landscape, generative, demo]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lcsc", description="Linear Combination of Saved Checkpoints."
    )
    parser.add_argument("--version", action="version", version=f"lcsc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LcscError as exc:
        print(f"lcsc: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lcsc: interrupted", file=sys.stderr)
        return 130
