"""Shared pieces of the optimizers: the ask/tell base class and the base of their configs.

Every optimizer is a deterministic function of its seed and of the scores it was told:
it draws from its own ``numpy.random.Generator``, never from a global RNG. That is what
lets a search resume exactly by replaying its history (see :mod:`lcsc.search.history`).
"""

from __future__ import annotations

import collections
import dataclasses
import math
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from lcsc.config import Config, boolean
from lcsc.errors import LcscError, SearchError

Vector = npt.NDArray[np.float64]


def rank_score(score: float) -> float:
    """Score used for ranking: NaN and +-inf become +inf, so they rank last."""
    return score if math.isfinite(score) else math.inf


class Optimizer(ABC):
    """Ask/tell optimizer over coefficient vectors of shape ``(K,)`` summing to one.

    The first ``P`` candidates are the rows of ``init`` (shape ``(P, K)``), in order;
    subclasses propose the following ones in :meth:`_propose` and learn from their
    scores in :meth:`_observe`. ``ask`` and ``tell`` alternate; :meth:`ask_many` hands out
    what :meth:`_capacity` allows before the next tell.
    """

    def __init__(self, init: npt.ArrayLike, seed: int) -> None:
        self.init: npt.NDArray[np.float64] = np.array(init, dtype=np.float64)
        self.k: int = self.init.shape[1]
        self.rng = np.random.default_rng(seed)
        self.init_scores: list[float] = []  # ranking scores of the init rows
        self.n_told = 0
        self._pending: collections.deque[Vector] = collections.deque()

    @property
    def best_init(self) -> Vector:
        """Best init row by score (ties: the earliest); only valid once all are told."""
        return self.init[int(np.argmin(self.init_scores))]

    def ask(self) -> Vector:
        """Return the next candidate, shape ``(K,)``, float64, summing to one."""
        if self._pending:
            raise RuntimeError("ask() called twice without tell()")
        return self.ask_many(1)[0]

    def ask_many(self, limit: int) -> list[Vector]:
        """Up to ``limit`` next candidates (at least one) that need no score of each other:
        the rest of the init rows, or of the current generation / CMA population. Tell their
        scores in order. Asking several at once proposes the same candidates as asking them
        one by one, so a search spread over processes equals the one-process search."""
        if self._pending:
            raise RuntimeError("ask_many() called with candidates not yet told")
        remaining_init = len(self.init) - self.n_told
        count = max(1, min(limit, remaining_init if remaining_init > 0 else self._capacity()))
        for j in range(count):
            if j < remaining_init:
                self._pending.append(self.init[self.n_told + j].copy())
            else:
                self._pending.append(self._propose())
        return [c.copy() for c in self._pending]  # the caller may mutate its copies freely

    def tell(self, score: float) -> None:
        """Report the score of the oldest asked, untold candidate (lower is better)."""
        if not self._pending:
            raise RuntimeError("tell() called without ask()")
        candidate = self._pending.popleft()
        ranked = rank_score(float(score))
        if self.n_told < len(self.init):
            self.init_scores.append(ranked)
        else:
            self._observe(candidate, ranked)
        self.n_told += 1

    def _capacity(self) -> int:
        """How many proposals may be made before any of them is told (at least 1)."""
        return 1

    @abstractmethod
    def _propose(self) -> Vector:
        """Next candidate after the init rows, drawn from ``self.rng`` only."""

    @abstractmethod
    def _observe(self, candidate: Vector, score: float) -> None:
        """Learn from a proposed candidate's ranking score (finite or +inf)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class SearchConfig(Config, ABC):
    """Base of the optimizer configs: frozen, keyword-only, validated, serialisable.

    ``nonnegative=True`` restricts every proposed candidate to convex combinations
    (clip negatives, renormalise), the paper's convex ablation (Table 14).
    """

    method: ClassVar[str]
    error: ClassVar[type[LcscError]] = SearchError
    nonnegative: bool = False

    def __post_init__(self) -> None:
        self.check("nonnegative", boolean)

    @abstractmethod
    def make_optimizer(self, init: npt.ArrayLike, seed: int) -> Optimizer:
        """A fresh optimizer starting from ``init`` (shape ``(P, K)``)."""

    @property
    def takes_groups(self) -> bool:
        """Whether the method can search one coefficient vector per parameter group
        (:mod:`lcsc.search.grouped`: the CMA-ES methods)."""
        return False

    @property
    def blocks(self) -> int:
        """Coefficient vectors in one candidate, each summing to one (1; per-group
        coefficients: one per group, see :mod:`lcsc.search.grouped`)."""
        return 1

    def span(self, init: npt.NDArray[np.float64]) -> npt.NDArray[np.float64] | None:
        """Vectors ``(m, K)`` whose span holds (nearly) every candidate, or None: lets
        :func:`lcsc.search.run` combine from ``m`` precomputed models."""
        return None
