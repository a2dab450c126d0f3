"""The data-independent feature spaces against hand computations and scikit-learn."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from lcsc.errors import LcscError
from lcsc.metrics import compute_features, compute_features_and_logits
from lcsc.metrics.projections import (
    LinearProjection,
    MLPClassifierFeatures,
    PixelFeatures,
    RandomFeatures,
)


def test_pixel_features_flatten_and_clamp() -> None:
    x = torch.tensor([[[[-2.0, 0.5], [1.5, 0.0]]]])  # (1, 1, 2, 2)
    np.testing.assert_array_equal(compute_features(PixelFeatures(), x), [[-1.0, 0.5, 1.0, 0.0]])
    with pytest.raises(LcscError, match="high must exceed low"):
        PixelFeatures(1.0, 1.0)


def test_random_features_are_relu_of_a_seeded_gaussian_projection() -> None:
    x = torch.linspace(-1, 1, 12).reshape(3, 4)
    g = torch.Generator().manual_seed(7)
    w = torch.randn(4, 5, generator=g) / 2.0  # N(0, 1/in_dim), in_dim 4
    b = torch.randn(5, generator=g)
    expected = np.maximum(x.numpy() @ w.numpy() + b.numpy(), 0.0)
    np.testing.assert_allclose(compute_features(RandomFeatures(4, 5, 7), x), expected, rtol=1e-6)
    other = compute_features(RandomFeatures(4, 5, 8), x)
    assert not np.allclose(other, expected)


def test_pca_projection_by_hand() -> None:
    # Points on a line through (0.1, 0.2) along (3, 4)/5, plus small wiggles off the line.
    t = np.linspace(-0.5, 0.5, 21)
    off = 0.01 * (-1.0) ** np.arange(21)  # uncorrelated with t: the first PC is exact
    pts = np.stack([0.1 + 0.6 * t - 0.8 * off, 0.2 + 0.8 * t + 0.6 * off], axis=1)
    proj = LinearProjection.pca(torch.tensor(pts, dtype=torch.float32), 1)
    comp = proj.components.numpy()[0]
    np.testing.assert_allclose(comp, [0.6, 0.8], atol=1e-6)  # largest entry positive
    np.testing.assert_allclose(proj.mean.numpy(), pts.mean(0), atol=1e-6)
    got = compute_features(proj, torch.tensor(pts, dtype=torch.float32))[:, 0]
    np.testing.assert_allclose(got, (pts - pts.mean(0)) @ comp, atol=1e-5)
    with pytest.raises(LcscError, match="k must be in"):
        LinearProjection.pca(torch.zeros(5, 2), 3)


def test_mlp_classifier_features_match_scikit_learn() -> None:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (60, 5))
    y = (x[:, 0] + x[:, 1] > 0).astype(int) + (x[:, 2] > 0.5).astype(int)  # 3 classes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier((7,), activation="logistic", max_iter=50, random_state=0).fit(x, y)
    net = MLPClassifierFeatures(clf.coefs_, clf.intercepts_, activation="logistic")
    feats, logits = compute_features_and_logits(net, torch.tensor(x, dtype=torch.float32))
    hidden = 1.0 / (1.0 + np.exp(-(x @ clf.coefs_[0] + clf.intercepts_[0])))
    np.testing.assert_allclose(feats, hidden, rtol=1e-5, atol=1e-6)
    p = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(p / p.sum(1, keepdims=True), clf.predict_proba(x), atol=1e-5)
    with pytest.raises(LcscError, match="activation"):
        MLPClassifierFeatures(clf.coefs_, clf.intercepts_, activation="gelu")
