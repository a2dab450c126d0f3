"""Model files: weights plus the ``lcsc_metadata`` JSON that rebuilds the network.

The metadata (the same dict the Recorder stores with a trajectory, and that
``Trajectory.save_combination`` copies into merged files) is::

    {"format": "lcsc-generative", "version": 1,
     "model": ModelConfig.to_dict(), "data": DataSpec.to_dict(), "training": {...}}

so ``model_from_metadata(Trajectory.open(run / "trajectory").metadata)`` rebuilds the network,
and :func:`load_model` opens any single file written by training, ``lcsc merge`` or a search.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lcsc.checkpoint import read_checkpoint, write_checkpoint
from lcsc.errors import LcscError
from lcsc.reference.generative.data import DataSpec
from lcsc.reference.generative.edm import Denoiser
from lcsc.reference.generative.networks import ModelConfig, build_model
from lcsc.trajectory import layout

FORMAT = "lcsc-generative"
VERSION = 1


@dataclass
class LoadedModel:
    """A denoiser with its weights loaded, its config, data spec and full metadata."""

    model: Denoiser
    config: ModelConfig
    data: DataSpec | None
    metadata: dict[str, Any]


def make_metadata(
    model: ModelConfig, data: DataSpec | None, training: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON-serialisable metadata that rebuilds ``model`` and maps samples back via ``data``."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": model.to_dict(),
        "data": None if data is None else data.to_dict(),
        "training": dict(training or {}),
    }


def configs_from_metadata(
    metadata: Mapping[str, Any], where: str = "metadata"
) -> tuple[ModelConfig, DataSpec | None]:
    """The :class:`ModelConfig` and :class:`DataSpec` stored in ``metadata``."""
    if not isinstance(metadata, Mapping) or "model" not in metadata:
        raise LcscError(
            f"{where}: no model config in its lcsc_metadata (was it written by lcsc train?)"
        )
    if metadata.get("version", VERSION) > VERSION:
        raise LcscError(f"{where}: written by a newer lcsc (format version {metadata['version']})")
    try:
        config = ModelConfig.from_dict(metadata["model"])
        data = None if metadata.get("data") is None else DataSpec.from_dict(metadata["data"])
    except LcscError as exc:
        raise LcscError(f"{where}: {exc}") from exc
    return config, data


def model_from_metadata(metadata: Mapping[str, Any], where: str = "metadata") -> Denoiser:
    """A freshly initialised denoiser of the architecture stored in ``metadata``."""
    config, _ = configs_from_metadata(metadata, where)
    return build_model(config)


def load_state(model: Denoiser, state: Mapping[str, torch.Tensor], where: str = "state") -> None:
    """Copy ``state`` (e.g. ``Trajectory.combine(a)``) into ``model``; all keys must match."""
    expected = model.state_dict()
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    if missing or unexpected:
        raise LcscError(
            f"{where}: weights do not fit the model (missing {missing[:3]}, unexpected"
            f" {unexpected[:3]})"
        )
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise LcscError(
                f"{where}: key '{key}' has shape {tuple(value.shape)}, the model"
                f" {tuple(expected[key].shape)}"
            )
    model.load_state_dict(dict(state))


def load_model(path: str | os.PathLike[str], *, device: torch.device | str = "cpu") -> LoadedModel:
    """Rebuild the network of a checkpoint file from its ``lcsc_metadata`` and load its weights.

    The returned model is in eval mode, on ``device``.
    """
    ckpt = read_checkpoint(path)
    raw = ckpt.metadata.get(layout.KEY_METADATA)
    if raw is None:
        raise LcscError(f"{path}: no lcsc_metadata (was it written by lcsc train or merge?)")
    try:
        metadata = json.loads(raw)
    except ValueError as exc:
        raise LcscError(f"{path}: corrupt lcsc_metadata: {exc}") from exc
    config, data = configs_from_metadata(metadata, str(path))
    model = build_model(config)
    load_state(model, ckpt.tensors, str(path))
    model.to(device).eval()
    return LoadedModel(model, config, data, metadata)


def save_model(
    path: str | os.PathLike[str],
    model: torch.nn.Module,
    metadata: Mapping[str, Any],
    *,
    step: int | None = None,
) -> None:
    """Write ``model``'s weights and ``metadata`` atomically as ``.safetensors``."""
    md = {layout.KEY_METADATA: json.dumps(metadata, sort_keys=True)}
    if step is not None:
        md[layout.KEY_STEP] = str(step)
    write_checkpoint(Path(path), model.state_dict(), md)
