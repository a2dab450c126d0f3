"""Shared pieces of the optimizers: the ask/tell base class and config validation.

Every optimizer is a deterministic function of its seed and of the scores it was told:
it draws from its own ``numpy.random.Generator``, never from a global RNG. That is what
lets a search resume exactly by replaying its history (see :mod:`lcsc.search.history`).
"""

from __future__ import annotations

import collections
import dataclasses
import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from lcsc.errors import SearchError

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
class SearchConfig(ABC):
    """Base of the optimizer configs: frozen, keyword-only, validated, serialisable.

    ``nonnegative=True`` restricts every proposed candidate to convex combinations
    (clip negatives, renormalise), the paper's convex ablation (Table 14).
    """

    method: ClassVar[str]
    nonnegative: bool = False

    def __post_init__(self) -> None:
        self._check_bool("nonnegative")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @abstractmethod
    def make_optimizer(self, init: npt.ArrayLike, seed: int) -> Optimizer:
        """A fresh optimizer starting from ``init`` (shape ``(P, K)``)."""

    def span(self, init: npt.NDArray[np.float64]) -> npt.NDArray[np.float64] | None:
        """Vectors ``(m, K)`` whose span holds (nearly) every candidate, or None: lets
        :func:`lcsc.search.run` combine from ``m`` precomputed models."""
        return None

    # Validators coerce in place (the dataclass is frozen, hence object.__setattr__) so
    # that e.g. ``2`` and ``2.0`` give the same config and the same search.json.
    def _check_int(self, name: str, minimum: int, *, optional: bool = False) -> None:
        value = getattr(self, name)
        if optional and value is None:
            return
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
            raise SearchError(f"{self.method} config: {name} must be an integer; got {value!r}")
        if value < minimum:
            raise SearchError(f"{self.method} config: {name} must be >= {minimum}; got {value!r}")
        object.__setattr__(self, name, int(value))

    def _check_real(self, name: str, wanted: str, accept: Callable[[float], bool]) -> None:
        value = getattr(self, name)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise SearchError(f"{self.method} config: {name} must be a number; got {value!r}")
        v = float(value)
        if not (math.isfinite(v) and accept(v)):
            raise SearchError(f"{self.method} config: {name} must be {wanted}; got {value!r}")
        object.__setattr__(self, name, v)

    def _check_positive(self, name: str) -> None:
        self._check_real(name, "finite and > 0", lambda v: v > 0.0)

    def _check_probability(self, name: str) -> None:
        self._check_real(name, "in [0, 1]", lambda v: 0.0 <= v <= 1.0)

    def _check_bool(self, name: str) -> None:
        value = getattr(self, name)
        if not isinstance(value, (bool, np.bool_)):
            raise SearchError(f"{self.method} config: {name} must be True or False; got {value!r}")
        object.__setattr__(self, name, bool(value))
