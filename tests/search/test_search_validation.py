"""Validation objective: selection from the search path, early stop, penalty, exact resume."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lcsc.errors import SearchError
from lcsc.search import Penalty, Validation, iterate, minimize, run
from tests.conftest import child_env, kill_when_logged

K = 8
BUDGET = 60
METHODS = ["evolutionary", "cmaes", "random"]


@pytest.fixture
def problem(make_init, make_quadratic):
    """Search: a quadratic far from the init rows; validation: one whose optimum is init row 0."""
    init = make_init(K)
    anchor = init[0].copy()

    def validation(a: np.ndarray) -> float:
        return float(np.sum((a - anchor) ** 2))

    return make_quadratic(K, shift=4.0), init, validation


def best_so_far_path(scores: list[float]) -> list[int]:
    """Indices that lower the best score so far (strictly; NaN never does)."""
    path, best = [], math.inf
    for i, s in enumerate(scores):
        if s < best:
            path.append(i)
            best = s
    return path


def sequence(values: list[float]):
    """A validation objective that returns ``values`` in call order (known answers)."""
    calls: list[np.ndarray] = []

    def g(a: np.ndarray) -> float:
        calls.append(a.copy())
        return values[len(calls) - 1]

    return g, calls


def recorded(workdir: Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / "history.jsonl").read_text().splitlines()]


def validations(result) -> list[tuple[int, float]]:
    """(index, score) of each validation; NaN as None so that it compares equal."""
    return [(v.index, None if math.isnan(v.score) else v.score) for v in result.validation_path]


def assert_same_result(got, want, assert_same_history) -> None:
    assert_same_history(got.history, want.history)
    assert validations(got) == validations(want)  # bit for bit
    for g, w in zip(got.history, want.history, strict=True):
        assert (g.validation is None) == (w.validation is None) and g.penalty == w.penalty
    assert got.best_index == want.best_index
    assert np.array_equal(got.best_coefficients, want.best_coefficients)
    assert got.best_validation_score == want.best_validation_score
    assert got.search_best_index == want.search_best_index
    assert got.stopped_early == want.stopped_early


@pytest.mark.parametrize("method", METHODS)
def test_result_is_the_validation_best_of_the_search_path(method, problem) -> None:
    f, init, g = problem
    result = minimize(f, init, method, budget=BUDGET, seed=1, validation=Validation(g))
    scores = [e.score for e in result.history]
    path = best_so_far_path(scores)
    assert [v.index for v in result.validation_path] == path
    assert [v.score for v in result.validation_path] == [
        g(result.history[i].coefficients) for i in path
    ]
    by_validation = min(path, key=lambda i: (g(result.history[i].coefficients), i))
    assert result.best_index == by_validation
    assert np.array_equal(result.best_coefficients, result.history[by_validation].coefficients)
    assert result.best_score == scores[by_validation]
    assert result.best_validation_score == g(result.history[by_validation].coefficients)
    assert result.search_best_index == int(np.argmin(scores)) == path[-1]
    assert result.search_best_score == min(scores)
    assert result.best_index != result.search_best_index  # the two optima differ
    assert not result.stopped_early and len(result.history) == BUDGET


def test_without_validation_the_search_best_is_chosen(problem) -> None:
    f, init, _ = problem
    result = minimize(f, init, budget=30, seed=0)
    assert result.validation_path == [] and result.best_validation_score is None
    assert (
        result.best_index
        == result.search_best_index
        == int(np.argmin([e.score for e in result.history]))
    )


@pytest.mark.parametrize("every", [1, 7, 25])
def test_validate_every_validates_the_best_so_far_at_fixed_counts(every, problem) -> None:
    f, init, g = problem
    validation = Validation(g, validate_every=every)
    result = minimize(f, init, "cmaes", budget=BUDGET, seed=0, validation=validation)
    scores = [e.score for e in result.history]
    want, best, last = [], -1, -1
    for i, s in enumerate(scores):  # the rule, by hand
        if best < 0 or s < scores[best]:
            best = i
        if ((i + 1) % every == 0 or i + 1 == BUDGET) and best != last:
            want.append((i, best))
            last = best
    got = [(e.index, e.validation.index) for e in result.history if e.validation is not None]
    assert got == want
    assert [v.index for v in result.validation_path] == [b for _, b in want]


def test_early_stop_after_exactly_patience_non_improving_validations(problem) -> None:
    f, init, _ = problem
    # Improvements at validations 0, 1, 3; then 3 in a row that are not lower (equal counts
    # as no improvement): the search stops right after the 7th validation.
    g, calls = sequence([5.0, 4.0, 4.5, 3.0, 3.5, 3.0, 3.1, 0.0, 0.0])
    validation = Validation(g, patience=3)
    result = minimize(f, init, "evolutionary", budget=200, seed=0, validation=validation)
    full = minimize(f, init, "evolutionary", budget=200, seed=0)
    path = best_so_far_path([e.score for e in full.history])
    assert len(calls) == 7
    assert [v.index for v in result.validation_path] == path[:7]
    assert len(result.history) == path[6] + 1  # nothing is evaluated after the stop
    assert result.stopped_early
    assert result.best_index == path[3] and result.best_validation_score == 3.0
    for got, want in zip(result.history, full.history, strict=False):
        assert np.array_equal(got.coefficients, want.coefficients)


def test_patience_not_reached_spends_the_budget(problem) -> None:
    f, init, _ = problem
    g, calls = sequence([float(-i) for i in range(BUDGET)])  # always improving
    result = minimize(f, init, budget=BUDGET, seed=0, validation=Validation(g, patience=1))
    assert len(result.history) == BUDGET and not result.stopped_early
    assert result.best_index == result.validation_path[-1].index


def test_non_finite_validation_scores_never_improve(problem, tmp_path) -> None:
    f, init, _ = problem
    g, _ = sequence([2.0, math.nan, math.inf, 1.0, math.nan, math.nan] + [9.0] * 50)
    validation = Validation(g, patience=3)
    result = minimize(f, init, budget=200, seed=0, workdir=tmp_path, validation=validation)
    scores = [v.score for v in result.validation_path]
    assert len(scores) == 7 and result.stopped_early  # 1.0 restarted the count of 3
    assert [s for s in scores if not math.isnan(s)] == [2.0, 1.0, 9.0]
    assert result.best_validation_score == 1.0
    stored = [r["validation"]["score"] for r in recorded(tmp_path) if "validation" in r]
    assert stored == [2.0, None, None, 1.0, None, None, 9.0]


def test_no_finite_validation_score_is_an_error(problem) -> None:
    f, init, _ = problem
    with pytest.raises(SearchError, match="no validated candidate got a finite validation"):
        minimize(f, init, budget=10, seed=0, validation=Validation(lambda a: math.nan))


def test_history_records_validation_scores(problem, tmp_path) -> None:
    f, init, g = problem
    result = minimize(f, init, budget=40, seed=2, workdir=tmp_path, validation=Validation(g))
    lines = recorded(tmp_path)
    validated = {r["index"]: r["validation"] for r in lines if "validation" in r}
    assert sorted(validated) == [v.index for v in result.validation_path]
    for i, v in validated.items():
        assert v["index"] == i and v["score"] == g(np.array(lines[i]["coefficients"]))


# -- the penalty ---------------------------------------------------------------------------


def test_penalty_is_distance_to_the_best_init_row(problem) -> None:
    f, init, _ = problem
    weight = 0.3
    result = minimize(f, init, "cmaes", budget=BUDGET, seed=0, penalty=Penalty(weight))
    anchor = init[int(np.argmin([f(row) for row in init]))]
    for e in result.history:
        want = 0.0 if e.index < len(init) else weight * K * np.sum((e.coefficients - anchor) ** 2)
        assert e.penalty == pytest.approx(want, rel=1e-12, abs=0.0)
        assert e.search_score == e.score + e.penalty
    ranked = [e.score + e.penalty for e in result.history]
    assert result.best_index == int(np.argmin(ranked))
    assert result.best_score == result.history[result.best_index].score  # reported unpenalised


def test_a_strong_penalty_keeps_the_search_near_its_anchor(problem) -> None:
    f, init, _ = problem
    anchor = init[2]
    free = minimize(f, init, "cmaes", budget=BUDGET, seed=0)
    held = minimize(f, init, "cmaes", budget=BUDGET, seed=0, penalty=Penalty(100.0, anchor))
    assert held.history[0].penalty == pytest.approx(100.0 * K * np.sum((init[0] - anchor) ** 2))
    distance = lambda a: float(np.linalg.norm(a - anchor))  # noqa: E731
    assert distance(held.best_coefficients) < 0.25 * distance(free.best_coefficients)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Penalty(-1.0), "Penalty.weight must be >= 0"),
        (lambda: Penalty(1.0, [0.5, math.nan]), "Penalty.anchor must be finite"),
        (lambda: Validation(lambda a: 0.0, patience=0), "Validation.patience must be"),
        (lambda: Validation(lambda a: 0.0, validate_every=1.5), "Validation.validate_every"),
        (lambda: Validation("not callable"), "Validation.objective must be callable"),
    ],
)
def test_bad_settings_name_the_field(make, message) -> None:
    with pytest.raises(SearchError, match=message):
        make()


def test_anchor_of_the_wrong_length_is_refused(problem) -> None:
    f, init, _ = problem
    with pytest.raises(SearchError, match=f"anchor holds 3 numbers.*K={K}"):
        minimize(f, init, budget=5, penalty=Penalty(1.0, [0.2, 0.3, 0.5]))


# -- resume --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("fraction", [0.03, 0.3, 0.6, 0.97])
def test_resume_replays_validation_scores_exactly(
    method, fraction, problem, tmp_path, assert_same_history
) -> None:
    f, init, g = problem
    validation = Validation(g, patience=6, identity="g")
    penalty = Penalty(0.05)
    want = minimize(f, init, method, budget=BUDGET, seed=3, validation=validation, penalty=penalty)
    stop = max(1, round(fraction * len(want.history)))  # within the early-stopped run

    def crashing(a: np.ndarray) -> float:  # an objective that dies at evaluation `stop`
        if len(seen) == stop:
            raise KeyboardInterrupt
        seen.append(1)
        return f(a)

    seen: list[int] = []
    with pytest.raises(KeyboardInterrupt):
        minimize(crashing, init, method, budget=BUDGET, seed=3, workdir=tmp_path,
                 validation=validation, penalty=penalty)  # fmt: skip
    assert len(recorded(tmp_path)) == stop
    calls: list[int] = []

    def counting(a: np.ndarray) -> float:
        calls.append(1)
        return g(a)

    resumed = Validation(counting, patience=6, identity="g")
    got = minimize(
        f, init, method, budget=BUDGET, seed=3, workdir=tmp_path, validation=resumed,
        penalty=penalty,
    )  # fmt: skip
    assert_same_result(got, want, assert_same_history)
    fresh = [v for v in got.validation_path if v.index >= stop]
    assert len(calls) == len(fresh)  # recorded validations are replayed, not recomputed


def test_failing_validation_objective_keeps_a_valid_history(
    problem, tmp_path, assert_same_history
) -> None:
    f, init, g = problem
    want = minimize(f, init, "cmaes", budget=BUDGET, seed=0, validation=Validation(g, identity="g"))

    def flaky(a: np.ndarray) -> float:
        if len(calls) == 4:
            raise RuntimeError("feature net missing")
        calls.append(1)
        return g(a)

    calls: list[int] = []
    with pytest.raises(SearchError, match="validation objective failed on candidate .*missing"):
        minimize(f, init, "cmaes", budget=BUDGET, seed=0, workdir=tmp_path,
                 validation=Validation(flaky, identity="g"))  # fmt: skip
    failed = json.loads((tmp_path / "failed_candidate.json").read_text())
    assert failed["index"] == want.validation_path[4].index
    assert len(recorded(tmp_path)) == want.validation_path[4].index  # its line not written
    got = minimize(f, init, "cmaes", budget=BUDGET, seed=0, workdir=tmp_path,
                   validation=Validation(g, identity="g"))  # fmt: skip
    assert_same_result(got, want, assert_same_history)


def test_an_early_stopped_workdir_only_replays(problem, tmp_path) -> None:
    f, init, _ = problem
    g, _ = sequence([3.0, 2.0] + [5.0] * 100)
    first = minimize(f, init, "cmaes", budget=BUDGET, seed=0, workdir=tmp_path,
                     validation=Validation(g, patience=2, identity="seq"))  # fmt: skip
    assert first.stopped_early

    def must_not_run(a: np.ndarray) -> float:
        raise AssertionError("called although the search stopped early")

    again = minimize(must_not_run, init, "cmaes", budget=BUDGET, seed=0, workdir=tmp_path,
                     validation=Validation(must_not_run, patience=2, identity="seq"))  # fmt: skip
    assert all(e.resumed for e in again.history) and len(again.history) == len(first.history)
    assert again.best_index == first.best_index and again.stopped_early


@pytest.mark.parametrize(
    ("first", "second", "field"),
    [
        ({"validation": ("a", None)}, {"validation": ("b", None)}, "identity.validation.objective"),
        ({"validation": ("a", None)}, {"validation": ("a", 3)}, "identity.validation.patience"),
        ({"validation": ("a", None)}, {}, "identity.validation"),
        ({}, {"validation": ("a", None)}, "identity.validation"),
        ({"penalty": 0.1}, {"penalty": 0.2}, "identity.penalty.weight"),
        ({"penalty": 0.1}, {}, "identity.penalty"),
    ],
)
def test_resume_with_other_validation_or_penalty_is_refused(
    first, second, field, problem, tmp_path
) -> None:
    f, init, g = problem

    def levers(spec: dict) -> dict:
        out = {}
        if "validation" in spec:
            identity, patience = spec["validation"]
            out["validation"] = Validation(g, patience=patience, identity=identity)
        if "penalty" in spec:
            out["penalty"] = Penalty(spec["penalty"])
        return out

    minimize(f, init, budget=5, seed=0, workdir=tmp_path, **levers(first))
    with pytest.raises(SearchError) as info:
        minimize(f, init, budget=10, seed=0, workdir=tmp_path, **levers(second))
    assert f"({field} differs" in str(info.value)


def test_default_identity_names_the_callable(problem, tmp_path) -> None:
    f, init, g = problem

    def other(a: np.ndarray) -> float:
        return g(a)

    minimize(f, init, budget=5, seed=0, workdir=tmp_path, validation=Validation(g))
    header = json.loads((tmp_path / "search.json").read_text())
    assert header["identity"]["validation"]["objective"].endswith("problem.<locals>.validation")
    with pytest.raises(SearchError, match="identity.validation.objective differs"):
        minimize(f, init, budget=5, seed=0, workdir=tmp_path, validation=Validation(other))


def test_reserved_identity_keys(problem) -> None:
    f, init, g = problem
    with pytest.raises(SearchError, match="identity key 'validation' is reserved"):
        iterate(f, init, budget=5, identity={"validation": 1}, validation=Validation(g))


SCRIPT = """
import sys
from lcsc.search import Validation, minimize
import kill9_objective as obj

