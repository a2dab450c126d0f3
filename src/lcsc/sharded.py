"""Sharded checkpoints: an ``*.index.json`` naming, for each key, the shard file that holds it.

Large diffusers and transformers models are saved so (``diffusion_pytorch_model.safetensors
.index.json`` beside ``diffusion_pytorch_model-00001-of-00002.safetensors`` ...); lcsc opens
the index as one checkpoint whose tensors stay memory-mapped in their shards. The checkpoint's
:attr:`~lcsc.checkpoint.Checkpoint.shards` keep the shard files, so sizes and trajectory
fingerprints cover every file, not only the index.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from lcsc.checkpoint import SHARD_INDEX, Checkpoint
from lcsc.errors import CheckpointError


def _weight_map(index: Path) -> dict[str, str]:
    """The index's key -> shard file name map, checked: plain names of files beside it."""
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{index}: unreadable shard index: {exc}") from exc
    if not isinstance(weight_map, dict) or not all(
        isinstance(v, str)
        and Path(v).name == v
        and v not in ("", ".", "..")
        and not v.endswith(SHARD_INDEX)  # an index naming an index would never end
        for v in weight_map.values()
    ):
        raise CheckpointError(f"{index}: 'weight_map' must map keys to shard file names")
    return weight_map


def shard_paths(index: Path) -> list[Path]:
    """The shard files ``index`` names, sorted; none when the index is unreadable."""
    try:
        names = set(_weight_map(index).values())
    except CheckpointError:
        return []
    return [index.parent / name for name in sorted(names)]


def read_sharded(index: Path, read: Callable[[Path], Checkpoint]) -> Checkpoint:
    """One checkpoint made of the shards listed in ``index``, each opened with ``read``."""
    weight_map = _weight_map(index)
    tensors = {}
    shards = []
    for shard in sorted(set(weight_map.values())):
        ckpt = read(index.parent / shard)
        shards.append(ckpt)
        for key in (k for k, v in weight_map.items() if v == shard):
            if key not in ckpt.tensors:
                raise CheckpointError(f"{ckpt.path}: key '{key}' listed in {index.name} is missing")
            tensors[key] = ckpt.tensors[key]
    return Checkpoint(index, tensors, shards=tuple(shards))
