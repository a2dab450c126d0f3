"""One LCSC experiment on a recorded run: baselines and search on search noise, then every
model on held-out noise and held-out data, and the search's best-so-far path scored in the
transfer spaces (the Goodhart curve). Shared by ``lcsc demo`` and the benchmarks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lcsc import search
from lcsc.checkpoint import read_checkpoint
from lcsc.config import Config, boolean, choice, integer, real
from lcsc.ema import default_ema_rates
from lcsc.metrics import digits_features
from lcsc.objectives.sample_fd import SampleFD
from lcsc.progress import Progress, report
from lcsc.reference.digits.evaluation import HeldOut, HeldOutEvaluator
from lcsc.reference.digits.objective import CompositeFD, digits_reference
from lcsc.reference.generative.generator import FixedNoiseGenerator
from lcsc.reference.generative.samplers import METHODS as SAMPLERS
from lcsc.search import baselines
from lcsc.trajectory import Trajectory
from lcsc.trajectory.groups import AUTO, NONE, Groups, combine_groups, parse_groups

State = dict[str, torch.Tensor]
SPACES = ("main", "alt")
VALIDATION_NOISE_OFFSET = 10_000  # validation noise: search-role seeds no search uses


@dataclass(frozen=True)
class Model:
    """A compared model: ``id`` keys it in ``results.json``, ``name`` is for people."""

    id: str
    name: str


RAW = Model("raw", "raw")
TRAINING_EMA = Model("training_ema", "training EMA")
EMA_STAR = Model("ema_star", "EMA*")
BEST_CHECKPOINT = Model("best_checkpoint", "best checkpoint")
LCSC = Model("lcsc", "LCSC")


def ema_model(rate: str) -> Model:
    """The EMA at ``rate`` (a label of the EMA* grid, e.g. ``"0.999"``)."""
    return Model(f"ema_{rate}", f"EMA {rate}")


@dataclass(frozen=True)
class ExperimentConfig(Config):
    """What one comparison does.

    The search: ``method`` (convex combinations only with ``nonnegative``), ``budget``,
    ``seed``, ``groups`` (None or ``"none"``: one coefficient vector; ``"auto"``: one per
    top-level module; else comma-separated patterns of :mod:`lcsc.trajectory.groups`; needs a
    CMA-ES method), on ``search_samples`` samples of search noise
    at ``search_nfe``, minimising FD in ``search_spaces`` (one packaged space, or the geometric
    mean over several). Its levers against overfitting the metric: ``validation`` (score the
    best-so-far path by FD in the ``alt`` space on ``validation_samples`` samples of other
    noise and keep the best by validation; stop after ``patience`` validations without
    improvement) and ``penalty`` (trust-region weight around EMA*; 0: none). EMA* and the best
    checkpoint are always chosen by FD in ``main`` on the search noise.

    The evaluation: ``held_out_samples`` samples from each of ``held_out_seeds`` noise seeds,
    starting at ``seed``, at ``held_out_nfe`` (default: the search's), and ``path_points``
    points of the best-so-far path (the Goodhart curve; 0: none).
    """

    method: str = "evolutionary"
    nonnegative: bool = False
    budget: int = 1000
    seed: int = 0
    search_samples: int = 2000
    search_spaces: tuple[str, ...] = ("main",)
    validation: bool = False
    validation_samples: int = 2000
    patience: int | None = None
    penalty: float = 0.0
    held_out_samples: int = 5000
    held_out_seeds: int = 3
    path_points: int = 8
    sampler: str | None = None
    search_nfe: int = 1
    held_out_nfe: int | None = None
    groups: str | None = None

    def __post_init__(self) -> None:
        self.check("method", choice, sorted(search.METHODS))
        self.check("nonnegative", boolean)
        self._check_groups()
        for name in (
            "budget",
            "search_samples",
            "validation_samples",
            "held_out_samples",
            "held_out_seeds",
        ):
            self.check(name, integer, minimum=1)
        self.check("seed", integer, minimum=0)
        spaces = tuple(self.search_spaces) if isinstance(self.search_spaces, (list, tuple)) else ()
        self.require(
            bool(spaces) and set(spaces) <= set(SPACES) and len(set(spaces)) == len(spaces),
            "search_spaces",
            f"must be distinct names out of {', '.join(SPACES)}",
            self.search_spaces,
        )
        object.__setattr__(self, "search_spaces", spaces)
        self.check("validation", boolean)
        self.check("patience", integer, minimum=1, optional=True)
        self.require(self.validation or self.patience is None, "patience", "needs validation=True")
        self.check("penalty", real, minimum=0.0)
        self.check("path_points", integer, minimum=0)
        self.check("sampler", choice, SAMPLERS, optional=True)
        self.check("search_nfe", integer, minimum=1)
        self.check("held_out_nfe", integer, minimum=1, optional=True)

    def _check_groups(self) -> None:
        if self.groups == NONE:
            object.__setattr__(self, "groups", None)
        if self.groups is None:
            return
        self.require(
            isinstance(self.groups, str) and all(p.strip() for p in self.groups.split(",")),
            "groups",
            f"must be {AUTO!r}, {NONE!r} or comma-separated name patterns",
            self.groups,
        )
        self.require(
            search.METHODS[self.method]().takes_groups,
            "groups",
            f"needs a CMA-ES method (subspace or cmaes); {NONE!r} searches one vector"
            " with any method",
            f"{self.groups} with method {self.method}",
        )

    @property
    def noise_seeds(self) -> tuple[int, ...]:
        return tuple(range(self.seed, self.seed + self.held_out_seeds))

    def group_spec(self, keys: Sequence[str]) -> Groups | str | None:
        """``groups`` for :func:`lcsc.search.run` on a checkpoint's ``keys`` (None: one
        coefficient vector; ``"auto"``: resolved by the search)."""
        return None if self.groups is None else parse_groups([self.groups], keys)


@dataclass(frozen=True)
class PathPoint:
    """A point of the search's best-so-far path: evaluation ``index``, its search score, and
    its held-out scores (first held-out noise seed)."""

    index: int
    search_score: float
    held_out: dict[str, float]


@dataclass(frozen=True)
class Comparison:
    """LCSC next to its baselines; held-out scores by model id."""

    trajectory: Trajectory
    ema_star: baselines.Choice
    best_checkpoint: baselines.Choice
    lcsc: search.SearchResult
    models: tuple[Model, ...]
    held_out: dict[str, HeldOut]
    floor: dict[str, float]
    path: tuple[PathPoint, ...]
    evaluation: str  # the held-out sample counts, in words
    groups: Groups | None = None  # LCSC's coefficient groups (None: one vector)

    @property
    def lcsc_coefficients(self) -> np.ndarray:
        """LCSC's coefficients: ``(K,)``, or ``(G, K)`` with groups (a row per group)."""
        a = self.lcsc.best_coefficients
        return np.asarray(a, dtype=np.float64) if self.groups is None else self.groups.matrix(a)

    @property
    def search_scores(self) -> dict[str, float]:
        """Search-noise scores by model id: the EMA grid, EMA*, best checkpoint, LCSC."""
        grid = {ema_model(rate).id: s for rate, s in self.ema_star.scores.items()}
        return grid | {
            EMA_STAR.id: self.ema_star.score,
            BEST_CHECKPOINT.id: self.best_checkpoint.score,
            LCSC.id: self.lcsc.best_score,
        }


