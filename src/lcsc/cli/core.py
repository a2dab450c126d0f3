"""``lcsc inspect``, ``lcsc merge`` and ``lcsc search``: the core engine's commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lcsc.cli.common import add_selection, open_selection


def _cmd_inspect(args: argparse.Namespace) -> int:
    from lcsc.inspection import inspect_paths

    report = inspect_paths(args.paths)
    print("\n".join(report.lines()))
    return 1 if report.problems else 0


def _cmd_merge(args: argparse.Namespace) -> int:
    from lcsc import ema
    from lcsc.atomic import check_not_input
    from lcsc.coefficients import SUM_TOLERANCE, coefficient_sum, load_coefficients
    from lcsc.errors import LcscError

    traj = open_selection(args)
    if args.ema is not None:
        coefficients = ema.ema_coefficients(traj.steps, args.ema)
    elif args.power_ema is not None:
        coefficients = ema.power_ema_coefficients(traj.steps, args.power_ema)
    elif args.uniform:
        coefficients = ema.uniform_coefficients(len(traj))
    else:
        check_not_input(args.output, [args.coefficients], "the --coefficients file")
        coefficients = load_coefficients(args.coefficients, len(traj))
    total = coefficient_sum(coefficients)
    if abs(total - 1.0) > SUM_TOLERANCE:
        scaled = f"coefficients sum to {total:.6g}, not 1: the weights are scaled by that factor"
        if args.coefficients is not None and not args.allow_any_sum:
            raise LcscError(
                f"{args.coefficients}: {scaled} (Eq. 7 of the paper asks a sum of 1); pass"
                " --allow-any-sum to merge them anyway"
            )
        print(f"lcsc: warning: {scaled}", file=sys.stderr)
    traj.save_combination(args.output, coefficients)
    print(
        f"wrote {args.output}: {len(traj)} checkpoints (steps {traj.steps[0]}..{traj.steps[-1]}),"
        f" coefficient sum {total:.6f}"
    )
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from lcsc import search
    from lcsc.coefficients import save_coefficients
    from lcsc.objectives.loading import load_objective, objective_identity, parse_pairs
    from lcsc.search.history import HISTORY_FILE

    kwargs = parse_pairs(args.objective_arg)
    objective = load_objective(args.objective, kwargs)
    traj = open_selection(args)
    workdir = Path(args.workdir)
    with tqdm(total=args.budget, desc=f"lcsc search ({args.method})", unit="eval") as bar:
        best = float("inf")

        def progress(ev: search.Evaluation) -> None:
            nonlocal best
            if ev.score < best:  # NaN compares false: never the best
                best = ev.score
                bar.set_postfix(best=f"{best:.4g}")
            if not ev.resumed:
                bar.update(1)

        def resumed(count: int) -> None:
            tqdm.write(f"resuming: {count} evaluations replayed from {workdir / HISTORY_FILE}")
            bar.reset()  # rate and ETA count new evaluations only
            bar.initial = bar.n = bar.last_print_n = count
            bar.refresh()

        result = search.run(
            traj,
            objective,
            args.method,
            budget=args.budget,
            seed=args.seed,
            workdir=workdir,
            callback=progress,
            objective_identity=objective_identity(args.objective, kwargs),
            on_resume=resumed,
        )
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
    p.add_argument(
        "--allow-any-sum",
        action="store_true",
        help="merge --coefficients that do not sum to 1 (otherwise refused)",
    )
    p.add_argument("-o", "--output", required=True, type=Path, metavar="OUT.safetensors")
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
    p.add_argument("--method", choices=["evolutionary", "cmaes", "random"], default="evolutionary")
    p.add_argument("--budget", type=int, required=True, help="number of evaluations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--workdir",
        required=True,
        metavar="DIR",
        help="search state; rerunning the same command resumes",
    )
    p.set_defaults(func=_cmd_search)
