"""``lcsc inspect``, ``lcsc merge`` and ``lcsc search``: the core engine's commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from lcsc.cli.common import add_selection, add_threads, open_selection
from lcsc.search import DEFAULT_METHOD, METHODS


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


def _cmd_search(args: argparse.Namespace) -> int:
    from lcsc.search.distributed import process_group_from_env

    # Under torchrun every rank scores candidates; rank 0 owns the workdir and the outputs.
    with process_group_from_env():
        return _search(args)


def _search(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from lcsc import search
    from lcsc.coefficients import save_coefficients
    from lcsc.objectives import load_objective, parse_pairs
    from lcsc.search.distributed import is_leader

    leader = is_leader()
    objective = load_objective(args.objective, parse_pairs(args.objective_arg))
    traj = open_selection(args)
    workdir = Path(args.workdir)
    desc = f"lcsc search ({args.method})"
    with tqdm(total=args.budget, desc=desc, unit="eval", disable=not leader) as bar:
        best = float("inf")

        def progress(ev: search.Evaluation) -> None:
            nonlocal best
            if ev.score < best:  # NaN compares false: never the best
                best = ev.score
                bar.set_postfix(best=f"{best:.4g}")
            bar.update(1)

        result = search.run(
            traj,
            objective,
            args.method,
            budget=args.budget,
            seed=args.seed,
            workdir=workdir,
            callback=progress,
        )
    if not leader:
        return 0
    traj.save_combination(workdir / "best.safetensors", result.best_coefficients)
    save_coefficients(
        workdir / "best_coefficients.json",
        result.best_coefficients,
        traj.steps,
        score=result.best_score,
        evaluation=result.best_index,
        method=result.method,
        seed=result.seed,
    )
    print(
        f"best score {result.best_score:.6g} at evaluation {result.best_index} of"
        f" {len(result.history)}; wrote {workdir / 'best.safetensors'},"
        f" {workdir / 'best_coefficients.json'}, {workdir / 'history.jsonl'}"
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
    add_threads(p)
    p.set_defaults(func=_cmd_merge)

    p = sub.add_parser("search", help="search the best combination (resumable)")
    add_selection(p)
    p.add_argument(
        "--objective",
        required=True,
        metavar="MODULE:FUNCTION",
        help="factory returning a callable state_dict -> float (lower is better)",
    )
    p.add_argument(
        "--objective-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keyword argument for the factory (repeatable)",
    )
    p.add_argument("--method", choices=sorted(METHODS), default=DEFAULT_METHOD)
    p.add_argument("--budget", type=int, required=True, help="number of evaluations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--workdir",
        required=True,
        metavar="DIR",
        help="search state; rerunning the same command resumes",
    )
    add_threads(p)
    p.set_defaults(func=_cmd_search)
