"""Fréchet distance and FeatureStats: closed forms, scipy cross-check, singular covariances, I/O."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from lcsc.errors import LcscError
from lcsc.metrics import FeatureMoments, FeatureStats, frechet_distance


def _random_cov(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.5 * np.eye(d)  # well conditioned


def _scipy_fd(a: FeatureStats, b: FeatureStats) -> float:
    """The classic formula with scipy's general (non-symmetric) matrix square root."""
    covmean = scipy.linalg.sqrtm(a.cov @ b.cov).real
    diff = a.mean - b.mean
    return float(diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2 * np.trace(covmean))


def test_diagonal_gaussians_closed_form() -> None:
    rng = np.random.default_rng(0)
    m1, m2 = rng.standard_normal(6), rng.standard_normal(6)
    v1, v2 = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    expected = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    fd = frechet_distance(FeatureStats(m1, np.diag(v1), 10), FeatureStats(m2, np.diag(v2), 10))
    assert fd == pytest.approx(expected, rel=1e-12)


def test_diagonal_with_zero_variances() -> None:
    # Singular diagonal covariances still follow the closed form.
    v1, v2 = np.array([0.0, 1.0, 4.0]), np.array([1.0, 0.0, 9.0])
    fd = frechet_distance(
        FeatureStats(np.zeros(3), np.diag(v1), 5), FeatureStats(np.zeros(3), np.diag(v2), 5)
    )
    assert fd == pytest.approx(1.0 + 1.0 + 1.0, rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_scipy_sqrtm_on_well_conditioned(seed: int) -> None:
    rng = np.random.default_rng(seed)
    d = 24
    a = FeatureStats(rng.standard_normal(d), _random_cov(rng, d), 100)
    b = FeatureStats(rng.standard_normal(d), _random_cov(rng, d), 100)
    assert frechet_distance(a, b) == pytest.approx(_scipy_fd(a, b), rel=1e-6)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)


def test_from_features_matches_numpy() -> None:
    rng = np.random.default_rng(3)
    f = rng.standard_normal((50, 7)) * 3 + 1
    s = FeatureStats.from_features(f)
    np.testing.assert_allclose(s.mean, f.mean(0), rtol=1e-12)
    np.testing.assert_allclose(s.cov, np.cov(f, rowvar=False), rtol=1e-10, atol=1e-12)
    assert s.n == 50 and s.dim == 7 and s.mean.dtype == np.float64
    # torch tensors (float32) are accepted and promoted to float64
    t = FeatureStats.from_features(torch.from_numpy(f).float())
    np.testing.assert_allclose(t.cov, s.cov, rtol=1e-5, atol=1e-5)


def test_rank_deficient_covariance_is_finite_and_non_negative() -> None:
    rng = np.random.default_rng(4)
    d = 64
    a = FeatureStats.from_features(rng.standard_normal((10, d)))  # rank 9 < 64
    b = FeatureStats.from_features(rng.standard_normal((12, d)) + 0.5)  # rank 11 < 64
    fd = frechet_distance(a, b)
    assert np.isfinite(fd) and fd >= 0
    # identical singular statistics: distance ~0, never negative
    self_fd = frechet_distance(a, a)
    assert 0.0 <= self_fd < 1e-8 * np.trace(a.cov)


def test_translation_invariance_and_growth_with_shift() -> None:
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((80, 5)), rng.standard_normal((90, 5))
    base = frechet_distance(FeatureStats.from_features(x), FeatureStats.from_features(y))
    moved = frechet_distance(FeatureStats.from_features(x + 7), FeatureStats.from_features(y + 7))
    assert moved == pytest.approx(base, rel=1e-9)
    far = frechet_distance(FeatureStats.from_features(x), FeatureStats.from_features(y + 3))
    assert far > base + 5 * 9 * 0.8


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_features_raise(bad: float) -> None:
    f = np.zeros((5, 3))
    f[2, 1] = bad
    with pytest.raises(LcscError, match="not finite"):
        FeatureStats.from_features(f)


