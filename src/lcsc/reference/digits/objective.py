"""The digits FD objective: FD in a packaged digits feature space of samples from fixed noise,
against statistics of real digits (``lcsc search --objective lcsc.reference.digits:digits_fd``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from lcsc.errors import LcscError
from lcsc.metrics import FeatureStats, compute_features, digits_features
from lcsc.metrics.transfer import FeatureSpaces
from lcsc.objectives.sample_fd import SampleFD
from lcsc.reference.generative.data import Dataset, load_from_spec
from lcsc.reference.generative.generator import FixedNoiseGenerator, run_metadata
from lcsc.reference.generative.io import configs_from_metadata


def digits_data(metadata: Mapping[str, Any], split: str = "train") -> Dataset:
    """The ``train`` or ``test`` split of the run's digits data (the run must be on digits)."""
    _, data = configs_from_metadata(metadata)
    if data is None or data.name != "digits":
        raise LcscError("the digits objective needs a model trained on --data digits")
    return load_from_spec(data, split)


def digits_training_data(metadata: Mapping[str, Any]) -> torch.Tensor:
    """The run's training samples (N, *shape) in model space; the run must be on digits."""
    return digits_data(metadata, "train").x


def digits_reference(metadata: Mapping[str, Any], features: str = "main") -> FeatureStats:
    """Feature statistics of the run's training data in a packaged digits feature space."""
    real = digits_training_data(metadata)
    return FeatureStats.from_features(compute_features(digits_features(features), real))


def digits_fd(
    run: str,
    samples: str = "2000",
    noise_seed: str = "0",
    sampler: str = "",
    nfe: str = "1",
    features: str = "main",
) -> SampleFD:
    """Built-in objective factory for ``lcsc search --objective lcsc.reference.digits:digits_fd``:
    FD in the packaged digits feature space of ``samples`` samples from fixed search noise.

    ``run`` is the ``lcsc train`` output directory (or its trajectory, or a checkpoint).
    """
    try:
        n, seed, steps = int(samples), int(noise_seed), int(nfe)
    except ValueError as exc:
        raise LcscError(f"digits_fd: samples, noise_seed and nfe must be integers: {exc}") from exc
    metadata = run_metadata(run)
    generator = FixedNoiseGenerator(metadata, n, seed, "search", sampler or None, steps)
    return SampleFD(generator, digits_features(features), digits_reference(metadata, features))


class CompositeFD:
    """``state_dict -> geometric mean of the FDs`` of one set of samples in several packaged
    digits feature spaces (``features``, e.g. ``("main", "alt")``), against the train split.

    The geometric mean weighs a relative change alike in every space, whatever its scale.
    """

    def __init__(
        self, generator: FixedNoiseGenerator, metadata: Mapping[str, Any], features: tuple[str, ...]
    ) -> None:
        if not features:
            raise LcscError("CompositeFD needs at least one feature space")
        extractors = {name: digits_features(name) for name in features}
        self.generator = generator
        self.spaces = FeatureSpaces(extractors, digits_training_data(metadata))

    def __call__(self, state_dict: Mapping[str, torch.Tensor]) -> float:
        fds = np.array(list(self.spaces(self.generator(state_dict)).values()))
        if not np.isfinite(fds).all():
            return math.nan
        return float(np.exp(np.log(np.maximum(fds, 1e-12)).mean()))
