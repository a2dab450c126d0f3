"""The paper's main claims at digits scale, on held-out noise, next to EMA*.

(a) LCSC vs EMA* at the end of training for CT, CD and DM, plus one well-converged CT run
    (long training, low learning rate, window in the converged stage);
(b) LCSC at 1/4 of the CT training iterations vs EMA* after the full run (training cost);
(c) DM: LCSC searched and evaluated at a lower NFE vs EMA* at the higher NFE (sampling cost).

Every model is scored on held-out noise (several seeds) against the held-out test split, in the
search's feature space and in the transfer spaces (pixels, random features, PCA, a scikit-learn
MLP; see lcsc.reference.digits.evaluation), next to the real-vs-real noise floor. Every
(claim, seed) result is cached in OUT/results_v2.json as soon as it exists, so an interrupted
run continues where it stopped. Prints two tables (markdown) at the end: the claims in the
search's space, and the transfer table (LCSC / EMA* in every space) that belongs beside it.

    python benchmarks/paper_claims.py --out runs/claims [--seeds 0 1 2] [--quick]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from lcsc.atomic import write_json
from lcsc.reference.digits.evaluation import INDEPENDENT
from lcsc.reference.digits.experiment import EMA_STAR, LCSC, Comparison, ExperimentConfig, compare
from lcsc.reference.digits.findings import path_correlations
from lcsc.reference.generative.networks import ModelConfig
from lcsc.reference.generative.training import TrainConfig, train
from lcsc.trajectory import Trajectory

WINDOW = 200  # checkpoints in the search window
EVERY = 20  # iterations between checkpoints


def scale(args: argparse.Namespace) -> dict[str, int]:
    if args.quick:
        return {"iters": 1200, "long": 2400, "budget": 60, "search": 300, "held": 500, "seeds": 2}
    return {"iters": 6000, "long": 16000, "budget": 600, "search": 1000, "held": 2000, "seeds": 3}


def ensure_run(
    out: Path, kind: str, seed: int, iterations: int, lr: float = 1e-3, teacher: Path | None = None
) -> Path:
    if (out / "final.safetensors").is_file():
        return out
    model = ModelConfig(
        kind="mlp", data_shape=(1, 8, 8), parametrisation="dm" if kind == "dm" else "cm"
    )
    config = TrainConfig(
        kind=kind,
        model=model,
        iterations=iterations,
        lr=lr,
        seed=seed,
        record_every=EVERY,
        teacher=None if teacher is None else str(teacher),
    )
    print(f"  training {kind} seed {seed}: {iterations} iterations", flush=True)
    train(config, out)
    return out


def window(run: Path, last_step: int | None = None) -> Trajectory:
    traj = Trajectory.open(run / "trajectory")
    stop = last_step if last_step is not None else traj.steps[-1]
    return traj.select(start=max(1, stop - WINDOW * EVERY + 1), stop=stop)


def summary(c: Comparison) -> dict:
    """What the tables need from one comparison: held-out means and stds by model id, the
    noise floor, and the path correlations of the Goodhart curve."""
    held = {m.id: c.held_out[m.id] for m in (EMA_STAR, LCSC)}
    return {
        "mean": {k: h.mean for k, h in held.items()},
        "std": {k: h.std for k, h in held.items()},
        "floor": c.floor,
        "path_correlation": path_correlations(
            [p.search_score for p in c.path], [p.held_out for p in c.path]
        ),
        "evaluation": c.evaluation,
    }


def run_seed(record: Callable[..., None], root: Path, seed: int, s: dict[str, int]) -> None:
    """Train the runs of one seed (cached) and record every claim's comparison."""
    ct = ensure_run(root / "ct", "ct", seed, s["iters"])
    record(f"a/ct/{seed}", ct, root / "search-ct", seed=seed, trajectory=window(ct))
    dm = ensure_run(root / "dm", "dm", seed, s["iters"])
    record(
        f"a/dm/{seed}",
        dm,
        root / "search-dm",
        seed=seed,
        sampler="dpmpp",
        search_nfe=9,
        trajectory=window(dm),
    )
    cd = ensure_run(root / "cd", "cd", seed, s["iters"] * 2 // 3, teacher=dm)
    record(f"a/cd/{seed}", cd, root / "search-cd", seed=seed, trajectory=window(cd))
    long = ensure_run(root / "ct-long", "ct", seed, s["long"], lr=2e-4)
    record(
        f"a/ct-converged/{seed}",
        long,
        root / "search-ct-long",
        seed=seed,
        trajectory=window(long),
    )
    quarter = Trajectory.open(ct / "trajectory").select(start=1, stop=s["iters"] // 4)
    record(f"b/ct-quarter/{seed}", ct, root / "search-ct-quarter", seed=seed, trajectory=quarter)
    record(
        f"c/dm-nfe5/{seed}",
        dm,
        root / "search-dm-nfe5",
        seed=seed,
        sampler="dpmpp",
        search_nfe=5,
        trajectory=window(dm),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/claims"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, to check the script")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    s = scale(args)
    path = args.out / "results_v2.json"  # v1 (results.json) scored against the train split
    results: dict[str, dict] = json.loads(path.read_text()) if path.is_file() else {}

    def record(
        key: str, run: Path, workdir: Path, trajectory: Trajectory | None = None, **kwargs
    ) -> None:
        if key in results:
            return
        t0 = time.perf_counter()
        print(f"{key} ...", flush=True)
        config = ExperimentConfig(
            budget=s["budget"],
            search_samples=s["search"],
            held_out_samples=s["held"],
            held_out_seeds=s["seeds"],
            path_points=6,
            **kwargs,
        )
        c = compare(run, workdir, config, trajectory=trajectory)
        results[key] = summary(c) | {"seconds": time.perf_counter() - t0}
        write_json(path, results)

    for seed in args.seeds:
        run_seed(record, args.out / f"seed{seed}", seed, s)
    print(table(results, args.seeds))
    print()
    print(transfer_table(results, args.seeds))


ROWS = [
    ("(a) CT, end of training", "a/ct", "a/ct"),
    ("(a) CD, end of training", "a/cd", "a/cd"),
    ("(a) DM, end of training (DPM-Solver++ NFE 9)", "a/dm", "a/dm"),
    ("(a) CT, converged (long, lr 2e-4)", "a/ct-converged", "a/ct-converged"),
    ("(b) LCSC at 1/4 of CT training vs EMA* full", "a/ct", "b/ct-quarter"),
    ("(c) DM: LCSC at NFE 5 vs EMA* at NFE 9", "a/dm", "c/dm-nfe5"),
]
TRANSFER = ("fd_alt", *INDEPENDENT)


def _values(results: dict, key: str, seeds: list[int], model: str, metric: str) -> list[float]:
    return [results[f"{key}/{s}"]["mean"][model][metric] for s in seeds if f"{key}/{s}" in results]


def _ratios(results: dict, k_ema: str, k_lcsc: str, seeds: list[int], metric: str) -> list[float]:
    """LCSC / EMA* per training seed (both held-out means of that seed's run)."""
    out = []
    for s in seeds:
        a, b = results.get(f"{k_lcsc}/{s}"), results.get(f"{k_ema}/{s}")
        if a is not None and b is not None:
            out.append(a["mean"]["lcsc"][metric] / b["mean"]["ema_star"][metric])
    return out


def _stat(v: list[float], digits: str = ".3g") -> str:
    return f"{np.mean(v):{digits}} ± {np.std(v):.2g} (n={len(v)})" if v else "not run"


def table(results: dict[str, dict], seeds: list[int]) -> str:
    """The claims in the search's feature space, with the real-vs-real noise floor."""
    lines = [
        "| claim | EMA* held-out FD | LCSC held-out FD | LCSC / EMA* | noise floor |",
        "|---|---|---|---|---|",
    ]
    for label, k1, k2 in ROWS:
        floor = [results[f"{k1}/{s}"]["floor"]["fd"] for s in seeds if f"{k1}/{s}" in results]
        lines.append(
            f"| {label} | {_stat(_values(results, k1, seeds, 'ema_star', 'fd'))} |"
            f" {_stat(_values(results, k2, seeds, 'lcsc', 'fd'))} |"
            f" {_stat(_ratios(results, k1, k2, seeds, 'fd'), '.2f')} | {_stat(floor)} |"
        )
    return "\n".join(lines)


def transfer_table(results: dict[str, dict], seeds: list[int]) -> str:
    """LCSC / EMA* held-out FD in the validation space and the four independent spaces
    (below 1: LCSC is better), their median, and LCSC / EMA* classifier confidence."""
    head = " | ".join(TRANSFER)
    lines = [
        f"| claim | {head} | median of independent | confidence |",
        "|---" * (len(TRANSFER) + 3) + "|",
    ]
    for label, k1, k2 in ROWS:
        cells = [_stat(_ratios(results, k1, k2, seeds, m), ".2f") for m in TRANSFER]
        per_seed = [_ratios(results, k1, k2, seeds, m) for m in INDEPENDENT]
        medians = list(np.median(np.array(per_seed), axis=0)) if all(per_seed) else []
        confidence = _stat(_ratios(results, k1, k2, seeds, "confidence"), ".3f")
        lines.append(f"| {label} | {' | '.join(cells)} | {_stat(medians, '.2f')} | {confidence} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
