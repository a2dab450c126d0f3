"""KID, Inception Score and precision/recall against hand computations and brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lcsc.errors import LcscError
from lcsc.metrics import inception_score, kid, precision_recall
from lcsc.metrics.scores import classifier_measures, rank_correlation

# --- KID -----------------------------------------------------------------------------------


def _brute_force_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, written as explicit double loops."""
    m, d = x.shape

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return (sum(a[i] * b[i] for i in range(d)) / d + 1.0) ** 3

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_matches_brute_force_double_loop() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((5, 3)), rng.standard_normal((5, 3)) + 0.5
    # subset_size >= N: every subset is the whole set (in another order), so std is ~0
    mean, std = kid(x, y, subsets=3, subset_size=10, seed=0)
    assert mean == pytest.approx(_brute_force_mmd2(x, y), rel=1e-12)
    assert std < 1e-12


def test_kid_same_distribution_near_zero_shifted_positive() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((600, 16)), rng.standard_normal((600, 16))
    same_mean, same_std = kid(a, b, subsets=20, subset_size=300, seed=0)
    shifted_mean, _ = kid(a, b + 1.0, subsets=20, subset_size=300, seed=0)
    assert abs(same_mean) < 0.02
    assert shifted_mean > 0.5
    assert shifted_mean > 20 * max(abs(same_mean), same_std)


def test_kid_seeded_and_torch_input() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((50, 4)), rng.standard_normal((60, 4))
    assert kid(a, b, subsets=5, subset_size=20, seed=3) == kid(
        a, b, subsets=5, subset_size=20, seed=3
    )
    assert kid(a, b, subsets=5, subset_size=20, seed=3) != kid(
        a, b, subsets=5, subset_size=20, seed=4
    )
    t = kid(torch.from_numpy(a), torch.from_numpy(b), subsets=5, subset_size=20, seed=3)
    assert t == kid(a, b, subsets=5, subset_size=20, seed=3)


def test_kid_matches_torchmetrics_poly_mmd() -> None:
    kid_module = pytest.importorskip("torchmetrics.image.kid")
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((40, 8)), rng.standard_normal((40, 8)) * 1.3
    ours, _ = kid(a, b, subsets=1, subset_size=40)
    theirs = kid_module.poly_mmd(torch.from_numpy(a), torch.from_numpy(b))
    assert ours == pytest.approx(float(theirs), rel=1e-10)


