"""``lcsc inspect``, ``lcsc merge`` and ``lcsc search``: the core engine's commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lcsc.cli.common import (
    add_objective,
    add_selection,
    add_source,
    add_threads,
    open_selection,
    source_options,
)
from lcsc.search import DEFAULT_METHOD, METHODS
from lcsc.trajectory.groups import AUTO, NONE

if TYPE_CHECKING:  # the commands import their modules lazily, to start fast
    from lcsc.search import SearchResult, Validation
    from lcsc.trajectory.groups import Groups


def _cmd_inspect(args: argparse.Namespace) -> int:
    from lcsc.inspection import inspect_paths

    report = inspect_paths(args.paths, **source_options(args))
    print("\n".join(report.lines()))
    return 1 if report.problems else 0


def _cmd_merge(args: argparse.Namespace) -> int:
    import numpy as np

    from lcsc import ema
    from lcsc.atomic import check_not_input
    from lcsc.coefficients import SUM_TOLERANCE, coefficient_sum, read_coefficients
    from lcsc.errors import LcscError

    traj = open_selection(args)
    groups = None
    if args.ema is not None:
        coefficients = ema.ema_coefficients(traj.steps, args.ema)
    elif args.power_ema is not None:
        coefficients = ema.power_ema_coefficients(traj.steps, args.power_ema)
    elif args.uniform:
        coefficients = ema.uniform_coefficients(len(traj))
    else:
        check_not_input(args.output, [args.coefficients], "the --coefficients file")
        coefficients, names = read_coefficients(args.coefficients, len(traj))
        if names is not None:  # per-group coefficients (lcsc search --groups)
            groups = _file_groups(args.coefficients, names, traj.keys)
    sums = [coefficient_sum(row) for row in np.atleast_2d(coefficients)]
    for name, total in zip(groups.names if groups else [None], sums, strict=True):
        if abs(total - 1.0) <= SUM_TOLERANCE:
            continue
        which = "coefficients" if name is None else f"coefficients of group {name!r}"
        scaled = f"{which} sum to {total:.6g}, not 1: the weights are scaled by that factor"
        if args.coefficients is not None and not args.allow_any_sum:
            raise LcscError(
                f"{args.coefficients}: {scaled} (Eq. 7 of the paper asks a sum of 1); pass"
                " --allow-any-sum to merge them anyway"
            )
        print(f"lcsc: warning: {scaled}", file=sys.stderr)
    traj.save_combination(args.output, coefficients, groups=groups)
    summed = f"coefficient sum {sums[0]:.6f}"
    if groups is not None:
        summed = f"{len(groups)} groups, coefficient sums " + ", ".join(f"{t:.6f}" for t in sums)
    print(
        f"wrote {args.output}: {len(traj)} checkpoints (steps {traj.steps[0]}..{traj.steps[-1]}),"
        f" {summed}"
    )
    return 0


def _file_groups(path: str, names: list[str], keys: list[str]) -> Groups:
    """The groups a per-group coefficients file names, resolved on these checkpoints."""
    from lcsc.errors import LcscError
    from lcsc.trajectory.groups import REST, resolve_groups

    try:
        groups = resolve_groups(keys, [n for n in names if n != REST])
    except LcscError as exc:
        raise LcscError(f"{path}: {exc}") from None
    if list(groups.names) != names:
        raise LcscError(
            f"{path}: groups {names} do not fit these checkpoints, whose keys group as"
            f" {list(groups.names)}"
        )
    return groups


def _cmd_search(args: argparse.Namespace) -> int:
    from lcsc.search.distributed import process_group_from_env

    # Under torchrun every rank scores candidates; rank 0 owns the workdir and the outputs.
    with process_group_from_env():
        return _search(args)


def _search(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from lcsc import search
    from lcsc.coefficients import save_coefficients
    from lcsc.errors import LcscError
    from lcsc.objectives.loading import load_objective, objective_identity, parse_pairs
    from lcsc.search.history import HISTORY_FILE

    if args.groups not in ([], [NONE]) and not METHODS[args.method]().takes_groups:
        raise LcscError(
            f"--groups needs --method subspace or cmaes (CMA-ES over the groups' vectors);"
            f" got --method {args.method} (give --groups {NONE}, or leave it out)"
        )
    kwargs = parse_pairs(args.objective_arg)
    objective = load_objective(args.objective, kwargs)
    validation = _validation(args)
    penalty = None if args.penalty is None else search.Penalty(args.penalty)
    from lcsc.search.distributed import is_leader

    leader = is_leader()
    traj = open_selection(args)
    groups = _search_groups(args.groups, traj, args.method)
    workdir = Path(args.workdir)
    if leader:
        print(_groups_line(groups, traj.keys), flush=True)
    desc = f"lcsc search ({args.method})"
    with tqdm(total=args.budget, desc=desc, unit="eval", disable=not leader) as bar:
        best = float("inf")

        def progress(ev: search.Evaluation) -> None:
            nonlocal best
            if ev.score < best:  # NaN compares false: never the best
                best = ev.score
                bar.set_postfix(best=f"{best:.4g}")
            if not ev.resumed:
                bar.update(1)

        def resumed(count: int) -> None:
            if leader:
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
            validation=validation,
            penalty=penalty,
            groups=groups,
            split=args.split,
        )
    if not leader:
        return 0
    best = result.best_coefficients if groups is None else groups.matrix(result.best_coefficients)
    traj.save_combination(workdir / "best.safetensors", best, groups=groups)
    if traj.writes_folder(workdir / "best"):  # a diffusers component: also from_pretrained
        traj.save_combination(workdir / "best", best, groups=groups)
    grouped = {} if groups is None else {"groups": list(groups.names)}
    save_coefficients(
        workdir / "best_coefficients.json",
        best,
        traj.steps,
        **grouped,
        score=result.best_score,
        evaluation=result.best_index,
        method=result.method,
        seed=result.seed,
        **_validation_fields(result),
    )
    if validation is not None:
        print(_validation_summary(result, validation))
    print(
        f"best score {result.best_score:.6g} at evaluation {result.best_index} of"
        f" {len(result.history)}; wrote {workdir / 'best.safetensors'},"
        f" {workdir / 'best_coefficients.json'}, {workdir / 'history.jsonl'}"
    )
    return 0


def _search_groups(patterns: list[str], traj: Any, method: str) -> Groups | None:
    """``--groups`` resolved on the checkpoints' keys: ``auto`` also without the flag (one
    vector where the method takes no groups), None for ``none``, else the patterns."""
    from lcsc.search.model_level import search_groups
    from lcsc.trajectory.groups import parse_groups

    return search_groups(parse_groups(patterns or [AUTO], traj.keys), traj, METHODS[method]())


def _groups_line(groups: Groups | None, keys: list[str]) -> str:
    """What the search's coefficients are: one vector, or one per named group."""
    if groups is None:
        return f"searching one coefficient vector for all {len(keys)} tensors"
    names = ", ".join(groups.names)
    return f"searching {len(groups)} coefficient vectors, one per group of tensors: {names}"


