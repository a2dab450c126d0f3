"""The paper's NFE protocol on the DM row (issue 13 items 1 and 2), at digits scale.

The paper searches the LCSC coefficients with FD at the higher NFE and then samples the SAME
combined model with fewer steps; it compares with EMA* at the higher NFE ("LCSC at NFE k
matches EMA* at about 1.6 k"). Here: a diffusion model (EDM, MLP) trained on digits with a
cosine-decaying learning rate; the search window is the last 20 % of training; EMA* and LCSC
are chosen on search noise at ``--search-nfe`` (DPM-Solver++); then both are scored on
held-out noise (several seeds) against the held-out test split at every NFE of ``--nfes``,
with the real-vs-real noise floor beside them (lcsc.reference.digits.evaluation).

``--pilot`` measures, for each candidate configuration, what the choice of configuration
rests on: EMA*'s held-out FD at the search NFE against the noise floor, and the search
objective's sampling spread (std of EMA*'s search FD over search-noise draws).

Results are cached in OUT/results.json per (configuration, seed); prints markdown tables and
writes the plot of held-out FD against NFE (``--plot``).

    python benchmarks/nfe_protocol.py --out runs/nfe --pilot
    python benchmarks/nfe_protocol.py --out runs/nfe --config w64 --seeds 0 1 2 --plot docs/nfe.png
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
from lcsc.ema import default_ema_rates
from lcsc.metrics import digits_features
from lcsc.objectives.sample_fd import SampleFD
from lcsc.reference.digits.evaluation import HeldOutEvaluator, SampleScorer
from lcsc.reference.digits.experiment import ExperimentConfig, compare
from lcsc.reference.digits.objective import digits_reference
from lcsc.reference.generative.generator import FixedNoiseGenerator
from lcsc.reference.generative.networks import ModelConfig
from lcsc.reference.generative.training import TrainConfig, train
from lcsc.search import baselines
from lcsc.trajectory import Trajectory

SAMPLER = "dpmpp"
EVERY = 20  # iterations between checkpoints
WINDOW = 0.2  # the search window: the last 20 % of training
# Candidate configurations: the default MLP, and narrower / shallower ones (harder for the
# model, so that EMA* stays above the metric's noise floor).
CONFIGS: dict[str, dict[str, int]] = {
    "w256": {"width": 256, "depth": 2},
    "w64": {"width": 64, "depth": 1},
    "w32": {"width": 32, "depth": 1},
}


def train_config(name: str, seed: int, iterations: int, **options: Any) -> TrainConfig:
    """The DM of configuration ``name``: cosine lr decay 1e-3 -> 1e-5 after 100 warm-up
    iterations, checkpoints every EVERY iterations, only the window kept. ``options``: further
    TrainConfig fields (benchmarks/fast_training.py adds its training strategies)."""
    model = ModelConfig(kind="mlp", data_shape=(1, 8, 8), parametrisation="dm", **CONFIGS[name])
    keep = int(iterations * WINDOW) // EVERY
    return TrainConfig(
        kind="dm",
        model=model,
        iterations=iterations,
        lr=1e-3,
        lr_final=1e-5,
        warmup=100,
        seed=seed,
        record_every=EVERY,
        keep=keep,
        **options,
    )


def ensure_run(out: Path, name: str, seed: int, iterations: int) -> Path:
    """Train (once; cached) a DM with a cosine lr decay 1e-3 -> 1e-5, keeping only the window."""
    if (out / "final.safetensors").is_file():
        return out
    config = train_config(name, seed, iterations)
    t0 = time.perf_counter()
    train(config, out)
    print(f"  trained {name} seed {seed}: {iterations} its in {time.perf_counter() - t0:.0f} s")
    return out


def window(run: Path) -> Trajectory:
    return Trajectory.open(run / "trajectory").select(start=1)


def pilot(root: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Per candidate (seed 0): EMA* held-out FD at the search NFE, the floor, the spread."""
    rows = []
    for name in args.pilot_configs:
        run = ensure_run(root / name / "seed0", name, 0, args.iterations)
        traj = window(run)
        meta = traj.metadata
        reference = digits_reference(meta, "main")

        def objective(noise_seed: int, meta: Any = meta, reference: Any = reference) -> SampleFD:
            g = FixedNoiseGenerator(
                meta, args.search_samples, noise_seed, "search", SAMPLER, args.search_nfe
            )
            return SampleFD(g, digits_features("main"), reference)

        star = baselines.ema_star(traj, objective(0), default_ema_rates(traj.steps))
        state = traj.combine(star.coefficients)
        spread = [objective(s)(state) for s in range(args.spread_draws)]
        evaluate = HeldOutEvaluator(
            meta, args.held_out, range(args.held_out_seeds), SAMPLER, args.search_nfe
        )
        held = evaluate(state)
        rows.append(
            {
                "config": name,
                "ema_star_rate": star.label,
                "held_out_fd": held.mean["fd"],
                "held_out_std": held.std["fd"],
                "floor": evaluate.scorer.floor["fd"],
                "search_fd_mean": float(np.mean(spread)),
                "search_fd_std": float(np.std(spread, ddof=1)),
            }
        )
        print(pilot_table(rows[-1:]), flush=True)
    return rows


