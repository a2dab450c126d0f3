from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from lcsc.errors import LcscError
from lcsc.metrics import compute_features, digits_features
from lcsc.objectives import FixedNoiseGenerator, SampleFD, fixed_noise, load_objective
from lcsc.objectives.sample_fd import digits_training_data, run_metadata
from lcsc.trajectory import Trajectory


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


def test_generator_ignores_batch_size(ct_run: Path) -> None:
    md = run_metadata(ct_run)
    sd = Trajectory.open(ct_run / "trajectory").load(-1)
    big = FixedNoiseGenerator(md, 64, 0, batch_size=1000)(sd)
    small = FixedNoiseGenerator(md, 64, 0, batch_size=7)(sd)
    assert big.shape == (64, 1, 8, 8)
    torch.testing.assert_close(big, small)
    multi = FixedNoiseGenerator(md, 16, 0, nfe=2)
    torch.testing.assert_close(multi(sd), FixedNoiseGenerator(md, 16, 0, nfe=2, batch_size=5)(sd))


def _fd_by_hand(real: np.ndarray, fake: np.ndarray) -> float:
    m1, m2 = real.mean(0), fake.mean(0)
    c1, c2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    covmean = scipy.linalg.sqrtm(c1 @ c2).real
    return float(((m1 - m2) ** 2).sum() + np.trace(c1 + c2 - 2 * covmean))


def test_sample_fd_matches_hand_computation(ct_run: Path) -> None:
    md = run_metadata(ct_run)
    traj = Trajectory.open(ct_run / "trajectory")
    objective = load_objective(
        "lcsc.objectives:digits_fd", {"run": str(ct_run), "samples": "300", "noise_seed": "2"}
    )
    assert isinstance(objective, SampleFD)
    sd = traj.combine(np.full(len(traj), 1 / len(traj)))
    net = digits_features("main")
    real = compute_features(net, digits_training_data(md))
    fake = compute_features(net, FixedNoiseGenerator(md, 300, 2, "search")(sd))
    assert objective(sd) == pytest.approx(_fd_by_hand(real, fake), rel=1e-5)
    assert objective(sd) == objective(sd)  # fixed noise: a deterministic score


def test_non_finite_samples_score_nan(ct_run: Path) -> None:
    objective = load_objective("lcsc.objectives:digits_fd", {"run": str(ct_run), "samples": "50"})
    sd = Trajectory.open(ct_run / "trajectory").load(-1)
    sd = {k: (v * float("nan") if v.is_floating_point() else v) for k, v in sd.items()}
    assert math.isnan(objective(sd))


def test_factory_errors(ct_run: Path, tmp_path: Path) -> None:
    with pytest.raises(LcscError, match="integers"):
        load_objective("lcsc.objectives:digits_fd", {"run": str(ct_run), "samples": "many"})
    with pytest.raises(LcscError, match="bad --objective-arg"):
        load_objective("lcsc.objectives:digits_fd", {"run": str(ct_run), "colour": "red"})
    with pytest.raises(LcscError, match="no such file"):
        load_objective("lcsc.objectives:digits_fd", {"run": str(tmp_path / "none.safetensors")})
