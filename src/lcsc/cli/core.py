"""``lcsc inspect``, ``lcsc merge`` and ``lcsc search``: the core engine's commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from lcsc.cli.common import add_selection, add_source, open_selection, source_options


def _cmd_inspect(args: argparse.Namespace) -> int:
    from lcsc.inspection import inspect_paths

    report = inspect_paths(args.paths, **source_options(args))
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
    from tqdm import tqdm

    from lcsc import search
    from lcsc.coefficients import save_coefficients
    from lcsc.objectives import load_objective, parse_pairs

    objective = load_objective(args.objective, parse_pairs(args.objective_arg))
    traj = open_selection(args)
    workdir = Path(args.workdir)
    with tqdm(total=args.budget, desc=f"lcsc search ({args.method})", unit="eval") as bar:
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
    traj.save_combination(workdir / "best.safetensors", result.best_coefficients)
    if traj.writes_folder(workdir / "best"):  # a diffusers component: also from_pretrained
        traj.save_combination(workdir / "best", result.best_coefficients)
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
    p = sub.add_parser(
        "inspect",
        help="summarise checkpoints and list problems",
        description="Say which layout, weights entry and prefixes were recognised, summarise the"
        " checkpoints (steps, sizes, dtypes) and list every problem found; exit status 1 if any.",
    )
    add_source(p)
    p.set_defaults(func=_cmd_inspect)

    p = sub.add_parser("merge", help="write one linear combination of the checkpoints")
    add_selection(p)
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument(
        "--ema",
        type=float,
        metavar="RATE",
        help="EMA with decay RATE per training iteration, 0 <= RATE < 1, e.g. 0.999"
        " (ema <- RATE*ema + (1-RATE)*weights at every step, from the first checkpoint)",
    )
    how.add_argument(
        "--power-ema",
        type=float,
        metavar="SIGMA_REL",
        help="EDM2 power function EMA of relative width SIGMA_REL, 0 < SIGMA_REL <= 0.3, e.g. 0.05",
    )
    how.add_argument("--uniform", action="store_true", help="plain average of the checkpoints")
    how.add_argument(
        "--coefficients",
        metavar="FILE.json",
        help="a JSON list of K numbers, or an object with a 'coefficients' list"
        " (e.g. a search's best_coefficients.json)",
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        type=Path,
        metavar="OUT",
        help="OUT.safetensors; for a diffusers component, a folder path (no .safetensors"
        " suffix) gets the weights and the component's config.json, loadable with"
        " from_pretrained",
    )
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
        help="keyword argument passed, as a string, to the objective factory; repeat it for"
        " several (default: none)",
    )
    p.add_argument(
        "--method",
        choices=["evolutionary", "cmaes", "random"],
        default="evolutionary",
        help="search algorithm: the paper's evolutionary search, CMA-ES or random search"
        " (default: evolutionary)",
    )
    p.add_argument(
        "--budget",
        type=int,
        required=True,
        metavar="N",
        help="number of objective evaluations in all (a resumed search counts the done ones)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="seed of the search's random choices (default: 0)",
    )
    p.add_argument(
        "--workdir",
        required=True,
        metavar="DIR",
        help="search state and outputs (history.jsonl, best.safetensors, best_coefficients.json,"
        " best/ for a diffusers component); rerunning the same command resumes",
    )
    p.set_defaults(func=_cmd_search)
