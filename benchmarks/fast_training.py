"""Faster diffusion training on digits: noise curriculum and momentum decay, measured.

Trains the EDM diffusion MLP of ``lcsc train dm`` (about 300K parameters, batch 128, Adam lr
1e-3) on sklearn's digits for ``--iterations`` iterations with four strategies -- baseline,
noise curriculum, momentum decay, both (default settings of :mod:`lcsc.generative.schedules`)
-- and ``--seeds`` seeds each. Every ``--eval-every`` iterations the training EMA is scored by
held-out FD (``--eval-samples`` samples from fixed held-out noise, DPM-Solver++(2M) with
``--nfe`` evaluations, the packaged digits feature net). Reported:

* iterations and training wall time (evaluation excluded) to reach a target held-out FD
  (default: the seed-averaged final FD of the baseline times ``1 + --target-margin``);
* LCSC applied at iteration ``--lcsc-at`` (``lcsc.experiment.compare``, evolutionary search
  with ``--lcsc-budget`` evaluations) and the baseline iterations its held-out FD is worth,
  i.e. the training-cost reduction against the baseline with EMA.

Runs go to ``--jobs`` worker processes, one torch thread each. Every finished run is saved
to ``OUT/results.json`` at once, and a rerun skips the runs already there (same settings), so
a partial run is kept. Then ``OUT/report.md`` and ``OUT/curves.png`` are written. The default
sizes take about 20 minutes on 2 CPU cores::

    python benchmarks/fast_training.py [--out out/fast_training] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

STRATEGIES = ("baseline", "curriculum", "momentum", "both")
COLOURS = {"baseline": "k", "curriculum": "tab:blue", "momentum": "tab:orange", "both": "tab:red"}


@dataclass(frozen=True)
class Settings:
    """Everything a run depends on (a rerun reuses saved runs only for equal settings)."""

    iterations: int = 4000
    eval_every: int = 200
    eval_samples: int = 2000
    nfe: int = 9
    ema_rate: float = 0.998
    record_every: int = 50
    lcsc_at: int = 2000
    lcsc_budget: int = 100
    lcsc_search_samples: int = 1000
    lcsc_held_out_samples: int = 500

    def key(self) -> dict[str, Any]:
        return dict(self.__dict__)


def train_config(strategy: str, seed: int, s: Settings) -> Any:
    from lcsc.generative.networks import ModelConfig
    from lcsc.generative.schedules import MomentumDecay, NoiseCurriculum
    from lcsc.generative.training import TrainConfig

    return TrainConfig(
        kind="dm",
        model=ModelConfig(kind="mlp", data_shape=(1, 8, 8)),
        iterations=s.iterations,
        record_every=s.record_every,
        ema_rate=s.ema_rate,
        seed=seed,
        noise_curriculum=NoiseCurriculum() if strategy in ("curriculum", "both") else None,
        momentum_decay=MomentumDecay() if strategy in ("momentum", "both") else None,
    )


def run_one(job: tuple[str, int, Settings]) -> dict[str, Any]:
    """Train one (strategy, seed), scoring the EMA along the way; then LCSC at ``lcsc_at``."""
    import torch

    torch.set_num_threads(1)  # 2 OpenMP threads per process on 2 shared cores: 10-50x slower
    from lcsc.experiment import compare
    from lcsc.generative.data import load_dataset
    from lcsc.generative.io import make_metadata
    from lcsc.generative.training import train
    from lcsc.metrics import digits_features
    from lcsc.objectives.sample_fd import FixedNoiseGenerator, SampleFD, digits_reference
    from lcsc.trajectory import Trajectory

    strategy, seed, s = job
    config = train_config(strategy, seed, s)
    data = load_dataset("digits", "train")
    metadata = make_metadata(config.model, data.spec)
    score = SampleFD(
        FixedNoiseGenerator(metadata, s.eval_samples, 0, "held_out", "dpmpp", s.nfe),
        digits_features("main"),
        digits_reference(metadata),
    )
    curve: list[dict[str, float]] = []
    clock = {"eval": 0.0}

    def watch(step: int, model: Any, ema: Any) -> None:
        if step % s.eval_every and step != s.iterations:
            return
        t = time.perf_counter()
        train_s = t - clock["start"] - clock["eval"]  # training so far, evaluations excluded
        fd = score(ema.state_dict())
        clock["eval"] += time.perf_counter() - t
        curve.append({"step": step, "fd": fd, "train_s": train_s})

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        clock["start"] = time.perf_counter()
        result = train(config, run_dir, data=data, watch=watch)
        out: dict[str, Any] = {
            "strategy": strategy,
            "seed": seed,
            "curve": curve,
            "train_s": result.seconds - clock["eval"],
            "final_loss": float(result.losses[-100:].mean()),
        }
        if s.lcsc_budget > 0:
            t = time.perf_counter()
            traj = Trajectory.open(run_dir / "trajectory").select(start=1, stop=s.lcsc_at)
            c = compare(
                run_dir,
                Path(tmp) / "search",
                budget=s.lcsc_budget,
                seed=seed,
                search_samples=s.lcsc_search_samples,
                held_out_samples=s.lcsc_held_out_samples,
                sampler="dpmpp",
                search_nfe=s.nfe,
                trajectory=traj,
            )
            lcsc_s = time.perf_counter() - t
            out["lcsc"] = {
                "at": traj.steps[-1],
                "seconds": lcsc_s,
                # on the curve's evaluator, so comparable with the EMA curves
                "fd": score(traj.combine(c.lcsc.best_coefficients)),
                "ema_star_fd": score(traj.combine(c.ema_star.coefficients)),
                "ema_star_rate": float(c.ema_star.label),
                "search_fd": c.search_scores,
                "held_out_fd": {
                    k: v.fd
                    for k, v in c.held_out.items()
                    if k in ("EMA*", "LCSC", "best checkpoint")
                },
            }
    return out


# --------------------------------------------------------------------------- analysis
def first_hit(curve: list[dict[str, float]], target: float) -> dict[str, float] | None:
    """The first evaluation whose FD is at most ``target`` (None: never)."""
    return next((p for p in curve if p["fd"] <= target), None)


def mean_curve(runs: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps, seed-mean FD and seed-mean training seconds of runs with equal evaluation steps."""
    steps = np.array([p["step"] for p in runs[0]["curve"]])
    fd = np.mean([[p["fd"] for p in r["curve"]] for r in runs], axis=0)
    secs = np.mean([[p["train_s"] for p in r["curve"]] for r in runs], axis=0)
    return steps, fd, secs


