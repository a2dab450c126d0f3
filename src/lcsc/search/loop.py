"""The search loop: ask candidates, score them (through a pool), log them, tell the optimizer;
and, on resume, replay the logged evaluations through a fresh optimizer, checking that it
proposes the same candidates, so a search killed at any moment ends like an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Generator, Iterator

import numpy as np
import numpy.typing as npt

from lcsc.errors import SearchError
from lcsc.search import distributed as spread
from lcsc.search.base import Optimizer, SearchConfig
from lcsc.search.history import History
from lcsc.search.results import Evaluation
from lcsc.search.validation import SearchPath

log = logging.getLogger(__name__)


def search(
    pool: spread.LocalPool,
    init: npt.NDArray[np.float64],
    config: SearchConfig,
    budget: int,
    seed: int,
    history: History | None,
    path: SearchPath,
    on_resume: Callable[[int], None] | None,
) -> Generator[Evaluation, None, None]:
    """Evaluate candidates of ``config``'s optimizer until ``budget`` (or an early stop), after
    replaying the evaluations ``history`` holds; ``history`` is closed at the end."""
    optimizer = config.make_optimizer(init, seed)
    try:
        index = 0
        if history is not None:
            for evaluation in _replay(optimizer, history, path):
                index += 1
                yield evaluation
            if index and on_resume is not None:
                on_resume(index)
        while index < budget and not path.stopped:  # early stop: validation stopped improving
            candidates = optimizer.ask_many(min(pool.size, budget - index))
            for offset, candidate in enumerate(candidates):
                if not np.isfinite(candidate).all():
                    raise SearchError(
                        f"the search diverged: candidate {index + offset} has non-finite "
                        "coefficients (is the objective unbounded below?)"
                    )
            for candidate, outcome in zip(candidates, pool.map(candidates), strict=True):
                score, wall_time_s = _outcome(outcome, candidate, index, history)
                penalty, validated = path.step(index, candidate, score, history)
                if history is not None:  # logged before anyone sees it: a kill loses nothing
                    history.append(index, candidate, score, wall_time_s, validated)
                optimizer.tell(score + penalty)
                yield Evaluation(
                    index,
                    _readonly(candidate),
                    score,
                    wall_time_s,
                    penalty=penalty,
                    validation=validated,
                )
                index += 1
                if path.stopped:  # the rest of the batch is dropped, as one process never asks it
                    break
    finally:
        if history is not None:
            history.close()


def _replay(optimizer: Optimizer, history: History, path: SearchPath) -> Iterator[Evaluation]:
    """Open ``history`` and feed its recorded scores to a fresh ``optimizer``."""
    records = history.open()
    if records:
        log.info("%s: replaying %d recorded evaluations", history.workdir, len(records))
    for record in records:
        candidate = optimizer.ask()
        if not np.array_equal(candidate, record.coefficients):
            raise SearchError(
                f"history does not match the search: candidate {record.index} in "
                f"{history.history_path} differs from the one this search proposes "
                "(edited files, or other lcsc/numpy/pycma versions or BLAS?); "
                "choose another workdir"
            )
        penalty = path.replay(record.index, candidate, record.score, record.validation)
        optimizer.tell(record.score + penalty)
        yield Evaluation(
            record.index,
            _readonly(candidate),
            record.score,
            record.wall_time_s,
            resumed=True,
            penalty=penalty,
            validation=record.validation,
        )


def _outcome(
    outcome: spread.Outcome,
    candidate: npt.NDArray[np.float64],
    index: int,
    history: History | None,
) -> tuple[float, float]:
    """``(score, wall time)`` of a scored candidate; a failure raises :class:`SearchError`."""
    if isinstance(outcome, (BaseException, str)):
        error = outcome if isinstance(outcome, str) else f"{type(outcome).__name__}: {outcome}"
        where = ""
        if history is not None:
            path = history.save_failed(index, candidate, error)
            where = f" (coefficients saved to {path})"
        cause = outcome if isinstance(outcome, BaseException) else None
        raise SearchError(f"objective failed on candidate {index}{where}: {error}") from cause
    score, wall_time_s = outcome
    if not math.isfinite(score):
        log.warning("candidate %d scored %r; it ranks last", index, score)
        score = math.nan
    return score, wall_time_s


def _readonly(a: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    a.flags.writeable = False  # shared by the history and callbacks: keep it intact
    return a
