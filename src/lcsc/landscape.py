"""The objective on the plane through three models of a trajectory (the paper's Fig. 3).

Three combinations ``a, b, c`` (coefficient vectors, shape (K,)) span a plane of weights
``theta(x, y) = theta_a + x e1 + y e2`` with an orthonormal basis ``e1, e2`` *in weight space*
(Gram-Schmidt on ``theta_b - theta_a`` and ``theta_c - theta_a``), so distances in the picture
are distances between models. Every point of the plane is again a combination of the
checkpoints, with coefficients summing to one, and is scored with the same objective as a
search.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lcsc.atomic import atomic_path, write_json
from lcsc.errors import LcscError
from lcsc.progress import Progress, report
from lcsc.trajectory import Trajectory

Objective = Callable[[dict[str, torch.Tensor]], float]


def orthonormal_plane(gram: np.ndarray) -> np.ndarray:
    """Gram-Schmidt in weight space, from the Gram matrix of the two directions.

    Args:
        gram: (2, 2) inner products ``<D_i, D_j>`` of ``D1 = theta_b - theta_a`` and
            ``D2 = theta_c - theta_a``.

    Returns:
        (2, 2) matrix ``M`` with ``[e1, e2] = [D1, D2] M``: column ``j`` holds the weights of
        ``D1, D2`` in ``e_j``.
    """
    g11, g12, g22 = float(gram[0, 0]), float(gram[0, 1]), float(gram[1, 1])
    if not g11 > 0:
        raise LcscError("landscape: the first two models are the same weights")
    n1 = math.sqrt(g11)
    residual = g22 - g12 * g12 / g11  # |D2 - <D2, e1> e1|^2
    if not residual > 1e-12 * max(g22, 1e-300):
        raise LcscError("landscape: the three models lie on one line; choose another third")
    n2 = math.sqrt(residual)
    return np.array([[1.0 / n1, -g12 / (g11 * n2)], [0.0, 1.0 / n2]])


def plane_coordinates(gram: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """(3, 2) coordinates of ``a, b, c`` in the plane: ``a`` at the origin.

    ``basis`` is :func:`orthonormal_plane`'s ``M``; the coordinates of ``D_j`` are
    ``<D_j, e_k> = (G M)[j, k]``.
    """
    return np.vstack([np.zeros(2), gram @ basis])


def _gram(traj: Trajectory, d1: np.ndarray, d2: np.ndarray) -> np.ndarray:
    """(2, 2) weight-space inner products of the combinations ``d1, d2`` (float tensors only)."""
    w1, w2 = traj.combine(d1, accumulate=torch.float64), traj.combine(d2, accumulate=torch.float64)
    keys = [k for k, v in w1.items() if v.is_floating_point()]

    def dot(x: Mapping[str, torch.Tensor], y: Mapping[str, torch.Tensor]) -> float:
        return float(sum((x[k].double() * y[k].double()).sum() for k in keys))

    g12 = dot(w1, w2)
    return np.array([[dot(w1, w1), g12], [g12, dot(w2, w2)]])


@dataclass(frozen=True)
class Landscape:
    """Scores on a grid: ``scores[j, i]`` at ``(xs[i], ys[j])``; ``anchors`` (3, 2) are the
    three models' coordinates, ``labels`` their names, ``coefficients(x, y)`` any point's."""

    xs: np.ndarray
    ys: np.ndarray
    scores: np.ndarray
    anchors: np.ndarray
    labels: tuple[str, str, str]
    origin: np.ndarray  # (K,) coefficients of the first model
    directions: np.ndarray  # (2, K) coefficients of e1 and e2

    def coefficients(self, x: float, y: float) -> np.ndarray:
        """(K,) coefficients of the point ``(x, y)``; they sum to one."""
        return self.origin + x * self.directions[0] + y * self.directions[1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "x": self.xs.tolist(),
            "y": self.ys.tolist(),
            "scores": [
                [None if not math.isfinite(v) else v for v in row] for row in self.scores.tolist()
            ],
            "anchors": {
                name: xy.tolist() for name, xy in zip(self.labels, self.anchors, strict=True)
            },
            "origin": self.origin.tolist(),
            "directions": self.directions.tolist(),
        }


def compute_landscape(
    traj: Trajectory,
    objective: Objective,
    models: np.ndarray,
    labels: Sequence[str] = ("a", "b", "c"),
    *,
    resolution: int = 11,
    margin: float = 0.25,
    progress: Progress | None = None,
) -> Landscape:
    """Score ``objective`` on a ``resolution x resolution`` grid over the plane through the
    three combinations ``models`` (3, K), extended by ``margin`` times the anchors' span."""
    models = np.asarray(models, dtype=np.float64)
    if models.shape != (3, len(traj)):
        raise LcscError(f"landscape: expected 3 x {len(traj)} coefficients, got {models.shape}")
    if resolution < 2:
        raise LcscError(f"landscape: resolution must be >= 2, got {resolution}")
    d = models[1:] - models[0]  # (2, K)
    gram = _gram(traj, d[0], d[1])
    basis = orthonormal_plane(gram)
    directions = basis.T @ d  # (2, K): e_j = sum_i M[i, j] D_i
    anchors = plane_coordinates(gram, basis)
    low, high = anchors.min(0), anchors.max(0)
    pad = margin * (high - low).max()
    xs = np.linspace(low[0] - pad, high[0] + pad, resolution)
    ys = np.linspace(low[1] - pad, high[1] + pad, resolution)
    scores = np.empty((resolution, resolution))
    for j, y in enumerate(ys):
        for i, x in enumerate(xs):
            a = models[0] + x * directions[0] + y * directions[1]
            scores[j, i] = float(objective(traj.combine(a)))
            report(progress, "landscape", j * resolution + i + 1, resolution * resolution)
    return Landscape(xs, ys, scores, anchors, tuple(labels), models[0], directions)  # type: ignore[arg-type]


def save_landscape(landscape: Landscape, png: str | os.PathLike[str], title: str = "") -> None:
    """Write the landscape as a contour plot ``png`` and its grid as ``png`` with ``.json``."""
    write_json(os.path.splitext(png)[0] + ".json", landscape.to_dict())
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    span = (np.ptp(landscape.xs), np.ptp(landscape.ys))
    fig, ax = plt.subplots(figsize=(6.5, max(3.0, 5.5 * span[1] / max(span[0], 1e-12)) + 1.0))
    finite = landscape.scores[np.isfinite(landscape.scores)]
    # Quantile levels: a few bad points (a diverging combination) do not flatten the picture.
    levels = np.unique(np.quantile(finite, np.linspace(0, 1, 15))) if finite.size else []
    cs = ax.contourf(
        landscape.xs,
        landscape.ys,
        np.where(np.isfinite(landscape.scores), landscape.scores, np.nan),
        levels=levels if len(levels) > 1 else 2,
        cmap="viridis_r",
    )
    fig.colorbar(cs, ax=ax, label="objective (lower is better)", fraction=0.046, pad=0.04)
    for (x, y), name in zip(landscape.anchors, landscape.labels, strict=True):
        ax.plot(x, y, "o", color="white", markeredgecolor="black")
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 5), color="white")
    ax.set_xlabel("weight-space distance along e1")
    ax.set_ylabel("along e2")
    ax.set_title(title or "objective on the plane through three models", fontsize=9)
    ax.set_aspect("equal")
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
