"""Shared fixtures of the search tests: small problems and history comparison."""

from __future__ import annotations

import math
from collections.abc import Callable

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
