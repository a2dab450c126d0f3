"""The search loop without a trajectory: results, validation, bad scores, failures."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest

from lcsc.errors import SearchError
from lcsc.search import SearchResult, iterate, minimize

METHODS = ["evolutionary", "cmaes", "random", "subspace"]


def test_result_holds_the_lowest_score_and_every_evaluation(make_init, make_quadratic) -> None:
    f = make_quadratic(10)
    seen = []
    result = minimize(f, make_init(10), "cmaes", budget=50, seed=0, callback=seen.append)
    assert isinstance(result, SearchResult)
    assert [e.index for e in result.history] == list(range(50))
    assert seen == result.history
    scores = [e.score for e in result.history]
    assert result.best_score == min(scores)
    assert result.best_index == scores.index(min(scores))
    assert np.array_equal(result.best_coefficients, result.history[result.best_index].coefficients)
    assert result.best_score == f(result.best_coefficients)
    assert result.method == "cmaes" and result.seed == 0
    assert not any(e.resumed for e in result.history)
    assert all(e.wall_time_s >= 0 for e in result.history)


def test_ties_go_to_the_earliest_evaluation(make_init) -> None:
    result = minimize(lambda a: 1.0, make_init(5), budget=20, seed=0)
    assert result.best_index == 0


def test_iterate_yields_lazily_and_stops_at_the_budget(make_init, make_quadratic) -> None:
    calls = []

    def f(a: np.ndarray) -> float:
        calls.append(a)
        return make_quadratic(6)(a)

    evaluations = iterate(f, make_init(6), "random", budget=5, seed=0)
    assert calls == []  # nothing runs before the first next()
    assert [e.index for e in evaluations] == [0, 1, 2, 3, 4]
    assert len(calls) == 5


def test_objective_gets_a_copy_and_yielded_coefficients_are_read_only(make_init) -> None:
    def vandal(a: np.ndarray) -> float:
        score = float(a[0])
        a[:] = 123.0  # must not corrupt the search
        return score

    result = minimize(vandal, make_init(4), budget=30, seed=0)
    for e in result.history:
        assert abs(e.coefficients.sum() - 1.0) < 1e-12
        with pytest.raises(ValueError):
            e.coefficients[0] = 0.0


@pytest.mark.parametrize("method", METHODS)
def test_non_finite_scores_are_recorded_and_rank_last(method, make_init, tmp_path, caplog) -> None:
    bad = {1: math.nan, 4: -math.inf, 7: math.inf}

    def f(a: np.ndarray) -> float:
        index = len(calls)
        calls.append(index)
        return bad.get(index, float(np.sum(a**2)) if index % 5 else math.nan)

    calls: list[int] = []
    with caplog.at_level(logging.WARNING, logger="lcsc.search"):
        result = minimize(f, make_init(8), method, budget=40, seed=0, workdir=tmp_path)
    assert len(result.history) == 40
    non_finite = [e.index for e in result.history if math.isnan(e.score)]
    assert set(bad) <= set(non_finite)
    assert math.isfinite(result.best_score) and result.best_index not in non_finite
    assert "ranks last" in caplog.text
    lines = (tmp_path / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["score"] is None for line in lines] == [
        math.isnan(e.score) for e in result.history
    ]


def test_no_finite_score_at_all_is_an_error(make_init) -> None:
    with pytest.raises(SearchError, match="no candidate got a finite score"):
        minimize(lambda a: math.nan, make_init(4), "cmaes", budget=12, seed=0)


def test_objective_returning_a_non_number_is_an_objective_failure(make_init) -> None:
    with pytest.raises(SearchError, match="candidate 0"):
        minimize(lambda a: "low", make_init(4), budget=3, seed=0)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"budget": 0}, "budget"),
        ({"budget": 2.5}, "budget"),
        ({"budget": True}, "budget"),
        ({"seed": -1}, "seed"),
        ({"seed": "x"}, "seed"),
        ({"method": "sgd"}, "method"),
        ({"init": np.full(4, 0.25)}, "init"),
        ({"init": np.ones((2, 1))}, "init"),
        ({"init": np.array([[0.5, math.nan]])}, "init"),
        ({"init": np.array([[0.5, 0.6], [0.5, 0.5]])}, "row 0"),
        ({"init": [[0.5, 0.5], [1.0]]}, "init"),
        ({"identity": {"x": object()}}, "identity"),
        ({"identity": {"x": math.inf}}, "identity"),
    ],
)
def test_invalid_arguments_name_the_argument(kwargs, name, tmp_path) -> None:
    args = {"init": np.array([[0.5, 0.5]]), "method": "evolutionary", "budget": 5, "seed": 0}
    args.update(kwargs)
    init, method = args.pop("init"), args.pop("method")
    with pytest.raises(SearchError, match=name):
        iterate(lambda a: 0.0, init, method, workdir=tmp_path, **args)


def test_nonnegative_search_rejects_negative_init() -> None:
    from lcsc.search import RandomConfig

    init = np.array([[1.5, -0.5]])
    with pytest.raises(SearchError, match="nonnegative"):
        iterate(lambda a: 0.0, init, RandomConfig(nonnegative=True), budget=3)


def test_a_diverging_optimizer_stops_with_an_error(make_init) -> None:
    import dataclasses

    from lcsc.search import SearchConfig
    from lcsc.search.base import Optimizer

    class Exploding(Optimizer):
        def _propose(self) -> np.ndarray:
            return np.array([math.inf, -math.inf, 1.0, 0.0])

        def _observe(self, candidate: np.ndarray, score: float) -> None:
            pass

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class ExplodingConfig(SearchConfig):
        method = "exploding"

        def make_optimizer(self, init, seed):
            return Exploding(init, seed)

    calls = []
    with pytest.raises(SearchError, match="diverged: candidate 3"):
        minimize(lambda a: calls.append(a) or 0.0, make_init(4), ExplodingConfig(), budget=9)
    assert len(calls) == 3  # the init rows only
