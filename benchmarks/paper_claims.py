"""The paper's main claims at digits scale, on held-out noise, next to EMA*.

(a) LCSC vs EMA* at the end of training for CT, CD and DM, plus one well-converged CT run
    (long training, low learning rate, window in the converged stage);
(b) LCSC at 1/4 of the CT training iterations vs EMA* after the full run (training cost);
(c) DM: LCSC searched and evaluated at a lower NFE vs EMA* at the higher NFE (sampling cost).

Every model is scored on held-out noise (several seeds) against the held-out test split, in the
search's feature space and in the transfer spaces (pixels, random features, PCA, a scikit-learn
MLP; see lcsc.reference.digits.evaluation), next to the real-vs-real noise floor. Each
training seed is searched with every search seed of ``--search-offsets`` (search seed = training
seed + offset; the held-out noise seeds start at the search seed, so EMA* and LCSC of one
(training, search) pair are compared on the same noise). For the consistency-model rows the
same EMA* and LCSC (chosen at 1 step) are also sampled with 2 and 3 steps on the same noise
(the paper's CD claim: LCSC at 1 step beats the base model at 2 steps).

Every (claim, training seed, search seed) result is cached in OUT/results_v3.json as soon as it
exists, so an interrupted run continues where it stopped; the file records the protocol
(iterations, budget, sample counts) and refuses a rerun with another. Prints markdown tables:
the claims (ratio with error bars over seed pairs and over held-out noise, paired wins, floor,
median of the independent spaces, verdict), the transfer table, and the step table.

    python benchmarks/paper_claims.py --out runs/claims [--seeds 0 1 2] [--search-offsets 0 100]
        [--long 10000 --path 0]  # the docs' run; with --budget 300 --held 1000 its half budget
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
from lcsc.reference.digits.evaluation import INDEPENDENT, HeldOutEvaluator, SampleScorer
from lcsc.reference.digits.experiment import EMA_STAR, LCSC, Comparison, ExperimentConfig, compare
from lcsc.reference.digits.findings import path_correlations
from lcsc.reference.generative.networks import ModelConfig
from lcsc.reference.generative.training import TrainConfig, train
from lcsc.trajectory import Trajectory

WINDOW = 200  # checkpoints in the search window
EVERY = 20  # iterations between checkpoints
STEPS = (2, 3)  # consistency-model steps beside the searched 1
# protocol field -> its flag's attribute
SCALE_FLAGS = {k: k for k in ("iters", "long", "budget", "search", "held", "path")}
SCALE_FLAGS["seeds"] = "noise_seeds"


def scale(args: argparse.Namespace) -> dict[str, int]:
    """The protocol: the preset (``--quick`` or the full one) with any flag given on top."""
    if args.quick:
        s = {"iters": 1200, "long": 2400, "budget": 60, "search": 300, "held": 500, "seeds": 2}
    else:
        s = {"iters": 6000, "long": 16000, "budget": 600, "search": 1000, "held": 2000, "seeds": 3}
    s["path"] = 6
    given = {k: getattr(args, a) for k, a in SCALE_FLAGS.items()}
    return s | {k: v for k, v in given.items() if v is not None}


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
    """What the tables need from one comparison: held-out means, stds and per-noise-seed values
    by model id, the noise floor, and the path correlations of the Goodhart curve (if any)."""
    held = {m.id: c.held_out[m.id] for m in (EMA_STAR, LCSC)}
    path = (
        path_correlations([p.search_score for p in c.path], [p.held_out for p in c.path])
        if len(c.path) > 1
        else None
    )
    return {
        "mean": {k: h.mean for k, h in held.items()},
        "std": {k: h.std for k, h in held.items()},
        "values": {k: list(h.values) for k, h in held.items()},
        "floor": c.floor,
        "path_correlation": path,
        "evaluation": c.evaluation,
    }


def more_steps(c: Comparison, config: ExperimentConfig) -> dict[str, dict[str, list[float]]]:
    """Held-out FD per noise seed of the same EMA* and LCSC (chosen at 1 step) sampled with
    each of :data:`STEPS` consistency steps, on the comparison's held-out noise."""
    traj, scorer = c.trajectory, SampleScorer(c.trajectory.metadata)
    states = {
        EMA_STAR.id: traj.combine(c.ema_star.coefficients),
        LCSC.id: traj.combine(c.lcsc.best_coefficients),
    }
    out = {}
    for k in STEPS:
        evaluate = HeldOutEvaluator(
            traj.metadata, config.held_out_samples, config.noise_seeds, "cm", k, scorer=scorer
        )
        out[str(k)] = {m: [v["fd"] for v in evaluate(state).values] for m, state in states.items()}
    return out


