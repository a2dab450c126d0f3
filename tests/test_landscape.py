from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lcsc.ema import ema_coefficients
from lcsc.errors import LcscError
from lcsc.landscape import compute_landscape, orthonormal_plane
from lcsc.trajectory import Trajectory


def _floats(sd: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([v.double().flatten() for v in sd.values() if v.is_floating_point()])


def test_orthonormal_plane_matches_gram_schmidt() -> None:
    d = np.random.default_rng(0).normal(size=(2, 7))
    m = orthonormal_plane(d @ d.T)
    e = m.T @ d  # rows e1, e2
    np.testing.assert_allclose(e @ e.T, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(e[0], d[0] / np.linalg.norm(d[0]))
    with pytest.raises(LcscError, match="one line"):
        orthonormal_plane(np.array([[1.0, 2.0], [2.0, 4.0]]))
    with pytest.raises(LcscError, match="same weights"):
        orthonormal_plane(np.zeros((2, 2)))


def test_landscape_of_a_squared_distance(recorded: Path) -> None:
    """``f = ||theta - T||^2`` is a paraboloid of curvature 2 on an orthonormal plane: second
    differences are 2 h^2 along each axis and 0 across, whatever T."""
    traj = Trajectory.open(recorded)
    k = len(traj)
    target = _floats(traj.combine(ema_coefficients(traj.steps, 0.8)))

    def objective(sd: dict[str, torch.Tensor]) -> float:
        return float((_floats(sd) - target).pow(2).sum())

    models = np.stack([np.eye(k)[0], np.eye(k)[k // 2], np.eye(k)[-1]])
    land = compute_landscape(traj, objective, models, ("first", "mid", "last"), resolution=5)
    # The three models sit at their true weight-space distances.
    w = [_floats(traj.combine(m)) for m in models]
    for p, q in ((0, 1), (0, 2), (1, 2)):
        want = float((w[p] - w[q]).norm())
        assert np.linalg.norm(land.anchors[p] - land.anchors[q]) == pytest.approx(want, rel=1e-6)
    # Every grid point is a combination summing to one, scored as the search would score it.
    for j, y in enumerate(land.ys):
        for i, x in enumerate(land.xs):
            a = land.coefficients(x, y)
            assert a.sum() == pytest.approx(1.0, abs=1e-9)
            assert land.scores[j, i] == pytest.approx(objective(traj.combine(a)), rel=1e-6)
    f, hx, hy = land.scores, land.xs[1] - land.xs[0], land.ys[1] - land.ys[0]
    scale = float(np.abs(f).max())
    np.testing.assert_allclose(f[:, 2:] - 2 * f[:, 1:-1] + f[:, :-2], 2 * hx**2, atol=1e-5 * scale)
    np.testing.assert_allclose(f[2:] - 2 * f[1:-1] + f[:-2], 2 * hy**2, atol=1e-5 * scale)
    mixed = f[1:, 1:] - f[1:, :-1] - f[:-1, 1:] + f[:-1, :-1]
    np.testing.assert_allclose(mixed, 0.0, atol=1e-5 * scale)


def test_landscape_refuses_bad_input(recorded: Path) -> None:
    traj = Trajectory.open(recorded)
    with pytest.raises(LcscError, match="3 x 12"):
        compute_landscape(traj, lambda sd: 0.0, np.eye(12)[:2])
    with pytest.raises(LcscError, match="one line"):
        models = np.stack([np.eye(12)[0], np.eye(12)[1], 2 * np.eye(12)[1] - np.eye(12)[0]])
        compute_landscape(traj, lambda sd: 0.0, models)
