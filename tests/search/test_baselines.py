from __future__ import annotations

from pathlib import Path

import numpy as np

from lcsc.ema import ema_coefficients
from lcsc.search import baselines
from lcsc.trajectory import Trajectory


def test_ema_star_and_best_checkpoint_pick_the_minimum(recorded: Path) -> None:
    traj = Trajectory.open(recorded)
    target = traj.load(3)

    def objective(sd):  # distance to checkpoint 3: the best single checkpoint is 3
        return float(sum((sd[k] - target[k]).pow(2).sum() for k in sd if sd[k].is_floating_point()))

    single = baselines.best_checkpoint(traj, objective)
    assert single.label == str(traj.steps[3]) and single.score == 0.0
    rates = [0.0, 0.5, 0.9]
    seen = []
    star = baselines.ema_star(
        traj, objective, rates, lambda stage, d, t, **info: seen.append((d, t))
    )
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert star.score == min(star.scores.values())
    np.testing.assert_array_equal(
        star.coefficients, ema_coefficients(traj.steps, float(star.label))
    )
    assert set(star.candidates) == set(star.scores)