def trainers(root: Path, seed: int, s: dict[str, int]) -> dict[str, Callable[[], Path]]:
    """The runs of training seed ``seed`` under ``root`` by name, each trained (once, cached)
    when first asked for (CD distils the same seed's DM)."""
    runs = {
        "ct": lambda: ensure_run(root / "ct", "ct", seed, s["iters"]),
        "dm": lambda: ensure_run(root / "dm", "dm", seed, s["iters"]),
        "cd": lambda: ensure_run(
            root / "cd", "cd", seed, s["iters"] * 2 // 3, teacher=runs["dm"]()
        ),
        "ct-long": lambda: ensure_run(root / "ct-long", "ct", seed, s["long"], lr=2e-4),
    }
    return runs


def claims(s: dict[str, int]) -> list[tuple[str, str, str, Callable[[Path], Trajectory], dict]]:
    """Every claim: (key, run name, search name, the run's searched checkpoints, settings)."""

    def quarter(run: Path) -> Trajectory:
        return Trajectory.open(run / "trajectory").select(start=1, stop=s["iters"] // 4)

    dpm = {"sampler": "dpmpp"}
    return [
        ("a/ct", "ct", "ct", window, {"steps": True}),
        ("a/cd", "cd", "cd", window, {"steps": True}),
        ("a/dm", "dm", "dm", window, {"search_nfe": 9, **dpm}),
        ("a/ct-converged", "ct-long", "ct-long", window, {}),
        ("b/ct-quarter", "ct", "ct-quarter", quarter, {}),
        ("c/dm-nfe5", "dm", "dm-nfe5", window, {"search_nfe": 5, **dpm}),
    ]


def run_seed(
    record: Callable[..., None], root: Path, seed: int, search: int, s: dict[str, int]
) -> None:
    """Record every claim's comparison for training seed ``seed`` with search seed ``search``
    (its search noise and held-out noise seeds follow it); each run is trained (once, cached)
    when a claim first needs it."""
    runs = trainers(root, seed, s)
    for claim, run, name, view, kwargs in claims(s):
        work = root / f"search-{name}" if search == seed else root / f"search-{name}-s{search}"
        record(f"{claim}/{seed}/search{search}", runs[run], work, view, seed=search, **kwargs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/claims"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    ap.add_argument(
        "--search-offsets",
        type=int,
        nargs="+",
        default=[0, 100],
        help="search seed = training seed + offset, one search per offset",
    )
    ap.add_argument("--quick", action="store_true", help="tiny sizes, to check the script")
    ap.add_argument("--iters", type=int, help="training iterations (CD: 2/3 of it)")
    ap.add_argument("--long", type=int, help="iterations of the converged CT run")
    ap.add_argument("--budget", type=int, help="search evaluations")
    ap.add_argument("--search", type=int, help="search samples")
    ap.add_argument("--held", type=int, help="held-out samples per noise seed")
    ap.add_argument("--seeds-held", dest="noise_seeds", type=int, help="held-out noise seeds")
    ap.add_argument("--path", type=int, help="Goodhart path points (0: none)")
    ap.add_argument("--only", nargs="+", help="claims to run (e.g. a/ct); default all")
    ap.add_argument("--report", action="store_true", help="print the cache's tables only")
    ap.add_argument("--plot", type=Path, help="write the CT / CD steps plot here")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    s = scale(args)
    path = args.out / "results_v3.json"  # v2: one search seed, no per-noise-seed values
    cache = json.loads(path.read_text()) if path.is_file() else {"scale": s, "results": {}}
    if cache["scale"] != s:
        raise SystemExit(f"{path}: written with protocol {cache['scale']}, not {s}")
    results: dict[str, dict] = cache["results"]

    def record(
        key: str,
        train_run: Callable[[], Path],
        workdir: Path,
        view: Callable[[Path], Trajectory],
        steps: bool = False,
        **kwargs,
    ) -> None:
        claim = key.rsplit("/", 2)[0]
        if path.is_file():  # another process (other seeds) may have written meanwhile
            results.update(json.loads(path.read_text())["results"] | results)
        if key in results or args.report or (args.only and claim not in args.only):
            return
        run = train_run()
        t0 = time.perf_counter()
        print(f"{key} ...", flush=True)
        config = ExperimentConfig(
            budget=s["budget"],
            search_samples=s["search"],
            held_out_samples=s["held"],
            held_out_seeds=s["seeds"],
            path_points=s["path"],
            **kwargs,
        )
        c = compare(run, workdir, config, trajectory=view(run))
        results[key] = summary(c) | ({"steps": more_steps(c, config)} if steps else {})
        results[key]["seconds"] = time.perf_counter() - t0
        if path.is_file():  # keep what another process wrote meanwhile
            results.update(json.loads(path.read_text())["results"] | {key: results[key]})
        write_json(path, cache)
        print(f"{key}: {results[key]['seconds']:.0f} s", flush=True)

    pairs = [(seed, seed + o) for o in args.search_offsets for seed in args.seeds]
    if not args.report:
        for seed, search in pairs:  # every row for one search seed first, then the next
            run_seed(record, args.out / f"seed{seed}", seed, search, s)
    print(table(results, pairs))
    print()
    print(transfer_table(results, pairs))
    print()
    print(steps_table(results, pairs))
    if args.plot:
        plot_steps(results, pairs, args.plot)


ROWS = [
    ("(a) CT, end of training", "a/ct", "a/ct"),
    ("(a) CD, end of training", "a/cd", "a/cd"),
    ("(a) DM, end of training (DPM-Solver++ NFE 9)", "a/dm", "a/dm"),
    ("(a) CT, converged (long, lr 2e-4)", "a/ct-converged", "a/ct-converged"),
    ("(b) LCSC at 1/4 of CT training vs EMA* full", "a/ct", "b/ct-quarter"),
    ("(c) DM: LCSC at NFE 5 vs EMA* at NFE 9", "a/dm", "c/dm-nfe5"),
]
TRANSFER = ("fd_alt", *INDEPENDENT)


Pair = tuple[int, int]  # (training seed, search seed)


def _noise(results: dict, k_ema: str, k_lcsc: str, pair: Pair, metric: str):
    """EMA*'s and LCSC's held-out values per noise seed for one (training, search) pair, both
    on the same held-out noise; None where either is not run."""
    suffix = f"{pair[0]}/search{pair[1]}"
    a, b = results.get(f"{k_lcsc}/{suffix}"), results.get(f"{k_ema}/{suffix}")
    if a is None or b is None:
        return None
    ema = np.array([v[metric] for v in b["values"][EMA_STAR.id]])
    return ema, np.array([v[metric] for v in a["values"][LCSC.id]])


def _ratios(results: dict, k_ema: str, k_lcsc: str, pairs: list[Pair], metric: str) -> list[float]:
    """LCSC / EMA* per (training, search) pair, from the held-out means of that pair."""
    found = [_noise(results, k_ema, k_lcsc, p, metric) for p in pairs]
    return [float(m.mean() / e.mean()) for e, m in (f for f in found if f is not None)]


def _stat(v: list[float], digits: str = ".3g") -> str:
    if not v:
        return "not run"
    spread = f" ± {np.std(v, ddof=1):.2g}" if len(v) > 1 else ""
    return f"{np.mean(v):{digits}}{spread} (n={len(v)})"


def _below_one(v: list[float]) -> bool:
    """Whether the mean of ``v`` is below 1 by more than two standard errors."""
    return len(v) > 1 and np.mean(v) + 2 * np.std(v, ddof=1) / np.sqrt(len(v)) < 1


def verdict(ratios: list[float], independent: list[float]) -> str:
    """Reproduced: LCSC / EMA* below 1 (mean + 2 standard errors over the seed pairs) in the
    search's space and in the median of the independent spaces; "search space only" where
    only the first holds."""
    if not _below_one(ratios):
        return "not reproduced"
    return "reproduced" if _below_one(independent) else "search space only"


def _medians(results: dict, k_ema: str, k_lcsc: str, pairs: list[Pair]) -> list[float]:
    """Per pair: the median over the independent spaces of LCSC / EMA*."""
    per_space = [_ratios(results, k_ema, k_lcsc, pairs, m) for m in INDEPENDENT]
    return list(np.median(np.array(per_space), axis=0)) if all(per_space) else []


def table(results: dict[str, dict], pairs: list[Pair]) -> str:
    """The claims in the search's feature space: means over (training, search) pairs, the
    ratio's spread over pairs and over held-out noise, paired wins, the floor, the median of
    the independent spaces and the verdict."""
    lines = [
        "| claim | EMA* held-out FD | LCSC held-out FD | LCSC / EMA* (± over seed pairs) |"
        " ± over held-out noise | paired wins (LCSC < EMA*, same noise) | noise floor |"
        " median of independent spaces (LCSC / EMA*) | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, k1, k2 in ROWS:
        found = [f for f in (_noise(results, k1, k2, p, "fd") for p in pairs) if f is not None]
        if not found:
            lines.append(f"| {label} | not run |" + " |" * 7)
            continue
        ratios = _ratios(results, k1, k2, pairs, "fd")
        noise = np.mean([np.std(m / e, ddof=1) for e, m in found])
        wins = sum(int((m < e).sum()) for e, m in found)
        total = sum(len(e) for e, _ in found)
        floor = _floor(results, k1)
        medians = _medians(results, k1, k2, pairs)
        lines.append(
            f"| {label} | {_stat([e.mean() for e, _ in found])} |"
            f" {_stat([m.mean() for _, m in found])} | {_stat(ratios, '.2f')} | ± {noise:.2f} |"
            f" {wins}/{total} | {floor:.3f} | {_stat(medians, '.2f')} |"
            f" {verdict(ratios, medians)} |"
        )
    return "\n".join(lines)


def transfer_table(results: dict[str, dict], pairs: list[Pair]) -> str:
    """LCSC / EMA* held-out FD in the validation space and the four independent spaces
    (below 1: LCSC is better), their median, and LCSC / EMA* classifier confidence."""
    head = " | ".join(TRANSFER)
    lines = [
        f"| claim | {head} | median of independent | confidence |",
        "|---" * (len(TRANSFER) + 3) + "|",
    ]
    for label, k1, k2 in ROWS:
        cells = [_stat(_ratios(results, k1, k2, pairs, m), ".2f") for m in TRANSFER]
        medians = _stat(_medians(results, k1, k2, pairs), ".2f")
        confidence = _stat(_ratios(results, k1, k2, pairs, "confidence"), ".3f")
        lines.append(f"| {label} | {' | '.join(cells)} | {medians} | {confidence} |")
    return "\n".join(lines)


def _floor(results: dict[str, dict], key: str) -> float:
    """The noise floor (FD main) of row ``key`` (the same for every seed: real vs real)."""
    return results[next(k for k in results if k.startswith(key + "/"))]["floor"]["fd"]


def _by_steps(results: dict[str, dict], key: str, pairs: list[Pair]) -> list[dict]:
    """Per (training, search) pair of row ``key``: {steps: {model: FD per noise seed}}."""
    runs = [results[k] for k in (f"{key}/{a}/search{b}" for a, b in pairs) if k in results]
    one = [{"1": {m: [v["fd"] for v in r["values"][m]] for m in r["values"]}} for r in runs]
    return [o | r["steps"] for o, r in zip(one, runs, strict=True)]


def plot_steps(results: dict[str, dict], pairs: list[Pair], path: Path) -> None:
    """Held-out FD against consistency steps, EMA* and LCSC (chosen at 1 step), CT and CD."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = (1, *STEPS)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.4), sharey=True)
    for ax, (label, key) in zip(axes, (("CT", "a/ct"), ("CD", "a/cd")), strict=True):
        runs = _by_steps(results, key, pairs)
        for model, name in ((EMA_STAR.id, "EMA*"), (LCSC.id, "LCSC (searched at 1 step)")):
            v = np.array([[np.mean(r[str(k)][model]) for k in cols] for r in runs])
            ax.errorbar(cols, v.mean(0), v.std(0, ddof=1), marker="o", capsize=3, label=name)
        ax.axhline(_floor(results, key), color="grey", ls="--", label="noise floor")
        ax.set_xticks(cols)
        ax.set_xlabel("consistency sampling steps")
        ax.set_title(f"{label} (n={len(runs)} seed pairs)")
    axes[0].set_ylabel("held-out FD (test split)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def steps_table(results: dict[str, dict], pairs: list[Pair]) -> str:
    """Consistency models: held-out FD of EMA* and LCSC (both chosen at 1 step) at 1, 2 and 3
    steps, and the paper's CD claim, LCSC at 1 step against EMA* at 2, paired on the noise."""
    cols = ("1", *map(str, STEPS))
    head = " | ".join(f"{m} {k} step{'s' * (k != '1')}" for m in ("EMA*", "LCSC") for k in cols)
    lines = [
        f"| row | {head} | LCSC 1 step / EMA* 2 steps | paired wins | noise floor | verdict |",
        "|---" * (2 * len(cols) + 5) + "|",
    ]
    for label, key in (("CT", "a/ct"), ("CD", "a/cd")):
        by_steps = _by_steps(results, key, pairs)
        if not by_steps:
            continue
        cells = [
            _stat([np.mean(r[k][m]) for r in by_steps])
            for m in (EMA_STAR.id, LCSC.id)
            for k in cols
        ]
        one = [np.asarray(r["1"][LCSC.id]) for r in by_steps]
        two = [np.asarray(r["2"][EMA_STAR.id]) for r in by_steps]
        ratios = [float(a.mean() / b.mean()) for a, b in zip(one, two, strict=True)]
        wins = sum(int((a < b).sum()) for a, b in zip(one, two, strict=True))
        claim = "reproduced" if _below_one(ratios) else "not reproduced"
        lines.append(
            f"| {label} | {' | '.join(cells)} | {_stat(ratios, '.2f')} |"
            f" {wins}/{sum(map(len, two))} | {_floor(results, key):.3f} | {claim} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
