"""The baselines every LCSC result is reported next to (Sec. 5, App. B.4 of the paper).

EMA* is the best EMA rate of a grid and the best single checkpoint is the best saved one, both
chosen with the search objective (search noise), never with held-out noise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lcsc.ema import ema_coefficients
from lcsc.progress import Progress, report
from lcsc.trajectory import Trajectory

Objective = Callable[[dict[str, torch.Tensor]], float]


@dataclass(frozen=True)
class Choice:
    """The winner of a grid: its label, coefficients (K,), and every candidate's coefficients
    and score by label."""

    label: str
    coefficients: np.ndarray
    score: float
    scores: dict[str, float]
    candidates: dict[str, np.ndarray]


def _best(
    candidates: dict[str, np.ndarray],
    traj: Trajectory,
    objective: Objective,
    progress: Progress | None,
    stage: str,
) -> Choice:
    scores: dict[str, float] = {}
    for i, (label, a) in enumerate(candidates.items()):
        scores[label] = float(objective(traj.combine(a)))
        report(progress, stage, i + 1, len(candidates))
    finite = {k: v for k, v in scores.items() if np.isfinite(v)}
    label = min(finite, key=finite.__getitem__) if finite else next(iter(scores))
    return Choice(label, candidates[label], scores[label], scores, candidates)


def ema_star(
    traj: Trajectory, objective: Objective, rates: Sequence[float], progress: Progress | None = None
) -> Choice:
    """EMA* = the EMA rate of ``rates`` whose combination scores best (labels: the rates)."""
    candidates = {f"{r:g}": ema_coefficients(traj.steps, r) for r in rates}
    return _best(candidates, traj, objective, progress, "EMA grid")


def best_checkpoint(
    traj: Trajectory, objective: Objective, progress: Progress | None = None
) -> Choice:
    """The single saved checkpoint that scores best (labels: the steps)."""
    eye = np.eye(len(traj))
    candidates = {str(s): eye[i] for i, s in enumerate(traj.steps)}
    return _best(candidates, traj, objective, progress, "checkpoints")
