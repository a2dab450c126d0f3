"""Running a search: :func:`iterate` and :func:`minimize` on coefficients, :func:`run` on a
trajectory; the loop itself (ask, score, log, tell; replay) is :mod:`lcsc.search.loop`.

A search is a pure function of (method, config, seed, init) and of the scores it
receives. With a ``workdir`` every completed evaluation is appended to its history;
running again with the same arguments replays that history through a fresh optimizer
(checking that it proposes the same candidates) and goes on from there, so a search
killed at any moment ends exactly like an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from lcsc.config import integer
from lcsc.ema import default_ema_rates, ema_coefficients
from lcsc.errors import SearchError
from lcsc.search import distributed as spread
from lcsc.search.base import SearchConfig
from lcsc.search.cmaes import CMAESConfig
from lcsc.search.evolutionary import EvolutionaryConfig
from lcsc.search.grouped import GroupedConfig, tile_init
from lcsc.search.history import History, make_header
from lcsc.search.loop import search
from lcsc.search.model_level import (
    TrajectoryLike,
    check_workdir,
    on_coefficients,
    search_groups,
    span_combiner,
    validation_on_coefficients,
)
from lcsc.search.penalty import Penalty, PenaltyTerm
from lcsc.search.random_search import RandomConfig
from lcsc.search.results import Evaluation, SearchResult
from lcsc.search.subspace import SubspaceConfig
from lcsc.search.validation import SearchPath, Validation, callable_name, with_levers
from lcsc.threads import using as using_threads
from lcsc.trajectory.groups import AUTO, Groups

if TYPE_CHECKING:  # torch is only needed for annotations; keep importing cheap
    import torch

METHODS: dict[str, type[SearchConfig]] = {
    config.method: config
    for config in (EvolutionaryConfig, CMAESConfig, RandomConfig, SubspaceConfig)
}
# The method that reached the best held-out quality per evaluation (benchmarks/search_budget.py,
# docs/benchmarks.md): the subspace search, one coefficient vector per top-level module.
DEFAULT_METHOD = "subspace"
DEFAULT_GROUPS = AUTO
INIT_SUM_TOLERANCE = 1e-9

ScoreFn = Callable[[npt.NDArray[np.float64]], float]
Method = str | SearchConfig
Workdir = str | os.PathLike[str] | None


def resolve_method(method: Method) -> SearchConfig:
    """A config instance from a method name (default settings) or a config."""
    if isinstance(method, SearchConfig):
        return method
    if isinstance(method, str) and method in METHODS:
        return METHODS[method]()
    raise SearchError(f"method must be one of {sorted(METHODS)} or a config; got {method!r}")


def check_init(init: npt.ArrayLike, config: SearchConfig) -> npt.NDArray[np.float64]:
    """``init`` as a float64 ``(P, K)`` array of finite rows summing to one."""
    try:
        arr = np.array(init, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SearchError(f"init must be a (P, K) array of numbers: {exc}") from exc
    blocks = config.blocks  # per-group coefficients: each of the G blocks of a row sums to 1
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 2 * blocks or arr.shape[1] % blocks:
        shape = "(P, K)" if blocks == 1 else f"(P, {blocks}*K)"
        raise SearchError(f"init must have shape {shape} with P >= 1, K >= 2; got {arr.shape}")
    if not np.isfinite(arr).all():
        raise SearchError("init must hold finite numbers only")
    sums = arr.reshape(arr.shape[0], blocks, -1).sum(axis=2)
    bad = np.argwhere(np.abs(sums - 1.0) > INIT_SUM_TOLERANCE)
    if bad.size:
        row, block = (int(i) for i in bad[0])
        where = f"row {row}" if blocks == 1 else f"row {row}, group {block},"
        total = float(sums[row, block])
        raise SearchError(f"init rows must sum to 1 (Eq. 7); {where} sums to {total!r}")
    if config.nonnegative and (arr < 0).any():
        raise SearchError("init has negative coefficients, but the config asks nonnegative=True")
    return arr


def iterate(
    score_fn: ScoreFn,
    init: npt.ArrayLike,
    method: Method = DEFAULT_METHOD,
    *,
    budget: int,
    seed: int = 0,
    workdir: Workdir = None,
    identity: dict[str, Any] | None = None,
    on_resume: Callable[[int], None] | None = None,
    validation: Validation | None = None,
    penalty: Penalty | None = None,
    pool: spread.LocalPool | None = None,
) -> Generator[Evaluation, None, None]:
    """Run a search lazily, yielding one :class:`Evaluation` per evaluated candidate.

    Args:
        score_fn: objective, ``coefficients (K,) -> float``, lower is better.
        init: initial population, shape ``(P, K)``, rows summing to one; the first P
            candidates are these rows, in order.
        method: ``"subspace"`` (default), ``"evolutionary"`` (Algorithm 1), ``"cmaes"``,
            ``"random"`` or a config instance.
        budget: total number of evaluations, replayed ones included. A workdir that
            already holds at least ``budget`` evaluations is only replayed.
        seed: seed of the optimizer's own random generator (>= 0).
        workdir: folder holding the search's state; ``None`` keeps it in memory. An
            existing workdir is resumed, if it holds the same search.
        identity: JSON-able description of what is searched over (e.g. trajectory
            steps and fingerprint, the objective), checked on resume.
        validation: a validation objective on coefficients, scoring the best-so-far path
            (see :class:`Validation`); its settings join the workdir's identity.
        penalty: a trust-region penalty added to the scores the optimizer ranks (see
            :class:`Penalty`); its settings join the workdir's identity.
        on_resume: called once with the number of evaluations replayed from the
            workdir, when there were any, before the first new evaluation.
        pool: where candidates are scored (default: one at a time in this process;
            :func:`minimize` passes a process-group pool under torchrun).

    Arguments are checked at once; the workdir is opened (and locked) on the first
    ``next()`` and released when the generator finishes or is closed.
    """
    config = resolve_method(method)
    init_arr = check_init(init, config)
    budget = integer("budget", budget, 1, error=SearchError)
    seed = integer("seed", seed, 0, error=SearchError)
    history = None
    path = SearchPath(validation, PenaltyTerm(penalty, init_arr, config.blocks), budget)
    identity = with_levers(identity, validation, penalty)
    if workdir is not None:
        header = make_header(config.method, config.to_dict(), seed, init_arr, identity or {})
        history = History(workdir, header)
    pool = pool or spread.LocalPool(score_fn)
    return search(pool, init_arr, config, budget, seed, history, path, on_resume)


def minimize(
    score_fn: ScoreFn,
    init: npt.ArrayLike,
    method: Method = DEFAULT_METHOD,
    *,
    budget: int,
    seed: int = 0,
    workdir: Workdir = None,
    identity: dict[str, Any] | None = None,
    callback: Callable[[Evaluation], None] | None = None,
    validation: Validation | None = None,
    penalty: Penalty | None = None,
    on_resume: Callable[[int], None] | None = None,
    distributed: bool | None = None,
    split: str = "candidates",
) -> SearchResult:
    """Run :func:`iterate` to the end; ``callback`` sees every evaluation (also replayed).

    With a ``validation`` the result is the validated candidate with the best validation
    score, and the search ends early once ``validation.patience`` validations in a row did
    not improve on it (``SearchResult.stopped_early``).

    ``distributed`` (default: whenever a ``torch.distributed`` group of several processes is
    initialised, e.g. under torchrun) spreads the candidates of each generation over the
    group's processes, which must all make this call (:mod:`lcsc.search.distributed`);
    rank 0 alone writes the workdir and calls ``callback``; every rank returns the result.
    ``split="samples"`` scores one candidate at a time on every process together instead
    (``score_fn`` must then split its own work, as ``SampleFD.split_samples()`` does).

    Raises:
        SearchError: bad arguments, a workdir holding another search, a failing
            objective, or no finite score at all.
    """
    levers = {"validation": validation, "penalty": penalty, "on_resume": on_resume}
    args = (score_fn, init, method, budget, seed, workdir, identity, callback)
    spread.check_split(split)
    if not spread.active(distributed):
        return _minimize(*args, None, levers)
    import torch.distributed as dist

    if dist.get_rank() != 0:
        spread.serve(score_fn, split)
        return spread.share_result(None)
    pool = spread.ProcessGroupPool(score_fn, split)
    try:
        result = _minimize(*args, pool, levers)
    except BaseException as exc:
        pool.close()
        spread.share_failure(exc)
        raise
    pool.close()
    return spread.share_result(result)


def _minimize(
    score_fn: ScoreFn,
    init: npt.ArrayLike,
    method: Method,
    budget: int,
    seed: int,
    workdir: Workdir,
    identity: dict[str, Any] | None,
    callback: Callable[[Evaluation], None] | None,
    pool: spread.LocalPool | None,
    levers: dict[str, Any],
) -> SearchResult:
    evaluations = iterate(
        score_fn,
        init,
        method,
        budget=budget,
        seed=seed,
        workdir=workdir,
        identity=identity,
        pool=pool,
        **levers,
    )
    history: list[Evaluation] = []
    with contextlib.closing(evaluations):  # a raising callback still releases the workdir
        for evaluation in evaluations:
            history.append(evaluation)
            if callback is not None:
                callback(evaluation)
    stopped_early = levers["validation"] is not None and len(history) < budget
    return SearchResult.from_history(
        history, resolve_method(method).method, seed, stopped_early=stopped_early
    )


def ema_init(steps: Sequence[int], rates: Sequence[float] | None = None) -> npt.NDArray[np.float64]:
    """EMA coefficient vectors (paper: "initialize with EMA weights"), shape ``(P, K)``.

    ``rates`` defaults to :func:`lcsc.ema.default_ema_rates`; identical rows are kept
    once (each costs an evaluation).
    """
    if rates is None:
        rates = default_ema_rates(steps)
    rows: list[npt.NDArray[np.float64]] = []
    for rate in rates:
        row = ema_coefficients(steps, rate)
        if not any(np.array_equal(row, seen) for seen in rows):
            rows.append(row)
    if not rows:
        raise SearchError("ema_rates must not be empty")
    return np.stack(rows)


def run(
    trajectory: TrajectoryLike,
    objective: Callable[[dict[str, torch.Tensor]], float],
    method: Method = DEFAULT_METHOD,
    *,
    budget: int,
    seed: int = 0,
    workdir: Workdir = None,
    init: npt.ArrayLike | None = None,
    callback: Callable[[Evaluation], None] | None = None,
    ema_rates: Sequence[float] | None = None,
    validation: Validation | None = None,
    penalty: Penalty | None = None,
    objective_identity: Any = None,
    on_resume: Callable[[int], None] | None = None,
    threads: int | None = None,
    distributed: bool | None = None,
    groups: Groups | str | None = DEFAULT_GROUPS,
    split: str = "candidates",
) -> SearchResult:
    """Search the coefficients whose combined checkpoint minimises ``objective``.

    ``objective(state_dict) -> float`` (lower is better) scores
    ``trajectory.combine(coefficients)``. The initial population is ``init`` (shape
    ``(P, K)``) or else the EMA vectors for ``ema_rates`` (default: the trajectory's
    default grid). The trajectory's steps and fingerprint and ``objective_identity``
    (JSON-able, e.g. the objective's name and arguments; default: its module and
    qualified name, which cannot see a closure's arguments) guard a resumed workdir
    against a changed trajectory or objective. A workdir in (or inside) a folder of the
    trajectory's files is refused. ``validation.objective`` is a second
    ``state_dict -> float`` scoring the best-so-far path (see :func:`minimize`). The search
    runs with ``threads`` torch threads (default: :func:`lcsc.threads.default_threads`, safe
    on shared cores), restored afterwards. See :func:`minimize` for the other arguments
    (``distributed`` and ``split`` included: with ``split="samples"`` each process scores
    its share of the samples of ``objective.split_samples()``, e.g. a ``SampleFD``).

    ``groups`` (default ``"auto"``): with a CMA-ES method (``"subspace"``, ``"cmaes"``) one
    coefficient vector per group of parameters is searched (:mod:`lcsc.search.grouped`);
    ``"auto"`` is one group per top-level module of the trajectory's keys
    (:func:`lcsc.trajectory.groups.module_patterns`), and one vector for all when there is one
    module or the method takes no groups (``"evolutionary"``, ``"random"``); a
    :class:`~lcsc.trajectory.groups.Groups` (:func:`~lcsc.trajectory.groups.resolve_groups`
    of the trajectory's keys) gives them explicitly; ``None`` searches one vector. Grouped
    candidates and results are ``(G*K,)``, the ``(G, K)`` matrix flattened; the result's
    ``groups`` names them and :meth:`SearchResult.combine` applies it. ``init`` stays
    ``(P, K)``, used for every group; the groups join the workdir's identity.
    """
    integer("budget", budget, 1, error=SearchError)  # fail before the trajectory does any work
    spread.check_split(split)
    integer("seed", seed, 0, error=SearchError)
    if workdir is not None:
        check_workdir(workdir, getattr(trajectory, "paths", ()))  # duck types may have none
    steps = [int(s) for s in trajectory.steps]
    init_arr = _initial_population(steps, init, ema_rates, resolve_method(method))
    if objective_identity is None:
        objective_identity = callable_name(objective)
    identity = {
        "steps": steps,
        "fingerprint": trajectory.fingerprint(),
        "objective": objective_identity,
    }
    groups = search_groups(groups, trajectory, resolve_method(method))
    if groups is not None:
        identity["groups"] = groups.describe()
    if validation is not None:  # the same settings, on coefficients
        validation = validation_on_coefficients(validation, trajectory, groups)
    if spread.active(distributed):  # on every rank alike; one process ignores ``split``
        objective = spread.for_split(objective, split)
    with using_threads(threads):
        combiner = span_combiner(trajectory, resolve_method(method), init_arr, budget)
        score_fn = on_coefficients(objective, combiner, groups)
        if groups is not None:  # one block of K coefficients per group
            method = GroupedConfig(inner=resolve_method(method), groups=len(groups))
            init_arr = tile_init(init_arr, len(groups))
        result = minimize(
            score_fn,
            init_arr,
            method,
            budget=budget,
            seed=seed,
            workdir=workdir,
            identity=identity,
            callback=callback,
            validation=validation,
            penalty=penalty,
            on_resume=on_resume,
            distributed=distributed,
            split=split,
        )
    return dataclasses.replace(result, groups=groups)


def _initial_population(
    steps: list[int],
    init: npt.ArrayLike | None,
    ema_rates: Sequence[float] | None,
    config: SearchConfig,
) -> npt.NDArray[np.float64]:
    """``init`` (else the EMA vectors for ``ema_rates``), checked against the trajectory."""
    if len(steps) < 2:
        raise SearchError(f"trajectory must hold at least 2 checkpoints; got {len(steps)}")
    if init is None:
        init = ema_init(steps, ema_rates)
    elif ema_rates is not None:
        raise SearchError("pass either init or ema_rates, not both")
    init_arr = check_init(init, config)
    if init_arr.shape[1] != len(steps):
        raise SearchError(
            f"init has K={init_arr.shape[1]} columns but the trajectory holds "
            f"{len(steps)} checkpoints"
        )
    return init_arr
