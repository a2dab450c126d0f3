"""Scores on plain features or logits: KID, Inception Score, and k-NN precision/recall.

Implemented here (float64, explicit seeds) rather than through torchmetrics' metric classes: those
are stateful ``Metric`` objects that take images through an extractor, draw KID subsets and IS
permutations from the global torch RNG (not reproducible per call, and they disturb it), and
torchmetrics has no precision/recall for generative models. Each formula is a few lines; the tests
check them against torchmetrics where it is installed and against brute-force loops.
"""

from __future__ import annotations

import numpy as np
import torch

from lcsc.errors import LcscError


def _features(x: object, what: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise LcscError(f"{what} must have shape (N, D), got {a.shape}")
    if not np.isfinite(a).all():
        raise LcscError(f"{what} are not finite (NaN or Inf)")
    return a


def _unbiased_poly_mmd2(
    x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef: float
) -> float:
    """Unbiased MMD^2 of x, y (m, D) under k(a, b) = (gamma a.b + coef)^degree."""
    m = x.shape[0]
    k_xx = (x @ x.T * gamma + coef) ** degree
    k_yy = (y @ y.T * gamma + coef) ** degree
    k_xy = (x @ y.T * gamma + coef) ** degree
    # Unbiased: the within-set sums leave out the diagonal (a sample paired with itself).
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.sum() / (m * m))


def kid(
    feats_a: np.ndarray | torch.Tensor,
    feats_b: np.ndarray | torch.Tensor,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
    degree: int = 3,
    gamma: float | None = None,
    coef: float = 1.0,
) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018): mean and std of the unbiased MMD^2.

    ``feats_a`` (Na, D), ``feats_b`` (Nb, D). The kernel is the cubic polynomial
    ``(a.b / D + 1)^3`` (``gamma`` defaults to 1/D). Each of ``subsets`` rounds draws
    ``m = min(subset_size, Na, Nb)`` rows of each set without replacement, with a NumPy generator
    seeded by ``seed`` (the same seed gives the same value). The std is over subsets (ddof=0),
    as in the reference code. Values can be slightly negative: the estimator is unbiased.
    """
    a = _features(feats_a, "features A")
    b = _features(feats_b, "features B")
    if a.shape[1] != b.shape[1]:
        raise LcscError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    m = min(subset_size, a.shape[0], b.shape[0])
    if m < 2:
        raise LcscError(f"KID needs at least 2 samples per set, got {a.shape[0]} and {b.shape[0]}")
    if subsets < 1:
        raise LcscError(f"subsets must be >= 1, got {subsets}")
    g = 1.0 / a.shape[1] if gamma is None else gamma
    rng = np.random.default_rng(seed)
    values = np.array(
        [
            _unbiased_poly_mmd2(
                a[rng.choice(a.shape[0], m, replace=False)],
                b[rng.choice(b.shape[0], m, replace=False)],
                degree,
                g,
                coef,
            )
            for _ in range(subsets)
        ]
    )
    return float(values.mean()), float(values.std())


def inception_score(logits: np.ndarray | torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """Inception Score (Salimans et al. 2016): mean, std over splits of exp(E KL(p(y|x) || p(y))).

    ``logits`` (N, C), unnormalised class scores. Splits are consecutive chunks in the given order
    (no shuffling, so the value is deterministic); std over splits with ddof=0, as in the
    reference code. Uniform predictions give 1; confident, evenly spread ones give C.
    """
    z = _features(logits, "logits")
    if not 1 <= splits <= z.shape[0]:
        raise LcscError(f"splits must be in [1, N={z.shape[0]}], got {splits}")
    log_p = z - z.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))  # log-softmax, stable
    scores = []
    for part in np.array_split(log_p, splits):
        # log p(y) by log-sum-exp, so a class no sample predicts stays finite (no 0 * inf).
        top = part.max(axis=0)
        log_marginal = top + np.log(np.exp(part - top).sum(axis=0)) - np.log(part.shape[0])
        kl = (np.exp(part) * (part - log_marginal)).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    s = np.array(scores)
    return float(s.mean()), float(s.std())


def _knn_radii(x: torch.Tensor, k: int, batch_size: int) -> torch.Tensor:
    """Distance from each row of x (N, D) to its k-th nearest other row: (N,)."""
    out = []
    for i in range(0, x.shape[0], batch_size):
        d = torch.cdist(x[i : i + batch_size], x)
        # k + 1: the smallest distance is the point to itself (0).
        out.append(d.kthvalue(k + 1, dim=1).values)
    return torch.cat(out)


def _coverage(
    points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, batch_size: int
) -> float:
    """Fraction of points (M, D) inside at least one ball (centres (N, D), radii (N,))."""
    inside = 0
    for i in range(0, points.shape[0], batch_size):
        d = torch.cdist(points[i : i + batch_size], centres)
        inside += int((d <= radii[None, :]).any(dim=1).sum())
    return inside / points.shape[0]


def precision_recall(
    real_feats: np.ndarray | torch.Tensor,
    fake_feats: np.ndarray | torch.Tensor,
    k: int = 3,
    batch_size: int = 1024,
) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019), k-NN manifold estimate.

    ``real_feats`` (Nr, D), ``fake_feats`` (Nf, D). Each real sample gets a ball reaching its k-th
    nearest real neighbour; precision is the fraction of fake samples inside at least one real
    ball. Recall is the same with the roles swapped: the fraction of real samples inside the fake
    manifold. Distances are Euclidean, in float64, computed ``batch_size`` rows at a time.
    """
    real = torch.from_numpy(_features(real_feats, "real features"))
    fake = torch.from_numpy(_features(fake_feats, "fake features"))
    if real.shape[1] != fake.shape[1]:
        raise LcscError(f"feature dimensions differ: {real.shape[1]} vs {fake.shape[1]}")
    if k < 1 or k >= min(real.shape[0], fake.shape[0]):
        raise LcscError(
            f"k must be in [1, N-1] for both sets (N = {real.shape[0]}, {fake.shape[0]}), got {k}"
        )
    precision = _coverage(fake, real, _knn_radii(real, k, batch_size), batch_size)
    recall = _coverage(real, fake, _knn_radii(fake, k, batch_size), batch_size)
    return precision, recall


def classifier_measures(
    logits: np.ndarray | torch.Tensor, threshold: float = 0.9
) -> dict[str, float]:
    """Classifier-based checks of samples from their class logits (N, C).

    ``confidence``: the mean top-class probability; ``confident_share``: the share of samples
    whose top-class probability exceeds ``threshold``; ``class_tv``: the total variation distance
    ``0.5 * sum_c |f_c - 1/C|`` between the predicted-class frequencies ``f`` and the uniform
    distribution (0 for perfectly balanced classes; lower is better).
    """
    z = _features(logits, "logits")
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    top = p.max(axis=1)
    freq = np.bincount(p.argmax(axis=1), minlength=z.shape[1]) / z.shape[0]
    return {
        "confidence": float(top.mean()),
        "confident_share": float((top > threshold).mean()),
        "class_tv": float(0.5 * np.abs(freq - 1.0 / z.shape[1]).sum()),
    }


def rank_correlation(a: np.ndarray | list[float], b: np.ndarray | list[float]) -> float:
    """Spearman's rank correlation of two equally long sequences (ties get average ranks);
    NaN when either is constant or shorter than 2."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise LcscError(f"rank_correlation: shapes {x.shape} and {y.shape} differ or are not 1-D")
    rx, ry = _ranks(x), _ranks(y)
    if len(x) < 2 or rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the mean of the ranks they span."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + 1 + ends) / 2.0)[inverse]
