"""CheckFree benchmark: what a lost stage costs under each recovery strategy, with error bars.

A byte-level LLaMA-style LM of 6 stages x 4 transformer layers (d = 32) trains in
single-process mode for ``--iterations`` iterations (60 modelled seconds each). Two
experiments share one failure-free *trunk* per seed (:func:`checkfree.branch.branches`: a
run is trained once from its first failure on, with the same numbers as a separate run):

* **loss jump**: one intermediate stage (each of 1..S-2 in turn) is lost at step ``F`` (early
  and late in training); the validation loss right after the recovery and 1, 5 and 20 steps
  later, minus the failure-free run at the same step. CheckFree+ has its own trunk (swapped
  micro-batches) and loses stage 0 (an edge) or 2. ``checkpoint``'s jump is exact from the
  trunk (it reloads the last checkpoint: loss then, iterations since redone); ``redundant``'s
  is 0.
* **hours to target** at 5 / 10 / 16 / 33 % failures per stage-hour: CheckFree and its
  ablations on intermediate failures, CheckFree+ with every stage failing. ``checkpoint`` and
  ``redundant`` reproduce the failure-free run bit for bit (tested), so their time to target
  is exact from its curve and their plans: with the modelled costs (save free, x151/91) and
  with the costs measured in multi-process mode (``--costs``, from benchmarks/checkfree_costs.py).
  A seed's target is its own failure-free validation loss at 80 % of training.

Significance: paired sign-flip permutation tests (same seed, stage and step), CheckFree
against random / copy / uniform; intervals are 95 % bootstrap intervals of the mean (seeded).

    nice -n 15 python benchmarks/checkfree.py [--seeds 0 1 2] [--workers 2] [--costs FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

# This script is benchmarks/checkfree.py: keep ``import checkfree`` meaning the package.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

RATES = (5.0, 10.0, 16.0, 33.0)
ABLATIONS = ("checkfree", "uniform", "copy", "random")
OFFSETS = (0, 1, 5, 20)
# Hours to validation loss 2.85, 500M LLaMA, 6 stages (CheckFree paper; docs/checkfree.md).
PAPER = {
    "checkpoint": (558, 622, 634),
    "redundant": (420, 420, 420),
    "checkfree": (368, 406, 563),
    "checkfree+": (355, 368, 461),
}


def base_config(args: argparse.Namespace, seed: int, strategy: str):
    from checkfree import FailureConfig, ModelConfig, TrainConfig

    model = ModelConfig(stages=args.stages, layers_per_stage=args.layers, dim=args.dim, heads=4)
    return TrainConfig(
        model=model,
        failures=FailureConfig(0.0, args.iteration_time, events=()),
        strategy=strategy,
        iterations=args.iterations,
        seed=seed,
        checkpoint_interval=args.checkpoint_interval,
        eval_every=args.eval_every,
    )


def family_configs(args: argparse.Namespace, seed: int, family: str) -> list[tuple[dict, Any]]:
    """(label, config) of every run of a seed's family (normal order or CheckFree+)."""
    from checkfree import FailureConfig

    plus = family == "checkfree+"
    base = base_config(args, seed, "checkfree+" if plus else "checkfree")
    out = [({"kind": "reference", "strategy": base.strategy}, base)]
    stages = (0, 2) if plus else range(1, args.stages - 1)
    for strategy in ("checkfree+",) if plus else ABLATIONS:
        for f in args.fail_steps:
            for j in stages:
                fc = FailureConfig(0.0, args.iteration_time, events=((f, j),))
                label = {"kind": "jump", "strategy": strategy, "step": f, "stage": j}
                out.append((label, replace(base, strategy=strategy, failures=fc)))
        for rate in () if args.jumps_only else RATES:
            where = "all" if plus else "intermediate"
            fc = FailureConfig(rate, args.iteration_time, where)
            label = {"kind": "hours", "strategy": strategy, "rate": rate, "stages": where}
            out.append((label, replace(base, strategy=strategy, failures=fc)))
    return out


