"""Held-out evaluation of a model trained on digits: FD, KID, precision and recall in the main
digits feature space, plus FD in a second, independent feature space (the paper's FID@CLIP
check, App. B.5), all on held-out noise that the search never saw."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch

from lcsc.metrics import (
    FeatureStats,
    compute_features,
    digits_features,
    frechet_distance,
    kid,
    precision_recall,
)
from lcsc.reference.digits.objective import digits_training_data
from lcsc.reference.generative.generator import FixedNoiseGenerator


@dataclass(frozen=True)
class SampleMetrics:
    """Scores of one model's held-out samples (FD, KID: lower is better)."""

    fd: float
    kid: float
    precision: float
    recall: float
    fd_alt: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


class HeldOutEvaluator:
    """``state_dict -> SampleMetrics`` on ``n`` samples from held-out noise ``noise_seed``."""

    def __init__(
        self,
        metadata: Mapping[str, Any],
        n: int = 5000,
        noise_seed: int = 0,
        sampler: str | None = None,
        nfe: int = 1,
    ) -> None:
        self.generator = FixedNoiseGenerator(metadata, n, noise_seed, "held_out", sampler, nfe)
        real = digits_training_data(metadata)
        self.main, self.alt = digits_features("main"), digits_features("alt")
        self.real = compute_features(self.main, real)
        self.reference = FeatureStats.from_features(self.real)
        self.reference_alt = FeatureStats.from_features(compute_features(self.alt, real))

    def __call__(self, state_dict: Mapping[str, torch.Tensor]) -> SampleMetrics:
        x = self.generator(state_dict)
        if not bool(torch.isfinite(x).all()):
            nan = float("nan")
            return SampleMetrics(nan, nan, nan, nan, nan)
        fake = compute_features(self.main, x, batch_size=len(x))
        fake_alt = compute_features(self.alt, x, batch_size=len(x))
        size = min(1000, len(self.real), len(fake))
        kid_mean, _ = kid(self.real, fake, subsets=50, subset_size=size, seed=0)
        precision, recall = precision_recall(self.real, fake, k=3)
        return SampleMetrics(
            fd=frechet_distance(self.reference, FeatureStats.from_features(fake)),
            kid=kid_mean,
            precision=precision,
            recall=recall,
            fd_alt=frechet_distance(self.reference_alt, FeatureStats.from_features(fake_alt)),
        )
