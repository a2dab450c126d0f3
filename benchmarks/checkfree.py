"""CheckFree benchmark: validation loss against modelled wall clock for every recovery strategy.

A tiny LLaMA-style byte-level LM (default: 6 stages of 1 layer, d=64, 8 sequences of 64 bytes
per iteration in 2 micro-batches) trains in single-process mode for ``--iterations`` iterations
while stages fail at 5, 10 and 16 % per hour, each iteration modelled as ``--iteration-time``
seconds (60 s: a slow decentralised pipeline, so failures are frequent within a short run).
Every strategy sees the same failures for a seed; 3 seeds. Two scenarios:

* ``intermediate``: only stages 1..S-2 fail, so all seven strategies can run (CheckFree and its
  ablations cannot recover an edge stage);
* ``all``: any stage fails; only the strategies that can recover edge stages run (checkpoint,
  redundant, checkfree+).

Wall clock = executed iterations x iteration time (x 151/91 for redundant computation), so
checkpoint rollbacks cost the redone iterations. A run whose failure plan is empty is, by
determinism, exactly the failure-free reference run; it is not recomputed (its curve is the
reference's, on its own time scale). The target validation loss defaults to the failure-free
reference's mean loss at 80 % of the iterations.

Outputs in ``--out``: results.json (every curve), table.md, checkfree.png (``--replot``
rewrites the last two from results.json).

    python benchmarks/checkfree.py [--iterations 300] [--seeds 0 1 2] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

RATES = (5.0, 10.0, 16.0)
ALL = ("checkfree", "checkfree+", "checkpoint", "redundant", "copy", "uniform", "random")
EDGE_CAPABLE = ("checkpoint", "redundant", "checkfree+")
# Hours to validation loss 2.85, 500M LLaMA, 6 stages (CheckFree paper; docs/checkfree.md).
PAPER = {
    "checkpoint": (558, 622, 634),
    "redundant": (420, 420, 420),
    "checkfree": (368, 406, 563),
    "checkfree+": (355, 368, 461),
}


def make_config(args: argparse.Namespace, strategy: str, rate: float, seed: int, stages: str):
    from checkfree import FailureConfig, ModelConfig, TrainConfig

    return TrainConfig(
        model=ModelConfig(stages=args.stages, layers_per_stage=1, dim=args.dim, heads=4),
        failures=FailureConfig(rate, args.iteration_time, stages),
        strategy=strategy,
        iterations=args.iterations,
        batch_size=8,
        micro_batches=2,
        seed=seed,
        checkpoint_interval=args.checkpoint_interval,
        eval_every=args.eval_every,
        eval_batches=4,
    )


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """One training run in a worker process (one thread: two workers share two cores)."""
    import torch

    torch.set_num_threads(1)
    from checkfree import build_plan, train
    from lcsc.errors import LcscError

    args = argparse.Namespace(**job["args"])
    config = make_config(args, job["strategy"], job["rate"], job["seed"], job["stages"])
    out = {k: job[k] for k in ("strategy", "rate", "seed", "stages", "reference")}
    try:
        plan = build_plan(config)
    except LcscError as exc:  # e.g. two adjacent stages lost at once: the strategy gives up
        out.update(unrecoverable=str(exc), curve=None, failed_stages=0, lost_iterations=0)
        return out
    out.update(
        failures=[[s, list(f)] for s, f in plan.failures],
        failed_stages=sum(len(f) for _, f in plan.failures),
        steps=len(plan.slots),
        lost_iterations=plan.lost_iterations,
        step_time_s=plan.iteration_time_s,
    )
    ref = job.get("reference_curve")
    if not plan.failures and ref is not None:
        # No failure: exactly the reference trajectory (determinism), on this run's clock.
        scale = plan.iteration_time_s / args.iteration_time
        out.update(curve=[[t * scale, v] for t, v in ref], reused=True, runtime_s=0.0)
        return out
    t0 = time.perf_counter()
    result = train(config)
    out.update(curve=[list(p) for p in result.val_curve], reused=False)
    out["runtime_s"] = time.perf_counter() - t0
    return out


def time_to(curve: list[list[float]] | None, target: float) -> float | None:
    if curve is None:
        return None
    return next((t for t, v in curve if v <= target), None)


def mean_curve(curves: list[list[list[float]]], grid: np.ndarray) -> np.ndarray:
    """Mean over runs of the validation curves interpolated on ``grid``; NaN once any run has
    ended (runs with rollbacks end at different times)."""
    end = min(c[-1][0] for c in curves) * (1 + 1e-9)
    rows = [np.interp(grid, *np.array(c).T) for c in curves]
    return np.where(grid <= end, np.mean(rows, 0), np.nan)


def runs_of(results: list[dict[str, Any]], strategy: str, rate: float, stages: str) -> list:
    return [
        r
        for r in results
        if r["reference"] is None
        and (r["strategy"], r["rate"], r["stages"]) == (strategy, rate, stages)
    ]


def time_cell(runs: list[dict[str, Any]], target: float) -> str:
    """Mean hours to ``target`` over the runs; ``(k/n)`` when only k of n got there."""
    if not runs:
        return "-"
    hit = [t / 3600 for t in (time_to(r["curve"], target) for r in runs) if t is not None]
    cell = f"{np.mean(hit):.2f}" if hit else "n/r"
    if len(hit) < len(runs):
        cell += f" ({len(hit)}/{len(runs)})"
    bad = sum(r["curve"] is None for r in runs)
    return cell + (f", {bad} unrecoverable" if bad else "")


def table(results: list[dict[str, Any]], target: float, stages: str, seeds: int) -> str:
    head = "| strategy | " + " | ".join(f"{r:g} %/h" for r in RATES)
    head += " | final val loss at 16 % | stage failures at 16 % | paper: 5 / 10 / 16 % |"
    lines = [head, "|---" * (len(RATES) + 4) + "|"]
    for s in ALL if stages == "intermediate" else EDGE_CAPABLE:
        cells = [time_cell(runs_of(results, s, rate, stages), target) for rate in RATES]
        last = runs_of(results, s, RATES[-1], stages)
        done = [r for r in last if r["curve"] is not None]
        final = np.mean([r["curve"][-1][1] for r in done]) if done else math.nan
        fails = np.mean([r["failed_stages"] for r in last]) if last else math.nan
        fail_cell = f"{fails:.1f}"
        if s == "checkpoint":
            fail_cell += f" ({np.mean([r['lost_iterations'] for r in last]):.0f} it. redone)"
        paper = " / ".join(f"{h} h" for h in PAPER[s]) if s in PAPER else "-"
        lines.append(f"| {s} | {' | '.join(cells)} | {final:.3f} | {fail_cell} | {paper} |")
    ref = [r for r in results if r["reference"] == "normal"]
    ref_final = np.mean([r["curve"][-1][1] for r in ref])
    lines.append(f"| *no failures* | {time_cell(ref, target)} | | | {ref_final:.3f} | 0 | |")
    note = (
        f"Modelled hours to validation loss {target:.3f}, mean over {seeds} seeds; "
        "`(k/n)`: only k of n seeds reached it within the run (the mean is over those); "
        "n/r: none did."
    )
    return note + "\n\n" + "\n".join(lines) + "\n"


def plot(results: list[dict[str, Any]], path: Path, target: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = dict(zip(ALL, plt.get_cmap("tab10").colors, strict=False))
    fig, axes = plt.subplots(2, len(RATES), figsize=(5 * len(RATES), 8), sharey=True)
    for row, stages in enumerate(("intermediate", "all")):
        strategies = ALL if stages == "intermediate" else EDGE_CAPABLE
        for col, rate in enumerate(RATES):
            ax = axes[row, col]
            panel = {"none": [r for r in results if r["reference"] == "normal"]}
            for s in strategies:
                panel[s] = [r for r in runs_of(results, s, rate, stages) if r["curve"]]
            end = max(r["curve"][-1][0] for runs in panel.values() for r in runs)
            grid = np.linspace(0, end, 600)
            for s, runs in panel.items():
                if not runs:
                    continue
                style = {"color": "k", "ls": ":"} if s == "none" else {"color": colours[s]}
                label = "no failures" if s == "none" else s
                curve = mean_curve([r["curve"] for r in runs], grid)
                ax.plot(grid / 3600, curve, label=label, lw=1.2, **style)
            ax.axhline(target, color="grey", lw=0.5)
            ax.set_title(f"{rate:g} %/h, failures on {stages} stages")
            ax.set_xlabel("modelled wall clock (h)")
            ref_end = max(r["curve"][-1][0] for r in panel["none"]) / 3600
            ax.set_xlim(0, min(end / 3600, 2 * ref_end) * 1.02)  # cut runaway rollback runs
            ax.set_ylim(target - 0.4, target + 0.8)
            if col == 0:
                ax.set_ylabel("validation loss (nats/byte)")
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--stages", type=int, default=6)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--iteration-time", type=float, default=60.0)
    ap.add_argument("--checkpoint-interval", type=int, default=50)
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--target", type=float, help="target validation loss (default: see above)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("runs/checkfree"))
    ap.add_argument("--replot", action="store_true", help="redo table and plot from --out")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    common = {k: v for k, v in vars(args).items() if k not in ("out", "target", "seeds")}
    t0 = time.perf_counter()

    def job(strategy: str, rate: float, seed: int, stages: str, ref: str | None = None, curve=None):
        return dict(
            args=common,
            strategy=strategy,
            rate=rate,
            seed=seed,
            stages=stages,
            reference=ref,
            reference_curve=curve,
        )

    if args.replot:  # tables and plot again from a finished run's results.json
        saved = json.loads((args.out / "results.json").read_text())
        results, target = saved["runs"], saved["meta"]["target"]
        report(results, args.target or target, args.out, len(args.seeds))
        return
    with ProcessPoolExecutor(args.workers) as pool:
        ref_jobs = [job("checkfree", 0.0, s, "all", "normal") for s in args.seeds]
        ref_jobs += [job("checkfree+", 0.0, s, "all", "swapped") for s in args.seeds]
        refs = list(pool.map(run_job, ref_jobs))
        curves = {(r["reference"], r["seed"]): r["curve"] for r in refs}
        jobs = []
        for stages, strategies in (("intermediate", ALL), ("all", EDGE_CAPABLE)):
            for s in strategies:
                for rate in RATES:
                    for seed in args.seeds:
                        kind = "swapped" if s == "checkfree+" else "normal"
                        jobs.append(job(s, rate, seed, stages, None, curves[kind, seed]))
        results = refs + list(pool.map(run_job, jobs))
    if args.target is not None:
        target = args.target
    else:  # the failure-free run's mean validation loss at 80 % of the iterations
        at = int(0.8 * args.iterations) * args.iteration_time
        normal = [r for r in refs if r["reference"] == "normal"]
        target = float(np.mean([next(v for t, v in r["curve"] if t >= at) for r in normal]))
    for r in results:
        r.pop("reference_curve", None)
    meta = {"args": {k: str(v) for k, v in vars(args).items()}, "target": target}
    meta["runtime_s"] = time.perf_counter() - t0
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "runs": results}) + "\n")
    report(results, target, args.out, len(args.seeds))
    print(f"{len(results)} runs in {meta['runtime_s']:.0f} s")


def jumps(results: list[dict[str, Any]], strategy: str, stages: str) -> list[float]:
    """Validation loss at the first evaluation after each failure minus the same seed's
    failure-free run (same pipeline order) at the same step: the damage a recovery leaves."""
    refs = {(r["reference"], r["seed"]): r["curve"] for r in results if r["reference"]}
    out = []
    for rate in RATES:
        for r in runs_of(results, strategy, rate, stages):
            if r["curve"] is None:
                continue
            ref = dict(refs["swapped" if strategy == "checkfree+" else "normal", r["seed"]])
            steps = [(round(t / r["step_time_s"]), v, t) for t, v in r["curve"]]
            for failed_at, _ in r["failures"]:
                k, v, t = next(x for x in steps if x[0] > failed_at)
                out.append(v - ref[t])
    return out


def quality_table(results: list[dict[str, Any]], stages: str) -> str:
    head = "| strategy | loss jump after a failure | final val loss at " + " / ".join(
        f"{r:g}" for r in RATES
    )
    lines = [head + " %/h |", "|---|---|---|"]
    for s in ALL if stages == "intermediate" else EDGE_CAPABLE:
        if s == "checkpoint":
            jump = "(rolls back)"
        elif s == "redundant":
            jump = "0 (exact)"
        else:
            j = jumps(results, s, stages)
            jump = f"{np.mean(j):+.3f} (median {np.median(j):+.3f}, n={len(j)})" if j else "-"
        finals = []
        for rate in RATES:
            done = [r for r in runs_of(results, s, rate, stages) if r["curve"] is not None]
            finals.append(f"{np.mean([r['curve'][-1][1] for r in done]):.3f}" if done else "-")
        lines.append(f"| {s} | {jump} | {' / '.join(finals)} |")
    for kind in ("normal", "swapped"):
        ref = [r["curve"][-1][1] for r in results if r["reference"] == kind]
        lines.append(f"| *no failures, {kind} order* | | {np.mean(ref):.3f} |")
    return "\n".join(lines) + "\n"


def report(results: list[dict[str, Any]], target: float, out: Path, seeds: int) -> None:
    """Write table.md and checkfree.png into ``out`` and print the tables."""
    parts = [
        f"### Failures on {stages} stages\n\n"
        + table(results, target, stages, seeds)
        + "\n"
        + quality_table(results, stages)
        for stages in ("intermediate", "all")
    ]
    text = "\n".join(parts)
    (out / "table.md").write_text(text)
    plot(results, out / "checkfree.png", target)
    print(text)
    print(f"target validation loss {target:.4f}; results in {out}")


if __name__ == "__main__":
    main()
