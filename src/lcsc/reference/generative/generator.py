"""Sampling an ``lcsc train`` model from fixed noise with any weights: the generator that the
sample-FD objective (:class:`lcsc.objectives.SampleFD`) scores."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from lcsc.errors import LcscError
from lcsc.objectives.sample_fd import Role, fixed_noise
from lcsc.reference.generative.io import configs_from_metadata, load_state
from lcsc.reference.generative.networks import build_model
from lcsc.reference.generative.samplers import sample


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

    def __len__(self) -> int:
        return len(self.noise)

    def shard(self, start: int, stop: int) -> FixedNoiseGenerator:
        """The generator of rows ``[start, stop)`` of the same noise (and model, shared): how
        ``SampleFD.split_samples`` gives each process its share of the samples."""
        part = copy.copy(self)
        part.noise = self.noise[start:stop]
        if self.renoise is not None:
            part.renoise = self.renoise[:, start:stop]
        return part

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