obj.DELAY[0] = 0.004
validation = Validation(obj.validate, validate_every=3, identity="v")
minimize(obj.score, obj.INIT, "cmaes", budget=150, seed=5, workdir=sys.argv[1],
         validation=validation)
"""


def test_kill_9_with_validation_then_rerun_equals_uninterrupted(
    tmp_path, assert_same_history, write_kill9_objective
) -> None:
    obj = write_kill9_objective(tmp_path, K)
    (tmp_path / "search.py").write_text(SCRIPT)
    workdir = tmp_path / "run"
    command = [sys.executable, str(tmp_path / "search.py"), str(workdir)]
    proc = subprocess.Popen(command, env=child_env(tmp_path))
    done = kill_when_logged(proc, workdir / "history.jsonl", 40)
    assert 40 <= done < 150

    validation = Validation(obj["validate"], validate_every=3, identity="v")
    args = {"budget": 150, "seed": 5, "validation": validation}
    got = minimize(obj["score"], obj["INIT"], "cmaes", workdir=workdir, **args)
    want = minimize(obj["score"], obj["INIT"], "cmaes", **args)
    assert_same_result(got, want, assert_same_history)
    assert sum(e.resumed for e in got.history) == done
    assert any(e.resumed and e.validation is not None for e in got.history)


class LineTrajectory:
    """Duck-typed trajectory of K one-tensor checkpoints theta_i = i (so combine is a . i)."""

    steps = [10 * (i + 1) for i in range(K)]

    def combine(self, coefficients: np.ndarray) -> dict[str, torch.Tensor]:
        a = torch.tensor(coefficients, dtype=torch.float64)
        return {"w": (a * torch.arange(K, dtype=torch.float64)).sum().reshape(1)}

    def fingerprint(self) -> str:
        return "line"


def test_run_validates_combined_state_dicts(tmp_path) -> None:
    traj = LineTrajectory()

    def objective(sd: dict[str, torch.Tensor]) -> float:  # optimum: the last checkpoint
        return float((sd["w"] - (K - 1)).abs().sum())

    def validation(sd: dict[str, torch.Tensor]) -> float:  # optimum: the middle
        return float((sd["w"] - K / 2).abs().sum())

    result = run(traj, objective, "cmaes", budget=40, seed=0, workdir=tmp_path,
                 validation=Validation(validation))  # fmt: skip
    for v in result.validation_path:
        assert v.score == validation(traj.combine(result.history[v.index].coefficients))
    assert result.best_validation_score == min(v.score for v in result.validation_path)
    header = json.loads((tmp_path / "search.json").read_text())
    objective_name = header["identity"]["validation"]["objective"]
    assert objective_name.endswith("test_run_validates_combined_state_dicts.<locals>.validation")
