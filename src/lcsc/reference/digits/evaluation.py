"""Held-out evaluation of a model trained on digits: held-out noise AND held-out data.

Samples come from held-out noise (several seeds, never the search's); the reference is the
digits TEST split, which neither the generators nor any feature net trained on. Scores:

* ``fd``, ``kid``, ``precision``, ``recall`` -- in the search's feature space (``main``);
* ``fd_alt`` -- the second packaged net (conv net; the validation space of the search);
* ``fd_pixels``, ``fd_random``, ``fd_pca``, ``fd_mlp`` and the classifier measures
  ``confidence``, ``confident_share``, ``class_tv`` -- the transfer spaces
  (:mod:`lcsc.reference.digits.transfer`), used by neither the search nor its validation.

The real-vs-real noise floor is every score of the train split itself (1437 images) against
the test split (360): what a generator that reproduced its training data exactly would get.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch

from lcsc.config import integer
from lcsc.errors import LcscError
from lcsc.metrics import compute_features, digits_features, kid, precision_recall
from lcsc.metrics.transfer import FeatureSpaces
from lcsc.reference.digits.objective import digits_data
from lcsc.reference.digits.transfer import transfer_extractors
from lcsc.reference.generative.generator import FixedNoiseGenerator

PRIMARY = ("fd", "kid", "precision", "recall")
INDEPENDENT = ("fd_pixels", "fd_random", "fd_pca", "fd_mlp")
CLASSIFIER = ("confidence", "confident_share", "class_tv")
METRICS = (*PRIMARY, "fd_alt", *INDEPENDENT, *CLASSIFIER)
HIGHER_IS_BETTER = frozenset({"precision", "recall", "confidence", "confident_share"})


class SampleScorer:
    """``samples (N, 1, 8, 8) -> {metric: value}`` for every metric of :data:`METRICS`, against
    the test split of the run's digits data."""

    def __init__(self, metadata: Mapping[str, Any]) -> None:
        train, test = digits_data(metadata, "train"), digits_data(metadata, "test")
        self.main = digits_features("main")
        self.real_main = compute_features(self.main, test.x)
        spaces = {"fd": self.main, "fd_alt": digits_features("alt")}
        spaces |= transfer_extractors(train.spec.split_seed, train.spec.test_fraction)
        self.spaces = FeatureSpaces(spaces, test.x, classifier="fd_mlp")
        self.train_x, self.n_train, self.n_test = train.x, len(train), len(test)

    def __call__(self, x: torch.Tensor) -> dict[str, float]:
        scores = self.spaces(x)
        if not math.isfinite(scores["fd"]):
            return dict.fromkeys(METRICS, math.nan)
        fake = compute_features(self.main, x, batch_size=len(x))
        size = min(1000, len(self.real_main), len(fake))
        scores["kid"], _ = kid(self.real_main, fake, subsets=50, subset_size=size, seed=0)
        scores["precision"], scores["recall"] = precision_recall(self.real_main, fake, k=3)
        return {m: float(scores[m]) for m in METRICS}

    @cached_property
    def floor(self) -> dict[str, float]:
        """The real-vs-real noise floor: the train split scored as if it were samples."""
        return self(self.train_x)


@dataclass(frozen=True)
class HeldOut:
    """One model's scores over held-out noise seeds: per-seed values, mean and std (ddof=1)."""

    values: tuple[dict[str, float], ...]

    @property
    def mean(self) -> dict[str, float]:
        return {m: float(np.mean([v[m] for v in self.values])) for m in METRICS}

    @property
    def std(self) -> dict[str, float]:
        if len(self.values) < 2:
            return dict.fromkeys(METRICS, 0.0)
        return {m: float(np.std([v[m] for v in self.values], ddof=1)) for m in METRICS}

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "per_seed": list(self.values)}


class HeldOutEvaluator:
    """``state_dict -> HeldOut``: ``n`` samples from each held-out noise seed in ``noise_seeds``,
    scored by one :class:`SampleScorer` (shared, so the reference is built once)."""

    def __init__(
        self,
        metadata: Mapping[str, Any],
        n: int = 5000,
        noise_seeds: Sequence[int] = (0, 1, 2),
        sampler: str | None = None,
        nfe: int = 1,
        scorer: SampleScorer | None = None,
    ) -> None:
        integer("n", n, minimum=2)
        if not noise_seeds:
            raise LcscError("noise_seeds must hold at least one held-out noise seed")
        self.scorer = scorer or SampleScorer(metadata)
        self.generators = [
            FixedNoiseGenerator(metadata, n, seed, "held_out", sampler, nfe) for seed in noise_seeds
        ]
        self.n, self.noise_seeds = n, tuple(noise_seeds)

    def __call__(self, state_dict: Mapping[str, torch.Tensor]) -> HeldOut:
        return HeldOut(tuple(self.scorer(g(state_dict)) for g in self.generators))

    def describe(self) -> str:
        """The sample counts, in words, for reports."""
        seeds = ", ".join(map(str, self.noise_seeds))
        return (
            f"{self.n} samples from each of {len(self.noise_seeds)} held-out noise seeds"
            f" ({seeds}) against the {self.scorer.n_test} test-split digits; noise floor:"
            f" the {self.scorer.n_train} train-split digits against the same test split"
        )
