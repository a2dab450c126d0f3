"""Which search the demo ships (issue 11 item 1): ``lcsc demo``'s whole pipeline (training,
search, held-out scores, Goodhart path, plots, report) under several search settings, per
training seed, each paired with the others on the same training run and held-out noise.

Each seed is trained once (timed) and reused by every setting; each (setting, seed) result is
cached in OUT/results-seedS.json as soon as it exists, so an interrupted run continues. The
demo's time of a setting is the training time plus its ``run_demo`` time. Prints the table
(markdown): LCSC / EMA* held-out FD in the search space, the validation (alt) space, the four
independent spaces and their median, mean ± std over training seeds, and the demo's time as
a ratio to the first setting's (per seed, then averaged).

    python benchmarks/demo_defaults.py --out /tmp/demo-defaults [--seeds 0 1 2] [--settings A B]
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
from lcsc.reference.digits.demo import DemoConfig, run_demo, train_run
from lcsc.reference.digits.evaluation import INDEPENDENT

SETTINGS: dict[str, dict[str, Any]] = {
    "A": {"method": "evolutionary", "budget": 1000, "penalty": 0.01, "groups": None},
    "B": {"method": "subspace", "budget": 250, "penalty": 0.01, "groups": "auto"},
    "C": {"method": "subspace", "budget": 250, "penalty": 0.0, "groups": "auto"},
    # The grouped penalty is the mean over the G rows (lcsc.search.Penalty); 0.36 = 0.01 x G^2
    # (G = 6 modules) is what 0.01 was when it summed over the rows, times G.
    "D": {"method": "subspace", "budget": 250, "penalty": 1.08, "groups": "auto"},
    "E": {"method": "subspace", "budget": 500, "penalty": 0.36, "groups": "auto"},
    "F": {"method": "subspace", "budget": 125, "penalty": 0.01, "groups": "auto"},
    "G": {"method": "subspace", "budget": 125, "penalty": 0.36, "groups": "auto"},
    "H": {"method": "subspace", "budget": 125, "penalty": 0.1, "groups": "auto"},
    "I": {"method": "subspace", "budget": 250, "penalty": 0.36, "groups": "auto"},
}
COLUMNS = ("fd", "fd_alt", *INDEPENDENT)


def describe(name: str) -> str:
    s = SETTINGS[name]
    groups = f"groups {s['groups']}" if s["groups"] else "one vector"
    return f"{name}: {s['method']}, {groups}, budget {s['budget']}, penalty {s['penalty']:g}"


def run_setting(out: Path, run: Path, seed: int, name: str) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "run").exists():
        (out / "run").symlink_to(run.resolve())  # run_demo skips training when it exists
    results = run_demo(DemoConfig(seed=seed, **SETTINGS[name]), out)
    ratios = results["lcsc_vs_ema_star"]
    return {
        "ratio": {m: float(np.mean(ratios[m])) for m in COLUMNS},
        "median_independent": results["independent_ratios"]["median"],
        "seconds": results["wall_time_s"],
        "evaluations": results["evaluations"],
    }


def run_seed(out: Path, seed: int, names: list[str]) -> None:
    run = out / f"seed{seed}" / "run"
    path = out / f"results-seed{seed}.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    if "train_seconds" not in results:
        print(f"training seed {seed}", flush=True)
        t0 = time.perf_counter()
        train_run(DemoConfig(seed=seed), run)
        results["train_seconds"] = time.perf_counter() - t0
        write_json(path, results)
    for name in names:
        if name in results:
            continue
        print(f"{describe(name)}, seed {seed} ...", flush=True)
        results[name] = run_setting(out / f"seed{seed}" / name, run, seed, name)
        write_json(path, results)


def table(caches: list[dict[str, Any]], names: list[str]) -> str:
    def cell(values: list[float]) -> str:
        return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if values else "not run"

    head = " | ".join(COLUMNS)
    lines = [
        f"| setting | {head} | median indep. | demo time / A's | n |",
        "|---" * (len(COLUMNS) + 4) + "|",
    ]
    first = names[0]
    for name in names:
        rows = [(c, c[name]) for c in caches if name in c]
        cells = [cell([r["ratio"][m] for _, r in rows]) for m in COLUMNS]
        median = cell([r["median_independent"] for _, r in rows])
        timed = [
            (c["train_seconds"] + r["seconds"]) / (c["train_seconds"] + c[first]["seconds"])
            for c, r in rows
            if first in c
        ]
        lines.append(
            f"| {describe(name)} | {' | '.join(cells)} | {median} | {cell(timed)} | {len(rows)} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/demo-defaults"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--table", action="store_true", help="only print the table of the cache")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not args.table:
        for seed in args.seeds:
            run_seed(args.out, seed, args.settings)
    caches = [json.loads(p.read_text()) for p in sorted(args.out.glob("results-seed*.json"))]
    print(table(caches, args.settings))


if __name__ == "__main__":
    main()