def compare(
    run_dir: Path,
    workdir: Path,
    config: ExperimentConfig | None = None,
    *,
    trajectory: Trajectory | None = None,
    progress: Progress | None = None,
) -> Comparison:
    """Compare LCSC with raw weights, the training EMA, EMA at a grid of rates, EMA* and the
    best single checkpoint for the ``lcsc train`` run in ``run_dir`` (digits).

    The search and the baseline choices use search noise; every model is then scored on
    held-out noise against the test split. ``trajectory`` restricts the checkpoints
    (default: all but step 0). Under torchrun (a process group of several ranks) rank 0
    calls this and the other ranks :func:`serve_compare`: the search's candidates are spread
    over the ranks, rank 0 does everything else.
    """
    config = config or ExperimentConfig()
    traj = trajectory or Trajectory.open(run_dir / "trajectory").select(start=1)
    spec = config.group_spec(traj.keys)
    star, single, result, n_init = _search(traj, workdir, config, spec, progress)
    evaluate = HeldOutEvaluator(
        traj.metadata,
        config.held_out_samples,
        config.noise_seeds,
        config.sampler,
        config.held_out_nfe or config.search_nfe,
    )
    states = _states(run_dir, traj, star, single, result.combine(traj))
    models, held = _held_out(states, evaluate, progress)
    path = _goodhart_path(traj, result, n_init, config.path_points, evaluate, progress)
    floor = evaluate.scorer.floor
    return Comparison(
        traj, star, single, result, models, held, floor, path, evaluate.describe(), result.groups
    )


def serve_compare(
    run_dir: Path,
    workdir: Path,
    config: ExperimentConfig | None = None,
    *,
    trajectory: Trajectory | None = None,
) -> None:
    """A rank > 0's part of :func:`compare` (same arguments): score its share of the search's
    candidates, sent by rank 0, until the search ends."""
    config = config or ExperimentConfig()
    traj = trajectory or Trajectory.open(run_dir / "trajectory").select(start=1)
    spec = config.group_spec(traj.keys)
    _lcsc_search(traj, workdir, config, spec, _main_objective(traj.metadata, config), None)


def _goodhart_path(
    traj: Trajectory,
    result: search.SearchResult,
    n_init: int,
    points: int,
    evaluate: HeldOutEvaluator,
    progress: Progress | None,
) -> tuple[PathPoint, ...]:
    """Held-out scores (first noise seed) along the best-so-far path of what the optimizer
    ranked (score + penalty), each next to its search-objective score."""
    indices = path_indices([ev.search_score for ev in result.history], n_init, points)
    path = []
    for i, index in enumerate(indices):
        ev = result.history[index]
        samples = evaluate.generators[0](combine_groups(traj, result.groups, ev.coefficients))
        path.append(PathPoint(index, ev.score, evaluate.scorer(samples)))
        report(progress, "Goodhart path", i + 1, len(indices))
    return tuple(path)


