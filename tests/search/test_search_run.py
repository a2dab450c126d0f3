"""Model-level entry point: run(trajectory, objective, ...)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lcsc.ema import default_ema_rates, ema_coefficients
from lcsc.errors import SearchError
from lcsc.search import run

K = 12


class FakeTrajectory:
    """Duck-typed trajectory: a random walk of K checkpoints with one tensor each."""

    def __init__(self, steps: list[int], seed: int = 0, fingerprint: str = "fp-1") -> None:
        gen = torch.Generator().manual_seed(seed)
        self.steps = steps
        self.thetas = torch.randn(len(steps), 16, generator=gen, dtype=torch.float64).cumsum(0)
        self._fingerprint = fingerprint
        self.fingerprint_calls = 0

    def combine(self, coefficients: np.ndarray) -> dict[str, torch.Tensor]:
        a = torch.as_tensor(coefficients, dtype=torch.float64)
        return {"w": a @ self.thetas}

    def fingerprint(self) -> str:
        self.fingerprint_calls += 1
        return self._fingerprint


STEPS = [100 * (i + 1) for i in range(K)]


@pytest.fixture
def trajectory() -> FakeTrajectory:
    return FakeTrajectory(STEPS)


@pytest.fixture
def objective(trajectory):
    # The best point is off the trajectory's EMAs: a mix with negative coefficients.
    target = trajectory.combine(np.linspace(-0.5, 1.5, K) / (K / 2))["w"]

    def loss(state: dict[str, torch.Tensor]) -> float:
        return float(((state["w"] - target) ** 2).mean())

    return loss


def test_run_scores_combined_checkpoints(trajectory, objective, make_init) -> None:
    init = make_init(K)
    result = run(trajectory, objective, "cmaes", budget=150, seed=0, init=init)
    assert len(result.history) == 150
    assert result.best_score == objective(trajectory.combine(result.best_coefficients))
    baseline = min(objective(trajectory.combine(row)) for row in init)
    assert result.best_score < 0.5 * baseline


def test_default_init_is_the_ema_grid(trajectory, objective) -> None:
    result = run(trajectory, objective, "random", budget=30, seed=0)
    rows: list[np.ndarray] = []
    for rate in default_ema_rates(STEPS):  # duplicates are evaluated once
        row = ema_coefficients(STEPS, rate)
        if not any(np.array_equal(row, seen) for seen in rows):
            rows.append(row)
    for row, evaluation in zip(rows, result.history, strict=False):
        assert np.array_equal(evaluation.coefficients, row)


def test_ema_rates_choose_the_init(trajectory, objective) -> None:
    rates = [0.99, 0.999]
    result = run(trajectory, objective, budget=5, seed=0, ema_rates=rates)
    for rate, evaluation in zip(rates, result.history[:2], strict=True):
        assert np.array_equal(evaluation.coefficients, ema_coefficients(STEPS, rate))


def test_resume_checks_the_trajectory_identity(trajectory, objective, make_init, tmp_path) -> None:
    init = make_init(K)
    first = run(trajectory, objective, budget=20, seed=0, init=init, workdir=tmp_path)
    seen = []
    again = run(
        trajectory, objective, budget=25, seed=0, init=init, workdir=tmp_path, callback=seen.append
    )
    assert [e.resumed for e in seen] == [True] * 20 + [False] * 5
    assert np.array_equal(again.history[19].coefficients, first.history[19].coefficients)

    other_files = FakeTrajectory(STEPS, fingerprint="fp-2")
    with pytest.raises(SearchError, match="identity.fingerprint"):
        run(other_files, objective, budget=30, seed=0, init=init, workdir=tmp_path)
    other_steps = FakeTrajectory([s + 1 for s in STEPS])
    with pytest.raises(SearchError, match="identity.steps"):
        run(other_steps, objective, budget=30, seed=0, init=init, workdir=tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"budget": 0}, "budget"),
        ({"budget": 5, "seed": -2}, "seed"),
        ({"budget": 5, "init": np.full((2, K + 1), 1.0 / (K + 1))}, "init"),
        ({"budget": 5, "init": np.full((1, K), 1.0 / K), "ema_rates": [0.9]}, "ema_rates"),
        ({"budget": 5, "ema_rates": []}, "ema_rates"),
    ],
)
def test_run_validates_arguments(trajectory, objective, kwargs, name) -> None:
    with pytest.raises(SearchError, match=name):
        run(trajectory, objective, **kwargs)


def test_run_needs_two_checkpoints(objective) -> None:
    with pytest.raises(SearchError, match="at least 2 checkpoints"):
        run(FakeTrajectory([100]), objective, budget=5, init=np.ones((1, 1)))


def test_bad_budget_fails_before_touching_the_trajectory(trajectory, objective) -> None:
    with pytest.raises(SearchError, match="budget"):
        run(trajectory, objective, budget=-1)
    assert trajectory.fingerprint_calls == 0


def test_resume_checks_the_objective_identity(trajectory, objective, make_init, tmp_path) -> None:
    """Issue 12 case 20: a changed objective used to replay the old scores silently."""
    init = make_init(K)
    run(trajectory, objective, budget=5, init=init, workdir=tmp_path / "a")

    def another(state: dict[str, torch.Tensor]) -> float:
        return objective(state)

    with pytest.raises(
        SearchError, match=r'identity\.objective differs.*now "[^"]*<locals>\.another"'
    ):
        run(trajectory, another, budget=8, init=init, workdir=tmp_path / "a")
    named = {"spec": "pkg:make", "args": {"target": "1"}}
    run(
        trajectory, objective, budget=5, init=init, workdir=tmp_path / "b", objective_identity=named
    )
    changed = {"spec": "pkg:make", "args": {"target": "2"}}
    with pytest.raises(SearchError, match='args.target differs.*recorded "1", now "2"'):
        run(
            trajectory,
            objective,
            budget=8,
            init=init,
            workdir=tmp_path / "b",
            objective_identity=changed,
        )
    again = run(
        trajectory, objective, budget=8, init=init, workdir=tmp_path / "b", objective_identity=named
    )
    assert [e.resumed for e in again.history] == [True] * 5 + [False] * 3


def test_on_resume_comes_once_between_replayed_and_new(
    trajectory, objective, make_init, tmp_path
) -> None:
    init = make_init(K)
    events: list[object] = []
    run(trajectory, objective, budget=4, init=init, workdir=tmp_path, on_resume=events.append)
    assert events == []  # nothing replayed: not called
    run(
        trajectory,
        objective,
        budget=7,
        init=init,
        workdir=tmp_path,
        callback=lambda e: events.append(e.resumed),
        on_resume=lambda n: events.append(("resumed", n)),
    )
    assert events == [True] * 4 + [("resumed", 4)] + [False] * 3
