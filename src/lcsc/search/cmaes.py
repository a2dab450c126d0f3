"""CMA-ES (pycma) in the sum-to-one hyperplane, started at the best init vector.

CMA works in ``R^(K-1)``: a candidate is ``a = a0 + B z`` with ``B`` an orthonormal basis
of the sum-zero subspace, so every ``z`` gives a vector summing to one (Eq. (7)) and
the isotropic initial distribution is isotropic within the hyperplane. pycma is made
deterministic by feeding it normal draws from this optimizer's own generator.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from lcsc.config import boolean, integer, real
from lcsc.search.base import Optimizer, SearchConfig, Vector
from lcsc.search.space import make_convex, project_to_sum_one, sum_zero_basis

if TYPE_CHECKING:
    import cma


@dataclasses.dataclass(frozen=True, kw_only=True)
class CMAESConfig(SearchConfig):
    """Settings of the CMA-ES search.

    Attributes:
        sigma_scale: initial step size times ``K`` (``sigma0 = sigma_scale / K``).
        popsize: candidates per CMA iteration; ``None`` is pycma's default
            ``4 + 3 ln(K - 1)``.
        diagonal: learn a diagonal covariance only (sep-CMA, pycma's ``CMA_diagonal``):
            fewer parameters to learn, so it adapts sooner in many dimensions.
        step_damping: factor on pycma's step-size damping (``CSA_dampfac``); below 1 the
            step size adapts faster, which recovers sooner from a too large ``sigma_scale``.
        nonnegative: evaluate the convex version (clip, renormalise) of each candidate;
            CMA still learns from the unclipped point it proposed.
    """

    method = "cmaes"
    sigma_scale: float = 2.0
    popsize: int | None = None
    diagonal: bool = False
    step_damping: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check("sigma_scale", real, above=0.0)
        self.check("popsize", integer, 2, optional=True)
        self.check("diagonal", boolean)
        self.check("step_damping", real, above=0.0)

    @property
    def takes_groups(self) -> bool:
        return True

    def make_optimizer(self, init: npt.ArrayLike, seed: int) -> CMAESOptimizer:
        return CMAESOptimizer(init, self, seed)

    def search_basis(self, k: int) -> npt.NDArray[np.float64]:
        """Orthonormal sum-zero directions CMA searches along, shape ``(K, r)``."""
        return sum_zero_basis(k)


def finite_scores(scores: list[float]) -> list[float]:
    """Replace non-finite scores by a finite value worse than every finite one.

    pycma rejects inf/NaN, but a failed candidate must still rank last.
    """
    finite = [s for s in scores if math.isfinite(s)]
    worst = max(finite) + 1.0 + abs(max(finite)) if finite else 1e300
    return [s if math.isfinite(s) else worst for s in scores]


class CMAESOptimizer(Optimizer):
    def __init__(self, init: npt.ArrayLike, config: CMAESConfig, seed: int) -> None:
        super().__init__(init, seed)
        self.config = config
        self.basis = config.search_basis(self.k)  # (K, r), r = K-1 unless a subspace
        self.sigma0 = config.sigma_scale / self.k
        self.center: Vector | None = None  # a0, the origin z = 0 of the current run
        self.best: tuple[float, Vector] | None = None  # best (score, a) evaluated so far
        self.restarts = 0
        self._es: cma.CMAEvolutionStrategy | None = None
        self._batch: list[npt.NDArray[np.float64]] = []
        self._batch_scores: list[float] = []
        self._batch_asked = 0

    def _start(self, center: Vector) -> None:
        import cma  # imported on use: it pulls in scipy, over a second of start-up time

        self.center = center.copy()
        options = {
            "seed": np.nan,  # pycma must not touch numpy's global RNG ...
            "randn": lambda lam, n: self.rng.standard_normal((lam, n)),  # ... it uses ours
            "verbose": -9,
            "verb_disp": 0,
            "verb_log": 0,
            "maxfevals": 1e18,  # the runner owns the budget
        }
        if self.config.popsize is not None:
            options["popsize"] = self.config.popsize
        if self.config.diagonal:
            options["CMA_diagonal"] = True
        if self.config.step_damping != 1.0:
            options["CSA_dampfac"] = self.config.step_damping
        self._es = cma.CMAEvolutionStrategy(np.zeros(self.basis.shape[1]), self.sigma0, options)

    def _propose(self) -> Vector:
        if self._es is None:
            self.best = (min(self.init_scores), self.best_init)
            self._start(self.best_init)  # EMA*: the best init vector
        assert self._es is not None and self.center is not None
        if len(self._batch_scores) == len(self._batch):  # previous batch complete
            self._batch = self._es.ask()
            self._batch_scores = []
            self._batch_asked = 0
        z = self._batch[self._batch_asked]
        self._batch_asked += 1
        candidate = project_to_sum_one(self.center + self.basis @ z)  # fixes rounding
        if self.config.nonnegative:
            candidate = make_convex(candidate)
        return candidate

    def _capacity(self) -> int:
        if self._es is None:
            return 1  # the first proposal starts CMA at the best init vector
        if len(self._batch_scores) == len(self._batch):
            return int(self._es.popsize)
        return len(self._batch) - self._batch_asked

    def _observe(self, candidate: Vector, score: float) -> None:
        assert self._es is not None and self.best is not None
        if score < self.best[0]:
            self.best = (score, candidate)
        self._batch_scores.append(score)
        if len(self._batch_scores) < len(self._batch):
            return
        self._es.tell(self._batch, finite_scores(self._batch_scores))
        if self._es.stop():
            # Converged or stuck (e.g. a flat, discrete objective): restart around the
            # best point so far rather than keep sampling a degenerate distribution.
            self.restarts += 1
            self._start(self.best[1])
