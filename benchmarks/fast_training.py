"""Faster diffusion training on digits: noise curriculum and momentum decay, measured.

Trains the EDM diffusion MLP of ``lcsc train dm`` (width 256, 2 blocks: about 300K parameters;
batch 128, Adam lr 1e-3, EMA rate 0.998) on sklearn's digits for ``--iterations`` iterations,
``--seeds`` seeds per strategy:

* ``baseline``: ``TrainConfig`` as is.
* ``tilt0``: a control. ``NoiseCurriculum(tilt_end=0)`` draws the baseline's lognormal by
  inverse CDF, so it uses the random stream of the curriculum runs; the curriculum is compared
  with it seed by seed (same seed: the same uniforms, only the tilt differs), the momentum
  decay with the baseline (it draws no random numbers).
* ``curriculum``, ``momentum``, ``both``: the defaults of
  :mod:`lcsc.reference.generative.schedules`.

Every ``--eval-every`` iterations the training EMA is scored by held-out FD: ``--eval-samples``
samples from fixed held-out noise, DPM-Solver++(2M) with ``--nfe`` evaluations, the packaged
digits feature net. Reported:

* iterations and training wall time (evaluations excluded) to reach a target FD (default:
  the seed-mean final FD of the baseline times ``1 + --target-margin``);
* LCSC at iteration ``--lcsc-at`` (``lcsc.reference.digits.experiment.compare``,
  evolutionary search, ``--lcsc-budget`` evaluations on 1000 search samples), scored by the
  same evaluator, and the baseline iterations that FD is worth: the training-cost reduction
  against the baseline with EMA.

Runs go to ``--jobs`` worker processes with one torch thread each. Every finished run is saved
to ``OUT/results.json`` at once and a rerun skips the runs already there (same settings), so
partial runs are kept; ``OUT/report.md`` and ``OUT/curves.png`` are written at the end. The
defaults take about 30 minutes on 2 CPU cores shared with other jobs::

    python benchmarks/fast_training.py [--out out/fast_training] [--jobs 2]

``--config w64`` (or another configuration of benchmarks/nfe_protocol.py) trains that script's
harder DM instead (issue 13: width 64, one block, cosine lr 1e-3 -> 1e-5, training EMA 0.999,
6000 iterations) with the same strategies, and scores the EMA with its held-out evaluation
(``--held-out-seeds`` held-out noise seeds, the test split, the noise floor) at NFE 15 every
300 iterations; no LCSC. A table of iterations to the target per seed, paired with the control,
follows the main one. ``--lengths 3000 4000 5000`` also trains every run at those lengths (all
schedules scaled to the run) and reports the run length that reaches the target. About 30
minutes for the 15 runs and 20 more for the lengths, on 2 cores shared with other jobs::

    python benchmarks/fast_training.py --config w64 --out out/fast_training_w64 --target-fd 3.112
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

STRATEGIES = ("baseline", "tilt0", "curriculum", "momentum", "both")
# the run each strategy is paired with, seed by seed (same random numbers)
CONTROL = {"tilt0": "baseline", "curriculum": "tilt0", "momentum": "baseline", "both": "tilt0"}
COLOURS = {
    "baseline": "k",
    "tilt0": "gray",
    "curriculum": "tab:blue",
    "momentum": "tab:orange",
    "both": "tab:red",
}


@dataclass(frozen=True)
class Settings:
    """Everything a run depends on (a rerun reuses saved runs only for equal settings)."""

    config: str = "default"  # "default": the MLP above; else a configuration of nfe_protocol.py
    iterations: int = 3000
    eval_every: int = 200
    eval_samples: int = 2000
    nfe: int = 9
    ema_rate: float = 0.998
    record_every: int = 50
    lcsc_at: int = 1500
    lcsc_budget: int = 80
    lcsc_search_samples: int = 1000
    lcsc_held_out_samples: int = 200  # compare's own held-out metrics (KID is slow): unused
    held_out_seeds: int = 3  # held-out noise seeds per evaluation (nfe_protocol configurations)


# The harder DM of issue 13 (benchmarks/nfe_protocol.py): its iterations, its training EMA, its
# search NFE; the curve is scored every 5 % of training; no LCSC (that is nfe_protocol's job).
# the Settings fields the command line sets (None there: the configuration's default)
OPTIONS = (
    "iterations",
    "eval_every",
    "eval_samples",
    "held_out_seeds",
    "nfe",
    "ema_rate",
    "lcsc_at",
    "lcsc_budget",
)
HARD = {"iterations": 6000, "eval_every": 300, "nfe": 15, "ema_rate": 0.999, "lcsc_budget": 0}


def defaults(config: str) -> Settings:
    """The default settings of configuration ``config``."""
    return Settings(config=config, **({} if config == "default" else HARD))


def train_config(strategy: str, seed: int, s: Settings) -> Any:
    from lcsc.reference.generative.networks import ModelConfig
    from lcsc.reference.generative.schedules import MomentumDecay, NoiseCurriculum
    from lcsc.reference.generative.training import TrainConfig

    curriculum = {"tilt0": NoiseCurriculum(tilt_end=0.0), "curriculum": NoiseCurriculum()}
    curriculum["both"] = curriculum["curriculum"]
    strategy_options = {
        "noise_curriculum": curriculum.get(strategy),
        "momentum_decay": MomentumDecay() if strategy in ("momentum", "both") else None,
    }
    if s.config != "default":
        from nfe_protocol import train_config as hard_config  # this script's folder

        return hard_config(s.config, seed, s.iterations, ema_rate=s.ema_rate, **strategy_options)
    return TrainConfig(
        kind="dm",
        model=ModelConfig(kind="mlp", data_shape=(1, 8, 8)),
        iterations=s.iterations,
        record_every=s.record_every,
        ema_rate=s.ema_rate,
        seed=seed,
        **strategy_options,
    )


def make_score(s: Settings, metadata: Any) -> tuple[Any, float | None]:
    """``state_dict -> {"fd": ...}`` and the noise floor (None: not measured). The default
    configuration: SampleFD on one held-out noise draw. The nfe_protocol configurations: its
    held-out evaluation (``held_out_seeds`` held-out noise seeds, the test split; FD is the mean
    over the seeds, floor: the train split against the test split)."""
    from lcsc.metrics import digits_features
    from lcsc.objectives.sample_fd import SampleFD
    from lcsc.reference.digits.evaluation import HeldOutEvaluator
    from lcsc.reference.digits.objective import digits_reference
    from lcsc.reference.generative.generator import FixedNoiseGenerator

    if s.config == "default":
        fd = SampleFD(
            FixedNoiseGenerator(metadata, s.eval_samples, 0, "held_out", "dpmpp", s.nfe),
            digits_features("main"),
            digits_reference(metadata),
        )
        return lambda state: {"fd": fd(state)}, None
    evaluate = HeldOutEvaluator(metadata, s.eval_samples, range(s.held_out_seeds), "dpmpp", s.nfe)

    def score(state: Any) -> dict[str, Any]:
        held = evaluate(state)
        return {"fd": held.mean["fd"], "fd_seeds": [v["fd"] for v in held.values]}

    return score, evaluate.scorer.floor["fd"]


def run_one(job: tuple[str, int, Settings, bool]) -> dict[str, Any]:
    """Train one (strategy, seed), scoring the EMA along the way; then LCSC if asked."""
    import torch

    torch.set_num_threads(1)  # 2 OpenMP threads per process on 2 shared cores: 10-50x slower
    from lcsc.reference.digits.experiment import ExperimentConfig, compare
    from lcsc.reference.generative.data import load_dataset
    from lcsc.reference.generative.io import make_metadata
    from lcsc.reference.generative.training import train
    from lcsc.trajectory import Trajectory

    strategy, seed, s, with_lcsc = job
    config = train_config(strategy, seed, s)
    data = load_dataset("digits", "train")
    metadata = make_metadata(config.model, data.spec)
    score, floor = make_score(s, metadata)
    curve: list[dict[str, float]] = []
    clock = {"eval": 0.0, "start": 0.0}

    def watch(step: int, model: Any, ema: Any) -> None:
        if step == 1:  # the clock starts after the first iteration: setup and warm-up excluded
            clock["start"] = time.perf_counter()
        if step % s.eval_every and step != s.iterations:
            return
        t = time.perf_counter()
        train_s = t - clock["start"] - clock["eval"]  # training so far, evaluations excluded
        scores = score(ema.state_dict())
        clock["eval"] += time.perf_counter() - t
        curve.append({"step": step, **scores, "train_s": train_s})

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        result = train(config, run_dir, data=data, watch=watch)
        out: dict[str, Any] = {
            "strategy": strategy,
            "seed": seed,
            "curve": curve,
            "train_s": curve[-1]["train_s"],
            "eval_s": clock["eval"],
            "final_loss": float(result.losses[-100:].mean()),
            "floor": floor,
        }
        if with_lcsc:
            t = time.perf_counter()
            traj = Trajectory.open(run_dir / "trajectory").select(start=1, stop=s.lcsc_at)
            experiment = ExperimentConfig(
                budget=s.lcsc_budget,
                seed=seed,
                search_samples=s.lcsc_search_samples,
                held_out_samples=s.lcsc_held_out_samples,
                held_out_seeds=1,
                path_points=0,
                sampler="dpmpp",
                search_nfe=s.nfe,
            )
            c = compare(run_dir, Path(tmp) / "search", experiment, trajectory=traj)
            out["lcsc"] = {
                "at": traj.steps[-1],
                "seconds": time.perf_counter() - t,
                # the curve's evaluator: comparable with the EMA curves
                "fd": score(traj.combine(c.lcsc.best_coefficients))["fd"],
                "ema_star_fd": score(traj.combine(c.ema_star.coefficients))["fd"],
                "ema_star_rate": float(c.ema_star.label),
                "search_fd": c.search_scores,
                "compare_held_out_fd": {
                    m: c.held_out[m].mean["fd"] for m in ("ema_star", "best_checkpoint", "lcsc")
                },
            }
    return out


# --------------------------------------------------------------------------- analysis
def crossing(steps: np.ndarray, fd: np.ndarray, target: float) -> float | None:
    """Where a curve first reaches ``target``, log FD interpolated linearly between
    evaluations (None: never)."""
    below = np.nonzero(fd <= target)[0]
    if not len(below):
        return None
    i = int(below[0])
    if i == 0:
        return float(steps[0])
    lo, hi = math.log(fd[i - 1]), math.log(fd[i])
    return float(steps[i - 1] + (steps[i] - steps[i - 1]) * (lo - math.log(target)) / (lo - hi))


def first_hit(curve: list[dict[str, float]], target: float) -> dict[str, float] | None:
    """The first evaluation whose FD is at most ``target`` (None: never)."""
    return next((p for p in curve if p["fd"] <= target), None)


def mean_curve(runs: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps, seed-mean FD and seed-mean training seconds of runs with equal evaluation steps."""
    steps = np.array([p["step"] for p in runs[0]["curve"]])
    fd = np.mean([[p["fd"] for p in r["curve"]] for r in runs], axis=0)
    secs = np.mean([[p["train_s"] for p in r["curve"]] for r in runs], axis=0)
    return steps, fd, secs


