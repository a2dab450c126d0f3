"""Evaluations-to-target of Algorithm 1 and the (grouped) subspace search on the paper-claims
rows: the measurement of benchmarks/search_budget.py's demo, on the runs and objectives of
benchmarks/paper_claims.py.

Each row (``a/ct``, ``a/cd``, ``a/dm``, ``a/ct-converged``) is searched as paper_claims.py
searches it: the last 200 checkpoints, FD in ``main`` on 1000 samples of search noise (search
seed = training seed), at the row's sampler and NFE (DM: DPM-Solver++ at NFE 9), from the EMA
grid. Methods: ``alg1`` (Algorithm 1, unpenalised), ``subspace/auto`` (the subspace search with
one coefficient vector per top-level module, what ``lcsc search --groups auto`` picks) and
``subspace`` (one vector for all); ``subspace-d8/auto`` is the grouped search with 8 directions
per group instead of 24. For every new best-so-far candidate: FD in ``main`` on
held-out noise (1000 samples from each of the 3 held-out noise seeds, the mean of their FDs)
against the test split, relative to EMA*'s (EMA* chosen on search noise). At 250 and 1000
evaluations the best-so-far is also scored by lcsc.reference.digits.evaluation.HeldOutEvaluator
(every space, the same 3 held-out noise seeds).

The runs come from ``--runs`` (paper_claims.py's layout: ``seedN/ct`` ...; trained there by
paper_claims.ensure_run when missing). Alg. 1's search there (``seedN/search-ROW``, the same
search at a smaller budget) is copied into OUT and resumed, so its evaluations are not redone.
Every finished (row, method, seed) is cached in OUT/results.json, and every search resumes
from its workdir in OUT.

    python benchmarks/claims_budget.py --runs runs/claims --out runs/claims_budget \\
        [--rows a/ct a/cd a/dm] [--methods alg1 subspace/auto] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark scripts

from paper_claims import claims, trainers  # noqa: E402
from search_budget import _best_so_far, _first_reach, _held_out_curve  # noqa: E402

from lcsc import search  # noqa: E402
from lcsc.atomic import write_json  # noqa: E402
from lcsc.ema import default_ema_rates  # noqa: E402
from lcsc.metrics import FeatureStats  # noqa: E402
from lcsc.objectives.sample_fd import SampleFD  # noqa: E402
from lcsc.reference.digits.evaluation import INDEPENDENT, HeldOutEvaluator  # noqa: E402
from lcsc.reference.digits.experiment import ExperimentConfig, _main_objective  # noqa: E402
from lcsc.search import EvolutionaryConfig, SearchConfig, baselines  # noqa: E402
from lcsc.search.subspace import SubspaceConfig  # noqa: E402
from lcsc.trajectory.groups import combine_groups, module_patterns, resolve_groups  # noqa: E402

ROWS = {
    "a/ct": "(a) CT, end of training",
    "a/cd": "(a) CD, end of training",
    "a/dm": "(a) DM, end of training (DPM-Solver++ NFE 9)",
    "a/ct-converged": "(a) CT, converged (long, lr 2e-4)",
}
METHODS: dict[str, tuple[SearchConfig, bool]] = {  # name -> (config, grouped by module)
    "alg1": (EvolutionaryConfig(), False),
    "subspace/auto": (SubspaceConfig(), True),
    "subspace": (SubspaceConfig(), False),
    "subspace-d8/auto": (SubspaceConfig(dims=8), True),  # 6 groups x 8 numbers
}
BUDGETS = (100, 250, 500, 1000)
ENDPOINTS = (250, 1000)  # best-so-far scored in every space, on every held-out noise seed


def reads(points: tuple[int, ...], budget: int) -> list[int]:
    """The evaluation counts of ``points`` within ``budget`` (``budget`` alone if none is)."""
    return [b for b in points if b <= budget] or [budget]


class Row:
    """One row for one training seed: its window, search objective, EMA*, held-out scorers."""

    def __init__(self, runs: Path, key: str, seed: int, s: dict[str, int]) -> None:
        _, run, self.name, view, kwargs = next(c for c in claims(s) if c[0] == key)
        kwargs = {k: v for k, v in kwargs.items() if k != "steps"}  # paper_claims' extra steps
        self.run = trainers(runs / f"seed{seed}", seed, s)[run]()
        self.traj = view(self.run)
        self.config = ExperimentConfig(
            seed=seed,
            search_samples=s["search"],
            held_out_samples=s["held"],
            held_out_seeds=s["seeds"],
            path_points=0,
            **kwargs,
        )
        self.objective = _main_objective(self.traj.metadata, self.config)
        self.rates = default_ema_rates(self.traj.steps)
        self.evaluate = HeldOutEvaluator(
            self.traj.metadata,
            s["held"],
            self.config.noise_seeds,
            self.config.sampler,
            self.config.search_nfe,
        )
        scorer = self.evaluate.scorer  # FD in main against the test split, per held-out noise
        test = FeatureStats.from_features(scorer.real_main)
        self.held_fds = [SampleFD(g, scorer.main, test) for g in self.evaluate.generators]

    def held_fd(self, state: dict[str, torch.Tensor]) -> float:
        """FD in main on held-out noise against the test split, mean over the noise seeds."""
        return float(np.mean([fd(state) for fd in self.held_fds]))

    def combine(self, a: np.ndarray, groups) -> dict[str, torch.Tensor]:
        return combine_groups(self.traj, groups, a)

    def ema_star(self) -> dict:
        star = baselines.ema_star(self.traj, self.objective, self.rates)
        state = self.traj.combine(star.coefficients)
        return {
            "rate": star.label,
            "held_fd": self.held_fd(state),
            "values": list(self.evaluate(state).values),
        }

    def search(self, method: str, budget: int, workdir: Path, copy_from: Path | None) -> dict:
        """One search to ``budget``: its held-out curve, endpoint scores and timing."""
        config, grouped = METHODS[method]
        keys = self.traj.keys
        groups = resolve_groups(keys, module_patterns(keys)) if grouped else None
        if copy_from is not None and not workdir.exists() and (copy_from / "search.json").is_file():
            shutil.copytree(copy_from, workdir)  # paper_claims' search of this row, resumed
            n = len((workdir / "history.jsonl").read_text().splitlines())
            (workdir / "copied.txt").write_text(str(n))  # evaluations made by paper_claims
        copied = workdir / "copied.txt"
        copied = int(copied.read_text()) if copied.is_file() else 0
        replayed = [0]
        start = time.perf_counter()
        result = search.run(
            self.traj,
            self.objective,
            config,
            budget=budget,
            seed=self.config.seed,
            workdir=workdir,
            init=search.ema_init(self.traj.steps, self.rates),
            groups=groups,
            objective_identity={"digits_fd": ["main"], "samples": self.config.search_samples},
            on_resume=lambda n: replayed.__setitem__(0, n),
            threads=1,
        )
        search_s = time.perf_counter() - start
        result = replace(result, history=result.history[:budget])  # a longer one is replayed
        made_here = [e.wall_time_s for e in result.history[copied:]]  # timed in this benchmark
        held_start = time.perf_counter()
        curve = _held_out_curve(result, lambda a: self.held_fd(self.combine(a, groups)))
        held_s = time.perf_counter() - held_start
        ends = {}
        for b in reads(ENDPOINTS, budget):
            state = self.combine(_best_so_far(result, b), groups)
            ends[str(b)] = list(self.evaluate(state).values)
        return {
            "curve": curve,
            "endpoints": ends,
            "groups": None if groups is None else len(groups),
            "replayed": replayed[0],
            "evaluation_s_median": float(np.median(made_here)) if made_here else None,
            "search_s": search_s,
            "held_curve_s": held_s,
        }


def run(args: argparse.Namespace, s: dict[str, int]) -> dict:
    path = args.out / "results.json"
    cache = json.loads(path.read_text()) if path.is_file() else {"protocol": s, "results": {}}
    if cache["protocol"] != s:
        raise SystemExit(f"{path}: written with protocol {cache['protocol']}, not {s}")
    results, stars = cache["results"], cache.setdefault("ema_star", {})
    for seed in args.seeds:
        for key in args.rows:
            todo = [m for m in args.methods if f"{key}/{m}/{seed}" not in results]
            if not todo and f"{key}/{seed}" in stars:
                continue
            row = Row(args.runs, key, seed, s)
            if f"{key}/{seed}" not in stars:
                stars[f"{key}/{seed}"] = row.ema_star()
                write_json(path, cache)
            for method in todo:
                print(f"{key} {method} seed {seed} ...", flush=True)
                workdir = args.out / f"seed{seed}" / f"search-{row.name}-{method.replace('/', '+')}"
                copy = (
                    args.runs / f"seed{seed}" / f"search-{row.name}" if method == "alg1" else None
                )
                r = row.search(method, args.budget, workdir, copy)
                r["curve"] = [v / stars[f"{key}/{seed}"]["held_fd"] for v in r["curve"]]
                results[f"{key}/{method}/{seed}"] = r
                write_json(path, cache)
                print(
                    f"  @end {r['curve'][-1]:.3f} of EMA*; search {r['search_s']:.0f} s"
                    f" ({r['replayed']} replayed), held-out curve {r['held_curve_s']:.0f} s",
                    flush=True,
                )
    return cache


def _ms(v: list[float], digits: str = ".3f") -> str:
    if not v:
        return ""
    return (
        f"{np.mean(v):{digits}} ± {np.std(v, ddof=1):{digits}}"
        if len(v) > 1
        else f"{v[0]:{digits}}"
    )


def _ratio(values: list[dict], star: list[dict], metric: str) -> float:
    """LCSC / EMA*: their means over the held-out noise seeds (the same noise)."""
    return float(np.mean([v[metric] for v in values]) / np.mean([v[metric] for v in star]))


def tables(cache: dict, budget: int) -> str:
    results, stars = cache["results"], cache["ema_star"]
    out = []
    for key, label in ROWS.items():
        by_method: dict[str, dict[int, dict]] = {}
        for k, r in results.items():  # keys: ROW/METHOD/SEED
            if k.startswith(key + "/"):
                method, seed = k[len(key) + 1 :].rsplit("/", 1)
                by_method.setdefault(method, {})[int(seed)] = r
        by_method = {m: by_method[m] for m in METHODS if m in by_method}
        if not by_method:
            continue
        alg1 = [np.array(r["curve"]) for r in by_method.get("alg1", {}).values()]
        target = float(np.mean([c[999] for c in alg1])) if alg1 and budget >= 1000 else None
        t = "n/a" if target is None else f"{target:.3f}"
        if target is not None and target >= 1:
            t += " (not below EMA*'s: the EMA grid meets it, the search is not needed)"
        out.append(
            f"{label}: held-out FD (main, mean of 3 held-out noise seeds) / EMA*'s, best-so-far,"
            f" mean ± std over seeds; target = Alg. 1 @1000 = {t}\n"
        )
        cols = reads(BUDGETS, budget)
        out.append(
            "| method | seeds | " + " | ".join(f"@{b}" for b in cols) + " | evals to target |"
        )
        out.append("|---|---|" + "---|" * (len(cols) + 1))
        for method, runs in by_method.items():
            curves = [np.array(runs[s]["curve"]) for s in sorted(runs)]
            cells = [_ms([c[b - 1] for c in curves]) for b in cols]
            reach = ""
            if target is not None:  # the seeds' mean curve, then each seed's own
                each = ", ".join(_first_reach([c], target) for c in curves)
                reach = f"{_first_reach(curves, target)} (seeds {each})"
            seeds = ",".join(map(str, sorted(runs)))
            out.append(f"| {method} | {seeds} | " + " | ".join(cells) + f" | {reach} |")
        out.append(
            "\nthe same searches' best-so-far, full held-out evaluation (3 held-out noise seeds),"
            " LCSC / EMA*, mean ± std over seeds:\n"
        )
        out.append("| method @evals | fd (main) | fd_alt | median of independent spaces |")
        out.append("|---|---|---|---|")
        for method, runs in by_method.items():
            for b in reads(ENDPOINTS, budget):
                cells = {"fd": [], "fd_alt": [], "independent": []}
                for seed, r in sorted(runs.items()):
                    star, v = stars[f"{key}/{seed}"]["values"], r["endpoints"][str(b)]
                    for m in ("fd", "fd_alt"):
                        cells[m].append(_ratio(v, star, m))
                    cells["independent"].append(
                        float(np.median([_ratio(v, star, m) for m in INDEPENDENT]))
                    )
                out.append(
                    f"| {method} @{b} | " + " | ".join(_ms(c, ".2f") for c in cells.values()) + " |"
                )
        times = {  # each search's median time of the evaluations it made (not replayed)
            m: [r["evaluation_s_median"] for r in runs.values() if r["evaluation_s_median"]]
            for m, runs in by_method.items()
        }
        times = {m: float(np.median(t)) for m, t in times.items() if t}
        if "alg1" in times:
            cells = ", ".join(f"{m} {t / times['alg1']:.2f}" for m, t in times.items())
            out.append(f"\nmedian time per evaluation relative to alg1: {cells}\n")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=Path("runs/claims"), help="paper_claims' --out")
    ap.add_argument("--out", type=Path, default=Path("runs/claims_budget"))
    ap.add_argument("--rows", nargs="+", choices=list(ROWS), default=["a/ct", "a/cd", "a/dm"])
    ap.add_argument(
        "--methods", nargs="+", choices=list(METHODS), default=["alg1", "subspace/auto"]
    )
    ap.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="training = search seed"
    )
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--iters", type=int, default=6000, help="training iterations (CD: 2/3)")
    ap.add_argument("--long", type=int, default=10000, help="iterations of the converged CT run")
    ap.add_argument("--search", type=int, default=1000, help="search samples")
    ap.add_argument("--held", type=int, default=1000, help="held-out samples per noise seed")
    ap.add_argument("--report", action="store_true", help="print the cache's tables only")
    args = ap.parse_args()
    torch.set_num_threads(1)
    s = {"iters": args.iters, "long": args.long, "search": args.search, "held": args.held}
    s |= {"seeds": 3, "budget": args.budget}
    path = args.out / "results.json"
    if args.report:
        cache = json.loads(path.read_text()) if path.is_file() else {"results": {}, "ema_star": {}}
    else:
        args.out.mkdir(parents=True, exist_ok=True)
        cache = run(args, s)
    print(tables(cache, args.budget))


if __name__ == "__main__":
    main()
