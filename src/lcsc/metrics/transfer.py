"""Scores of one set of samples in several feature spaces at once, against one reference set:
the Fréchet distance in each space, plus classifier-based measures (confidence, class balance)
from one classifier's logits. Generic: the spaces are any extractors, the reference any samples.

A gain that holds in one learned space only is a gain in that metric, not in the samples; this
is how the transfer report of the digits experiment checks for that (Goodhart's law).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from lcsc.errors import LcscError
from lcsc.metrics.frechet import FeatureStats, frechet_distance
from lcsc.metrics.reference import compute_features, compute_features_and_logits
from lcsc.metrics.scores import classifier_measures

CLASSIFIER_MEASURES = ("confidence", "confident_share", "class_tv")


class FeatureSpaces:
    """``samples -> {name: FD, ..., confidence, confident_share, class_tv}``.

    Args:
        extractors: the feature spaces by score name (``{"fd_pixels": PixelFeatures(), ...}``).
        reference: the real samples (N, ...) every space compares against.
        classifier: the name of one extractor with ``features_and_logits`` whose class
            probabilities give :func:`lcsc.metrics.scores.classifier_measures` (None: none).
    """

    def __init__(
        self,
        extractors: Mapping[str, nn.Module],
        reference: torch.Tensor,
        classifier: str | None = None,
    ) -> None:
        if classifier is not None and classifier not in extractors:
            raise LcscError(f"classifier {classifier!r} is not one of the feature spaces")
        self.extractors = dict(extractors)
        self.classifier = classifier
        self.reference = {
            name: FeatureStats.from_features(compute_features(e, reference))
            for name, e in self.extractors.items()
        }

    @property
    def names(self) -> tuple[str, ...]:
        """The score names, in the order :meth:`__call__` returns them."""
        extra = CLASSIFIER_MEASURES if self.classifier is not None else ()
        return (*self.extractors, *extra)

    def __call__(self, samples: torch.Tensor) -> dict[str, float]:
        """Every score of ``samples`` (N, ...); all NaN if a sample is not finite."""
        if not bool(torch.isfinite(samples).all()):
            return dict.fromkeys(self.names, math.nan)
        out: dict[str, float] = {}
        logits: np.ndarray | None = None
        for name, extractor in self.extractors.items():
            if name == self.classifier:
                feats, logits = compute_features_and_logits(extractor, samples, len(samples))
            else:
                feats = compute_features(extractor, samples, batch_size=len(samples))
            stats = FeatureStats.from_features(feats)
            out[name] = frechet_distance(self.reference[name], stats)
        if logits is not None:
            out.update(classifier_measures(logits))
        return out