def test_shape_errors() -> None:
    with pytest.raises(LcscError, match=r"\(N, D\)"):
        FeatureStats.from_features(np.zeros(5))
    with pytest.raises(LcscError, match="at least 2"):
        FeatureStats.from_features(np.zeros((1, 3)))
    with pytest.raises(LcscError, match="do not match"):
        FeatureStats(np.zeros(3), np.eye(4), 2)
    with pytest.raises(LcscError, match="dimensions differ"):
        frechet_distance(
            FeatureStats(np.zeros(3), np.eye(3), 2), FeatureStats(np.zeros(4), np.eye(4), 2)
        )


def test_frozen_and_read_only() -> None:
    s = FeatureStats(np.zeros(2), np.eye(2), 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.n = 4  # type: ignore[misc]
    with pytest.raises(ValueError):
        s.mean[0] = 1.0
    with pytest.raises(ValueError):
        s.cov_sqrt[0, 0] = 1.0


def test_save_load_roundtrip(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    s = FeatureStats.from_features(rng.standard_normal((20, 4)))
    path = tmp_path / "sub" / "ref.npz"
    s.save(path, metadata={"dataset": "digits", "n": 20})
    assert sorted(p.name for p in path.parent.iterdir()) == ["ref.npz"]  # no temp file left
    t = FeatureStats.load(path)
    np.testing.assert_array_equal(t.mean, s.mean)
    np.testing.assert_array_equal(t.cov, s.cov)
    assert t.n == 20
    assert FeatureStats.load_metadata(path) == {"dataset": "digits", "n": "20"}
    with np.load(path, allow_pickle=False) as z:  # plain arrays only
        assert set(z.files) == {"mean", "cov", "n", "metadata"}


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(LcscError, match="no such"):
        FeatureStats.load(tmp_path / "missing.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip at all")
    with pytest.raises(LcscError, match="garbage.npz"):
        FeatureStats.load(garbage)
    incomplete = tmp_path / "incomplete.npz"
    np.savez(incomplete, mean=np.zeros(3))
    with pytest.raises(LcscError, match="missing cov, n"):
        FeatureStats.load(incomplete)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, mean=np.zeros(2), cov=np.array([{"a": 1}], dtype=object), n=2)
    with pytest.raises(LcscError, match="pickled.npz"):
        FeatureStats.load(pickled)
    nan = tmp_path / "nan.npz"
    np.savez(nan, mean=np.array([np.nan, 0.0]), cov=np.eye(2), n=2)
    with pytest.raises(LcscError, match="not finite"):
        FeatureStats.load(nan)


def test_moments_merged_over_parts_give_the_statistics_of_the_whole() -> None:
    """Moments of parts (one part empty), merged, equal the two-pass statistics of the whole set;
    the shift only changes the rounding, and the flat vector round-trips."""
    rng = np.random.default_rng(3)
    f = rng.standard_normal((301, 5)) * rng.uniform(0.5, 2.0, 5) + 10.0
    whole = FeatureStats.from_features(f)
    for shift in (np.zeros(5), f.mean(0) + 0.1):
        parts = [FeatureMoments.of(f[a:b], shift) for a, b in ((0, 0), (0, 120), (120, 301))]
        merged = parts[0].merge(parts[1]).merge(parts[2])
        vector = sum(p.to_vector() for p in parts)  # what an all_reduce of the parts sums
        for moments in (merged, FeatureMoments.from_vector(vector, shift)):
            stats = FeatureStats.from_moments(moments)
            assert stats.n == 301
            np.testing.assert_allclose(stats.mean, whole.mean, rtol=1e-13)
            np.testing.assert_allclose(stats.cov, whole.cov, rtol=1e-9, atol=1e-12)
            assert np.array_equal(stats.cov, stats.cov.T)
    with pytest.raises(LcscError, match="at least 2"):
        FeatureStats.from_moments(FeatureMoments.of(f[:1], np.zeros(5)))
    with pytest.raises(LcscError, match="different shifts"):
        FeatureMoments.of(f, np.zeros(5)).merge(FeatureMoments.of(f, np.ones(5)))
    with pytest.raises(LcscError, match="D=5 has 31 numbers"):
        FeatureMoments.from_vector(np.zeros(7), np.zeros(5))
