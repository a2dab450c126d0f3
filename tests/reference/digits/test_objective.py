from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from lcsc.errors import LcscError
from lcsc.metrics import compute_features, digits_features
from lcsc.objectives import SampleFD, load_objective
from lcsc.reference.digits.objective import digits_training_data
from lcsc.reference.generative.generator import FixedNoiseGenerator, run_metadata
from lcsc.trajectory import Trajectory
from tests.objectives.test_sample_fd import _fd_by_hand


def test_generator_ignores_batch_size(ct_run: Path) -> None:
    md = run_metadata(ct_run)
    sd = Trajectory.open(ct_run / "trajectory").load(-1)
    big = FixedNoiseGenerator(md, 64, 0, batch_size=1000)(sd)
    small = FixedNoiseGenerator(md, 64, 0, batch_size=7)(sd)
    assert big.shape == (64, 1, 8, 8)
    torch.testing.assert_close(big, small)
    multi = FixedNoiseGenerator(md, 16, 0, nfe=2)
    torch.testing.assert_close(multi(sd), FixedNoiseGenerator(md, 16, 0, nfe=2, batch_size=5)(sd))


def test_sample_fd_matches_hand_computation(ct_run: Path) -> None:
    md = run_metadata(ct_run)
    traj = Trajectory.open(ct_run / "trajectory")
    objective = load_objective(
        "lcsc.reference.digits:digits_fd", {"run": str(ct_run), "samples": "300", "noise_seed": "2"}
    )
    assert isinstance(objective, SampleFD)
    sd = traj.combine(np.full(len(traj), 1 / len(traj)))
    net = digits_features("main")
    real = compute_features(net, digits_training_data(md))
    fake = compute_features(net, FixedNoiseGenerator(md, 300, 2, "search")(sd))
    assert objective(sd) == pytest.approx(_fd_by_hand(real, fake), rel=1e-5)
    assert objective(sd) == objective(sd)  # fixed noise: a deterministic score


def test_non_finite_samples_score_nan(ct_run: Path) -> None:
    objective = load_objective(
        "lcsc.reference.digits:digits_fd", {"run": str(ct_run), "samples": "50"}
    )
    sd = Trajectory.open(ct_run / "trajectory").load(-1)
    sd = {k: (v * float("nan") if v.is_floating_point() else v) for k, v in sd.items()}
    assert math.isnan(objective(sd))


def test_factory_errors(ct_run: Path, tmp_path: Path) -> None:
    with pytest.raises(LcscError, match="integers"):
        load_objective("lcsc.reference.digits:digits_fd", {"run": str(ct_run), "samples": "many"})
    with pytest.raises(LcscError, match="bad --objective-arg"):
        load_objective("lcsc.reference.digits:digits_fd", {"run": str(ct_run), "colour": "red"})
    with pytest.raises(LcscError, match="no such file"):
        load_objective(
            "lcsc.reference.digits:digits_fd", {"run": str(tmp_path / "none.safetensors")}
        )
