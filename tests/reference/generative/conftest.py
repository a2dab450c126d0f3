"""Shared fixtures: small DM and CT runs on digits, trained once per session (torch runs on one
thread in tests, see tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lcsc.reference.generative import ModelConfig, TrainConfig, TrainResult, load_dataset, train


def small_model(parametrisation: str, **changes: Any) -> ModelConfig:
    fields: dict[str, Any] = {"data_shape": (1, 8, 8), "width": 128, "depth": 2, "emb_dim": 64}
    return ModelConfig(parametrisation=parametrisation, **{**fields, **changes})


def small_config(kind: str, iterations: int = 300, **changes: Any) -> TrainConfig:
    fields: dict[str, Any] = {
        "model": small_model("dm" if kind == "dm" else "cm"),
        "batch_size": 64,
        "record_every": 50,
    }
    return TrainConfig(kind=kind, iterations=iterations, **{**fields, **changes})


@pytest.fixture(scope="session")
def digits_train():
    return load_dataset("digits", "train")


@pytest.fixture(scope="session")
def dm_run(tmp_path_factory: pytest.TempPathFactory, digits_train) -> tuple[Path, TrainResult]:
    out = tmp_path_factory.mktemp("dm") / "run"
    return out, train(small_config("dm"), out, data=digits_train)


@pytest.fixture(scope="session")
def ct_run(tmp_path_factory: pytest.TempPathFactory, digits_train) -> tuple[Path, TrainResult]:
    out = tmp_path_factory.mktemp("ct") / "run"
    return out, train(small_config("ct"), out, data=digits_train)