def by_strategy(results: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    by = {st: [r for r in results.values() if r["strategy"] == st] for st in STRATEGIES}
    return {st: sorted(rs, key=lambda r: r["seed"]) for st, rs in by.items() if rs}


def auto_target(results: dict[str, Any], margin: float) -> float | None:
    """The seed-mean final FD of the baseline times ``1 + margin`` (None: no baseline yet)."""
    base = by_strategy(results).get("baseline")
    return None if not base else float(mean_curve(base)[1][-1]) * (1 + margin)


def _ms(values: list[float], digits: int = 3) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}g}"
    return f"{np.mean(values):.{digits}g} ± {np.std(values, ddof=1):.2g}"


def _pct(values: list[float]) -> str:
    return "-" if not values else ", ".join(f"{100 * v:+.0f}%" for v in values)


def _paired(runs: list[dict[str, Any]], control: list[dict[str, Any]], at: int) -> list[float]:
    """Per seed: FD at iteration ``at`` minus the control's (same seed)."""
    fd = {r["seed"]: next(p["fd"] for p in r["curve"] if p["step"] >= at) for r in control}
    return [
        next(p["fd"] for p in r["curve"] if p["step"] >= at) - fd[r["seed"]]
        for r in runs
        if r["seed"] in fd
    ]


