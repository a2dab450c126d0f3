"""What a comparison found, in numbers and in words: LCSC against EMA* in every held-out score
(paired by held-out noise seed), the noise floor, and the rank correlation of the search score
with each score along the search's best-so-far path (negative: the search overfits its metric).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lcsc.metrics.scores import rank_correlation
from lcsc.reference.digits.evaluation import HIGHER_IS_BETTER, INDEPENDENT, METRICS, HeldOut

FD_METRICS = ("fd", "fd_alt", *INDEPENDENT)
DIFFERENCE_ONLY = frozenset({"kid"})  # unbiased KID is ~0 or negative near the floor
LABELS = {
    "fd": "search space (main MLP)",
    "fd_alt": "validation space (conv net)",
    "fd_pixels": "pixels",
    "fd_random": "random ReLU features",
    "fd_pca": "PCA projection",
    "fd_mlp": "scikit-learn MLP",
    "kid": "KID (main)",
    "precision": "precision (main)",
    "recall": "recall (main)",
    "confidence": "classifier confidence",
    "confident_share": "share with confidence > 0.9",
    "class_tv": "class imbalance (TV to uniform)",
}


@dataclass(frozen=True)
class Contrast:
    """LCSC against a baseline in one score: per-seed ``lcsc / baseline`` ratios and the verdict
    ``"wins"`` / ``"loses"`` (every seed agrees) or ``"ties"`` (the seeds disagree)."""

    metric: str
    ratios: tuple[float, ...]
    differences: tuple[float, ...]
    verdict: str

    @property
    def ratio(self) -> float:
        return float(np.mean(self.ratios))

    @property
    def ratio_std(self) -> float:
        return float(np.std(self.ratios, ddof=1)) if len(self.ratios) > 1 else 0.0

    def shown(self) -> str:
        """The ratio (``0.85x``); for KID, whose unbiased estimate can be negative near the
        floor, the difference instead."""
        if self.metric in DIFFERENCE_ONLY:
            return f"{np.mean(self.differences):+.3g}"
        return f"{self.ratio:.2f}x"


def contrast(lcsc: HeldOut, baseline: HeldOut, metric: str) -> Contrast:
    """Pair the two models' per-seed scores (same held-out noise) in ``metric``."""
    a = np.array([v[metric] for v in lcsc.values])
    b = np.array([v[metric] for v in baseline.values])
    better = a > b if metric in HIGHER_IS_BETTER else a < b
    worse = a < b if metric in HIGHER_IS_BETTER else a > b
    verdict = "wins" if better.all() else "loses" if worse.all() else "ties"
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = tuple(float(r) for r in a / b)
    return Contrast(metric, ratios, tuple(float(d) for d in a - b), verdict)


def contrasts(lcsc: HeldOut, baseline: HeldOut) -> dict[str, Contrast]:
    return {m: contrast(lcsc, baseline, m) for m in METRICS}


def independent_ratios(c: dict[str, Contrast]) -> dict[str, float]:
    """LCSC / EMA* FD in the four transfer spaces, and their median."""
    ratios = {m: c[m].ratio for m in INDEPENDENT}
    return ratios | {"median": float(np.median(list(ratios.values())))}


def path_correlations(search_scores: Sequence[float], held: Sequence[dict[str, float]]) -> dict:
    """Spearman correlation of the search score with each score along the path (positive:
    the score improves with the search; for higher-is-better scores the sign is flipped)."""
    out = {}
    for m in METRICS:
        r = rank_correlation(search_scores, [h[m] for h in held])
        out[m] = -r if m in HIGHER_IS_BETTER else r
    return out


def in_words(c: dict[str, Contrast], floor: dict[str, float], ema_fd: dict[str, float]) -> str:
    """Where LCSC wins and where it does not, as sentences (``ema_fd``: EMA*'s mean scores)."""
    groups = {v: [m for m in METRICS if c[m].verdict == v] for v in ("wins", "loses", "ties")}

    def names(ms: list[str]) -> str:
        return ", ".join(f"{LABELS[m]} ({c[m].shown()})" for m in ms) or "none"

    ind = independent_ratios(c)
    lines = [
        f"LCSC beats EMA* on every held-out noise seed in: {names(groups['wins'])}.",
        f"LCSC is worse than EMA* on every seed in: {names(groups['loses'])}.",
        f"The seeds disagree (no clear difference) in: {names(groups['ties'])}.",
        "In the four independent feature spaces LCSC/EMA* FD is "
        + ", ".join(f"{m[3:]} {ind[m]:.2f}" for m in INDEPENDENT)
        + f" (median {ind['median']:.2f}); in the search's own space {c['fd'].ratio:.2f}.",
    ]
    near = [m for m in FD_METRICS if ema_fd[m] < 2 * floor[m]]
    if near:
        lines.append(
            "EMA* is already within 2x of the real-vs-real noise floor in: "
            + ", ".join(LABELS[m] for m in near)
            + "; differences there are small in absolute terms."
        )
    return " ".join(lines)