def _ms(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3g}"
    return f"{np.mean(values):.3g} ± {np.std(values, ddof=1):.2g}"


def by_strategy(results: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    by = {st: [r for r in results.values() if r["strategy"] == st] for st in STRATEGIES}
    return {st: sorted(rs, key=lambda r: r["seed"]) for st, rs in by.items() if rs}


def auto_target(results: dict[str, Any], margin: float) -> float | None:
    """The seed-mean final FD of the baseline times ``1 + margin`` (None: no baseline yet)."""
    base = by_strategy(results).get("baseline")
    return None if not base else float(mean_curve(base)[1][-1]) * (1 + margin)


def analyse(results: dict[str, Any], s: Settings, target: float) -> str:
    by = by_strategy(results)
    if "baseline" not in by:
        return "no baseline run yet\n"
    base_steps, base_fd, base_secs = mean_curve(by["baseline"])
    lines = [
        f"Target held-out FD {target:.4g} (seed-mean final FD of the baseline:"
        f" {base_fd[-1]:.4g}); {s.iterations} iterations, EMA rate {s.ema_rate}, FD of"
        f" {s.eval_samples} samples (dpmpp, NFE {s.nfe}) every {s.eval_every} iterations.",
        "",
        "| strategy | seeds | final FD | best FD | reached | iterations to target"
        " | train s to target | speed-up (iterations) | it/s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    base_iters = [h["step"] for r in by["baseline"] if (h := first_hit(r["curve"], target))]
    for st, runs in by.items():
        hits = [h for r in runs if (h := first_hit(r["curve"], target))]
        iters = [h["step"] for h in hits]
        speed = (
            f"{np.mean(base_iters) / np.mean(iters):.2f}x"
            if iters and base_iters and len(hits) == len(runs)
            else "-"
        )
        its = [r["curve"][-1]["step"] / r["train_s"] for r in runs]
        lines.append(
            f"| {st} | {len(runs)} | {_ms([r['curve'][-1]['fd'] for r in runs])}"
            f" | {_ms([min(p['fd'] for p in r['curve']) for r in runs])}"
            f" | {len(hits)}/{len(runs)} | {_ms(iters)} | {_ms([h['train_s'] for h in hits])}"
            f" | {speed} | {_ms(its)} |"
        )
    if any("lcsc" in r for rs in by.values() for r in rs):
        at = s.lcsc_at
        lines += [
            "",
            f"LCSC at iteration {at} ({s.lcsc_budget} evaluations, {s.lcsc_search_samples}"
            " search samples); 'baseline iterations' = first evaluation where the seed-mean"
            " baseline EMA curve reaches the model's FD ('>': not within the run); reduction ="
            f" 1 - {at} / baseline iterations; with search = the same in wall time, the search"
            " included.",
            "",
            f"| strategy | EMA FD @ {at} | EMA* FD @ {at} | LCSC FD @ {at} | baseline iterations"
            " | cost reduction | with search | search s |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for st, runs in by.items():
            runs = [r for r in runs if "lcsc" in r]
            if not runs:
                continue
            ema_at = [next(p["fd"] for p in r["curve"] if p["step"] >= s.lcsc_at) for r in runs]
            worth, cut, cut_s = [], [], []
            for r in runs:
                f = r["lcsc"]["fd"]
                reach = np.nonzero(base_fd <= f)[0]
                if len(reach):
                    it, secs = int(base_steps[reach[0]]), float(base_secs[reach[0]])
                    worth.append(f"{it}")
                    cut.append(1 - s.lcsc_at / it)
                    at_s = next(p["train_s"] for p in r["curve"] if p["step"] >= s.lcsc_at)
                    cut_s.append(1 - (at_s + r["lcsc"]["seconds"]) / secs)
                else:
                    worth.append(f">{s.iterations}")
                    cut.append(1 - s.lcsc_at / s.iterations)  # a lower bound
            lines.append(
                f"| {st} | {_ms(ema_at)} | {_ms([r['lcsc']['ema_star_fd'] for r in runs])}"
                f" | {_ms([r['lcsc']['fd'] for r in runs])} | {', '.join(worth)}"
                f" | {_pct(cut)} | {_pct(cut_s)} | {_ms([r['lcsc']['seconds'] for r in runs])} |"
            )
    return "\n".join(lines) + "\n"


def _pct(values: list[float]) -> str:
    if not values:
        return "-"
    return ", ".join(f"{100 * v:.0f}%" for v in values)


def plot(results: dict[str, Any], path: Path, target: float | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for st in STRATEGIES:
        runs = [r for r in results.values() if r["strategy"] == st]
        if not runs:
            continue
        for r in runs:
            xs = [p["step"] for p in r["curve"]]
            ax.plot(xs, [p["fd"] for p in r["curve"]], color=COLOURS[st], alpha=0.25, lw=0.8)
        steps, fd, _ = mean_curve(runs)
        ax.plot(steps, fd, color=COLOURS[st], lw=2, label=f"{st} (mean of {len(runs)})")
        for r in runs:
            if "lcsc" in r:
                ax.plot(r["lcsc"]["at"], r["lcsc"]["fd"], "*", color=COLOURS[st], ms=9)
    if target is not None:
        ax.axhline(target, color="gray", ls="--", lw=1, label="target")
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("held-out FD of the training EMA")
    ax.set_title("EDM on digits: EMA FD during training (stars: LCSC)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d = Settings()
    parser.add_argument("--out", type=Path, default=Path("out/fast_training"))
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (1 thread each)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    parser.add_argument("--iterations", type=int, default=d.iterations)
    parser.add_argument("--eval-every", type=int, default=d.eval_every)
    parser.add_argument("--eval-samples", type=int, default=d.eval_samples)
    parser.add_argument("--nfe", type=int, default=d.nfe)
    parser.add_argument("--ema-rate", type=float, default=d.ema_rate)
    parser.add_argument("--lcsc-at", type=int, default=d.lcsc_at)
    parser.add_argument("--lcsc-budget", type=int, default=d.lcsc_budget, help="0: no LCSC")
    parser.add_argument("--target-fd", type=float, help="default: see --target-margin")
    parser.add_argument("--target-margin", type=float, default=0.1)
    parser.add_argument("--report-only", action="store_true", help="analyse saved runs only")
    args = parser.parse_args()
    s = Settings(
        iterations=args.iterations,
        eval_every=args.eval_every,
        eval_samples=args.eval_samples,
        nfe=args.nfe,
        ema_rate=args.ema_rate,
        lcsc_at=args.lcsc_at,
        lcsc_budget=args.lcsc_budget,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.json"
    saved = json.loads(path.read_text()) if path.is_file() else {}
    if saved.get("settings") != s.key():
        saved = {"settings": s.key(), "runs": {}}
    runs: dict[str, Any] = saved["runs"]
    jobs = [
        (st, seed, s)
        for seed in args.seeds
        for st in args.strategies
        if f"{st}/{seed}" not in runs and not args.report_only
    ]
    t0 = time.perf_counter()
    if jobs:
        print(f"{len(jobs)} runs on {args.jobs} processes; results in {path}", flush=True)
        with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
            for r in pool.imap_unordered(run_one, jobs):
                runs[f"{r['strategy']}/{r['seed']}"] = r
                path.write_text(json.dumps(saved, indent=1))
                final = r["curve"][-1]["fd"]
                lcsc = f", LCSC {r['lcsc']['fd']:.3f}" if "lcsc" in r else ""
                print(
                    f"[{time.perf_counter() - t0:6.0f}s] {r['strategy']}/{r['seed']}: final EMA"
                    f" FD {final:.3f}{lcsc}",
                    flush=True,
                )
    target = args.target_fd or auto_target(runs, args.target_margin)
    plot(runs, args.out / "curves.png", target)
    report = "no baseline run yet\n" if target is None else analyse(runs, s, target)
    (args.out / "report.md").write_text(report)
    print(report)
    print(f"total {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
