"""The paper's search objective: FD of a candidate's samples from FIXED noise (Sec. 4, App. B).

Fixed noise makes the score a deterministic function of the weights, so the search compares
candidates, not noise draws. The same class with another seed and more samples is the held-out
evaluation; search and held-out noise come from disjoint seed streams, so they never coincide.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch

from lcsc.errors import LcscError
from lcsc.generative.data import load_from_spec
from lcsc.generative.io import configs_from_metadata, load_state
from lcsc.generative.networks import build_model
from lcsc.generative.samplers import sample
from lcsc.metrics import FeatureStats, compute_features, digits_features, frechet_distance

Role = Literal["search", "held_out"]
_ROLES: dict[str, int] = {"search": 0, "held_out": 1}


def fixed_noise(
    n: int, shape: tuple[int, ...], seed: int, role: Role, stream: int = 0
) -> torch.Tensor:
    """Noise (n, *shape) ~ N(0, I), the same whatever the batch size used later.

    The generator seed is ``4 * seed + 2 * stream + role`` (role 0: search, 1: held-out; stream
    0: initial noise, 1: consistency re-noising), an injective map: search and held-out noise
    are different streams even for equal ``seed``.
    """
    if role not in _ROLES:
        raise LcscError(f"noise role must be 'search' or 'held_out', got {role!r}")
    if stream not in (0, 1) or seed < 0:
        raise LcscError(f"noise seed must be >= 0 (got {seed}) and stream 0 or 1 (got {stream})")
    g = torch.Generator().manual_seed(4 * int(seed) + 2 * stream + _ROLES[role])
    return torch.randn(n, *shape, generator=g)


class FixedNoiseGenerator:
    """A network rebuilt from metadata, sampling from fixed noise with any weights.

    Args:
        metadata: the ``lcsc_metadata`` of a run (model config and data spec).
        n: number of samples.
        noise_seed, role: which fixed noise (see :func:`fixed_noise`).
        sampler: ``cm`` for consistency models, ``euler``/``heun``/``dpmpp`` for diffusion
            models; None picks ``cm`` for a CM parametrisation and ``heun`` otherwise.
        nfe: network evaluations per sample.
    """

    def __init__(
        self,
        metadata: Mapping[str, Any],
        n: int,
        noise_seed: int,
        role: Role = "search",
        sampler: str | None = None,
        nfe: int = 1,
        batch_size: int = 1000,
        device: str | torch.device = "cpu",
    ) -> None:
        self.config, self.data = configs_from_metadata(metadata)
        self.model = build_model(self.config).to(device).eval()
        self.sampler = sampler or ("cm" if self.config.parametrisation == "cm" else "heun")
        self.nfe, self.batch_size, self.device = nfe, batch_size, torch.device(device)
        shape = tuple(self.config.data_shape)
        self.noise = fixed_noise(n, shape, noise_seed, role).to(self.device)
        self.renoise = (
            fixed_noise((nfe - 1) * n, shape, noise_seed, role, stream=1)
            .reshape(nfe - 1, n, *shape)
            .to(self.device)
            if self.sampler == "cm" and nfe > 1
            else None
        )

    def __call__(self, state_dict: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Samples (n, *data_shape) in model space from the given weights."""
        load_state(self.model, state_dict)
        return sample(
            self.model,
            self.noise,
            self.sampler,
            self.nfe,
            batch_size=self.batch_size,
            noise=self.renoise,
        )


class SampleFD:
    """``state_dict -> FD`` of its samples against reference statistics (lower is better).

    A candidate whose samples are not finite scores NaN (the search ranks it last).
    """

    def __init__(
        self,
        generator: FixedNoiseGenerator,
        extractor: torch.nn.Module,
        reference: FeatureStats,
    ) -> None:
        self.generator, self.extractor, self.reference = generator, extractor, reference

    def __call__(self, state_dict: Mapping[str, torch.Tensor]) -> float:
        x = self.generator(state_dict)
        if not bool(torch.isfinite(x).all()):
            return math.nan
        feats = compute_features(self.extractor, x, batch_size=len(x))
        return frechet_distance(self.reference, FeatureStats.from_features(feats))


def run_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``lcsc_metadata`` of a run: a Recorder directory, an ``lcsc train`` output directory,
    or a checkpoint file written by lcsc."""
    from lcsc.checkpoint import read_checkpoint
    from lcsc.trajectory import Trajectory, layout

    p = Path(path)
    if p.is_dir() and (p / "trajectory").is_dir():
        p = p / "trajectory"
    if p.is_dir():
        manifest = layout.read_manifest(p)
        if manifest.get("metadata"):
            return dict(manifest["metadata"])
        return dict(Trajectory.open(p, check_finite=False).metadata)
    raw = read_checkpoint(p).metadata.get(layout.KEY_METADATA)
    if not raw:
        raise LcscError(f"{p}: no lcsc_metadata (was it written by lcsc?)")
    return json.loads(raw)


def digits_training_data(metadata: Mapping[str, Any]) -> torch.Tensor:
    """The run's training samples (N, *shape) in model space; the run must be on digits."""
    _, data = configs_from_metadata(metadata)
    if data is None or data.name != "digits":
        raise LcscError("the digits objective needs a model trained on --data digits")
    return load_from_spec(data, "train").x


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
    """Built-in objective factory for ``lcsc search --objective lcsc.objectives:digits_fd``:
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
