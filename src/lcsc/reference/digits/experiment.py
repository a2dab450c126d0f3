"""One LCSC experiment on a recorded run: baselines and search on search noise, then every
model on held-out noise. Shared by ``lcsc demo`` and ``benchmarks/paper_claims.py``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lcsc import search
from lcsc.checkpoint import read_checkpoint
from lcsc.ema import default_ema_rates
from lcsc.metrics import digits_features
from lcsc.objectives.sample_fd import SampleFD
from lcsc.reference.digits.evaluation import HeldOutEvaluator, SampleMetrics
from lcsc.reference.digits.objective import digits_reference
from lcsc.reference.generative.generator import FixedNoiseGenerator
from lcsc.search import baselines
from lcsc.trajectory import Trajectory

# stage name, done, total
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Comparison:
    """LCSC next to its baselines: search-noise choices and held-out metrics by model name."""

    trajectory: Trajectory
    ema_star: baselines.Choice
    best_checkpoint: baselines.Choice
    lcsc: search.SearchResult
    held_out: dict[str, SampleMetrics]

    @property
    def search_scores(self) -> dict[str, float]:
        return {
            "EMA*": self.ema_star.score,
            "best checkpoint": self.best_checkpoint.score,
            "LCSC": self.lcsc.best_score,
        }


def compare(
    run_dir: Path,
    workdir: Path,
    *,
    method: str = "evolutionary",
    budget: int = 1000,
    seed: int = 0,
    search_samples: int = 2000,
    held_out_samples: int = 5000,
    sampler: str | None = None,
    search_nfe: int = 1,
    held_out_nfe: int | None = None,
    trajectory: Trajectory | None = None,
    progress: Progress | None = None,
) -> Comparison:
    """Compare LCSC with raw weights, the training EMA, EMA at a grid of rates, EMA* and the
    best single checkpoint for the ``lcsc train`` run in ``run_dir`` (digits).

    The search and the baseline choices use ``search_samples`` samples from search noise at
    ``search_nfe``; every model is then scored on held-out noise at ``held_out_nfe`` (default:
    the search's NFE). ``trajectory`` restricts the checkpoints (default: all but step 0).
    """
    report = progress or (lambda stage, done, total: None)
    traj = trajectory or Trajectory.open(run_dir / "trajectory").select(start=1)
    metadata = traj.metadata
    objective = SampleFD(
        FixedNoiseGenerator(metadata, search_samples, seed, "search", sampler, search_nfe),
        digits_features("main"),
        digits_reference(metadata, "main"),
    )
    rates = default_ema_rates(traj.steps)
    star = baselines.ema_star(traj, objective, rates, lambda d, t: report("EMA grid", d, t))
    single = baselines.best_checkpoint(traj, objective, lambda d, t: report("checkpoints", d, t))
    result = search.run(
        traj,
        objective,
        method,
        budget=budget,
        seed=seed,
        workdir=workdir,
        init=search.ema_init(traj.steps, rates),
        callback=lambda ev: report("search", ev.index + 1, budget),
    )
    evaluate = HeldOutEvaluator(
        metadata, held_out_samples, seed, sampler, held_out_nfe or search_nfe
    )
    models: dict[str, Any] = {
        "raw": _tensors(run_dir / "final.safetensors"),
        "training EMA": _tensors(run_dir / "ema.safetensors"),
    }
    for rate, coefficients in star.candidates.items():
        models[f"EMA {rate}"] = traj.combine(coefficients)
    models["EMA*"] = traj.combine(star.coefficients)
    models["best checkpoint"] = traj.combine(single.coefficients)
    models["LCSC"] = traj.combine(result.best_coefficients)
    held: dict[str, SampleMetrics] = {}
    for i, (name, state) in enumerate(models.items()):
        held[name] = evaluate(state)
        report("held-out", i + 1, len(models))
    return Comparison(traj, star, single, result, held)


def _tensors(path: Path) -> dict[str, Any]:
    return {k: v.clone() for k, v in read_checkpoint(path).tensors.items()}
