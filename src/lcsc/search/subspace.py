"""CMA-ES in a low-dimensional subspace of smooth coefficient profiles over checkpoint index.

A candidate is ``a = a0 + B z`` with ``a0`` the best init vector (EMA*) and ``B`` (shape
``(K, r)``) an orthonormal basis of the sum-zero parts of ``r + 1`` smooth profiles: B-splines
over the checkpoint index (``basis="bspline"``) or EMA profiles of averaging lengths from one
checkpoint to twice the window (``basis="ema"``). Profiles are made sum-zero (every candidate
still sums to one) and orthonormalised by Gram-Schmidt in plain numpy, so the basis is the same
bit for bit wherever it is built. CMA then adapts ``r`` numbers instead of ``K - 1``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

from lcsc.config import choice, integer, real
from lcsc.errors import SearchError
from lcsc.search.base import Vector
from lcsc.search.cmaes import CMAESConfig, CMAESOptimizer
from lcsc.search.space import sum_zero_basis

BASES = ("bspline", "ema")
_DROP_TOLERANCE = 1e-6  # a profile that is (numerically) in the span of the previous ones


@dataclasses.dataclass(frozen=True, kw_only=True)
class SubspaceConfig(CMAESConfig):
    """Settings of the subspace search (CMA-ES settings as in :class:`CMAESConfig`).

    Attributes:
        basis: ``"bspline"`` or ``"ema"`` profiles over checkpoint index.
        dims: number of search directions ``r`` (at most ``K - 1``; fewer if profiles are
            linearly dependent).
        degree: B-spline degree (``basis="bspline"``).
        sigma_scale: initial step size times ``K`` (``sigma0 = sigma_scale / K``), per
            direction of the subspace.
        step_damping: as in :class:`CMAESConfig`; 0.3 here (faster step-size adaptation).
        full_after: after this many evaluations (init rows included), at the end of a CMA
            population, go on with CMA-ES in the whole hyperplane around the best point so
            far, with step ``full_sigma_scale / K``; ``None`` stays in the subspace.
    """

    method = "subspace"
    basis: str = "bspline"
    dims: int = 24
    degree: int = 3
    sigma_scale: float = 4.0
    step_damping: float = 0.3  # measured: recovers from a too large start on the synthetic
    full_after: int | None = None
    full_sigma_scale: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check("basis", choice, BASES)
        self.check("dims", integer, 1)
        self.check("degree", integer, 0)
        self.check("full_after", integer, 1, optional=True)
        self.check("full_sigma_scale", real, above=0.0)

    @property
    def takes_groups(self) -> bool:
        return self.full_after is None  # per-group blocks stay in the subspace

    def make_optimizer(self, init: npt.ArrayLike, seed: int) -> SubspaceOptimizer:
        return SubspaceOptimizer(init, self, seed)

    def span(self, init: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        # Candidates are an init row plus basis directions (until a switch to full_after).
        return np.vstack([init, self.search_basis(init.shape[1]).T])

    def search_basis(self, k: int) -> npt.NDArray[np.float64]:
        r = min(self.dims, k - 1)
        if self.basis == "bspline":
            profiles = bspline_profiles(k, r + 1, min(self.degree, r))
        else:
            profiles = ema_profiles(k, r + 1)
        return orthonormal_sum_zero(profiles)


class SubspaceOptimizer(CMAESOptimizer):
    """CMA-ES in the subspace, then (``full_after``) in the whole hyperplane."""

    config: SubspaceConfig

    def _observe(self, candidate: Vector, score: float) -> None:
        super()._observe(candidate, score)
        limit = self.config.full_after
        population_done = len(self._batch_scores) == len(self._batch)
        if limit is None or self.basis.shape[1] == self.k - 1 or not population_done:
            return
        if self.n_told + 1 >= limit:  # n_told counts up after _observe
            assert self.best is not None
            self.basis = sum_zero_basis(self.k)
            self.sigma0 = self.config.full_sigma_scale / self.k
            self._start(self.best[1])


def bspline_profiles(k: int, count: int, degree: int) -> npt.NDArray[np.float64]:
    """``count`` clamped uniform B-splines of ``degree`` over the indices ``0..k-1``, shape
    ``(k, count)``; they sum to one at every index (partition of unity)."""
    if count <= degree:
        raise ValueError(f"need more B-splines ({count}) than the degree ({degree})")
    interior = np.linspace(0.0, 1.0, count - degree + 1)[1:-1]
    knots = np.concatenate([np.zeros(degree + 1), interior, np.ones(degree + 1)])
    x = np.linspace(0.0, 1.0, k)
    # Cox-de Boor: degree 0 are the knot intervals (the last one closed), then raise the degree.
    basis = np.zeros((k, len(knots) - 1))
    for j in range(len(knots) - 1):
        last = knots[j + 1] == 1.0 and knots[j] < 1.0
        inside = (x >= knots[j]) & ((x < knots[j + 1]) | (last & (x == 1.0)))
        basis[inside, j] = 1.0
    for p in range(1, degree + 1):
        raised = np.zeros((k, len(knots) - 1 - p))
        for j in range(raised.shape[1]):
            left, right = knots[j + p] - knots[j], knots[j + p + 1] - knots[j + 1]
            if left > 0:
                raised[:, j] += (x - knots[j]) / left * basis[:, j]
            if right > 0:
                raised[:, j] += (knots[j + p + 1] - x) / right * basis[:, j + 1]
        basis = raised
    return basis


def ema_profiles(k: int, count: int) -> npt.NDArray[np.float64]:
    """``count`` EMA profiles ending at the last checkpoint, shape ``(k, count)``, with
    averaging lengths log-spaced from one checkpoint to ``2 k`` (evenly saved checkpoints)."""
    lengths = np.geomspace(1.0, 2.0 * k, count)
    age = np.arange(k - 1, -1, -1, dtype=np.float64)  # checkpoints from the last one
    profiles = np.exp(-age[:, None] / lengths[None, :])
    return profiles / profiles.sum(axis=0)


def orthonormal_sum_zero(profiles: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Orthonormal basis (Gram-Schmidt, in order) of the sum-zero parts of ``profiles``
    (shape ``(k, n)``); dependent profiles are dropped. Shape ``(k, r)``, ``r <= n - 1``."""
    centred = profiles - profiles.mean(axis=0)
    columns: list[npt.NDArray[np.float64]] = []
    for j in range(centred.shape[1]):
        v = centred[:, j].copy()
        for _ in range(2):  # twice is enough for orthogonality to rounding error
            for q in columns:
                v -= (q @ v) * q
            v -= v.mean()  # stay sum-zero despite rounding
        norm = float(np.linalg.norm(v))
        if norm > _DROP_TOLERANCE * max(1.0, float(np.linalg.norm(centred[:, j]))):
            columns.append(v / norm)
    if not columns:
        raise SearchError("the subspace basis is empty: the profiles do not vary")
    return np.stack(columns, axis=1)
