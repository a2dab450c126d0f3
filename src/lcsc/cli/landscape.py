"""``lcsc landscape``: the objective on the plane through three models (the paper's Fig. 3)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lcsc.cli.common import add_objective, add_selection, open_selection
from lcsc.errors import LcscError


def model_coefficients(spec: str, steps: list[int]) -> np.ndarray:
    """(K,) coefficients named by ``spec``: ``STEP`` (one checkpoint), ``ema:RATE``,
    ``power-ema:SIGMA_REL``, ``uniform`` or a coefficients ``FILE.json``."""
    from lcsc import ema
    from lcsc.coefficients import load_coefficients

    kind, _, value = spec.partition(":")
    if spec.isdigit():
        if int(spec) not in steps:
            raise LcscError(f"--models {spec}: no checkpoint at step {spec} in the selection")
        return np.eye(len(steps))[steps.index(int(spec))]
    try:
        if kind == "ema" and value:
            return ema.ema_coefficients(steps, float(value))
        if kind == "power-ema" and value:
            return ema.power_ema_coefficients(steps, float(value))
    except (ValueError, LcscError) as exc:
        raise LcscError(f"--models {spec}: {exc}") from exc
    if spec == "uniform":
        return ema.uniform_coefficients(len(steps))
    if spec.endswith(".json"):
        return load_coefficients(spec, len(steps))
    raise LcscError(
        f"--models {spec}: expected STEP, ema:RATE, power-ema:SIGMA_REL, uniform or FILE.json"
    )


def _cmd_landscape(args: argparse.Namespace) -> int:
    from lcsc.cli.common import StageBars
    from lcsc.landscape import compute_landscape, save_landscape
    from lcsc.objectives import load_objective, parse_pairs

    if not str(args.output).endswith(".png"):
        raise LcscError(f"-o {args.output}: expected a .png path (the grid goes beside it)")
    traj = open_selection(args)
    steps = [int(s) for s in traj.steps]
    specs = args.models or [str(steps[0]), str(steps[len(steps) // 2]), str(steps[-1])]
    models = np.stack([model_coefficients(s, steps) for s in specs])
    objective = load_objective(args.objective, parse_pairs(args.objective_arg))
    with StageBars() as bars:
        land = compute_landscape(
            traj,
            objective,
            models,
            specs,
            resolution=args.resolution,
            margin=args.margin,
            progress=bars,
        )
    save_landscape(
        land, args.output, title=f"{args.objective} on the plane through {', '.join(specs)}"
    )
    scores = np.where(np.isfinite(land.scores), land.scores, np.inf)
    j, i = np.unravel_index(np.argmin(scores), scores.shape)
    where = f"best {scores[j, i]:.6g} at ({land.xs[i]:.4g}, {land.ys[j]:.4g})"
    where = where if np.isfinite(scores[j, i]) else "no finite score"
    print(f"wrote {args.output} and {Path(args.output).with_suffix('.json')}: {where}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "landscape", help="the objective on a grid over the plane through three models (PNG, JSON)"
    )
    add_selection(p)
    add_objective(p)
    p.add_argument(
        "--models",
        nargs=3,
        metavar="MODEL",
        help="three models: STEP, ema:RATE, power-ema:SIGMA_REL, uniform or a coefficients"
        " FILE.json (e.g. a search's best_coefficients.json); default: the first, middle and"
        " last checkpoint",
    )
    p.add_argument(
        "--resolution",
        type=int,
        default=11,
        metavar="N",
        help="grid points per axis (N x N objective evaluations)",
    )
    p.add_argument(
        "--margin",
        type=float,
        default=0.25,
        metavar="FRACTION",
        help="how far the grid extends beyond the models, as a fraction of their span",
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="FILE.png",
        help="the plot; the grid's scores go beside it in FILE.json",
    )
    p.set_defaults(func=_cmd_landscape)
