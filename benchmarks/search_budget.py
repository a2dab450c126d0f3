"""Evaluations-to-target of the search methods, on a synthetic trajectory and on the demo.

``synthetic``: a quadratic loss and a simulated SGD run (noise proportional to the curvature,
slow modes still drifting, fast modes noisy), so the best combination is known in closed form.
The score is the loss of the combined weights relative to the best EMA of the default grid;
target: below 0.6 in 300 evaluations.

``demo``: the demo's CT run (trained once, reused by every search), searched with FD on 2000
samples of search noise; for every new best-so-far candidate, FD on 5000 samples of held-out
noise, relative to EMA*'s held-out FD (EMA* chosen on search noise). Target: Algorithm 1's
held-out FD after 1000 evaluations (mean over seeds), reached within 250. Every finished
(method, seed) is cached in OUT/results.jsonl, and every search resumes from its workdir.
``NAME@N`` (demo) searches with N samples per score instead of 2000 and counts cost in samples:
one evaluation's worth is 2000 samples, so a budget of B buys B * 2000 / N evaluations and the
table reads each curve at equal sample counts (multi-fidelity: cheaper, noisier scores).
``NAME@N1:E,N2`` switches from N1 to N2 samples once E evaluations' worth are spent, at the end
of a batch (a CMA population, a generation), and scores the best-so-far again with N2 samples
(counted); such a schedule drives the optimizer by ask/tell here, in memory (it restarts if
killed).

``--groups NAME`` searches one coefficient vector per parameter group of the demo's model
(``GROUPINGS``, the MLP's, or ``auto``: what ``lcsc search --groups auto`` picks, for any
network; the method is recorded as ``METHOD/NAME``) and also scores the best-so-far at 250 and
500 evaluations in the second feature space (``alt``, held-out noise).

``--model unet``: the same CT run with the reference U-Net instead of the MLP; its run, searches
and results live in ``OUT/unet`` (the MLP's stay in ``OUT``, so their caches stay valid).

    python benchmarks/search_budget.py synthetic [--seeds 0 1 2]
    python benchmarks/search_budget.py demo --out runs/budget [--methods alg1 subspace@1000]
    python benchmarks/search_budget.py demo --budget 500 --methods subspace --groups auto
    python benchmarks/search_budget.py demo --model unet --budget 500 --methods subspace \
        --groups auto
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from lcsc import search
from lcsc.ema import default_ema_rates
from lcsc.search import CMAESConfig, EvolutionaryConfig, SearchConfig
from lcsc.search.subspace import SubspaceConfig
from lcsc.threads import default_threads

SEARCH_SAMPLES = 2000  # samples per demo search score: one evaluation's worth

METHODS: dict[str, SearchConfig] = {
    "alg1": EvolutionaryConfig(),
    "cmaes": CMAESConfig(),
    "cmaes-s1": CMAESConfig(sigma_scale=1.0),
    "cmaes-s0.5": CMAESConfig(sigma_scale=0.5),
    "subspace": SubspaceConfig(),  # the default: dims 24, sigma_scale 4, step_damping 0.3
    "subspace-d16-s4": SubspaceConfig(dims=16, step_damping=1.0),
    "subspace-d16-s2": SubspaceConfig(dims=16, sigma_scale=2.0, step_damping=1.0),
    "subspace-d16-s8": SubspaceConfig(dims=16, sigma_scale=8.0, step_damping=1.0),
    "subspace-d24-s4-d1": SubspaceConfig(step_damping=1.0),
    "subspace-d24-s8": SubspaceConfig(sigma_scale=8.0),
    "hybrid-d16-s8": SubspaceConfig(dims=16, sigma_scale=8.0, step_damping=1.0, full_after=150),
    "hybrid": SubspaceConfig(full_after=150),
    "sep-cmaes": CMAESConfig(diagonal=True),
    "sep-cmaes-s1": CMAESConfig(diagonal=True, sigma_scale=1.0),
    "subspace-d24-s2": SubspaceConfig(sigma_scale=2.0, step_damping=1.0),
    "subspace-d16-ema": SubspaceConfig(basis="ema", dims=16, step_damping=1.0),
    "subspace-d12": SubspaceConfig(dims=12),
    "subspace-d48": SubspaceConfig(dims=48),
    "hybrid-600": SubspaceConfig(full_after=600),
    "subspace-p8": SubspaceConfig(popsize=8),
    "subspace-p26": SubspaceConfig(popsize=26),  # with @500:150,..: switches with the fidelity
    "subspace-d8": SubspaceConfig(dims=8),  # with 3 groups: 24 numbers, as ungrouped
}
# Parameter groups of the demo's MLP (lcsc.trajectory.groups patterns): input and time
# embedding / residual blocks / output norm and layer; or each block on its own.
GROUPINGS: dict[str, list[str]] = {
    "one": ["*"],  # one group: the ungrouped search through the grouped code path
    "blocks3": ["net.inp|net.embed", "net.blocks", "net.norm|net.out"],
    "blocks4": ["net.inp|net.embed", "net.blocks.0", "net.blocks.1", "net.norm|net.out"],
}


# ----------------------------------------------------------------------------- synthetic
def synthetic_run(seed: int, dims: int = 1000, iters: int = 20000, every: int = 50, k: int = 200):
    """Checkpoints (D, K), curvatures (D,) and steps (K,) of SGD on ``0.5 sum h (x - 0)^2``."""
    rng = np.random.default_rng(seed)
    half = dims // 2
    h = np.concatenate(  # slow modes drift through the window, fast modes are noise-dominated
        [
            np.exp(rng.uniform(np.log(1e-4), np.log(1e-3), half)),
            np.exp(rng.uniform(-4.6, -1.2, dims - half)),
        ]
    )
    x = rng.normal(0.0, 1.0, dims)
    saved = []
    for t in range(1, iters + 1):
        x = x - h * x + 0.3 * np.sqrt(h) * rng.normal(0.0, 1.0, dims)
        if t % every == 0:
            saved.append(x.copy())
    return np.stack(saved[-k:], 1), h, np.arange(iters - every * (k - 1), iters + 1, every)


def run_synthetic(args: argparse.Namespace) -> None:
    rows: dict[str, list[np.ndarray]] = {}
    optimum = []
    for seed in args.seeds:
        x, h, steps = synthetic_run(seed)
        gram = x.T @ (h[:, None] * x)

        def loss(a: np.ndarray, gram: np.ndarray = gram) -> float:
            return 0.5 * float(a @ gram @ a)

        init = search.ema_init(steps)
        ema_best = min(loss(row) for row in init)
        g_inv_1 = np.linalg.solve(gram, np.ones(len(gram)))
        optimum.append(loss(g_inv_1 / g_inv_1.sum()) / ema_best)
        for name in args.methods:
            result = search.minimize(loss, init, METHODS[name], budget=args.budget, seed=seed)
            best = np.minimum.accumulate([e.score for e in result.history]) / ema_best
            rows.setdefault(name, []).append(best)
    print(
        f"synthetic: K=200, D=1000, seeds {args.seeds}; loss / best EMA (best-so-far), mean over"
        f" seeds; the best combination reaches {np.mean(optimum):.3f}"
    )
    budgets = [b for b in (100, 250, 300, 500, 1000) if b <= args.budget]
    print("| method | " + " | ".join(f"@{b}" for b in budgets) + " | evaluations to 0.6 |")
    print("|---|" + "---|" * (len(budgets) + 1))
    for name, curves in rows.items():
        c = np.stack(curves)
        cells = " | ".join(f"{c[:, b - 1].mean():.3f}" for b in budgets)
        print(f"| {name} | {cells} | {_to_target(c, 0.6)} |")


def _to_target(curves: np.ndarray, target: float) -> str:
    """Evaluations until every seed's best-so-far is below ``target`` (per seed, then max)."""
    hits = [int(np.argmax(c <= target)) + 1 if (c <= target).any() else None for c in curves]
    if any(h is None for h in hits):
        done = sum(h is not None for h in hits)
        return f"not reached ({done}/{len(hits)} seeds)"
    return f"{max(hits)} (seeds: {', '.join(map(str, hits))})"


