"""What a search yields (:class:`Evaluation`) and returns (:class:`SearchResult`)."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from lcsc.errors import SearchError
from lcsc.trajectory.groups import Groups, KeyedCombinable, combine_groups

if TYPE_CHECKING:  # torch is only needed for annotations; keep importing cheap
    import torch


@dataclasses.dataclass(frozen=True)
class Validated:
    """One validation: evaluation ``index`` of the search scored by the validation objective.

    ``score`` is NaN when it was not finite (it never counts as an improvement).
    """

    index: int
    score: float
    wall_time_s: float


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """One scored candidate.

    Attributes:
        index: 0-based position in the search.
        coefficients: the candidate, shape ``(K,)``, read-only.
        score: the objective's value; NaN when it was not finite (NaN and +-inf are
            stored alike, so a resumed history equals an uninterrupted one). Ranks last.
        wall_time_s: seconds spent in the objective.
        resumed: True when replayed from the workdir's history instead of evaluated.
        penalty: the trust-region penalty added to ``score`` for the optimizer (0 without
            one; see :class:`lcsc.search.Penalty`).
        validation: the validation made right after this evaluation, if any (of this
            candidate or of an earlier best-so-far; see :class:`lcsc.search.Validation`).
    """

    index: int
    coefficients: npt.NDArray[np.float64]
    score: float
    wall_time_s: float
    resumed: bool = False
    penalty: float = 0.0
    validation: Validated | None = None

    @property
    def search_score(self) -> float:
        """What the optimizer ranks: ``score + penalty`` (NaN stays NaN)."""
        return self.score + self.penalty


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """Outcome of a search: the chosen candidate and every evaluation, in order.

    Without a validation objective the chosen candidate is the best by search score; with
    one it is the best by validation score among the validated candidates, and the best by
    search score is kept in the ``search_best_*`` fields. ``best_score`` and
    ``search_best_score`` are objective scores (without any penalty). ``groups`` is set by
    :func:`lcsc.search.run` when it searched one vector per group: the coefficients are then
    the ``(G, K)`` matrix flattened (``groups.matrix`` reshapes it).
    """

    best_coefficients: npt.NDArray[np.float64]
    best_score: float
    best_index: int
    history: list[Evaluation]
    method: str
    seed: int
    search_best_coefficients: npt.NDArray[np.float64] | None = None
    search_best_score: float = math.nan
    search_best_index: int = -1
    validation_path: list[Validated] = dataclasses.field(default_factory=list)
    best_validation_score: float | None = None
    stopped_early: bool = False
    groups: Groups | None = None

    def combine(self, source: KeyedCombinable) -> dict[str, torch.Tensor]:
        """The chosen candidate's weights: ``source.combine(best_coefficients)``, or per group
        (:func:`lcsc.trajectory.groups.combine_groups`) for a grouped result."""
        return combine_groups(source, self.groups, self.best_coefficients)

    @classmethod
    def from_history(
        cls, history: list[Evaluation], method: str, seed: int, *, stopped_early: bool = False
    ) -> SearchResult:
        """Best = lowest finite search score (validation score when validations were made),
        ties to the earliest."""
        best: Evaluation | None = None
        for evaluation in history:
            score = evaluation.search_score
            if math.isfinite(score) and (best is None or score < best.search_score):
                best = evaluation
        if best is None:
            raise SearchError(
                f"no candidate got a finite score in {len(history)} evaluations; "
                "check the objective"
            )
        path = [e.validation for e in history if e.validation is not None]
        chosen, validation_score = best, None
        if path:
            chosen_validation = _best_validation(path)
            chosen, validation_score = history[chosen_validation.index], chosen_validation.score
        # Writable copies: users pass them on (torch.from_numpy warns on read-only arrays).
        return cls(
            chosen.coefficients.copy(),
            chosen.score,
            chosen.index,
            history,
            method,
            seed,
            search_best_coefficients=best.coefficients.copy(),
            search_best_score=best.score,
            search_best_index=best.index,
            validation_path=path,
            best_validation_score=validation_score,
            stopped_early=stopped_early,
        )


def _best_validation(path: list[Validated]) -> Validated:
    best: Validated | None = None
    for validated in path:
        if math.isfinite(validated.score) and (best is None or validated.score < best.score):
            best = validated
    if best is None:
        raise SearchError(
            f"no validated candidate got a finite validation score in {len(path)} "
            "validations; check the validation objective"
        )
    return best
