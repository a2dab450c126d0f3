"""Search one coefficient vector per parameter group (:mod:`lcsc.trajectory.groups`).

A candidate is the ``(G, K)`` matrix ``A`` flattened to ``(G*K,)``, every row summing to one.
It is searched by a CMA-ES method (``cmaes``, or ``subspace`` so that the dimension stays
small): row ``g`` is ``a0 + B z_g`` with the method's own ``a0`` (EMA*) and basis ``B`` (shape
``(K, r)``), so CMA adapts ``G * r`` numbers. The inner optimizer runs, unchanged, on
``x = A.ravel() / G``, which sums to one with the block-diagonal basis ``diag(B, .., B)``; its
step ``sigma_scale / (G K)`` in ``x`` is ``sigma_scale / K`` per row of ``A``, as without
groups. The first candidates are the init rows used for every group.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

from lcsc.config import integer
from lcsc.search.base import SearchConfig, Vector
from lcsc.search.cmaes import CMAESConfig, CMAESOptimizer
from lcsc.search.subspace import SubspaceConfig


@dataclasses.dataclass(frozen=True, kw_only=True)
class GroupedConfig(SearchConfig):
    """``groups`` coefficient vectors searched together by ``inner`` (a :class:`CMAESConfig`
    or :class:`SubspaceConfig`); ``nonnegative`` is the inner config's."""

    inner: CMAESConfig = dataclasses.field(default_factory=SubspaceConfig)
    groups: int = 1

    def __post_init__(self) -> None:
        self.require(
            isinstance(self.inner, CMAESConfig) and self.inner.takes_groups,
            "inner",
            "must be a cmaes or subspace config without full_after (per-group coefficients"
            " need a CMA-ES method that stays in its basis)",
            type(self.inner).__name__,
        )
        self.check("groups", integer, 1)
        object.__setattr__(self, "nonnegative", self.inner.nonnegative)

    @property
    def method(self) -> str:  # type: ignore[override]  # the inner method's name
        return self.inner.method

    @property
    def blocks(self) -> int:
        return self.groups

    def make_optimizer(self, init: npt.ArrayLike, seed: int) -> GroupedOptimizer:
        return GroupedOptimizer(init, self, seed)


def tile_init(init: npt.NDArray[np.float64], groups: int) -> npt.NDArray[np.float64]:
    """Init rows ``(P, K)`` used for every group: ``(P, G*K)``."""
    return np.tile(init, (1, groups))


class GroupedOptimizer:
    """The inner CMA optimizer on ``x = A.ravel() / G`` (module docstring), with the
    :class:`~lcsc.search.base.Optimizer` interface on ``A.ravel()``: init rows ``(P, G*K)``."""

    def __init__(self, init: npt.ArrayLike, config: GroupedConfig, seed: int) -> None:
        self.init = np.array(init, dtype=np.float64)
        self.groups = g = config.groups
        inner = config.inner.make_optimizer(self.init / g, seed)
        # The inner optimizer built its basis over G*K indices; each group gets the one over K.
        inner.basis = np.kron(np.eye(g), config.inner.search_basis(self.init.shape[1] // g))
        self.inner: CMAESOptimizer = inner

    def ask(self) -> Vector:
        return self.ask_many(1)[0]

    def ask_many(self, limit: int) -> list[Vector]:
        first = self.inner.n_told  # index of the first candidate asked
        xs = self.inner.ask_many(limit)
        return [self._rows(first + j, x) for j, x in enumerate(xs)]

    def tell(self, score: float) -> None:
        self.inner.tell(score)

    def _rows(self, index: int, x: Vector) -> Vector:
        if index < len(self.init):  # the init rows as given, bit for bit
            return self.init[index].copy()
        if self.groups == 1:  # the inner candidate itself: one group is the ungrouped search
            return x
        # Each block of x sums to 1/G up to rounding (to some positive share after a convex
        # clip): scale every block to sum one.
        blocks = x.reshape(self.groups, -1)
        return (blocks / blocks.sum(axis=1, keepdims=True)).ravel()
