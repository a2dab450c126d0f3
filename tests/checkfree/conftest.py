"""Tiny CheckFree runs: 3-4 stages of d=32, a 200 KB corpus, a few iterations."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from checkfree import FailureConfig, ModelConfig, TrainConfig
from lcsc.checkpoint import read_checkpoint


@pytest.fixture(autouse=True)
def one_thread():
    """Tests may share 2 cores with worker processes: keep torch to one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(
    stages: int = 4,
    strategy: str = "checkfree",
    events: tuple[tuple[int, int], ...] | None = (),
    **overrides: Any,
) -> TrainConfig:
    """A run of a few iterations; ``events`` are explicit failures (``()``: none)."""
    failures = FailureConfig(rate_percent=0.0, events=events)
    config = TrainConfig(
        model=ModelConfig(stages=stages, dim=32, heads=2, seq_len=32),
        failures=failures,
        strategy=strategy,
        iterations=6,
        batch_size=4,
        micro_batches=2,
        warmup=2,
        eval_every=3,
        eval_batches=2,
        corpus_bytes=200_000,
        checkpoint_interval=2,
    )
    return replace(config, **overrides)


def load_state(directory: Path | str, name: str) -> dict[str, torch.Tensor]:
    """A snapshot written by ``snapshot_dir``: ``name`` like ``step2-after-stage1``."""
    ckpt = read_checkpoint(Path(directory) / f"{name}.safetensors")
    return {k: v.clone() for k, v in ckpt.tensors.items()}


def blocks(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The transformer-block weights of a snapshot, keyed by parameter name."""
    return {k[len("param/") :]: v for k, v in state.items() if k.startswith("param/blocks.")}
