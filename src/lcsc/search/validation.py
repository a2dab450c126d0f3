"""Validation: score the search path with a second objective, keep its best, stop early.

A search keeps lowering its own score after the model stops getting better in other metrics
(it overfits the metric's noise and feature space). A validation objective -- other noise,
another feature space or metric -- scores the candidates of the best-so-far path; the result is
the best by validation, and the search stops after ``patience`` validations without
improvement.

Which candidates get validated depends only on the search scores, so a resumed search validates
the same ones; the validation scores themselves are replayed from the history, never
recomputed.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt

from lcsc.config import Config, integer
from lcsc.errors import SearchError
from lcsc.search.base import rank_score
from lcsc.search.penalty import Penalty, PenaltyTerm
from lcsc.search.results import Validated

if TYPE_CHECKING:
    from lcsc.search.history import History

Vector = npt.NDArray[np.float64]


@dataclasses.dataclass(frozen=True)
class Validation(Config):
    """A validation objective and when to call it.

    Attributes:
        objective: lower is better; ``state_dict -> float`` for :func:`lcsc.search.run`,
            ``coefficients (K,) -> float`` for :func:`lcsc.search.minimize` and ``iterate``.
        patience: stop the search after this many validations in a row without a lower
            validation score; ``None``: spend the whole budget.
        validate_every: ``None``: validate every candidate that becomes the best-so-far by
            search score, right after its evaluation. ``N``: after every N-th evaluation (and
            after the budget's last) validate the best-so-far unless it already was; fewer
            validations when the best improves often.
        identity: JSON-able description of the objective (e.g. its ``MODULE:FUNCTION`` and
            arguments), stored in the workdir and checked on resume; default: the callable's
            module and qualified name.
    """

    error: ClassVar[type[SearchError]] = SearchError
    objective: Callable[[Any], float]
    patience: int | None = None
    validate_every: int | None = None
    identity: Any = None

    def __post_init__(self) -> None:
        self.require(callable(self.objective), "objective", "must be callable", self.objective)
        self.check("patience", integer, 1, optional=True)
        self.check("validate_every", integer, 1, optional=True)

    def describe(self) -> dict[str, Any]:
        """What goes into the workdir's identity."""
        return {
            "objective": callable_name(self.objective) if self.identity is None else self.identity,
            "patience": self.patience,
            "validate_every": self.validate_every,
        }


def callable_name(objective: Callable[..., Any]) -> str:
    """``module.qualified_name`` of a function, or of a callable object's class: a default
    identity for an objective (it cannot see a closure's arguments)."""
    name = getattr(objective, "__qualname__", type(objective).__qualname__)
    return f"{getattr(objective, '__module__', '?')}.{name}"


class SearchPath:
    """The best-so-far path of one search: its penalties, validations and early stop."""

    def __init__(self, validation: Validation | None, penalty: PenaltyTerm, budget: int) -> None:
        self.validation = validation
        self.penalty = penalty
        self.budget = budget
        self.stopped = False
        self._best_score = math.inf  # best-so-far by search score
        self._best_index = -1
        self._best_coefficients: Vector | None = None
        self._last_validated = -1
        self._best_validation = math.inf
        self._since_improvement = 0

    def step(
        self, index: int, candidate: Vector, score: float, history: History | None
    ) -> tuple[float, Validated | None]:
        """Penalty of a fresh evaluation and the validation it triggers (made here)."""
        penalty = self.penalty(index, candidate, score)
        due = self._due(index, candidate, score + penalty)
        if due is None:
            return penalty, None
        validated = _validate(self.validation, *due, history)
        self._record(validated)
        return penalty, validated

    def replay(
        self, index: int, candidate: Vector, score: float, validated: Validated | None
    ) -> float:
        """Penalty of a recorded evaluation; its recorded validation updates the path."""
        penalty = self.penalty(index, candidate, score)
        self._due(index, candidate, score + penalty)
        if validated is not None:
            self._record(validated)
        return penalty

    def _due(self, index: int, candidate: Vector, search_score: float) -> tuple | None:
        if rank_score(search_score) < self._best_score:
            self._best_score, self._best_index = search_score, index
            self._best_coefficients = candidate
        if self.validation is None or self._best_coefficients is None:
            return None
        every = self.validation.validate_every
        if every is None:
            due = self._best_index == index
        else:
            due = (index + 1) % every == 0 or index + 1 == self.budget
            due = due and self._best_index != self._last_validated
        return (self._best_index, self._best_coefficients) if due else None

    def _record(self, validated: Validated) -> None:
        assert self.validation is not None
        self._last_validated = validated.index
        if validated.score < self._best_validation:  # NaN compares false: no improvement
            self._best_validation = validated.score
            self._since_improvement = 0
        else:
            self._since_improvement += 1
        patience = self.validation.patience
        self.stopped = patience is not None and self._since_improvement >= patience


def _validate(
    validation: Validation | None, index: int, candidate: Vector, history: History | None
) -> Validated:
    assert validation is not None
    start = time.perf_counter()
    try:
        score = float(validation.objective(candidate.copy()))
    except Exception as exc:
        where = ""
        if history is not None:
            error = f"validation: {type(exc).__name__}: {exc}"
            where = f" (coefficients saved to {history.save_failed(index, candidate, error)})"
        raise SearchError(
            f"validation objective failed on candidate {index}{where}: {type(exc).__name__}: {exc}"
        ) from exc
    wall_time_s = time.perf_counter() - start
    return Validated(index, score if math.isfinite(score) else math.nan, wall_time_s)


def with_levers(
    identity: dict[str, Any] | None, validation: Validation | None, penalty: Penalty | None
) -> dict[str, Any]:
    """The workdir identity plus the validation's and penalty's settings (when given)."""
    full = dict(identity or {})
    for key, lever in (("validation", validation), ("penalty", penalty)):
        if lever is None:
            continue
        if key in full:
            raise SearchError(f"identity key {key!r} is reserved for the {key} settings")
        full[key] = lever.describe()
    return full
