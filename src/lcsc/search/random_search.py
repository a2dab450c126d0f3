"""Random search baseline: Gaussian perturbations of the best init vector."""

from __future__ import annotations

import dataclasses

import numpy.typing as npt

from lcsc.config import real
from lcsc.search.base import Optimizer, SearchConfig, Vector
from lcsc.search.space import make_convex, project_to_sum_one


@dataclasses.dataclass(frozen=True, kw_only=True)
class RandomConfig(SearchConfig):
    """Settings of the random search.

    Attributes:
        scale: noise std times ``K`` (noise ``N(0, (scale / K)^2)`` per coefficient).
        nonnegative: keep every candidate convex (clip negatives, renormalise).
    """

    method = "random"
    scale: float = 1.5

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check("scale", real, above=0.0)

    def make_optimizer(self, init: npt.ArrayLike, seed: int) -> RandomOptimizer:
        return RandomOptimizer(init, self, seed)


class RandomOptimizer(Optimizer):
    def __init__(self, init: npt.ArrayLike, config: RandomConfig, seed: int) -> None:
        super().__init__(init, seed)
        self.config = config

    def _propose(self) -> Vector:
        noise = self.rng.normal(0.0, self.config.scale / self.k, self.k)
        # The best init sums to one, so the projection subtracts the noise's mean.
        candidate = project_to_sum_one(self.best_init + noise)
        if self.config.nonnegative:
            candidate = make_convex(candidate)
        return candidate

    def _observe(self, candidate: Vector, score: float) -> None:
        pass  # independent samples: nothing to learn