# ----------------------------------------------------------------------------- demo
def ensure_demo_run(out: Path, kind: str = "mlp") -> Path:
    """The demo's CT run in ``out/run``, trained once, with the reference network ``kind``."""
    from lcsc.reference.generative.networks import ModelConfig
    from lcsc.reference.generative.training import TrainConfig, train

    run = out / "run"
    if not (run / "final.safetensors").is_file():
        model = ModelConfig(kind=kind, data_shape=(1, 8, 8), parametrisation="cm")
        print(f"training the demo's CT run ({kind}, 6000 iterations)", flush=True)
        train(TrainConfig(kind="ct", model=model, iterations=6000, record_every=20, keep=200), run)
    return run


def run_demo(args: argparse.Namespace) -> None:
    from lcsc.metrics import digits_features
    from lcsc.objectives.sample_fd import SampleFD
    from lcsc.reference.digits.objective import digits_reference
    from lcsc.reference.generative.generator import FixedNoiseGenerator
    from lcsc.search import baselines
    from lcsc.trajectory import Trajectory
    from lcsc.trajectory.groups import combine_groups, module_patterns, resolve_groups

    # another network: its own run, searches and results in OUT/MODEL (the MLP's stay in OUT)
    out = Path(args.out) if args.model == "mlp" else Path(args.out) / args.model
    traj = Trajectory.open(ensure_demo_run(out, args.model) / "trajectory").select(start=1)
    md = traj.metadata
    reference = digits_reference(md, "main")

    def fd(samples: int, split: str) -> SampleFD:
        return SampleFD(
            FixedNoiseGenerator(md, samples, 0, split), digits_features("main"), reference
        )

    search_fds = {SEARCH_SAMPLES: fd(SEARCH_SAMPLES, "search")}
    held_fd = fd(5000, "held_out")
    rates = default_ema_rates(traj.steps)
    star = baselines.ema_star(traj, search_fds[SEARCH_SAMPLES], rates)
    star_held = held_fd(traj.combine(star.coefficients))
    if args.groups is None:
        groups = None
    else:  # auto: what `lcsc search --groups auto` picks, one group per top-level module
        auto = args.groups == "auto"
        groups = resolve_groups(
            traj.keys, module_patterns(traj.keys) if auto else GROUPINGS[args.groups]
        )
        alt_fd = SampleFD(  # held-out FD in the second feature space too, at two budgets
            FixedNoiseGenerator(md, 5000, 0, "held_out"),
            digits_features("alt"),
            digits_reference(md, "alt"),
        )
        star_alt = alt_fd(traj.combine(star.coefficients))

    def combine(a: np.ndarray) -> dict[str, torch.Tensor]:
        return combine_groups(traj, groups, a)

    results_path = out / "results.jsonl"
    done = {}
    if results_path.exists():
        for line in results_path.read_text().splitlines():
            r = json.loads(line)
            done[(r["method"], r["seed"])] = r
    for method in args.methods:
        config, samples, schedule = method_and_samples(method)
        if schedule and groups is not None:
            raise SystemExit(f"--methods {method}: fidelity schedules take no --groups")
        name = method if groups is None else f"{method}/{args.groups}"
        for n in [samples] + [n for _, n in schedule]:
            if n not in search_fds:
                search_fds[n] = fd(n, "search")
        for seed in args.seeds:
            if (name, seed) in done:
                continue
            start = time.perf_counter()
            if schedule:
                path = _scheduled_search(
                    traj, search_fds, config, args.budget, seed, samples, schedule, rates
                )
                held = {}  # held-out score per distinct best-so-far candidate
                for a in path:
                    if a.tobytes() not in held:
                        held[a.tobytes()] = held_fd(traj.combine(a)) / star_held
                curve = [held[a.tobytes()] for a in path]
            else:
                result = search.run(
                    traj,
                    search_fds[samples],
                    config,
                    budget=args.budget * SEARCH_SAMPLES // samples,  # the same samples in all
                    seed=seed,
                    workdir=out / "search" / f"{name.replace('/', '+')}-{seed}",
                    init=search.ema_init(traj.steps, rates),
                    groups=groups,
                )
                curve = _held_out_curve(result, lambda a: held_fd(combine(a)) / star_held)
            r = {
                "method": name,
                "seed": seed,
                "budget": args.budget,
                "samples": samples,
                "held_out_rel": curve if schedule else _per_evaluation_cost(curve, samples),
                "search_s": time.perf_counter() - start,
            }
            if groups is not None:
                r["alt_rel"] = {
                    str(b): alt_fd(combine(_best_so_far(result, b * SEARCH_SAMPLES // samples)))
                    / star_alt
                    for b in (250, 500)
                    if b <= args.budget
                }
            with results_path.open("a") as f:
                f.write(json.dumps(r) + "\n")
            done[(name, seed)] = r
            end = r["held_out_rel"][-1]
            print(f"  {name} seed {seed}: @end {end:.3f} ({r['search_s']:.0f} s)", flush=True)
    _demo_table(done, star_held, args)


def method_and_samples(name: str) -> tuple[SearchConfig, int, list[tuple[float, int]]]:
    """``NAME``, ``NAME@N`` or ``NAME@N1:E,N2``: the config, the first search samples per
    score and the schedule of switches (evaluations' worth spent, samples from then on)."""
    method, _, fidelity = name.partition("@")
    try:
        first, *rest = fidelity.split(",") if fidelity else [str(SEARCH_SAMPLES)]
        n, _, at = first.partition(":")
        samples = [int(n)] + [int(r) for r in rest]
        switches = [float(at)] if at else []
    except ValueError:
        samples, switches = [], []
    if method not in METHODS or len(switches) != len(samples) - 1 or len(samples) > 2:
        raise SystemExit(
            f"--methods: {name!r} is not NAME, NAME@N or NAME@N1:E,N2, NAME in {sorted(METHODS)}"
        )
    if any(n < 1 or SEARCH_SAMPLES % n for n in samples):
        raise SystemExit(f"--methods: {name!r}: samples must divide {SEARCH_SAMPLES}")
    return METHODS[method], samples[0], list(zip(switches, samples[1:], strict=True))


def _scheduled_search(traj, fds, config, budget, seed, samples, schedule, rates) -> list:
    """Ask/tell search whose scores switch fidelity on ``schedule``, cost counted in samples:
    the best-so-far candidate after each evaluation's worth (SEARCH_SAMPLES) of samples."""
    from lcsc.trajectory.span import SpanCombiner

    init = search.ema_init(traj.steps, rates)
    span = config.span(init)  # combine from the span's models where the method has one
    combiner = (None if span is None else SpanCombiner.build(traj, span)) or traj
    optimizer = config.make_optimizer(init, seed)
    spent, best, path = 0, (np.inf, init[0]), []  # spent in samples

    def charge(n: int) -> None:  # n more samples spent: extend the path per evaluation's worth
        nonlocal spent
        path.extend([best[1]] * ((spent + n) // SEARCH_SAMPLES - spent // SEARCH_SAMPLES))
        spent += n

    pending = list(schedule)
    while spent < budget * SEARCH_SAMPLES:
        if pending and spent >= pending[0][0] * SEARCH_SAMPLES:
            samples = pending.pop(0)[1]  # the best so far, scored again at the new fidelity
            best = (fds[samples](combiner.combine(best[1])), best[1])
            charge(samples)
        for candidate in optimizer.ask_many(1 << 30):  # the rest of the batch
            score = fds[samples](combiner.combine(candidate))
            optimizer.tell(score)
            if np.isfinite(score) and score < best[0]:
                best = (score, candidate)
            charge(samples)
    return path[:budget]


def _per_evaluation_cost(curve: list[float], samples: int) -> list[float]:
    """The held-out curve read after every evaluation's worth (SEARCH_SAMPLES) of samples."""
    step = SEARCH_SAMPLES // samples
    return curve[step - 1 :: step]


def _held_out_curve(result: search.SearchResult, held) -> list[float]:
    """Held-out score of the best-so-far candidate after each evaluation."""
    curve, best, value = [], np.inf, np.nan
    for e in result.history:
        if np.isfinite(e.score) and e.score < best:
            best, value = e.score, float(held(np.array(e.coefficients)))
        curve.append(value)
    return curve


def _best_so_far(result: search.SearchResult, budget: int) -> np.ndarray:
    """The best candidate by search score among the first ``budget`` evaluations."""
    scored = [e for e in result.history[:budget] if np.isfinite(e.score)]
    return np.array(min(scored, key=lambda e: e.score).coefficients)


def _demo_table(done: dict, star_held: float, args: argparse.Namespace) -> None:
    by_method: dict[str, list[np.ndarray]] = {}
    for (name, _), r in sorted(done.items()):
        by_method.setdefault(name, []).append(np.array(r["held_out_rel"]))
    alg1 = by_method.get("alg1")
    target = None
    if alg1 and all(len(c) >= 1000 for c in alg1):
        target = float(np.mean([c[999] for c in alg1]))
    print(
        f"demo: held-out FD / EMA*'s held-out FD ({star_held:.4f}), best-so-far, mean ± std over"
        f" seeds; target = Alg. 1 @1000 = {target if target is None else round(target, 3)}"
    )
    budgets = (100, 250, 500, 1000)
    print("| method | seeds | " + " | ".join(f"@{b}" for b in budgets) + " | evals to target |")
    print("|---|---|" + "---|" * (len(budgets) + 1))
    for name, curves in by_method.items():
        cells = []
        for b in budgets:
            vals = [c[b - 1] for c in curves if len(c) >= b]
            cells.append(f"{np.mean(vals):.3f} ± {np.std(vals):.3f}" if vals else "")
        reach = "" if target is None else _first_reach(curves, target)
        print(f"| {name} | {len(curves)} | " + " | ".join(cells) + f" | {reach} |")
    alt = [r for r in done.values() if "alt_rel" in r]
    if alt:
        print("\nthe same searches (--groups), held-out FD in the alt feature space / EMA*'s:")
        print("| method | seeds | @250 | @500 |\n|---|---|---|---|")
        for name in sorted({r["method"] for r in alt}):
            rows = [r["alt_rel"] for r in alt if r["method"] == name]
            cells = []
            for b in ("250", "500"):
                vals = [row[b] for row in rows if b in row]
                cells.append(f"{np.mean(vals):.3f} ± {np.std(vals):.3f}" if vals else "")
            print(f"| {name} | {len(rows)} | " + " | ".join(cells) + " |")


def _first_reach(curves: list[np.ndarray], target: float) -> str:
    """Evaluations until the seeds' mean best-so-far held-out score is at or below ``target``."""
    n = min(len(c) for c in curves)
    mean = np.mean([c[:n] for c in curves], axis=0)
    hit = np.flatnonzero(mean <= target)
    return str(int(hit[0]) + 1) if hit.size else f"> {n}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("which", choices=["synthetic", "demo"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=None, help="NAME or NAME@SAMPLES (demo)")
    ap.add_argument("--budget", type=int, default=None, help="300 (synthetic), 1000 (demo)")
    ap.add_argument("--out", default="runs/search_budget", help="demo: run, searches, results")
    ap.add_argument(
        "--groups",
        choices=sorted([*GROUPINGS, "auto"]),
        default=None,
        help="demo: one coefficient vector per parameter group (default: one for all)",
    )
    ap.add_argument(
        "--model",
        choices=["mlp", "unet"],
        default="mlp",
        help="demo: the reference network of the CT run (unet: run and results in OUT/unet)",
    )
    args = ap.parse_args()
    torch.set_num_threads(default_threads())
    if args.which == "synthetic":
        args.methods = args.methods or ["alg1", "cmaes", "cmaes-s0.5", "subspace"]
        unknown = sorted(set(args.methods) - set(METHODS))
        if unknown:
            raise SystemExit(f"--methods: {unknown} not in {sorted(METHODS)} (no @N here)")
        args.budget = args.budget or 300
        run_synthetic(args)
    else:
        args.methods = args.methods or ["alg1", "cmaes", "subspace"]
        for name in args.methods:
            method_and_samples(name)  # refuse a bad name before any work
        args.budget = args.budget or 1000
        run_demo(args)


if __name__ == "__main__":
    main()
