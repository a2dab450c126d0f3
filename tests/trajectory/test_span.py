"""SpanCombiner: combinations inside a span from precomputed models, against the direct sum."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lcsc import search
from lcsc.trajectory import Trajectory
from lcsc.trajectory.span import SpanCombiner
from tests.conftest import train


def _float64_sum(traj: Trajectory, a: np.ndarray) -> dict[str, torch.Tensor]:
    """sum_i a_i theta_i in float64, independently of lcsc's combine."""
    states = [traj.load(i) for i in range(len(traj))]
    return {
        k: sum(float(c) * s[k].double() for c, s in zip(a, states, strict=True))
        for k in states[0]
        if states[0][k].is_floating_point()
    }


def test_in_span_matches_the_weighted_sum_and_out_of_span_falls_back(recorded: Path) -> None:
    traj = Trajectory.open(recorded)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3, len(traj)))
    combiner = SpanCombiner.build(traj, vectors)
    assert combiner is not None
    inside = vectors.T @ np.array([0.5, -1.5, 2.0])
    got, want = combiner.combine(inside), _float64_sum(traj, inside)
    assert list(got) == traj.keys
    for key, value in want.items():
        torch.testing.assert_close(got[key].double(), value, rtol=1e-5, atol=1e-5)
    direct = traj.combine(inside)
    for key, value in direct.items():  # integer buffers come from the last checkpoint
        if not value.is_floating_point():
            assert torch.equal(got[key], value)
    outside = rng.normal(size=len(traj))
    fallback = combiner.combine(outside)
    assert all(torch.equal(fallback[k], v) for k, v in traj.combine(outside).items())
    assert combiner.in_span == 1


def test_build_refuses_models_that_do_not_fit(recorded: Path) -> None:
    traj = Trajectory.open(recorded)
    assert SpanCombiner.build(traj, np.eye(len(traj))[:2], max_bytes=100) is None


def test_subspace_search_scores_models_from_the_span(tmp_path: Path) -> None:
    train(tmp_path / "run", steps=200, every=2)
    traj = Trajectory.open(tmp_path / "run")
    seen: list[tuple[np.ndarray, dict[str, torch.Tensor]]] = []
    config = search.SubspaceConfig(dims=4)

    def objective(state: dict[str, torch.Tensor]) -> float:
        seen.append(state)
        return float(sum(t.double().pow(2).sum() for t in state.values() if t.is_floating_point()))

    calls = []
    combine = traj.combine
    traj.combine = lambda a, **kw: calls.append(1) or combine(a, **kw)  # type: ignore[method-assign]
    result = search.run(traj, objective, config, budget=30, seed=0, groups=None)
    traj.combine = combine  # type: ignore[method-assign]
    rows = len(search.ema_init(traj.steps))
    assert len(calls) == rows + 4  # only the span's models were combined from checkpoints
    assert len(seen) == 30
    for evaluation, state in zip(result.history, seen, strict=True):
        direct = traj.combine(evaluation.coefficients)
        for key, value in direct.items():
            torch.testing.assert_close(state[key], value, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["evolutionary", "cmaes", "random"])
def test_other_methods_have_no_span(method: str) -> None:
    assert search.resolve_method(method).span(np.eye(3)) is None