def run_family(job: dict[str, Any]) -> list[dict[str, Any]]:
    """All runs of one (seed, family) in a worker process, on one thread."""
    import torch

    torch.set_num_threads(1)
    from checkfree import build_plan
    from checkfree.branch import branches
    from lcsc.errors import LcscError

    args = argparse.Namespace(**job["args"])
    labelled, refused = [], []
    for label, config in family_configs(args, job["seed"], job["family"]):
        try:
            build_plan(config)
            labelled.append((label, config))
        except LcscError as exc:  # e.g. two adjacent stages lost at once: no recovery
            refused.append(dict(label, seed=job["seed"], unrecoverable=str(exc)))
    extra = {f + o for f in args.fail_steps for o in OFFSETS if f + o}
    until = [lab["step"] + max(OFFSETS) if lab["kind"] == "jump" else None for lab, _ in labelled]
    t0 = time.perf_counter()
    runs = branches([c for _, c in labelled], evaluate_at=extra, until=until)
    out = []
    for (label, _), b in zip(labelled, runs, strict=True):
        out.append(
            dict(
                label,
                seed=job["seed"],
                val={str(k): v for k, v in sorted(b.val.items())},
                recovered={str(k): v for k, v in b.recovered.items()},
                failures=[[s, list(f)] for s, f in b.plan.failures],
                step_time_s=b.plan.iteration_time_s,
            )
        )
    out[0]["runtime_s"] = time.perf_counter() - t0
    return out + refused


# -- statistics ---------------------------------------------------------------------------------


