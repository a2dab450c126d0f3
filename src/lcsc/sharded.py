"""Sharded checkpoints: an ``*.index.json`` naming, for each key, the shard file that holds it.

Large diffusers and transformers models are saved so (``diffusion_pytorch_model.safetensors
.index.json`` beside ``diffusion_pytorch_model-00001-of-00002.safetensors`` ...); lcsc opens
the index as one checkpoint whose tensors stay memory-mapped in their shards.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from lcsc.checkpoint import Checkpoint
from lcsc.errors import CheckpointError


def read_sharded(index: Path, read: Callable[[Path], Checkpoint]) -> Checkpoint:
    """One checkpoint made of the shards listed in ``index``, each opened with ``read``."""
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{index}: unreadable shard index: {exc}") from exc
    if not isinstance(weight_map, dict) or not all(
        isinstance(v, str) and Path(v).name == v and v not in ("", ".", "..")
        for v in weight_map.values()
    ):
        raise CheckpointError(f"{index}: 'weight_map' must map keys to shard file names")
    tensors = {}
    for shard in sorted(set(weight_map.values())):
        ckpt = read(index.parent / shard)
        for key in (k for k, v in weight_map.items() if v == shard):
            if key not in ckpt.tensors:
                raise CheckpointError(f"{ckpt.path}: key '{key}' listed in {index.name} is missing")
            tensors[key] = ckpt.tensors[key]
    return Checkpoint(index, tensors)
