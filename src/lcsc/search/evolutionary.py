"""The paper's evolutionary search (Algorithm 1 of LCSC).

Population ``P`` starts as the evaluated init vectors. Each generation makes
``children_per_generation`` children from the same ``P``: two parents drawn from the
best ``parents`` individuals, crossover (one parent whole with probability
``select_prob``, otherwise uniform crossover), Gaussian mutation, renormalisation to sum
one. Only after the whole generation is scored does ``P`` grow by its children.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

from lcsc.config import integer, real
from lcsc.search.base import Optimizer, SearchConfig, Vector
from lcsc.search.space import make_convex, normalize_by_sum, project_to_sum_one

# Dividing by a sum this close to zero would blow the child up; redraw the mutation.
MIN_ABS_SUM = 0.1
MAX_MUTATION_TRIES = 10


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvolutionaryConfig(SearchConfig):
    """Settings of Algorithm 1.

    Attributes:
        children_per_generation: children per generation (the paper's "Epoch").
        parents: size of the candidate-parent pool, the best of ``P`` (paper's M_CP).
        select_prob: probability that a child copies one parent whole instead of mixing.
        mutation_scale: mutation noise std times ``K``; ``(1..2)/K`` works in practice,
            ``0.1/K`` barely moves.
        nonnegative: keep every child convex (clip negatives, renormalise).
    """

    method = "evolutionary"
    children_per_generation: int = 10
    parents: int = 10
    select_prob: float = 0.5
    mutation_scale: float = 1.5

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check("children_per_generation", integer, 1)
        self.check("parents", integer, 1)
        self.check("select_prob", real, 0.0, 1.0)
        self.check("mutation_scale", real, above=0.0)

    def make_optimizer(self, init: npt.ArrayLike, seed: int) -> EvolutionaryOptimizer:
        return EvolutionaryOptimizer(init, self, seed)


class EvolutionaryOptimizer(Optimizer):
    def __init__(self, init: npt.ArrayLike, config: EvolutionaryConfig, seed: int) -> None:
        super().__init__(init, seed)
        self.config = config
        self.sigma = config.mutation_scale / self.k
        self.population: list[Vector] = []
        self.scores: list[float] = []
        self._generation: list[tuple[Vector, float]] = []  # children told so far
        self._parent_pool: list[Vector] | None = None  # CP of the current generation

    def _propose(self) -> Vector:
        if not self.population:  # P starts as the evaluated init vectors
            self.population = list(self.init)
            self.scores = list(self.init_scores)
        if self._parent_pool is None:  # new generation: CP = best of P (ties: earliest)
            order = np.argsort(np.asarray(self.scores), kind="stable")[: self.config.parents]
            self._parent_pool = [self.population[i] for i in order]
        return self._make_child(self._parent_pool)

    def _observe(self, candidate: Vector, score: float) -> None:
        self._generation.append((candidate, score))
        if len(self._generation) == self.config.children_per_generation:
            for child, child_score in self._generation:  # P <- P u NG
                self.population.append(child)
                self.scores.append(child_score)
            self._generation = []
            self._parent_pool = None

    def _make_child(self, pool: list[Vector]) -> Vector:
        rng = self.rng
        if len(pool) >= 2:
            i, j = rng.choice(len(pool), size=2, replace=False)
        else:
            i = j = 0
        first, second = pool[i], pool[j]
        if rng.random() < self.config.select_prob:
            child = (first if rng.random() < 0.5 else second).copy()
        else:
            child = np.where(rng.random(self.k) < 0.5, first, second)
        child = self._mutate(child)
        if self.config.nonnegative:
            # A child summing to one has a positive entry; the fallback is a safeguard.
            child = make_convex(child, fallback=first)
        return child

    def _mutate(self, child: Vector) -> Vector:
        """Add N(0, sigma^2) noise and divide by the sum (Algorithm 1, line 10)."""
        for _ in range(MAX_MUTATION_TRIES):
            mutated = child + self.rng.normal(0.0, self.sigma, self.k)
            if abs(mutated.sum()) >= MIN_ABS_SUM:
                return normalize_by_sum(mutated)
        return project_to_sum_one(mutated)
