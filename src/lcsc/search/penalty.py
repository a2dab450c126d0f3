"""A trust region around the initial vector: the optimizer ranks ``score + penalty(a)``.

``penalty(a) = weight * K * ||a - anchor||^2``. A search that overfits its metric drifts far
from the EMA vectors it starts at; the penalty makes far candidates pay for it, so the search
only moves where the gain in score is worth the distance. The factor ``K`` keeps ``weight`` on
the same scale for any number of checkpoints (coefficients are of order ``1/K``). With one
vector per parameter group (``G`` rows of ``K``, :mod:`lcsc.search.grouped`) it is the mean over
the rows, ``weight * K * ||A - anchor||_F^2 / G``: a matrix of equal rows pays what that one row
pays ungrouped.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from lcsc.config import Config, real
from lcsc.errors import SearchError
from lcsc.search.base import rank_score

Vector = npt.NDArray[np.float64]


@dataclasses.dataclass(frozen=True)
class Penalty(Config):
    """The penalty's settings.

    Attributes:
        weight: ``lambda >= 0`` (0: no effect; the score's own units per squared distance).
        anchor: the centre, ``K`` numbers (used for every group) or, with groups, ``G*K``;
            ``None``: the initial row with the best objective score (EMA* for an EMA initial
            population). The initial rows are then scored without penalty (the anchor is one
            of them and its penalty is 0).
    """

    error: ClassVar[type[SearchError]] = SearchError
    weight: float
    anchor: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        self.check("weight", real, minimum=0.0)
        if self.anchor is not None:
            try:
                anchor = tuple(float(x) for x in np.asarray(self.anchor, dtype=np.float64).ravel())
            except (TypeError, ValueError):
                anchor = ()
            self.require(
                len(anchor) > 0 and bool(np.isfinite(anchor).all()),
                "anchor",
                "must be finite numbers, one per checkpoint",
                self.anchor,
            )
            object.__setattr__(self, "anchor", anchor)

    def describe(self) -> dict[str, Any]:
        """What goes into the workdir's identity."""
        return {"weight": self.weight, "anchor": None if self.anchor is None else list(self.anchor)}


class PenaltyTerm:
    """The penalty of one search: a pure function of the candidates and the init scores."""

    def __init__(self, penalty: Penalty | None, init: Vector, blocks: int = 1) -> None:
        """``init`` ``(P, blocks*K)``: the initial rows, ``blocks`` vectors of ``K`` each."""
        self.penalty = penalty
        self._init = init
        self._blocks = blocks
        self._init_scores: list[float] = []
        self._anchor: Vector | None = None
        if penalty is not None and penalty.anchor is not None:
            anchor = np.array(penalty.anchor, dtype=np.float64)
            k = init.shape[1] // blocks
            if len(anchor) == k:
                anchor = np.tile(anchor, blocks)  # the same centre for every group
            if len(anchor) != init.shape[1]:
                also = "" if blocks == 1 else f" (or {init.shape[1]}, one K per group)"
                raise SearchError(
                    f"Penalty.anchor holds {len(anchor)} numbers but the search has "
                    f"K={k} coefficients{also}"
                )
            self._anchor = anchor

    def __call__(self, index: int, candidate: Vector, score: float) -> float:
        """Penalty of evaluation ``index`` (``candidate`` scored ``score``); call in order."""
        if self.penalty is None:
            return 0.0
        if self._anchor is None:  # anchored at the best init row, known once all are scored
            if index < len(self._init):
                self._init_scores.append(rank_score(score))
                return 0.0
            self._anchor = self._init[int(np.argmin(self._init_scores))]
        k = candidate.shape[0] // self._blocks
        distance = float(np.sum((candidate - self._anchor) ** 2)) / self._blocks
        return self.penalty.weight * k * distance