def pilot_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| config | EMA* rate | EMA* held-out FD | noise floor | EMA* / floor |"
        " search FD (mean over draws) | search sampling spread (std) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['ema_star_rate']} | {r['held_out_fd']:.3f} ±"
            f" {r['held_out_std']:.3f} | {r['floor']:.3f} | {r['held_out_fd'] / r['floor']:.2f}"
            f" | {r['search_fd_mean']:.3f} | {r['search_fd_std']:.4f} |"
        )
    return "\n".join(lines)


def nfe_curves(run: Path, workdir: Path, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Search at the higher NFE, then EMA* and the same LCSC model at every NFE, held out.
    ``seed`` seeds the search, its noise and the held-out noise seeds."""
    config = ExperimentConfig(
        budget=args.budget,
        seed=seed,
        search_samples=args.search_samples,
        held_out_samples=args.held_out,
        held_out_seeds=args.held_out_seeds,
        path_points=0,
        sampler=SAMPLER,
        search_nfe=args.search_nfe,
    )
    traj = window(run)
    c = compare(run, workdir, config, trajectory=traj)
    states = {
        "ema_star": traj.combine(c.ema_star.coefficients),
        "lcsc": traj.combine(c.lcsc.best_coefficients),
    }
    scorer = SampleScorer(traj.metadata)
    curves: dict[str, Any] = {m: {} for m in states}
    for nfe in args.nfes:
        evaluate = HeldOutEvaluator(
            traj.metadata, args.held_out, config.noise_seeds, SAMPLER, nfe, scorer=scorer
        )
        for model, state in states.items():
            curves[model][str(nfe)] = [v["fd"] for v in evaluate(state).values]
    coefficients = np.asarray(c.lcsc.best_coefficients)
    return {
        "curves": curves,
        "floor": scorer.floor["fd"],
        "ema_star_rate": c.ema_star.label,
        "search": {"ema_star": c.ema_star.score, "lcsc": c.lcsc.best_score},
        "negative_mass": float(-coefficients[coefficients < 0].sum()),
        "evaluation": c.evaluation,
    }


def equivalent_nfe(ema: dict[int, float], fd: float) -> float:
    """The smallest NFE at which EMA* reaches held-out FD ``fd`` (interpolated linearly in NFE
    on log FD between measured points): inf where EMA* never gets that low at any measured
    NFE, the smallest measured NFE where it is already lower there. EMA*'s curve need not be
    monotone (it rises again at high NFE here), so this reads the curve from the low-NFE side.
    """
    nfes = sorted(ema)
    logs = np.log([ema[n] for n in nfes])
    target = np.log(fd)
    if target < logs.min():
        return float("inf")
    for i in range(len(nfes) - 1):
        (a, la), (b, lb) = (nfes[i], logs[i]), (nfes[i + 1], logs[i + 1])
        if la >= target >= lb:
            return a + (b - a) * (la - target) / (la - lb) if la != lb else float(a)
    return float(nfes[0])


def curve_table(results: dict[str, Any], nfes: list[int]) -> str:
    seeds = sorted(results)
    lines = [
        "| NFE | EMA* held-out FD | LCSC held-out FD | LCSC - EMA* (paired) | LCSC / EMA* at"
        " the search NFE | smallest EMA* NFE matching LCSC | that / NFE | noise floor |",
        "|---|---|---|---|---|---|---|---|",
    ]
    top = str(max(nfes))
    floor = np.mean([results[s]["floor"] for s in seeds])
    for nfe in nfes:
        ema, lcsc, diffs, eq, paper = [], [], [], [], []
        for s in seeds:
            e = np.asarray(results[s]["curves"]["ema_star"][str(nfe)])
            m = np.asarray(results[s]["curves"]["lcsc"][str(nfe)])
            ema.append(e.mean())
            lcsc.append(m.mean())
            diffs.extend(m - e)  # same held-out noise: a paired difference per noise seed
            paper.append(m.mean() / np.mean(results[s]["curves"]["ema_star"][top]))
            curve = {n: np.mean(results[s]["curves"]["ema_star"][str(n)]) for n in nfes}
            eq.append(equivalent_nfe(curve, m.mean()))
        n = f"n={len(seeds)} training seeds"
        lines.append(
            f"| {nfe} | {np.mean(ema):.3f} ± {np.std(ema):.3f} | {np.mean(lcsc):.3f} ±"
            f" {np.std(lcsc):.3f} | {np.mean(diffs):+.3f} ± {np.std(diffs, ddof=1):.3f}"
            f" ({len(diffs)} pairs) | {np.mean(paper):.2f} ± {np.std(paper):.2f} | {_fmt(eq)}"
            f" | {_fmt([e / nfe for e in eq])} | {floor:.3f} ({n}) |"
        )
    return "\n".join(lines)


def _fmt(v: list[float]) -> str:
    if not np.all(np.isfinite(v)):
        return "not reached (" + ", ".join(f"{x:.2f}" for x in v) + ")"
    return f"{np.mean(v):.2f} (" + ", ".join(f"{x:.2f}" for x in v) + ")"


def plot(results: dict[str, Any], nfes: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for model, label in (("ema_star", "EMA*"), ("lcsc", "LCSC (searched at the top NFE)")):
        per_seed = np.array(
            [[np.mean(results[s]["curves"][model][str(n)]) for n in nfes] for s in results]
        )
        ax.errorbar(nfes, per_seed.mean(0), per_seed.std(0), marker="o", capsize=3, label=label)
    floor = np.mean([r["floor"] for r in results.values()])
    ax.axhline(floor, color="grey", ls="--", label="noise floor (train vs test)")
    ax.set_xlabel("NFE (DPM-Solver++)")
    ax.set_ylabel("held-out FD (test split)")
    ax.set_yscale("log")
    ax.set_title(f"DM on digits: held-out FD vs NFE (n={len(results)} training seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/nfe"))
    ap.add_argument("--config", default="w64", choices=sorted(CONFIGS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--iterations", type=int, default=6000)
    ap.add_argument("--search-nfe", type=int, default=15)
    ap.add_argument("--nfes", type=int, nargs="+", default=[5, 7, 9, 12, 15])
    ap.add_argument("--budget", type=int, default=300)
    ap.add_argument("--search-samples", type=int, default=2000)
    ap.add_argument("--held-out", type=int, default=2000)
    ap.add_argument("--held-out-seeds", type=int, default=3)
    ap.add_argument("--search-seed-offset", type=int, default=0, help="search - training seed")
    ap.add_argument("--pilot", action="store_true", help="measure the candidate configurations")
    ap.add_argument("--pilot-configs", nargs="+", default=sorted(CONFIGS))
    ap.add_argument("--spread-draws", type=int, default=5)
    ap.add_argument("--plot", type=Path)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.pilot:
        rows = pilot(args.out, args)
        write_json(args.out / "pilot.json", rows)
        print(pilot_table(rows))
        return
    path = args.out / "results.json"
    cache: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    offset = args.search_seed_offset  # 0: the search seed is the training seed
    results = {}
    for seed in args.seeds:
        key = f"{args.config}/{args.search_nfe}/{seed}"
        key += f"/search{seed + offset}" if offset else ""
        if key not in cache:
            t0 = time.perf_counter()
            folder = args.out / args.config / f"seed{seed}"
            run = ensure_run(folder, args.config, seed, args.iterations)
            work = args.out / args.config / f"search{args.search_nfe}-seed{seed}"
            work = work.with_name(f"{work.name}-s{seed + offset}") if offset else work
            search = nfe_curves(run, work, seed + offset, args)
            cache[key] = search | {"seconds": time.perf_counter() - t0}
            write_json(path, cache)
            print(f"{key}: {cache[key]['seconds']:.0f} s", flush=True)
        results[str(seed)] = cache[key]
    print(curve_table(results, args.nfes))
    if args.plot:
        plot(results, args.nfes, args.plot)


if __name__ == "__main__":
    main()
