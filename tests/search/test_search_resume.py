"""Persistence: an interrupted search, resumed, ends exactly like an uninterrupted one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lcsc.errors import SearchError
from lcsc.search import CMAESConfig, EvolutionaryConfig, iterate, minimize
from tests.conftest import child_env, kill_when_logged

K = 10
BUDGET = 60
# P = 3 init rows; generations of 10 children start at 3, 13, 23, ...; CMA batches of
# popsize 10 (pycma's default for K - 1 = 9) start at 3, 13, 23, ... too.
STOPS = [1, 3, 8, 13, 27]
METHODS = ["evolutionary", "cmaes", "random", "subspace"]


@pytest.fixture
def problem(make_init, make_quadratic):
    return make_quadratic(K), make_init(K)


def stop_after(f, init, method, n, workdir, budget=BUDGET, seed=0, **kwargs) -> None:
    """Evaluate ``n`` candidates, then abandon the generator (as a crash or Ctrl-C would)."""
    evaluations = iterate(f, init, method, budget=budget, seed=seed, workdir=workdir, **kwargs)
    for e in evaluations:
        if e.index + 1 == n:
            break
    evaluations.close()


def recorded(workdir: Path) -> list[dict]:
    lines = (workdir / "history.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("stop", STOPS)
def test_resume_after_break_equals_uninterrupted(
    method, stop, problem, tmp_path, assert_same_history
) -> None:
    f, init = problem
    want = minimize(f, init, method, budget=BUDGET, seed=0)
    stop_after(f, init, method, stop, tmp_path)
    assert len(recorded(tmp_path)) == stop
    got = minimize(f, init, method, budget=BUDGET, seed=0, workdir=tmp_path)
    assert_same_history(got.history, want.history)
    assert [e.resumed for e in got.history] == [i < stop for i in range(BUDGET)]
    assert got.best_index == want.best_index
    assert np.array_equal(got.best_coefficients, want.best_coefficients)
    assert len(recorded(tmp_path)) == BUDGET


@pytest.mark.parametrize("method", METHODS)
def test_repeated_interruptions_and_persisted_scores(
    method, problem, tmp_path, assert_same_history
) -> None:
    f, init = problem
    want = minimize(f, init, method, budget=BUDGET, seed=0)
    for stop in (5, 6, 19, 40):
        stop_after(f, init, method, stop, tmp_path)
    got = minimize(f, init, method, budget=BUDGET, seed=0, workdir=tmp_path)
    assert_same_history(got.history, want.history)
    for line, e in zip(recorded(tmp_path), want.history, strict=True):  # the log itself is exact
        assert line["index"] == e.index
        assert line["coefficients"] == e.coefficients.tolist()
        assert line["score"] == e.score


def test_resume_uses_recorded_scores_not_the_objective(problem, tmp_path) -> None:
    f, init = problem
    stop_after(f, init, "cmaes", 20, tmp_path)
    calls = []

    def counting(a: np.ndarray) -> float:
        calls.append(1)
        return f(a)

    got = minimize(counting, init, "cmaes", budget=30, seed=0, workdir=tmp_path)
    assert len(calls) == 10 and len(got.history) == 30


@pytest.mark.parametrize("method", METHODS)
def test_budget_extension_continues_the_same_search(
    method, problem, tmp_path, assert_same_history
) -> None:
    f, init = problem
    minimize(f, init, method, budget=25, seed=0, workdir=tmp_path)
    got = minimize(f, init, method, budget=BUDGET, seed=0, workdir=tmp_path)
    assert_same_history(got.history, minimize(f, init, method, budget=BUDGET, seed=0).history)


def test_budget_already_spent_only_replays(problem, tmp_path, assert_same_history) -> None:
    f, init = problem
    first = minimize(f, init, budget=40, seed=0, workdir=tmp_path)

    def must_not_run(a: np.ndarray) -> float:
        raise AssertionError("objective called although the budget is spent")

    again = minimize(must_not_run, init, budget=10, seed=0, workdir=tmp_path)
    assert_same_history(again.history, first.history)  # everything recorded is kept
    assert all(e.resumed for e in again.history)
    assert again.best_index == first.best_index


@pytest.mark.parametrize("tail", [b'{"index": 30, "coeffi', b'{"index": 30, "coeffi\n'])
def test_torn_last_line_is_dropped(tail, problem, tmp_path, assert_same_history) -> None:
    f, init = problem
    minimize(f, init, "cmaes", budget=30, seed=0, workdir=tmp_path)
    with open(tmp_path / "history.jsonl", "ab") as fh:
        fh.write(tail)
    got = minimize(f, init, "cmaes", budget=BUDGET, seed=0, workdir=tmp_path)
    assert_same_history(got.history, minimize(f, init, "cmaes", budget=BUDGET, seed=0).history)
    assert [r["index"] for r in recorded(tmp_path)] == list(range(BUDGET))


def test_corrupt_line_in_the_middle_is_an_error(problem, tmp_path) -> None:
    f, init = problem
    minimize(f, init, budget=20, seed=0, workdir=tmp_path)
    path = tmp_path / "history.jsonl"
    lines = path.read_bytes().split(b"\n")
    lines[5] = lines[5][:20]
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(SearchError, match="history.jsonl:6"):
        minimize(f, init, budget=30, seed=0, workdir=tmp_path)


def test_edited_history_does_not_match(problem, tmp_path) -> None:
    f, init = problem
    minimize(f, init, budget=20, seed=0, workdir=tmp_path)
    path = tmp_path / "history.jsonl"
    records = recorded(tmp_path)
    records[12]["coefficients"][0] += 1e-12
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(SearchError, match="history does not match.*candidate 12"):
        minimize(f, init, budget=30, seed=0, workdir=tmp_path)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"method": "cmaes"}, "method"),
        ({"method": EvolutionaryConfig(mutation_scale=1.0)}, "config.mutation_scale"),
        ({"seed": 1}, "seed"),
        ({"init": "reversed rows"}, "init"),
        ({"init": "K + 1"}, "K"),
        ({"identity": {"steps": [1, 2], "fingerprint": "b"}}, "identity.fingerprint"),
        ({"identity": {"steps": [1, 2]}}, "identity.fingerprint"),
    ],
)
def test_resume_with_other_arguments_names_the_field(change, field, problem, tmp_path) -> None:
    f, init = problem
    args = {"method": "evolutionary", "seed": 0, "init": init}
    args["identity"] = {"steps": [1, 2], "fingerprint": "a"}
    minimize(f, budget=5, workdir=tmp_path, **args)
    args.update(change)
    if change.get("init") == "reversed rows":
        args["init"] = init[::-1]
    elif change.get("init") == "K + 1":
        args["init"] = np.full((1, K + 1), 1.0 / (K + 1))
    with pytest.raises(SearchError) as info:
        minimize(f, budget=10, workdir=tmp_path, **args)
    message = str(info.value)
    assert f"({field} differs" in message
    assert str(tmp_path) in message and "another workdir" in message


def test_same_config_given_by_name_or_instance_resumes(problem, tmp_path) -> None:
    f, init = problem
    minimize(f, init, "cmaes", budget=5, seed=0, workdir=tmp_path)
    got = minimize(f, init, CMAESConfig(sigma_scale=2), budget=8, seed=0, workdir=tmp_path)
    assert [e.resumed for e in got.history] == [True] * 5 + [False] * 3


def test_history_without_search_json_is_refused(problem, tmp_path) -> None:
    f, init = problem
    minimize(f, init, budget=5, seed=0, workdir=tmp_path)
    (tmp_path / "search.json").unlink()
    with pytest.raises(SearchError, match="search.json"):
        minimize(f, init, budget=5, seed=0, workdir=tmp_path)


def test_a_live_search_locks_its_workdir(problem, tmp_path) -> None:
    f, init = problem
    running = iterate(f, init, budget=10, seed=0, workdir=tmp_path)
    next(running)
    with pytest.raises(SearchError, match="in use"):
        minimize(f, init, budget=10, seed=0, workdir=tmp_path)
    running.close()
    assert len(minimize(f, init, budget=10, seed=0, workdir=tmp_path).history) == 10


@pytest.mark.parametrize("method", ["evolutionary", "cmaes"])
def test_objective_failure_keeps_a_valid_history(
    method, problem, tmp_path, assert_same_history
) -> None:
    f, init = problem
    want = minimize(f, init, method, budget=BUDGET, seed=0)

    def flaky(a: np.ndarray) -> float:
        if len(calls) == 17:
            raise RuntimeError("out of GPU memory")
        calls.append(1)
        return f(a)

    calls: list[int] = []
    with pytest.raises(SearchError, match="candidate 17.*RuntimeError: out of GPU memory") as info:
        minimize(flaky, init, method, budget=BUDGET, seed=0, workdir=tmp_path)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert len(recorded(tmp_path)) == 17
    failed = json.loads((tmp_path / "failed_candidate.json").read_text())
    assert failed["index"] == 17
    assert failed["coefficients"] == want.history[17].coefficients.tolist()
    got = minimize(f, init, method, budget=BUDGET, seed=0, workdir=tmp_path)
    assert_same_history(got.history, want.history)


SCRIPT = """
import sys
from lcsc.search import minimize
import kill9_objective as obj

obj.DELAY[0] = 0.004
minimize(obj.score, obj.INIT, sys.argv[2], budget=int(sys.argv[3]), seed=5, workdir=sys.argv[1])
"""


@pytest.mark.parametrize("method", ["evolutionary", "cmaes"])
def test_kill_9_then_rerun_equals_uninterrupted(
    method, tmp_path, assert_same_history, write_kill9_objective
) -> None:
    budget = 120
    obj = write_kill9_objective(tmp_path, K)  # the same objective, no delay
    (tmp_path / "search.py").write_text(SCRIPT)
    workdir = tmp_path / "run"
    command = [sys.executable, str(tmp_path / "search.py"), str(workdir), method, str(budget)]
    proc = subprocess.Popen(command, env=child_env(tmp_path))
    done = kill_when_logged(proc, workdir / "history.jsonl", 25)
    assert 25 <= done < budget

    got = minimize(obj["score"], obj["INIT"], method, budget=budget, seed=5, workdir=workdir)
    want = minimize(obj["score"], obj["INIT"], method, budget=budget, seed=5)
    assert_same_history(got.history, want.history)
    assert sum(e.resumed for e in got.history) == done