def analyse(results: dict[str, Any], s: Settings, target: float) -> str:
    by = by_strategy(results)
    if "baseline" not in by:
        return "no baseline run yet\n"
    base_steps, base_fd, base_secs = mean_curve(by["baseline"])
    half = s.iterations // 2
    lines = [
        f"Target FD {target:.4g} (the baseline's seed-mean final FD {base_fd[-1]:.4g} x"
        f" {target / base_fd[-1]:.3g}); {s.iterations} iterations, FD of the training EMA"
        f" (rate {s.ema_rate}) on {_evaluation(s)} (dpmpp, NFE {s.nfe}) every"
        f" {s.eval_every} iterations. Mean ± sd over seeds; 'vs control': FD minus the paired"
        " control's, seed by seed (negative: better); 'mean curve at target': where the"
        " seed-mean curve reaches the target (log-linear between evaluations); speed-up: the"
        " baseline's (the control's) iterations to the target over the strategy's.",
        "",
        f"| strategy | seeds | FD @ {half} | final FD | vs control @ {half} | vs control final"
        " | seeds reaching target | first evaluation at target | train s to it"
        " | mean curve at target | speed-up | vs control | it/s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    reach = {st: crossing(*mean_curve(runs)[:2], target) for st, runs in by.items()}
    for st, runs in by.items():
        hits = [h for r in runs if (h := first_hit(r["curve"], target))]
        at, base_at, control_at = reach[st], reach["baseline"], reach.get(CONTROL.get(st, ""))
        control = by.get(CONTROL.get(st, ""), [])
        at_half = [next(p["fd"] for p in r["curve"] if p["step"] >= half) for r in runs]
        lines.append(
            f"| {st} | {len(runs)} | {_ms(at_half)} | {_ms([r['curve'][-1]['fd'] for r in runs])}"
            f" | {_signed(_paired(runs, control, half))}"
            f" | {_signed(_paired(runs, control, s.iterations))} | {len(hits)}/{len(runs)}"
            f" | {_ms([h['step'] for h in hits], 4)} | {_ms([h['train_s'] for h in hits])}"
            f" | {'-' if at is None else f'{at:.0f}'}"
            f" | {_ratio(base_at, at)} | {_ratio(control_at, at)}"
            f" | {_ms([r['curve'][-1]['step'] / r['train_s'] for r in runs])} |"
        )
    lcsc_runs = {st: [r for r in runs if "lcsc" in r] for st, runs in by.items()}
    if any(lcsc_runs.values()):
        at = s.lcsc_at
        lines += [
            "",
            f"LCSC at iteration {at} ({s.lcsc_budget} evaluations of evolutionary search on"
            f" {s.lcsc_search_samples} search samples, plus compare's EMA grid and checkpoint"
            " baselines), scored like the curves. 'worth': the iteration at which the seed-mean"
            " baseline EMA curve reaches that FD (log-linear between evaluations; '>N': not"
            " within the run); cost reduction = 1 - at / worth of LCSC, per seed, in iterations"
            " and in wall time with compare's whole time included.",
            "",
            f"| strategy | EMA FD @ {at} | EMA* FD | EMA* worth | LCSC FD | LCSC worth"
            " | cost reduction | in wall time, compare included | compare s |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]

        def worth(fd: float) -> float | None:
            return crossing(base_steps, base_fd, fd)

        for st, runs in lcsc_runs.items():
            if not runs:
                continue
            ema_at = [next(p["fd"] for p in r["curve"] if p["step"] >= at) for r in runs]
            cut, cut_s = [], []
            for r in runs:
                it = worth(r["lcsc"]["fd"])
                if it is not None:
                    at_s = next(p["train_s"] for p in r["curve"] if p["step"] >= at)
                    cut.append(1 - at / it)
                    secs = float(np.interp(it, base_steps, base_secs))
                    cut_s.append(1 - (at_s + r["lcsc"]["seconds"]) / secs)
            lines.append(
                f"| {st} | {_ms(ema_at)} | {_ms([r['lcsc']['ema_star_fd'] for r in runs])}"
                f" | {_worths([worth(r['lcsc']['ema_star_fd']) for r in runs], s.iterations)}"
                f" | {_ms([r['lcsc']['fd'] for r in runs])}"
                f" | {_worths([worth(r['lcsc']['fd']) for r in runs], s.iterations)}"
                f" | {_pct(cut)} | {_pct(cut_s)} | {_ms([r['lcsc']['seconds'] for r in runs])} |"
            )
    return "\n".join(lines) + "\n"


def _evaluation(s: Settings) -> str:
    if s.config == "default":
        return f"{s.eval_samples} held-out samples"
    return (
        f"{s.held_out_seeds} held-out noise seeds x {s.eval_samples} samples against the test"
        " split (FD: the mean over the seeds)"
    )


def run_crossing(run: dict[str, Any], target: float) -> float | None:
    """Where one run's curve first reaches ``target`` (see :func:`crossing`)."""
    steps = np.array([p["step"] for p in run["curve"]])
    return crossing(steps, np.array([p["fd"] for p in run["curve"]]), target)


def target_table(results: dict[str, Any], s: Settings, target: float) -> str:
    """Per seed: iterations to ``target`` and the final FD, each paired with the strategy's
    control on the same seed, the noise floor beside them."""
    by = by_strategy(results)
    floors = {r["floor"] for runs in by.values() for r in runs if r.get("floor") is not None}
    floor = f"{np.mean(list(floors)):.3f}" if floors else "-"
    lines = [
        f"Iterations to the target FD {target:.4g}, per seed (seeds"
        f" {', '.join(str(r['seed']) for r in next(iter(by.values())))}; log FD interpolated"
        f" between evaluations; '>{s.iterations}': not reached). Paired: the same seed's"
        " control run; 'saved' = control's iterations - the strategy's (positive: faster).",
        "",
        "| strategy | control | iterations to target | mean ± sd | saved vs control |"
        " speed-up vs control | final FD | final FD mean ± sd | final FD - control's |"
        " the same, per (seed, noise seed) pair | noise floor |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for st, runs in by.items():
        its = {r["seed"]: run_crossing(r, target) for r in runs}
        ctl_runs = {r["seed"]: r for r in by.get(CONTROL.get(st, ""), [])}
        ctl = {k: run_crossing(r, target) for k, r in ctl_runs.items()}
        pairs = [(ctl[k], v) for k, v in its.items() if k in ctl]
        reached = [v for v in its.values() if v is not None]
        final = [r["curve"][-1]["fd"] for r in runs]
        final_diff = [
            r["curve"][-1]["fd"] - ctl_runs[r["seed"]]["curve"][-1]["fd"]
            for r in runs
            if r["seed"] in ctl_runs
        ]
        mean = (
            _ms(reached, 4) if len(reached) == len(its) else f"{len(reached)}/{len(its)} reach it"
        )
        lines.append(
            f"| {st} | {CONTROL.get(st, '-')} | {_worths(list(its.values()), s.iterations)}"
            f" | {mean}"
            f" | {', '.join(_saved(c, v) for c, v in pairs) or '-'}"
            f" | {', '.join(_ratio(c, v) for c, v in pairs) or '-'}"
            f" | {', '.join(f'{v:.3f}' for v in final)} | {_ms(final)} | {_signed(final_diff)}"
            f" | {_noise_pairs(runs, list(ctl_runs.values()))} | {floor} |"
        )
    return "\n".join(lines) + "\n"


def length_table(by_length: dict[int, dict[str, Any]], target: float) -> str:
    """Runs of several lengths (each with its schedules scaled to its length): per strategy,
    the seed-mean final FD at every length and, per seed, the shortest run that reaches
    ``target`` (log FD interpolated linearly between lengths), paired with the control."""
    lengths = sorted(by_length)
    fd = {n: {k: r["curve"][-1]["fd"] for k, r in runs.items()} for n, runs in by_length.items()}
    keys = set.intersection(*(set(v) for v in fd.values()))

    def need(key: str) -> float | None:
        """None: not reached; ``lengths[0]``: reached already there (censored)."""
        finals = [fd[n][key] for n in lengths]
        return crossing(np.array(lengths), np.array(finals), target)

    def known(pair: tuple[float | None, float | None]) -> tuple[float | None, float | None]:
        return (None, None) if lengths[0] in pair else pair

    def shown(v: float | None) -> str:
        return f">{lengths[-1]}" if v is None else f"<={v:.0f}" if v == lengths[0] else f"{v:.0f}"

    lines = [
        f"Run length to the target FD {target:.4g}: every run trained with {lengths} iterations"
        " (curriculum, momentum decay and cosine lr scaled to the run), the EMA's FD at the end;"
        " per seed, the length at which that final FD reaches the target (log FD linear"
        " between lengths; '<=N': reached by the shortest run already, so not compared)."
        " 'saved': the same seed's control length - the strategy's.",
        "",
        "| strategy | control | seed-mean final FD at "
        + " / ".join(map(str, lengths))
        + " | run length to target | mean ± sd | saved vs control | speed-up vs control |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for st in STRATEGIES:
        seeds = sorted(int(k.split("/")[1]) for k in keys if k.split("/")[0] == st)
        if not seeds:
            continue
        its = {k: need(f"{st}/{k}") for k in seeds}
        ctl = CONTROL.get(st, "")
        pairs = [known((need(f"{ctl}/{k}"), v)) for k, v in its.items() if f"{ctl}/{k}" in keys]
        means = [np.mean([fd[n][f"{st}/{k}"] for k in seeds]) for n in lengths]
        reached = [v for v in its.values() if v is not None and v != lengths[0]]
        lines.append(
            f"| {st} | {ctl or '-'} | {' / '.join(f'{m:.3f}' for m in means)}"
            f" | {', '.join(shown(v) for v in its.values())}"
            f" | {_ms(reached, 4) if len(reached) == len(its) else '-'}"
            f" | {', '.join(_saved(c, v) for c, v in pairs) or '-'}"
            f" | {', '.join(_ratio(c, v) for c, v in pairs) or '-'} |"
        )
    return "\n".join(lines) + "\n"


def _noise_pairs(runs: list[dict[str, Any]], control: list[dict[str, Any]]) -> str:
    """Final FD minus the control's per (training seed, held-out noise seed): the same noise
    for both, so the pair differs only in the training. Mean ± sd, and how many are < 0."""
    ctl = {r["seed"]: r["curve"][-1].get("fd_seeds") for r in control}
    diffs = [
        a - b
        for r in runs
        if ctl.get(r["seed"]) and r["curve"][-1].get("fd_seeds")
        for a, b in zip(r["curve"][-1]["fd_seeds"], ctl[r["seed"]], strict=True)
    ]
    if not diffs:
        return "-"
    negative = sum(d < 0 for d in diffs)
    return f"{np.mean(diffs):+.3f} ± {np.std(diffs, ddof=1):.3f}, {negative}/{len(diffs)} < 0"


def _saved(control: float | None, its: float | None) -> str:
    return "-" if control is None or its is None else f"{control - its:+.0f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{a / b:.2f}x"


def _worths(values: list[float | None], iterations: int) -> str:
    return ", ".join(f">{iterations}" if v is None else f"{v:.0f}" for v in values)


def _signed(values: list[float]) -> str:
    if not values:
        return "-"
    return ", ".join(f"{v:+.3f}" for v in values)


def plot(results: dict[str, Any], path: Path, target: float | None, config: str) -> None:
    """Top: the EMA's FD against iterations (thin: seeds, thick: seed mean, stars: LCSC).
    Bottom: each seed-mean curve over the baseline's, to make small differences visible."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = by_strategy(results)
    fig, (ax, rel) = plt.subplots(
        2, 1, figsize=(7.5, 7), sharex=True, gridspec_kw={"height_ratios": [2, 1]}
    )
    base = mean_curve(by["baseline"])[1] if "baseline" in by else None
    for st, runs in by.items():
        for r in runs:
            xs = [p["step"] for p in r["curve"]]
            ax.plot(xs, [p["fd"] for p in r["curve"]], color=COLOURS[st], alpha=0.25, lw=0.8)
            if "lcsc" in r:
                ax.plot(r["lcsc"]["at"], r["lcsc"]["fd"], "*", color=COLOURS[st], ms=9)
        steps, fd, _ = mean_curve(runs)
        ax.plot(steps, fd, color=COLOURS[st], lw=2, label=f"{st} (mean of {len(runs)} seeds)")
        if base is not None and len(base) == len(fd):
            rel.plot(steps, fd / base, color=COLOURS[st], lw=1.5)
    if target is not None:
        ax.axhline(target, color="gray", ls="--", lw=1, label="target")
    floors = [r["floor"] for runs in by.values() for r in runs if r.get("floor") is not None]
    if floors:
        ax.axhline(float(np.mean(floors)), color="gray", ls=":", lw=1, label="noise floor")
    ax.set_yscale("log")
    ax.set_ylabel("held-out FD of the training EMA")
    stars = (
        " (stars: LCSC, each seed)" if any("lcsc" in r for rs in by.values() for r in rs) else ""
    )
    ax.set_title(f"EDM on digits ({config}): EMA FD during training{stars}")
    if by:
        ax.legend(fontsize=8)
    rel.axhline(1.0, color="k", lw=0.8)
    rel.set_xlabel("iteration")
    rel.set_ylabel("seed-mean FD / baseline's")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- main
def run_all(out: Path, s: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """The runs of ``args.strategies`` x ``args.seeds`` under ``s``, from ``out/results.json``
    where saved there with the same settings; the missing ones are trained (``args.jobs``
    processes) and saved one by one."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    saved = json.loads(path.read_text()) if path.is_file() else {}
    if saved.get("settings") != asdict(s):
        saved = {"settings": asdict(s), "runs": {}}
    runs: dict[str, Any] = saved["runs"]
    with_lcsc = s.lcsc_budget > 0
    jobs = [
        (st, seed, s, with_lcsc)
        for seed in args.seeds
        for st in args.strategies
        if not args.report_only
        and (f"{st}/{seed}" not in runs or (with_lcsc and "lcsc" not in runs[f"{st}/{seed}"]))
    ]
    t0 = time.perf_counter()
    if jobs:
        print(f"{len(jobs)} runs on {args.jobs} processes; results in {path}", flush=True)
        with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
            for r in pool.imap_unordered(run_one, jobs):
                runs[f"{r['strategy']}/{r['seed']}"] = r
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(saved, indent=1))
                tmp.replace(path)  # atomic: an interrupted write never loses the saved runs
                lcsc = f", LCSC {r['lcsc']['fd']:.3f}" if "lcsc" in r else ""
                print(
                    f"[{time.perf_counter() - t0:5.0f}s] {r['strategy']}/{r['seed']}: final EMA"
                    f" FD {r['curve'][-1]['fd']:.3f}{lcsc}",
                    flush=True,
                )
    return runs


def main() -> None:
    from nfe_protocol import CONFIGS  # this script's folder

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d = Settings()
    parser.add_argument(
        "--config",
        choices=("default", *sorted(CONFIGS)),
        default="default",
        help="default: the MLP above; w64 etc.: the DM of benchmarks/nfe_protocol.py, whose"
        f" defaults {HARD} replace the ones shown",
    )
    parser.add_argument("--out", type=Path, default=Path("out/fast_training"))
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (1 thread each)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    # None: the configuration's default (shown: the default configuration's)
    parser.add_argument("--iterations", type=int, help=f"default {d.iterations}")
    parser.add_argument("--eval-every", type=int, help=f"default {d.eval_every}")
    parser.add_argument("--eval-samples", type=int, help=f"default {d.eval_samples}")
    parser.add_argument("--held-out-seeds", type=int, help=f"default {d.held_out_seeds}")
    parser.add_argument("--nfe", type=int, help=f"default {d.nfe}")
    parser.add_argument("--ema-rate", type=float, help=f"default {d.ema_rate}")
    parser.add_argument("--lcsc-at", type=int, help=f"default {d.lcsc_at}")
    parser.add_argument("--lcsc-budget", type=int, help=f"0: no LCSC; default {d.lcsc_budget}")
    parser.add_argument(
        "--lengths",
        type=int,
        nargs="+",
        default=[],
        help="also train every run with these shorter --iterations (its schedules scaled to"
        " them; FD at the end only) and report the run length that reaches the target",
    )
    parser.add_argument("--target-fd", type=float, help="default: see --target-margin")
    parser.add_argument("--target-margin", type=float, default=0.1)
    parser.add_argument("--report-only", action="store_true", help="analyse saved runs only")
    args = parser.parse_args()
    given = {f: getattr(args, f) for f in OPTIONS if getattr(args, f) is not None}
    s = replace(defaults(args.config), **given)
    if s.config != "default" and s.lcsc_budget > 0:
        raise SystemExit(
            f"--lcsc-budget: {s.config} keeps only the last 20 % of checkpoints; LCSC on it is"
            " benchmarks/nfe_protocol.py"
        )
    t0 = time.perf_counter()
    runs = run_all(args.out, s, args)
    lengths = {
        n: run_all(args.out / f"length-{n}", replace(s, iterations=n, eval_every=n), args)
        for n in args.lengths
    }
    target = args.target_fd or auto_target(runs, args.target_margin)
    plot(runs, args.out / "curves.png", target, s.config)
    if target is None:
        report = "no baseline run yet\n"
    else:
        report = analyse(runs, s, target) + "\n" + target_table(runs, s, target)
        if lengths:
            report += "\n" + length_table(lengths | {s.iterations: runs}, target)
    (args.out / "report.md").write_text(report)
    print(report)
    print(f"total {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
