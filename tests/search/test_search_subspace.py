"""The subspace search: its bases (against scipy's B-splines and closed forms), candidates in
``a0 + span(B)``, the switch to the whole hyperplane, and config errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.interpolate import BSpline

from lcsc.errors import SearchError
from lcsc.search import minimize
from lcsc.search.subspace import (
    SubspaceConfig,
    bspline_profiles,
    ema_profiles,
    orthonormal_sum_zero,
)


@pytest.mark.parametrize(
    ("k", "count", "degree"), [(50, 8, 3), (200, 17, 3), (30, 5, 1), (9, 4, 2)]
)
def test_bspline_profiles_match_scipy(k: int, count: int, degree: int) -> None:
    interior = np.linspace(0.0, 1.0, count - degree + 1)[1:-1]
    knots = np.concatenate([np.zeros(degree + 1), interior, np.ones(degree + 1)])
    x = np.linspace(0.0, 1.0, k)
    want = np.stack(
        [
            BSpline.basis_element(knots[j : j + degree + 2], extrapolate=False)(x)
            for j in range(count)
        ],
        axis=1,
    )
    want = np.nan_to_num(want)
    want[-1, -1] = 1.0  # scipy leaves the right end of the last element open
    got = bspline_profiles(k, count, degree)
    np.testing.assert_allclose(got, want, atol=1e-12)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-12)  # partition of unity


def test_ema_profiles_are_normalised_exponentials() -> None:
    p = ema_profiles(20, 3)
    np.testing.assert_allclose(p.sum(axis=0), 1.0)
    # the shortest profile averages over about one checkpoint: ratio e between neighbours
    np.testing.assert_allclose(p[-1, 0] / p[-2, 0], np.e)


@pytest.mark.parametrize("basis", ["bspline", "ema"])
def test_search_basis_is_orthonormal_and_sum_zero(basis: str) -> None:
    b = SubspaceConfig(basis=basis, dims=12).search_basis(60)
    assert b.shape[0] == 60 and 1 <= b.shape[1] <= 12
    np.testing.assert_allclose(b.T @ b, np.eye(b.shape[1]), atol=1e-12)
    np.testing.assert_allclose(b.sum(axis=0), 0.0, atol=1e-12)


def test_dependent_profiles_are_dropped() -> None:
    p = np.stack([np.ones(5), np.arange(5.0), 2.0 * np.arange(5.0) + 1.0], axis=1)
    b = orthonormal_sum_zero(p)
    assert b.shape == (5, 1)
    np.testing.assert_allclose(np.abs(b[:, 0]), np.abs(np.arange(5.0) - 2.0) / np.sqrt(10.0))


def test_candidates_stay_in_the_subspace_until_the_switch(make_init, make_quadratic) -> None:
    k = 40
    init, f = make_init(k), make_quadratic(k)
    config = SubspaceConfig(dims=6, full_after=60)
    result = minimize(f, init, config, budget=150, seed=1)
    basis = config.search_basis(k)
    start = init[int(np.argmin([f(r) for r in init]))]
    for e in result.history:
        np.testing.assert_allclose(e.coefficients.sum(), 1.0, atol=1e-12)
    residual = []
    for e in result.history[len(init) :]:
        d = e.coefficients - start
        residual.append(float(np.linalg.norm(d - basis @ (basis.T @ d))))
    switch = next(i for i, r in enumerate(residual) if r > 1e-9) + len(init)
    assert 60 <= switch < 60 + 20  # at the end of the population reaching 60 evaluations
    assert max(residual[: switch - len(init)]) < 1e-9


def test_subspace_beats_its_start_on_a_smooth_problem() -> None:
    k = 100
    x = np.linspace(0.0, 1.0, k)
    target = (1.0 + 2.0 * np.sin(3 * x)) / k  # smooth: close to the B-spline span
    target += (1.0 - target.sum()) / k
    init = np.stack([np.full(k, 1.0 / k), np.eye(k)[-1]])

    def f(a: np.ndarray) -> float:
        return float(np.sum((a - target) ** 2))

    result = minimize(f, init, SubspaceConfig(dims=8), budget=200, seed=0)
    assert result.best_score < 0.1 * f(init[0])


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("basis", "pca", "basis must be one of"),
        ("dims", 0, "dims must be an integer >= 1"),
        ("full_after", 0, "full_after must be an integer >= 1"),
        ("full_sigma_scale", -1.0, "full_sigma_scale must be > 0"),
        ("step_damping", 0.0, "step_damping must be > 0"),
    ],
)
def test_bad_configs_name_the_field(field: str, value, message: str) -> None:
    with pytest.raises(SearchError, match=f"SubspaceConfig.{message}"):
        SubspaceConfig(**{field: value})
