from __future__ import annotations

from pathlib import Path

import pytest

from lcsc.reference.generative.networks import ModelConfig
from lcsc.reference.generative.training import TrainConfig, train


@pytest.fixture(scope="session")
def ct_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny consistency-training run on digits: 40 iterations, a checkpoint every 5."""
    out = tmp_path_factory.mktemp("ct") / "run"
    model = ModelConfig(kind="mlp", data_shape=(1, 8, 8), width=32, parametrisation="cm")
    train(TrainConfig(kind="ct", model=model, iterations=40, record_every=5, batch_size=32), out)
    return out
