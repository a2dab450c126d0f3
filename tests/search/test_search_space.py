import numpy as np
import pytest

from lcsc.search.space import make_convex, normalize_by_sum, project_to_sum_one, sum_zero_basis


@pytest.fixture
def vectors() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.normal(0.3, 1.0, size=(20, 7))


def test_normalize_by_sum_sums_to_one_and_keeps_direction(vectors: np.ndarray) -> None:
    for a in vectors:
        out = normalize_by_sum(a)
        assert out.sum() == pytest.approx(1.0, abs=1e-12)
        assert np.allclose(out * a.sum(), a)


def test_project_to_sum_one_is_the_orthogonal_projection(vectors: np.ndarray) -> None:
    for a in vectors:
        out = project_to_sum_one(a)
        assert out.sum() == pytest.approx(1.0, abs=1e-12)
        shift = out - a
        assert np.allclose(shift, shift[0])  # moved along the normal (1, ..., 1) only
        assert np.allclose(project_to_sum_one(out), out)


def test_make_convex_clips_and_renormalises() -> None:
    a = np.array([0.6, -0.2, 0.6])
    assert np.allclose(make_convex(a), [0.5, 0.0, 0.5])
    convex = np.array([0.2, 0.3, 0.5])
    assert np.allclose(make_convex(convex), convex)


def test_make_convex_without_positive_entry_uses_fallback_or_raises() -> None:
    a = np.array([-1.0, 0.0, -2.0])
    fallback = np.array([0.0, 1.0, 0.0])
    assert np.array_equal(make_convex(a, fallback=fallback), fallback)
    with pytest.raises(ValueError):
        make_convex(a)


@pytest.mark.parametrize("k", [2, 3, 10, 200])
def test_sum_zero_basis_is_orthonormal_and_orthogonal_to_ones(k: int) -> None:
    basis = sum_zero_basis(k)
    assert basis.shape == (k, k - 1)
    assert np.allclose(basis.T @ basis, np.eye(k - 1), atol=1e-12)
    assert np.allclose(np.ones(k) @ basis, 0.0, atol=1e-12)


def test_sum_zero_basis_spans_every_sum_zero_direction() -> None:
    rng = np.random.default_rng(1)
    basis = sum_zero_basis(6)
    d = rng.normal(size=6)
    d -= d.mean()
    assert np.allclose(basis @ (basis.T @ d), d)


def test_sum_zero_basis_rejects_k_below_2() -> None:
    with pytest.raises(ValueError):
        sum_zero_basis(1)
