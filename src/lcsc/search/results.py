"""What a search yields (:class:`Evaluation`) and returns (:class:`SearchResult`)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import numpy.typing as npt

from lcsc.errors import SearchError


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
    """

    index: int
    coefficients: npt.NDArray[np.float64]
    score: float
    wall_time_s: float
    resumed: bool = False


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """Outcome of a search: the best candidate and every evaluation, in order."""

    best_coefficients: npt.NDArray[np.float64]
    best_score: float
    best_index: int
    history: list[Evaluation]
    method: str
    seed: int

    @classmethod
    def from_history(cls, history: list[Evaluation], method: str, seed: int) -> SearchResult:
        """Best = lowest finite score, ties to the earliest evaluation."""
        best: Evaluation | None = None
        for evaluation in history:
            finite = math.isfinite(evaluation.score)
            if finite and (best is None or evaluation.score < best.score):
                best = evaluation
        if best is None:
            raise SearchError(
                f"no candidate got a finite score in {len(history)} evaluations; "
                "check the objective"
            )
        # A writable copy: users pass it on (torch.from_numpy warns on read-only arrays).
        best_coefficients = best.coefficients.copy()
        return cls(best_coefficients, best.score, best.index, history, method, seed)
