"""Shared fixtures: small DM and CT runs on digits, trained once per session.

The tests run torch on one thread: these models are far too small to gain from two, and two
OpenMP threads slow down by an order of magnitude when other processes share the cores.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from lcsc.generative import ModelConfig, TrainConfig, TrainResult, load_dataset, train


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    with one_thread():
        yield


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
    with one_thread():
        return out, train(small_config("dm"), out, data=digits_train)


@pytest.fixture(scope="session")
def ct_run(tmp_path_factory: pytest.TempPathFactory, digits_train) -> tuple[Path, TrainResult]:
    out = tmp_path_factory.mktemp("ct") / "run"
    with one_thread():
        return out, train(small_config("ct"), out, data=digits_train)
