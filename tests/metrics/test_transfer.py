"""FeatureSpaces: FD in several spaces and classifier measures, against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from lcsc.errors import LcscError
from lcsc.metrics.projections import MLPClassifierFeatures, PixelFeatures
from lcsc.metrics.scores import classifier_measures
from lcsc.metrics.transfer import FeatureSpaces


def _fd(a: np.ndarray, b: np.ndarray) -> float:
    c1, c2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(c1 @ c2).real
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(c1 + c2 - 2 * covmean))


def test_feature_spaces_on_fixed_inputs() -> None:
    g = torch.Generator().manual_seed(0)
    real = torch.rand(200, 3, generator=g) * 1.6 - 0.8
    fake = torch.rand(150, 3, generator=g) * 1.2 - 0.5
    w1, b1 = np.array([[1.0, -1.0], [0.5, 0.0], [0.0, 2.0]]), np.array([0.1, -0.2])
    w2, b2 = np.array([[2.0, -1.0, 0.0], [0.0, 1.0, -3.0]]), np.zeros(3)
    clf = MLPClassifierFeatures([w1, w2], [b1, b2], activation="tanh")
    spaces = FeatureSpaces({"fd_pixels": PixelFeatures(), "fd_mlp": clf}, real, classifier="fd_mlp")
    got = spaces(fake)
    assert (
        list(got)
        == list(spaces.names)
        == ["fd_pixels", "fd_mlp", "confidence", "confident_share", "class_tv"]
    )
    r, f = real.double().numpy(), fake.double().numpy()
    assert got["fd_pixels"] == pytest.approx(_fd(r, f), rel=1e-6)
    hidden = lambda x: np.tanh(x @ w1 + b1)  # noqa: E731
    assert got["fd_mlp"] == pytest.approx(_fd(hidden(r), hidden(f)), rel=1e-5)
    hand = classifier_measures(hidden(f) @ w2 + b2)
    for k, v in hand.items():
        assert got[k] == pytest.approx(v, rel=1e-5)
    assert spaces(real)["fd_pixels"] == pytest.approx(0.0, abs=1e-9)


def test_non_finite_samples_score_nan_everywhere() -> None:
    spaces = FeatureSpaces({"fd_pixels": PixelFeatures()}, torch.rand(20, 2))
    bad = torch.rand(10, 2)
    bad[3, 1] = float("nan")
    assert list(spaces(bad)) == ["fd_pixels"] and math.isnan(spaces(bad)["fd_pixels"])
    with pytest.raises(LcscError, match="classifier"):
        FeatureSpaces({"fd_pixels": PixelFeatures()}, torch.rand(20, 2), classifier="x")
