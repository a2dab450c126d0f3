"""Shared fixtures of the search tests: small problems and history comparison."""

from __future__ import annotations

import math
import runpy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lcsc.search import Evaluation


def make_init(k: int, p: int = 3) -> np.ndarray:
    """``p`` distinct convex rows: weights growing geometrically towards the last one."""
    rows = []
    for r in range(p):
        w = np.exp(np.linspace(0.0, 1.0 + 2.0 * r, k))
        rows.append(w / w.sum())
    return np.stack(rows)


def make_quadratic(k: int, shift: float = 2.0, seed: int = 0) -> Callable[[np.ndarray], float]:
    """Squared distance to a target on the sum-one plane, ``shift / K`` away per entry."""
    rng = np.random.default_rng(1000 + seed)
    target = make_init(k)[1] + rng.normal(0.0, shift / k, k)
    target += (1.0 - target.sum()) / k

    def score(a: np.ndarray) -> float:
        return float(np.sum((a - target) ** 2))

    return score


def assert_same_history(got: list[Evaluation], want: list[Evaluation]) -> None:
    """Same candidates (bit for bit) and the same scores (NaN equals NaN), in order."""
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.index == w.index
        assert np.array_equal(g.coefficients, w.coefficients), f"candidate {g.index} differs"
        assert g.score == w.score or (math.isnan(g.score) and math.isnan(w.score))


# A module a child process imports (by name: PYTHONPATH) to run a search until it is killed.
KILL9_OBJECTIVE = """
import time
import numpy as np

K = {k}
rows = [np.exp(np.linspace(0.0, 1.0 + 2.0 * r, K)) for r in range(3)]
INIT = np.stack([w / w.sum() for w in rows])
TARGET = np.linspace(-1.0, 3.0, K) / K
TARGET += (1.0 - TARGET.sum()) / K
OTHER = INIT[1]
DELAY = [0.0]

def score(a):
    time.sleep(DELAY[0])
    return float(np.sum((a - TARGET) ** 2))

def validate(a):
    return float(np.abs(a - OTHER).sum())
"""


def write_kill9_objective(folder: Path, k: int) -> dict[str, Any]:
    """Write ``kill9_objective.py`` into ``folder``: ``INIT`` (3 rows of ``k``), a quadratic
    ``score``, a ``validate`` objective, and ``DELAY``, a pause per score that the child sets so
    it can be killed mid-search. Returns its namespace (no delay), for the runs in this process.
    """
    path = folder / "kill9_objective.py"
    path.write_text(KILL9_OBJECTIVE.format(k=k))
    return runpy.run_path(str(path))


# Helpers are handed out as fixtures: test modules need not import this file.
@pytest.fixture(name="make_init")
def make_init_fixture() -> Callable[..., np.ndarray]:
    return make_init


@pytest.fixture(name="make_quadratic")
def make_quadratic_fixture() -> Callable[..., Callable[[np.ndarray], float]]:
    return make_quadratic


@pytest.fixture(name="assert_same_history")
def assert_same_history_fixture() -> Callable[[list[Evaluation], list[Evaluation]], None]:
    return assert_same_history


@pytest.fixture(name="write_kill9_objective")
def write_kill9_objective_fixture() -> Callable[[Path, int], dict[str, Any]]:
    return write_kill9_objective
