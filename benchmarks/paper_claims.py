"""The paper's main claims at digits scale, on held-out noise, next to EMA*.

(a) LCSC vs EMA* at the end of training for CT, CD and DM, plus one well-converged CT run
    (long training, low learning rate, window in the converged stage);
(b) LCSC at 1/4 of the CT training iterations vs EMA* after the full run (training cost);
(c) DM: LCSC searched and evaluated at a lower NFE vs EMA* at the higher NFE (sampling cost).

Every (claim, seed) result is cached in OUT/results.json as soon as it exists, so an
interrupted run continues where it stopped. Prints the table (markdown) at the end.

    python benchmarks/paper_claims.py --out runs/claims [--seeds 0 1 2] [--quick]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from lcsc.atomic import write_json
from lcsc.reference.digits.experiment import compare
from lcsc.reference.generative.networks import ModelConfig
from lcsc.reference.generative.training import TrainConfig, train
from lcsc.trajectory import Trajectory

WINDOW = 200  # checkpoints in the search window
EVERY = 20  # iterations between checkpoints


def scale(args: argparse.Namespace) -> dict[str, int]:
    if args.quick:
        return {"iters": 1200, "long": 2400, "budget": 60, "search": 300, "held": 500}
    return {"iters": 6000, "long": 16000, "budget": 600, "search": 1000, "held": 2000}


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


def fds(c) -> dict[str, float]:
    return {name: m.fd for name, m in c.held_out.items()} | {
        f"{name} (alt)": m.fd_alt for name, m in c.held_out.items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/claims"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, to check the script")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    s = scale(args)
    path = args.out / "results.json"
    results: dict[str, dict] = json.loads(path.read_text()) if path.is_file() else {}

    def record(key: str, run: Path, workdir: Path, **kwargs) -> None:
        if key in results:
            return
        t0 = time.perf_counter()
        print(f"{key} ...", flush=True)
        c = compare(
            run,
            workdir,
            budget=s["budget"],
            search_samples=s["search"],
            held_out_samples=s["held"],
            **kwargs,
        )
        results[key] = fds(c) | {"seconds": time.perf_counter() - t0}
        write_json(path, results)

    for seed in args.seeds:
        root = args.out / f"seed{seed}"
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
        record(
            f"b/ct-quarter/{seed}", ct, root / "search-ct-quarter", seed=seed, trajectory=quarter
        )
        record(
            f"c/dm-nfe5/{seed}",
            dm,
            root / "search-dm-nfe5",
            seed=seed,
            sampler="dpmpp",
            search_nfe=5,
            trajectory=window(dm),
        )
    print(table(results, args.seeds))


def table(results: dict[str, dict], seeds: list[int]) -> str:
    def stat(key: str, model: str) -> str:
        v = [results[f"{key}/{s}"][model] for s in seeds if f"{key}/{s}" in results]
        return f"{np.mean(v):.3g} ± {np.std(v):.2g} (n={len(v)})" if v else "not run"

    rows = [
        ("(a) CT, end of training", "a/ct", "EMA*", "a/ct", "LCSC"),
        ("(a) CD, end of training", "a/cd", "EMA*", "a/cd", "LCSC"),
        ("(a) DM, end of training (DPM-Solver++ NFE 9)", "a/dm", "EMA*", "a/dm", "LCSC"),
        ("(a) CT, converged (long, lr 2e-4)", "a/ct-converged", "EMA*", "a/ct-converged", "LCSC"),
        ("(b) LCSC at 1/4 of CT training vs EMA* full", "a/ct", "EMA*", "b/ct-quarter", "LCSC"),
        ("(c) DM: LCSC at NFE 5 vs EMA* at NFE 9", "a/dm", "EMA*", "c/dm-nfe5", "LCSC"),
    ]
    lines = [
        "| claim | EMA* held-out FD | LCSC held-out FD | EMA* FD (alt) | LCSC FD (alt) |",
        "|---|---|---|---|---|",
    ]
    for label, k1, m1, k2, m2 in rows:
        lines.append(
            f"| {label} | {stat(k1, m1)} | {stat(k2, m2)} | {stat(k1, m1 + ' (alt)')} |"
            f" {stat(k2, m2 + ' (alt)')} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