def ci(values: list[float], seed: int = 0) -> tuple[float, float, float]:
    """Mean and 95 % bootstrap interval of the mean (10 000 seeded resamples)."""
    x = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), (10_000, len(x)))].mean(1)
    return float(x.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def sign_flip_p(diffs: list[float], seed: int = 0) -> float:
    """Two-sided p-value of a paired sign-flip permutation test (exact up to 2^16 flips)."""
    d = np.asarray(diffs, dtype=float)
    n = len(d)
    if n <= 16:
        signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
    else:
        signs = np.random.default_rng(seed).choice([-1, 1], (100_000, n))
    stats = np.abs((signs * d).mean(1))
    return float(np.mean(stats >= abs(d.mean()) - 1e-12))


def fmt(c: tuple[float, float, float], digits: int = 3) -> str:
    return f"{c[0]:+.{digits}f} [{c[1]:+.{digits}f}, {c[2]:+.{digits}f}]"


# -- tables -------------------------------------------------------------------------------------


def refs(results: list[dict[str, Any]]) -> dict[tuple[str, int], dict[int, float]]:
    return {
        (r["strategy"], r["seed"]): {int(k): v for k, v in r["val"].items()}
        for r in results
        if r["kind"] == "reference"
    }


def jump_values(results, strategy: str, f: int, offset: int) -> dict[tuple[int, int], float]:
    """(seed, stage) -> validation loss ``offset`` steps after losing the stage at step ``f``,
    minus the failure-free run (of the same pipeline order) at the same step."""
    ref = refs(results)
    out = {}
    for r in results:
        if r["kind"] != "jump" or r["strategy"] != strategy or r["step"] != f:
            continue
        base = ref["checkfree+" if strategy == "checkfree+" else "checkfree", r["seed"]]
        loss = r["recovered"][str(f)] if offset == 0 else r["val"][str(f + offset)]
        out[r["seed"], r["stage"]] = loss - base[f + offset]
    return out


def jump_table(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    ref = refs(results)
    head = "| strategy | lost at step | " + " | ".join(f"+{o} steps" for o in OFFSETS) + " |"
    lines = [head, "|---|---|" + "---|" * len(OFFSETS)]
    for f in args.fail_steps:
        for s in (*ABLATIONS, "checkfree+"):
            cells = [fmt(ci(list(jump_values(results, s, f, o).values()))) for o in OFFSETS]
            n = len(jump_values(results, s, f, 0))
            lines.append(f"| {s} (n={n}) | {f} | " + " | ".join(cells) + " |")
        ckpt = (f // args.checkpoint_interval) * args.checkpoint_interval
        back = [ref["checkfree", s][ckpt] - ref["checkfree", s][f] for s in args.seeds]
        lines.append(
            f"| checkpoint (n={len(back)}) | {f} | {fmt(ci(back))}, then {f - ckpt} iterations"
            " redone | | | |"
        )
        lines.append(f"| redundant | {f} | 0 (exact copy) | 0 | 0 | 0 |")
    return "\n".join(lines) + "\n"


def significance_table(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        "| CheckFree minus | offset | mean difference [95 % CI] | p (sign-flip, paired) | n |",
        "|---|---|---|---|---|",
    ]
    for other in ABLATIONS[1:]:
        for o in (0, 20):
            diffs = []
            for f in args.fail_steps:
                a = jump_values(results, "checkfree", f, o)
                b = jump_values(results, other, f, o)
                diffs += [a[k] - b[k] for k in sorted(a)]
            p = sign_flip_p(diffs)
            lines.append(f"| {other} | +{o} steps | {fmt(ci(diffs))} | {p:.4f} | {len(diffs)} |")
    return "\n".join(lines) + "\n"


def hours_to(val: dict[int, float], step_time: float, target: float) -> float | None:
    return next((k * step_time / 3600 for k, v in sorted(val.items()) if v <= target), None)


def targets_of(results: list[dict[str, Any]], args: argparse.Namespace) -> dict[int, float]:
    """Each seed's target: its own failure-free validation loss at 80 % of training."""
    at = int(0.8 * args.iterations)
    return {seed: v[at] for (s, seed), v in refs(results).items() if s == "checkfree"}


def run_hours(run: dict[str, Any], targets: dict[int, float]) -> float | None:
    if "unrecoverable" in run:
        return None
    val = {int(k): v for k, v in run["val"].items()}
    return hours_to(val, run["step_time_s"], targets[run["seed"]])


def derived_hours(args, seed: int, strategy: str, rate: float, where: str, ref, target, costs):
    """Exact hours to target of checkpoint / redundant from the failure-free curve."""
    from checkfree import FailureConfig, build_plan

    evals = sorted(k for k in ref if k % args.eval_every == 0 or k == args.iterations)
    needed = next((k for k in evals if ref[k] <= target), None)
    if needed is None:
        return None
    if strategy == "redundant":
        return needed * args.iteration_time * costs["redundant_factor"] / 3600
    config = replace(
        base_config(args, seed, "checkpoint"),
        failures=FailureConfig(rate, args.iteration_time, where),
        checkpoint_save_s=costs["save_s"],
    )
    plan = build_plan(config)
    return next(s.wall_clock_s for s in plan.slots if s.iteration + 1 == needed) / 3600


def hours_table(results, args, targets, costs_sets: dict[str, dict[str, float]]) -> str:
    ref = refs(results)
    head = "| strategy | failing | " + " | ".join(f"{r:g} %/h" for r in RATES)
    lines = [head + " | paper 5 / 10 / 16 % |", "|---|---|" + "---|" * len(RATES) + "---|"]

    def cell(hours: list[float | None]) -> str:
        hit = [h for h in hours if h is not None]
        if not hit:
            return "n/r"
        m, lo, hi = ci(hit)
        text = f"{m:.2f} [{lo:.2f}, {hi:.2f}]"
        return text + (f" ({len(hit)}/{len(hours)})" if len(hit) < len(hours) else "")

    def paper(s: str) -> str:
        return " / ".join(f"{h} h" for h in PAPER[s]) if s in PAPER else "-"

    for s, where in [*((a, "intermediate") for a in ABLATIONS), ("checkfree+", "all")]:
        cells = []
        for rate in RATES:
            runs = [
                r
                for r in results
                if r["kind"] == "hours" and (r["strategy"], r["rate"]) == (s, rate)
            ]
            text = cell([run_hours(r, targets) for r in runs])
            bad = sum("unrecoverable" in r for r in runs)
            cells.append(text + (f", {bad} unrecoverable" if bad else ""))
        lines.append(f"| {s} | {where} | " + " | ".join(cells) + f" | {paper(s)} |")
    for name, costs in costs_sets.items():
        for s in ("checkpoint", "redundant"):
            for where in ("intermediate", "all"):
                cells = [
                    cell(
                        [
                            derived_hours(
                                args,
                                seed,
                                s,
                                rate,
                                where,
                                ref["checkfree", seed],
                                targets[seed],
                                costs,
                            )
                            for seed in args.seeds
                        ]
                    )
                    for rate in RATES
                ]
                label = f"{s} ({name})"
                lines.append(f"| {label} | {where} | " + " | ".join(cells) + f" | {paper(s)} |")
    free = [hours_to(ref["checkfree", s], args.iteration_time, targets[s]) for s in args.seeds]
    lines.append(f"| *no failures* | | {cell(free)} | | | | |")
    return "\n".join(lines) + "\n"


def hours_significance(results, targets: dict[int, float]) -> str:
    lines = [
        "| CheckFree minus | mean hours difference [95 % CI] | p | n pairs |",
        "|---|---|---|---|",
    ]
    by = {
        (r["strategy"], r["rate"], r["seed"]): run_hours(r, targets)
        for r in results
        if r["kind"] == "hours"
    }
    for other in ABLATIONS[1:]:
        diffs = []
        for (s, rate, seed), h in by.items():
            o = by[other, rate, seed]
            if s == "checkfree" and h is not None and o is not None:
                diffs.append(h - o)
        if diffs:
            lines.append(
                f"| {other} | {fmt(ci(diffs), 2)} | {sign_flip_p(diffs):.4f} | {len(diffs)} |"
            )
    return "\n".join(lines) + "\n"


def swap_cost(results, args) -> str:
    ref = refs(results)
    end = args.iterations
    d = [ref["checkfree+", s][end] - ref["checkfree", s][end] for s in args.seeds]
    normal = np.mean([ref["checkfree", s][end] for s in args.seeds])
    return (
        f"CheckFree+ swap cost without failures: final validation loss {fmt(ci(d))} nats/byte"
        f" against normal order ({normal:.3f}), n={len(d)} seeds.\n"
    )


def report(results, args, costs: dict[str, float] | None, out: Path) -> str:
    sets = {"modelled": {"save_s": 0.0, "redundant_factor": 151 / 91}}
    if costs:
        sets["measured"] = costs
    targets = targets_of(results, args)
    parts = [
        "### Loss jump after losing one stage (mean [95 % CI], nats/byte)\n",
        jump_table(results, args),
        significance_table(results, args),
    ]
    if any(r["kind"] == "hours" for r in results):
        shown = ", ".join(f"{t:.3f}" for _, t in sorted(targets.items()))
        parts += [
            "### Modelled hours to target (mean [95 % CI] over seeds; (k/n): k reached it)\n",
            f"Target: each seed's failure-free validation loss at 80 % of training ({shown}).\n",
            hours_table(results, args, targets, sets),
            hours_significance(results, targets),
        ]
    text = "\n".join([*parts, swap_cost(results, args)])
    (out / "table.md").write_text(text)
    print(text)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--stages", type=int, default=6)
    ap.add_argument("--layers", type=int, default=4, help="transformer layers per stage")
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--iteration-time", type=float, default=60.0)
    ap.add_argument("--checkpoint-interval", type=int, default=50)
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--fail-steps", type=int, nargs="+", default=[60, 150])
    ap.add_argument("--jumps-only", action="store_true", help="only the loss-jump experiment")
    ap.add_argument("--costs", type=Path, help="costs.json from benchmarks/checkfree_costs.py")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("runs/checkfree"))
    ap.add_argument("--replot", action="store_true", help="tables again from --out")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    costs = json.loads(args.costs.read_text())["ratios"] if args.costs else None
    if args.replot:
        saved = json.loads((args.out / "results.json").read_text())
        report(saved["runs"], args, costs, args.out)
        return
    common = {k: v for k, v in vars(args).items() if k not in ("out", "costs", "replot")}
    jobs = [
        {"args": common, "seed": s, "family": f}
        for f in ("normal", "checkfree+")
        for s in args.seeds
    ]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        results = [r for rs in pool.map(run_family, jobs) for r in rs]
    meta = {"args": {k: str(v) for k, v in vars(args).items()}}
    meta["runtime_s"] = time.perf_counter() - t0
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "runs": results}) + "\n")
    report(results, args, costs, args.out)
    print(f"{len(results)} runs in {meta['runtime_s']:.0f} s")


if __name__ == "__main__":
    main()
