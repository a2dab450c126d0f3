"""Ablation of the levers against a search that overfits its metric (issue 9 item 3), on the
demo's setting: validation selection + early stop, a composite objective over two feature
spaces, a trust-region penalty, more samples per evaluation.

Each training seed is trained once (the demo's run) and reused by every lever; each
(lever, seed) result is cached in OUT/results-seedS.json as soon as it exists, so an
interrupted run continues (and seeds can run in parallel processes). Every model is scored as
in ``lcsc demo``: held-out noise (3 seeds x 5000 samples) against the held-out test split, in
the search's space, the validation space and the four independent transfer spaces. Prints the
table (markdown): LCSC / EMA* per space, mean ± std over training seeds.

    python benchmarks/search_levers.py --out runs/levers [--seeds 0 1 2] [--levers ...]
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
from lcsc.reference.digits.evaluation import INDEPENDENT
from lcsc.reference.digits.experiment import EMA_STAR, LCSC, ExperimentConfig, compare

LEVERS: dict[str, dict[str, Any]] = {
    "baseline (FD main, 2000 samples)": {},
    "validation (alt, other noise) + early stop (patience 20)": {
        "validation": True,
        "patience": 20,
    },
    "validation, no early stop": {"validation": True},
    "composite objective (main + alt)": {"search_spaces": ("main", "alt")},
    "penalty 0.001": {"penalty": 0.001},
    "penalty 0.01": {"penalty": 0.01},
    "more samples (5000 per evaluation)": {"search_samples": 5000},
    "penalty 0.01 + more samples (5000)": {"penalty": 0.01, "search_samples": 5000},
    "validation + early stop + penalty 0.001": {
        "validation": True,
        "patience": 20,
        "penalty": 0.001,
    },
}
COLUMNS = ("fd", "fd_alt", *INDEPENDENT)


def run_lever(run: Path, workdir: Path, seed: int, settings: dict[str, Any]) -> dict[str, Any]:
    # the demo's settings without its default lever (ExperimentConfig's defaults are the demo's)
    config = ExperimentConfig(seed=seed, path_points=2, **settings)
    t0 = time.perf_counter()
    c = compare(run, workdir, config)
    lcsc, star = c.held_out[LCSC.id].mean, c.held_out[EMA_STAR.id].mean
    return {
        "ratio": {m: lcsc[m] / star[m] for m in lcsc},
        "lcsc": lcsc,
        "ema_star": star,
        "evaluations": len(c.lcsc.history),
        "validations": len(c.lcsc.validation_path),
        "seconds": time.perf_counter() - t0,
    }


def table(results: dict[str, dict], levers: list[str], seeds: list[int]) -> str:
    def cell(values: list[float]) -> str:
        return f"{np.mean(values):.2f} ± {np.std(values):.2f}" if values else "not run"

    head = " | ".join(COLUMNS)
    lines = [
        f"| lever | {head} | median indep. | max indep. | evaluations | n |",
        "|---" * (len(COLUMNS) + 5) + "|",
    ]
    for lever in levers:
        rows = [results[f"{lever}/{s}"] for s in seeds if f"{lever}/{s}" in results]
        cells = [cell([r["ratio"][m] for r in rows]) for m in COLUMNS]
        indep = [[r["ratio"][m] for m in INDEPENDENT] for r in rows]
        median = cell([float(np.median(v)) for v in indep])
        worst = cell([float(np.max(v)) for v in indep])
        evals = f"{np.mean([r['evaluations'] for r in rows]):.0f}" if rows else ""
        lines.append(
            f"| {lever} | {' | '.join(cells)} | {median} | {worst} | {evals} | {len(rows)} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/levers"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--levers", nargs="+", choices=list(LEVERS), default=list(LEVERS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--table", action="store_true", help="only print the table of the cache")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not args.table:
        for seed in args.seeds:
            run_seed(args.out, seed, args.levers)
    results: dict[str, dict] = {}
    for cache in sorted(args.out.glob("results-seed*.json")):
        results |= json.loads(cache.read_text())
    print(table(results, args.levers, args.seeds))


def run_seed(out: Path, seed: int, levers: list[str]) -> None:
    run = out / f"seed{seed}" / "run"
    if not (run / "ema.safetensors").is_file():
        print(f"training seed {seed}", flush=True)
        train_run(DemoConfig(seed=seed), run)
    path = out / f"results-seed{seed}.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    for lever in levers:
        key = f"{lever}/{seed}"
        if key in results:
            continue
        print(f"{key} ...", flush=True)
        workdir = out / f"seed{seed}" / f"search-{list(LEVERS).index(lever)}"
        results[key] = run_lever(run, workdir, seed, LEVERS[lever])
        write_json(path, results)


if __name__ == "__main__":
    main()
