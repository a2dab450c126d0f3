from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from lcsc.errors import LcscError
from lcsc.metrics import FeatureStats, compute_features
from lcsc.objectives import SampleFD, fixed_noise


def test_fixed_noise_streams() -> None:
    a = fixed_noise(50, (1, 8, 8), 3, "search")
    assert torch.equal(a, fixed_noise(50, (1, 8, 8), 3, "search"))
    assert torch.equal(a[:20], fixed_noise(20, (1, 8, 8), 3, "search"))  # prefix-stable
    for other in (
        fixed_noise(50, (1, 8, 8), 3, "held_out"),
        fixed_noise(50, (1, 8, 8), 4, "search"),
        fixed_noise(50, (1, 8, 8), 3, "search", stream=1),
    ):
        assert not torch.allclose(a, other)
    with pytest.raises(LcscError, match="role"):
        fixed_noise(5, (2,), 0, "train")  # type: ignore[arg-type]


def _fd_by_hand(real: np.ndarray, fake: np.ndarray) -> float:
    m1, m2 = real.mean(0), fake.mean(0)
    c1, c2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    covmean = scipy.linalg.sqrtm(c1 @ c2).real
    return float(((m1 - m2) ** 2).sum() + np.trace(c1 + c2 - 2 * covmean))


def test_sample_fd_wraps_any_generator() -> None:
    """A user's sampler ``state_dict -> samples``: shifting the samples by ``w`` moves the FD as
    a hand computation says, and non-finite samples score NaN."""
    noise = fixed_noise(400, (3,), 0, "search")
    extractor = torch.nn.Identity()
    real = fixed_noise(500, (3,), 1, "held_out")
    objective = SampleFD(
        lambda sd: noise + sd["w"],
        extractor,
        FeatureStats.from_features(compute_features(extractor, real)),
    )
    w = torch.tensor([0.5, -1.0, 0.0])
    expected = _fd_by_hand(real.double().numpy(), (noise + w).double().numpy())
    assert objective({"w": w}) == pytest.approx(expected, rel=1e-5)
    assert math.isnan(objective({"w": torch.tensor([float("nan"), 0.0, 0.0])}))
