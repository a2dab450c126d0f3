"""``lcsc inspect``, ``lcsc merge`` and ``lcsc search``: the core engine's commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from lcsc.cli.common import add_selection, open_selection


def _cmd_inspect(args: argparse.Namespace) -> int:
    from lcsc.inspection import inspect_paths

    report = inspect_paths(args.paths)
    print("\n".join(report.lines()))
    return 1 if report.problems else 0


def _cmd_merge(args: argparse.Namespace) -> int:
    import numpy as np

    from lcsc import ema
    from lcsc.coefficients import load_coefficients

    traj = open_selection(args)
    if args.ema is not None:
        coefficients = ema.ema_coefficients(traj.steps, args.ema)
    elif args.power_ema is not None:
        coefficients = ema.power_ema_coefficients(traj.steps, args.power_ema)
    elif args.uniform:
        coefficients = ema.uniform_coefficients(len(traj))
    else:
        coefficients = load_coefficients(args.coefficients, len(traj))
    traj.save_combination(args.output, coefficients)
    print(
        f"wrote {args.output}: {len(traj)} checkpoints (steps {traj.steps[0]}..{traj.steps[-1]}),"
        f" coefficient sum {float(np.sum(coefficients)):.6f}"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="summarise checkpoints and list problems")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.set_defaults(func=_cmd_inspect)

    p = sub.add_parser("merge", help="write one linear combination of the checkpoints")
    add_selection(p)
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--ema", type=float, metavar="RATE", help="per-iteration EMA rate")
    how.add_argument("--power-ema", type=float, metavar="SIGMA_REL", help="EDM2 power EMA width")
    how.add_argument("--uniform", action="store_true", help="plain average")
    how.add_argument("--coefficients", metavar="FILE.json", help="a list of K numbers")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="OUT.safetensors")
    p.set_defaults(func=_cmd_merge)
