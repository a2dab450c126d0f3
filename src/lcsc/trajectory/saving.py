"""Saving a combination: which outputs are refused (an input, a name the trajectory's folder
would list as a checkpoint, a combination holding NaN/Inf), the metadata it carries, and
whether it is a ``.safetensors`` file or a ``from_pretrained`` folder."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from lcsc.atomic import check_not_input
from lcsc.checkpoint import write_checkpoint
from lcsc.errors import LcscError, TrajectoryError
from lcsc.trajectory import layout, sources
from lcsc.trajectory.groups import Groups


def writes_folder(source: sources.Source | None, path: str | os.PathLike[str]) -> bool:
    """Whether a combination saved at ``path`` is a ``from_pretrained`` folder: the
    trajectory's files are a diffusers component with a config and ``path`` is no
    ``.safetensors`` file name."""
    has_config = source is not None and source.config is not None
    return has_config and Path(path).suffix != ".safetensors"


def check_output(path: Path, inputs: Iterable[Path], source: sources.Source | None) -> None:
    """Refuse ``path`` before any work: not a ``.safetensors`` name (nor a folder output), one
    of the trajectory's files ``inputs``, or a checkpoint-to-be of its ``source`` folder."""
    folder = writes_folder(source, path)
    if path.suffix != ".safetensors" and not folder:
        what = "is a directory" if path.is_dir() else "expected a .safetensors file name"
        raise TrajectoryError(  # lcsc could not read a file of another name back
            f"{path}: {what}; write FILE.safetensors (a folder output needs a diffusers"
            " component with a config.json)"
        )
    inputs = list(inputs)
    check_not_input(path, inputs, "one of the trajectory's files")
    if folder:
        from lcsc.trajectory.export import weights_name

        assert source is not None
        check_not_input(path / weights_name(source), inputs, "a trajectory's file")
    if source is not None and sources.lists_as_checkpoint(source, path):
        raise TrajectoryError(
            f"{path}: would become a checkpoint of the trajectory folder"
            f" {source.root} (and break the next run on it); write it outside that"
            " folder"
        )


def combination_metadata(
    metadata: Mapping[str, Any], steps: list[int], written: list[Any], groups: Groups | None
) -> dict[str, str]:
    """The file metadata of a combination: the trajectory's ``metadata`` (e.g. the model
    config), its ``steps``, the coefficients ``written`` and the group names, as JSON."""
    out = {
        layout.KEY_METADATA: json.dumps(metadata, sort_keys=True),
        "lcsc_steps": json.dumps(steps),
        "lcsc_coefficients": json.dumps(written),
    }
    if groups is not None:
        out["lcsc_groups"] = json.dumps(list(groups.names))
    return out


def write_combination(
    path: Path,
    state: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str],
    source: sources.Source | None,
) -> Path:
    """Write ``state`` atomically at ``path`` (a folder when :func:`writes_folder`), unless a
    floating tensor holds NaN/Inf; returns the path of the weights file written."""
    for key, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise LcscError(
                f"{path}: not written: key '{key}' of the combination overflows to NaN/Inf"
                " (coefficients too large for its dtype?)"
            )
    if writes_folder(source, path):
        from lcsc.trajectory.export import save_pretrained

        assert source is not None
        return save_pretrained(path, state, metadata, source)
    write_checkpoint(path, state, metadata)
    return path