def test_kid_errors() -> None:
    with pytest.raises(LcscError, match="not finite"):
        kid(np.array([[0.0], [np.nan]]), np.zeros((2, 1)))
    with pytest.raises(LcscError, match="dimensions differ"):
        kid(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(LcscError, match="at least 2"):
        kid(np.zeros((1, 2)), np.zeros((3, 2)))


# --- Inception Score ------------------------------------------------------------------------


def test_is_uniform_logits_is_one() -> None:
    mean, std = inception_score(np.zeros((12, 5)), splits=3)
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_is_confident_distinct_classes_is_number_of_classes() -> None:
    c = 7
    logits = np.tile(60.0 * np.eye(c), (3, 1))  # each class predicted with certainty, evenly
    mean, _ = inception_score(logits, splits=3)
    assert mean == pytest.approx(c, rel=1e-9)
    # one class for every sample: no diversity, score 1
    assert inception_score(np.tile([60.0, 0, 0], (6, 1)), splits=1)[0] == pytest.approx(
        1.0, rel=1e-9
    )


def test_is_hand_computed_tiny() -> None:
    # p(y|x1) = (3/4, 1/4), p(y|x2) = (1/4, 3/4); p(y) = (1/2, 1/2)
    logits = np.log([[0.75, 0.25], [0.25, 0.75]]) + 2.0  # any per-row offset cancels
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # same for both rows
    mean, _ = inception_score(logits, splits=1)
    assert mean == pytest.approx(math.exp(kl), rel=1e-12)


def test_is_splits_mean_and_std() -> None:
    c = 4
    logits = np.concatenate([np.zeros((c, c)), 60.0 * np.eye(c)])  # split 1 scores 1, split 2 c
    mean, std = inception_score(torch.from_numpy(logits), splits=2)
    assert mean == pytest.approx((1 + c) / 2, rel=1e-9)
    assert std == pytest.approx((c - 1) / 2, rel=1e-9)


def test_is_extreme_logits_stay_finite() -> None:
    logits = np.array([[1e4, 0.0, 0.0], [0.0, 1e4, 0.0]])  # class 2 is never predicted
    assert inception_score(logits, splits=1)[0] == pytest.approx(2.0, rel=1e-9)


@pytest.mark.filterwarnings("ignore::UserWarning")  # torchmetrics: buffer size, std of 1 split
def test_is_matches_torchmetrics() -> None:
    inception = pytest.importorskip("torchmetrics.image.inception")
    logits = torch.from_numpy(np.random.default_rng(5).standard_normal((30, 6)) * 2)
    metric = inception.InceptionScore(feature=torch.nn.Identity(), splits=1)
    metric.update(logits)
    theirs, _ = metric.compute()
    assert inception_score(logits, splits=1)[0] == pytest.approx(float(theirs), rel=1e-6)


def test_is_errors() -> None:
    with pytest.raises(LcscError, match="splits"):
        inception_score(np.zeros((3, 2)), splits=4)
    with pytest.raises(LcscError, match="not finite"):
        inception_score(np.array([[np.inf, 0.0]]), splits=1)


# --- precision / recall ---------------------------------------------------------------------


def _brute_force_pr(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    def coverage(points: np.ndarray, centres: np.ndarray) -> float:
        radii = [sorted(np.linalg.norm(c - o) for o in centres)[k] for c in centres]
        inside = [
            any(np.linalg.norm(p - c) <= r for c, r in zip(centres, radii, strict=True))
            for p in points
        ]
        return sum(inside) / len(points)

    return coverage(fake, real), coverage(real, fake)


def test_pr_identical_sets() -> None:
    x = np.random.default_rng(6).standard_normal((50, 3))
    assert precision_recall(x, x.copy(), k=3) == (1.0, 1.0)


def test_pr_far_apart_sets() -> None:
    rng = np.random.default_rng(7)
    assert precision_recall(rng.standard_normal((40, 3)), rng.standard_normal((40, 3)) + 100) == (
        0.0,
        0.0,
    )


def test_pr_hand_computed_2d() -> None:
    # k = 1. Real points on a line: (0,0), (1,0), (3,0) with radii 1, 1, 2.
    real = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    # Fakes: (0.5,0) inside ball 1; (10,0) 7 from (3,0) > 2: out; (4.5,0) 1.5 <= 2 from (3,0): in;
    # (0,1.2): 1.2 > 1 from (0,0), 1.56 > 1 from (1,0), 3.23 > 2 from (3,0): out.  Precision 2/4.
    fake = np.array([[0.5, 0.0], [10.0, 0.0], [4.5, 0.0], [0.0, 1.2]])
    # Fake radii (1-NN among fakes): 1.30, 5.5, 4.0, 1.30. Real (0,0) and (1,0) are 0.5 from (0.5,0)
    # <= 1.30, real (3,0) is 1.5 from (4.5,0) <= 4.0: recall 3/3.
    assert precision_recall(real, fake, k=1) == (0.5, 1.0)
    assert precision_recall(fake, real, k=1) == (1.0, 0.5)  # roles swapped


def test_pr_mode_collapse_keeps_precision_loses_recall() -> None:
    rng = np.random.default_rng(8)
    real = np.concatenate([rng.standard_normal((100, 2)), rng.standard_normal((100, 2)) + 20])
    fake = rng.standard_normal((100, 2))  # only the first mode
    precision, recall = precision_recall(real, fake, k=3)
    assert precision > 0.9
    assert 0.4 < recall < 0.55


def test_pr_matches_brute_force_and_batching() -> None:
    rng = np.random.default_rng(9)
    real, fake = rng.standard_normal((30, 4)), rng.standard_normal((25, 4)) * 1.5 + 0.3
    expected = _brute_force_pr(real, fake, k=3)
    assert precision_recall(real, fake, k=3) == pytest.approx(expected, abs=1e-12)
    assert precision_recall(real, fake, k=3, batch_size=7) == pytest.approx(expected, abs=1e-12)


def test_pr_errors() -> None:
    with pytest.raises(LcscError, match="k must be"):
        precision_recall(np.zeros((3, 2)), np.zeros((5, 2)), k=3)
    with pytest.raises(LcscError, match="not finite"):
        precision_recall(np.zeros((5, 2)), np.full((5, 2), np.nan))


# --- classifier measures and rank correlation ------------------------------------------------


def test_classifier_measures_by_hand() -> None:
    # Three samples, two classes: probabilities (0.5, 0.5), (e/(1+e), 1/(1+e)), ~(1, 0).
    logits = np.array([[0.0, 0.0], [1.0, 0.0], [20.0, 0.0]])
    got = classifier_measures(logits, threshold=0.9)
    top = [0.5, math.e / (1 + math.e), 1 / (1 + math.exp(-20))]
    assert got["confidence"] == pytest.approx(np.mean(top))
    assert got["confident_share"] == pytest.approx(1 / 3)  # only the last exceeds 0.9
    # argmax: class 0 for all three (the tie goes to the first): f = (1, 0), TV = 0.5.
    assert got["class_tv"] == pytest.approx(0.5)
    balanced = classifier_measures(np.eye(4) * 5.0)
    assert balanced["class_tv"] == 0.0


def test_rank_correlation_matches_scipy() -> None:
    from scipy.stats import spearmanr

    a = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0]
    b = [2.0, 7.0, 1.0, 8.0, 2.0, 8.0, 1.0, 8.0]
    assert rank_correlation(a, b) == pytest.approx(spearmanr(a, b).statistic)
    assert rank_correlation([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(rank_correlation([1, 1, 1], [1, 2, 3]))
    with pytest.raises(LcscError, match="shapes"):
        rank_correlation([1, 2], [1, 2, 3])