def _search(
    traj: Trajectory,
    workdir: Path,
    config: ExperimentConfig,
    groups: Groups | str | None,
    progress: Progress | None,
) -> tuple[baselines.Choice, baselines.Choice, search.SearchResult, int]:
    """EMA*, the best checkpoint and the LCSC search, all on search noise; and the size of
    the search's initial population (the EMA grid)."""
    main = _main_objective(traj.metadata, config)
    rates = default_ema_rates(traj.steps)
    star = baselines.ema_star(traj, main, rates, progress)
    single = baselines.best_checkpoint(traj, main, progress)
    result = _lcsc_search(traj, workdir, config, groups, main, progress)
    return star, single, result, len(search.ema_init(traj.steps, rates))


def _main_objective(metadata: Any, config: ExperimentConfig) -> SampleFD:
    """FD in ``main`` on the search noise: EMA*'s and the best checkpoint's criterion."""
    generator = _generator(metadata, config, config.search_samples, config.seed)
    return SampleFD(generator, digits_features("main"), digits_reference(metadata, "main"))


def _lcsc_search(
    traj: Trajectory,
    workdir: Path,
    config: ExperimentConfig,
    groups: Groups | str | None,
    main: SampleFD,
    progress: Progress | None,
) -> search.SearchResult:
    """The LCSC search from the EMA grid, on ``main`` or the composite of the search spaces
    (one coefficient vector per group with ``groups``)."""
    metadata = traj.metadata
    objective = main if config.search_spaces == ("main",) else None
    objective = objective or CompositeFD(main.generator, metadata, config.search_spaces)
    init = search.ema_init(traj.steps, default_ema_rates(traj.steps))
    return search.run(
        traj,
        objective,
        search.METHODS[config.method](nonnegative=config.nonnegative),
        budget=config.budget,
        seed=config.seed,
        workdir=workdir,
        init=init,
        callback=lambda ev: report(progress, "search", ev.index + 1, config.budget),
        validation=_validation(metadata, config),
        penalty=search.Penalty(config.penalty) if config.penalty > 0 else None,
        objective_identity={
            "digits_fd": list(config.search_spaces),
            "samples": config.search_samples,
        },
        groups=groups,
    )


def _generator(
    metadata: Any, config: ExperimentConfig, n: int, noise_seed: int
) -> FixedNoiseGenerator:
    return FixedNoiseGenerator(metadata, n, noise_seed, "search", config.sampler, config.search_nfe)


def _validation(metadata: Any, config: ExperimentConfig) -> search.Validation | None:
    """FD in the ``alt`` space on other noise (a search-role seed that no search uses)."""
    if not config.validation:
        return None
    noise_seed = config.seed + VALIDATION_NOISE_OFFSET
    generator = _generator(metadata, config, config.validation_samples, noise_seed)
    objective = SampleFD(generator, digits_features("alt"), digits_reference(metadata, "alt"))
    identity = {"digits_fd": "alt", "samples": config.validation_samples, "noise": noise_seed}
    return search.Validation(objective, patience=config.patience, identity=identity)


def _states(
    run_dir: Path,
    traj: Trajectory,
    star: baselines.Choice,
    single: baselines.Choice,
    lcsc: State,
) -> dict[Model, State]:
    """Every compared model's weights. The EMA grid's other rates are scored on search noise
    only (``Comparison.search_scores``): held-out scoring costs a few seconds per model."""
    return {
        RAW: _tensors(run_dir / "final.safetensors"),
        TRAINING_EMA: _tensors(run_dir / "ema.safetensors"),
        EMA_STAR: traj.combine(star.coefficients),
        BEST_CHECKPOINT: traj.combine(single.coefficients),
        LCSC: lcsc,
    }


def _held_out(
    states: dict[Model, State], evaluate: HeldOutEvaluator, progress: Progress | None
) -> tuple[tuple[Model, ...], dict[str, HeldOut]]:
    held: dict[str, HeldOut] = {}
    for i, (model, state) in enumerate(states.items()):
        held[model.id] = evaluate(state)
        report(progress, "held-out", i + 1, len(states))
    return tuple(states), held


def path_indices(scores: Sequence[float], n_init: int, points: int) -> list[int]:
    """Evaluation indices of the best-so-far path from the best of the first ``n_init``
    evaluations (the EMA grid: the EMA* level) on, thinned evenly to at most ``points``
    (always keeping the first and the last; none for ``points`` 0)."""
    if points == 0:
        return []
    s = np.where(np.isfinite(scores), np.asarray(scores, dtype=np.float64), np.inf)
    head = s[:n_init]
    best = int(np.argmin(head)) if len(head) else 0
    path = [best]
    for i in range(max(n_init, 1), len(s)):
        if s[i] < s[path[-1]]:
            path.append(i)
    if len(path) <= points:
        return path
    keep = np.unique(np.round(np.linspace(0, len(path) - 1, points)).astype(int))
    return [path[k] for k in keep]


def _tensors(path: Path) -> dict[str, Any]:
    return {k: v.clone() for k, v in read_checkpoint(path).tensors.items()}
