"""Pure maths on coefficient vectors.

The LCSC search space is the affine hyperplane of Eq. (7) of the paper,
``{a in R^K : sum_i a_i = 1}``: combining checkpoints with coefficients that sum to one
keeps the combined weights at the scale of the individual checkpoints. These helpers
map arbitrary vectors back onto it, optionally onto its convex part (the simplex).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["make_convex", "normalize_by_sum", "project_to_sum_one", "sum_zero_basis"]

Vector = npt.NDArray[np.float64]


def normalize_by_sum(a: Vector) -> Vector:
    """Divide ``a`` (shape ``(K,)``) by its sum so that it sums to one (Eq. (7)).

    This is the renormalisation of Algorithm 1, line 10. It changes the vector's
    direction only by a scalar, but explodes when the sum is close to zero: callers
    must check ``abs(a.sum())`` first.
    """
    return a / a.sum()


def project_to_sum_one(a: Vector) -> Vector:
    """Orthogonal projection of ``a`` (shape ``(K,)``) onto ``sum(a) = 1`` (Eq. (7)).

    Adds the same amount ``(1 - sum(a)) / K`` to every coefficient; unlike
    :func:`normalize_by_sum` it is well defined for any sum.
    """
    return a + (1.0 - a.sum()) / a.shape[0]


def make_convex(a: Vector, fallback: Vector | None = None) -> Vector:
    """Clip negatives of ``a`` (shape ``(K,)``) to zero and divide by the sum (Eq. (7)).

    The result is a convex combination (non-negative, sums to one), as in the paper's
    convex ablation (Table 14). A vector with no positive entry has no convex image:
    ``fallback`` is returned if given, otherwise ``ValueError`` is raised. A vector that
    already sums to one always has a positive entry.
    """
    clipped = np.maximum(a, 0.0)
    total = clipped.sum()
    if total > 0.0:
        return clipped / total
    if fallback is None:
        raise ValueError("make_convex: the vector has no positive coefficient")
    return fallback.copy()


def sum_zero_basis(k: int) -> npt.NDArray[np.float64]:
    """Orthonormal basis of the sum-zero subspace of ``R^k``, shape ``(k, k - 1)``.

    Every direction inside the hyperplane of Eq. (7) is a combination of these columns,
    so ``a = a0 + B @ z`` sums to one for any ``z`` of shape ``(k - 1,)`` when ``a0``
    does. Closed-form Helmert basis: column ``j`` (0-based) is
    ``(1, ..., 1, -(j + 1), 0, ..., 0) / sqrt((j + 1) (j + 2))`` with ``j + 1`` ones;
    deterministic, unlike a QR factorisation whose signs depend on the LAPACK build.
    """
    if k < 2:
        raise ValueError(f"sum_zero_basis needs k >= 2; got k={k}")
    basis = np.zeros((k, k - 1), dtype=np.float64)
    for j in range(k - 1):
        n = j + 1
        basis[:n, j] = 1.0
        basis[n, j] = -float(n)
        basis[:, j] /= np.sqrt(n * (n + 1.0))
    return basis