def _validation(args: argparse.Namespace) -> Validation | None:
    from lcsc import search
    from lcsc.errors import LcscError
    from lcsc.objectives import load_objective, parse_pairs

    if args.validation_objective is None:
        for flag in ("patience", "validate_every", "validation_arg"):
            if getattr(args, flag):
                flag = "--" + flag.replace("_", "-")
                raise LcscError(f"{flag} needs --validation-objective")
        return None
    pairs = parse_pairs(args.validation_arg, "--validation-arg")
    objective = load_objective(
        args.validation_objective, pairs, "--validation-objective", "--validation-arg"
    )
    return search.Validation(
        objective,
        patience=args.patience,
        validate_every=args.validate_every,
        identity={"objective": args.validation_objective, "args": pairs},
    )


def _validation_fields(result: SearchResult) -> dict[str, Any]:
    if result.best_validation_score is None:
        return {}
    return {
        "validation_score": result.best_validation_score,
        "search_best_evaluation": result.search_best_index,
        "search_best_score": result.search_best_score,
        "validations": len(result.validation_path),
        "stopped_early": result.stopped_early,
    }


def _validation_summary(result: SearchResult, validation: Validation) -> str:
    stop = ""
    if result.stopped_early:
        stop = f"; stopped early after {validation.patience} validations without improvement"
    return (
        f"validation score {result.best_validation_score:.6g} of the chosen model (evaluation"
        f" {result.best_index}, {len(result.validation_path)} validations); the best by search"
        f" score was evaluation {result.search_best_index} ({result.search_best_score:.6g}){stop}"
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="summarise checkpoints and list problems",
        description="Say which layout, weights entry and prefixes were recognised, summarise the"
        " checkpoints (steps, sizes, dtypes) and list every problem found; exit status 1 if any.",
    )
    add_source(p)
    p.set_defaults(func=_cmd_inspect)

    p = sub.add_parser(
        "merge",
        help="write one linear combination of the checkpoints",
        description="Write sum_i a_i theta_i over the selected checkpoints; exactly one of"
        " --ema, --power-ema, --uniform or --coefficients gives the coefficients a_i.",
    )
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
    how.add_argument("--uniform", action="store_true", help="plain average: every coefficient 1/K")
    how.add_argument(
        "--coefficients",
        metavar="FILE.json",
        help="a JSON list of K numbers, or an object with a 'coefficients' list"
        " (e.g. a search's best_coefficients.json)",
    )
    p.add_argument(
        "--allow-any-sum",
        action="store_true",
        help="merge --coefficients that do not sum to 1 (otherwise refused)",
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
    add_threads(p)
    p.set_defaults(func=_cmd_merge)

    p = sub.add_parser(
        "search",
        help="search the best combination (resumable)",
        description="Search the coefficients whose combined checkpoint minimises the objective;"
        " the same command again resumes from --workdir after an interruption.",
    )
    add_selection(p)
    add_objective(p)
    p.add_argument(
        "--method",
        choices=sorted(METHODS),
        default=DEFAULT_METHOD,
        help="search algorithm: subspace (CMA-ES over smooth coefficient profiles, one vector"
        " per parameter group, see --groups), the paper's evolutionary search (Algorithm 1),"
        " CMA-ES over the whole hyperplane or random search",
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
        help="seed of the search's random choices",
    )
    p.add_argument(
        "--validation-objective",
        metavar="MODULE:FUNCTION",
        help="factory of a second objective state_dict -> float (lower is better, e.g. other"
        " noise and another feature space) scoring the best-so-far candidates; the result is"
        " the best by it (default: none, the best by search score)",
    )
    p.add_argument(
        "--validation-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keyword argument passed, as a string, to the validation factory; repeat it for"
        " several (default: none)",
    )
    p.add_argument(
        "--patience",
        type=int,
        metavar="N",
        help="stop after N validations in a row without a lower validation score"
        " (default: spend the whole budget)",
    )
    p.add_argument(
        "--validate-every",
        type=int,
        metavar="N",
        help="validate the best-so-far after every N evaluations and after the last"
        " (default: each new best-so-far, right after its evaluation)",
    )
    p.add_argument(
        "--penalty",
        type=float,
        metavar="LAMBDA",
        help="trust region: the search ranks score + LAMBDA * K * ||a - a0||^2, a0 = the best"
        " EMA vector by score; LAMBDA in the score's units (default: none)",
    )
    p.add_argument(
        "--groups",
        action="append",
        default=[],
        metavar="PATTERN[,PATTERN...]",
        help="one coefficient vector per group of parameters, one group per PATTERN (repeatable"
        " or comma-separated): a glob on the parameter names ('net.blocks.*.fc1.*'; * also"
        " matches dots) or, without * ? [, a module prefix ('net.embed': net.embed and"
        " net.embed.*); A|B joins alternatives into one group; names no pattern matches form"
        " the group 'rest'; a pattern matching nothing, or a name matched twice, is an error;"
        f" '{AUTO}': one group per top-level module (module lists per entry); '{NONE}':"
        " one vector for all parameters; groups need --method subspace or cmaes"
        f" (default: {AUTO} with subspace and cmaes, one vector with evolutionary and random)",
    )
    p.add_argument(
        "--workdir",
        required=True,
        metavar="DIR",
        help="search state and outputs (history.jsonl, best.safetensors, best_coefficients.json,"
        " best/ for a diffusers component); rerunning the same command resumes",
    )
    p.add_argument(
        "--split",
        choices=["candidates", "samples"],
        default="candidates",
        help="under torchrun: spread the candidates of a generation over the processes (any"
        " objective), or the samples of each candidate (sample-FD objectives such as"
        " lcsc.reference.digits:digits_fd; feature moments summed exactly) (default: candidates)",
    )
    add_threads(p)
    p.set_defaults(func=_cmd_search)
