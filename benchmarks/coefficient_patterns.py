"""Coefficient patterns, the convex-only ablation and window / interval sensitivity, in small
(issue 13 item 5: the paper's Figs. 5 and 8, Tables 14, 4 and 9), on ONE consistency-training
run of the demo's configuration (``lcsc demo``: improved CT, MLP, 6000 iterations, the last
200 checkpoints every 20 iterations), trained once and reused by every variant.

Each variant is one :func:`lcsc.reference.digits.experiment.compare`: EMA* and LCSC chosen on
search noise, then scored on held-out noise (several seeds) against the held-out test split.
Coefficient statistics: negative mass (minus the sum of the negative coefficients), sparsity
(the share of checkpoints that carry 90 % of the absolute mass), the L1 distance from EMA*'s
coefficients, and the L1 distance between the solutions of different search seeds. Also the
consistency-model step claim: LCSC at 1 step against EMA* at 2 steps, on the same noise.

Results are cached per variant in OUT/results.json; prints markdown tables.

    python benchmarks/coefficient_patterns.py --out runs/patterns [--variants ...]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lcsc.atomic import write_json
from lcsc.reference.digits.demo import DemoConfig, train_run
from lcsc.reference.digits.evaluation import HeldOutEvaluator
from lcsc.reference.digits.experiment import EMA_STAR, LCSC, compare
from lcsc.trajectory import Trajectory

# name -> (ExperimentConfig changes, window: (last checkpoints, every)); None: all, every 1
VARIANTS: dict[str, tuple[dict[str, Any], tuple[int, int] | None]] = {
    "seed 0": ({"seed": 0}, None),
    "seed 1": ({"seed": 1}, None),
    "seed 2": ({"seed": 2}, None),
    "convex, seed 0": ({"seed": 0, "nonnegative": True}, None),
    "convex, seed 1": ({"seed": 1, "nonnegative": True}, None),
    "convex, seed 2": ({"seed": 2, "nonnegative": True}, None),
    "window 50 (last 1000 its)": ({"seed": 0}, (50, 1)),
    "window 100 (last 2000 its)": ({"seed": 0}, (100, 1)),
    "interval 40 (every 2nd)": ({"seed": 0}, (200, 2)),
    "interval 80 (every 4th)": ({"seed": 0}, (200, 4)),
}


def trajectory(run: Path, window: tuple[int, int] | None) -> Trajectory:
    traj = Trajectory.open(run / "trajectory").select(start=1)
    if window is None:
        return traj
    last, every = window
    start = traj.steps[-last]
    return traj.select(start=start, every=every)


def sparsity(c: np.ndarray, share: float = 0.9) -> float:
    """The share of checkpoints that, largest first, carry ``share`` of the absolute mass."""
    a = np.sort(np.abs(c))[::-1]
    return float((np.searchsorted(np.cumsum(a), share * a.sum()) + 1) / len(c))


def run_variant(run: Path, workdir: Path, name: str, args: argparse.Namespace) -> dict[str, Any]:
    changes, window = VARIANTS[name]
    config = DemoConfig(
        method="evolutionary",  # the search these tables measured (the demo's former default)
        groups=None,
        budget=args.budget,
        search_samples=args.search_samples,
        held_out_samples=args.held_out,
        held_out_seeds=args.held_out_seeds,
        path_points=2,
        **changes,
    ).experiment
    traj = trajectory(run, window)
    c = compare(run, workdir, config, trajectory=traj)
    lcsc, star = np.asarray(c.lcsc.best_coefficients), np.asarray(c.ema_star.coefficients)
    out: dict[str, Any] = {
        "steps": list(traj.steps),
        "lcsc": lcsc.tolist(),
        "ema_star": star.tolist(),
        "ema_star_rate": c.ema_star.label,
        "held_out": {m.id: [v["fd"] for v in c.held_out[m.id].values] for m in (EMA_STAR, LCSC)},
        "floor": c.floor["fd"],
    }
    if name.startswith("seed"):  # the step claim: EMA* at 2 steps on the same held-out noise
        two = HeldOutEvaluator(traj.metadata, args.held_out, config.noise_seeds, "cm", 2)
        out["held_out_2_steps"] = {
            "ema_star": [v["fd"] for v in two(traj.combine(star)).values],
            "lcsc": [v["fd"] for v in two(traj.combine(lcsc)).values],
        }
    return out


def pattern_table(results: dict[str, Any]) -> str:
    lines = [
        "| variant | K | EMA* rate | EMA* held-out FD | LCSC held-out FD | LCSC / EMA* (paired"
        " over noise seeds) | negative mass | sparsity (share carrying 90 %) | L1 from EMA* |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        c, star = np.asarray(r["lcsc"]), np.asarray(r["ema_star"])
        e, m = np.asarray(r["held_out"]["ema_star"]), np.asarray(r["held_out"]["lcsc"])
        ratio = m / e
        lines.append(
            f"| {name} | {len(c)} | {r['ema_star_rate']} | {e.mean():.3f} ± {e.std(ddof=1):.3f} |"
            f" {m.mean():.3f} ± {m.std(ddof=1):.3f} | {ratio.mean():.3f} ± {ratio.std(ddof=1):.3f}"
            f" | {-c[c < 0].sum():.3f} | {sparsity(c):.2f} (EMA*: {sparsity(star):.2f}) |"
            f" {np.abs(c - star).sum():.3f} |"
        )
    floor = next(iter(results.values()))["floor"]
    lines.append(f"\nnoise floor (train split vs test split, FD main): {floor:.3f}")
    return "\n".join(lines)


def seed_table(results: dict[str, Any]) -> str:
    """L1 distances between the solutions of different search seeds (same window)."""
    names = [n for n in results if n.startswith("seed") or n.startswith("convex")]
    lines = ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for a in names:
        ca = np.asarray(results[a]["lcsc"])
        cells = [f"{np.abs(ca - np.asarray(results[b]['lcsc'])).sum():.3f}" for b in names]
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def steps_table(results: dict[str, Any]) -> str:
    lines = [
        "| search seed | EMA* 1 step | EMA* 2 steps | LCSC 1 step | LCSC 2 steps |"
        " LCSC 1 step / EMA* 2 steps (paired) |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        if "held_out_2_steps" not in r:
            continue
        e1, m1 = np.asarray(r["held_out"]["ema_star"]), np.asarray(r["held_out"]["lcsc"])
        e2 = np.asarray(r["held_out_2_steps"]["ema_star"])
        m2 = np.asarray(r["held_out_2_steps"]["lcsc"])
        q = m1 / e2
        lines.append(
            f"| {name} | {e1.mean():.3f} | {e2.mean():.3f} | {m1.mean():.3f} | {m2.mean():.3f} |"
            f" {q.mean():.3f} ± {q.std(ddof=1):.3f} |"
        )
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for name, r in results.items():
        if name.startswith("seed") or name == "convex, seed 0":
            ax.plot(r["steps"], r["lcsc"], lw=0.9, label=f"LCSC {name}")
    first = next(iter(results.values()))
    ax.plot(first["steps"], first["ema_star"], "k--", lw=1.2, label="EMA*")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("training iteration of the checkpoint")
    ax.set_ylabel("coefficient")
    ax.set_title("CT on digits (demo run): LCSC coefficients across search seeds")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/patterns"))
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--budget", type=int, default=300)
    ap.add_argument("--search-samples", type=int, default=2000)
    ap.add_argument("--held-out", type=int, default=2000)
    ap.add_argument("--held-out-seeds", type=int, default=3)
    ap.add_argument("--plot", type=Path)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run = args.out / "run"
    if not (run / "ema.safetensors").is_file():
        train_run(DemoConfig(seed=0), run)  # the demo's training run, once
    path = args.out / "results.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    for name in args.variants:
        if name not in results:
            t0 = time.perf_counter()
            work = args.out / ("search-" + name.replace(" ", "_").replace(",", ""))
            results[name] = run_variant(run, work, name, args)
            results[name]["seconds"] = time.perf_counter() - t0
            write_json(path, results)
            print(f"{name}: {results[name]['seconds']:.0f} s", flush=True)
    print(pattern_table(results))
    print()
    print(seed_table(results))
    print()
    print(steps_table(results))
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
