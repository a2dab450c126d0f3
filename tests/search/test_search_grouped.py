"""Per-group search: candidates (one block of K per group, each in a0 + span(B), summing to
one), one group equal to the ungrouped search, a seeded end-to-end run, resume, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lcsc import search
from lcsc.errors import SearchError
from lcsc.search import CMAESConfig, EvolutionaryConfig, SubspaceConfig, iterate, minimize
from lcsc.search.grouped import GroupedConfig, tile_init
from lcsc.trajectory import Trajectory
from lcsc.trajectory.groups import combine_groups, module_patterns, resolve_groups
from tests.conftest import train

K = 30
G = 3


def block_quadratic(k: int, g: int):
    """Squared distance to a different smooth target per block (each sums to one)."""
    x = np.linspace(0.0, 1.0, k)
    targets = np.stack([1.0 + 2.0 * np.cos(np.pi * (j + 1) * x) for j in range(g)]) / k
    targets += (1.0 - targets.sum(axis=1, keepdims=True)) / k

    def score(a: np.ndarray) -> float:
        return float(np.sum((a.reshape(g, k) - targets) ** 2))

    return score


def test_candidates_are_blocks_in_the_subspace(make_init) -> None:
    init = make_init(K)
    f = block_quadratic(K, G)
    inner = SubspaceConfig(dims=5)
    config = GroupedConfig(inner=inner, groups=G)
    assert config.method == "subspace" and config.blocks == G
    optimizer = config.make_optimizer(tile_init(init, G), 0)
    assert optimizer.inner.basis.shape == (G * K, G * 5)  # CMA adapts G * r numbers
    result = minimize(f, tile_init(init, G), config, budget=120, seed=0)
    for row, e in zip(tile_init(init, G), result.history, strict=False):
        assert np.array_equal(e.coefficients, row)  # the init rows first, as given
    basis = inner.search_basis(K)
    start = init[int(np.argmin([f(np.tile(r, G)) for r in init]))]
    for e in result.history[len(init) :]:
        blocks = e.coefficients.reshape(G, K)
        np.testing.assert_allclose(blocks.sum(axis=1), 1.0, atol=1e-12)
        d = blocks - start
        assert np.abs(d - (d @ basis) @ basis.T).max() < 1e-9  # each block in a0 + span(B)
    assert result.best_score < 0.5 * f(np.tile(start, G))


@pytest.mark.parametrize("inner", [SubspaceConfig(), CMAESConfig()])
def test_one_group_is_the_ungrouped_search(inner, make_init, make_quadratic, assert_same_history):
    init, f = make_init(K), make_quadratic(K)
    want = minimize(f, init, inner, budget=60, seed=3)
    got = minimize(f, init, GroupedConfig(inner=inner, groups=1), budget=60, seed=3)
    assert_same_history(got.history, want.history)


def test_nonnegative_blocks_are_convex(make_init) -> None:
    config = GroupedConfig(inner=CMAESConfig(nonnegative=True), groups=G)
    assert config.nonnegative
    result = minimize(block_quadratic(K, G), tile_init(make_init(K), G), config, budget=50)
    for e in result.history:
        blocks = e.coefficients.reshape(G, K)
        assert (blocks >= 0).all()
        np.testing.assert_allclose(blocks.sum(axis=1), 1.0, atol=1e-12)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("grouped") / "run"
    train(folder, steps=200, every=5)
    return folder


def split_objective(traj: Trajectory):
    """Layer 0 near the first checkpoint, the rest near the last: one vector cannot do both."""
    first, last = traj.load(0), traj.load(len(traj) - 1)

    def objective(state: dict[str, torch.Tensor]) -> float:
        total = 0.0
        for key, value in state.items():
            if value.is_floating_point():
                target = first[key] if key.startswith("0.") else last[key]
                total += float((value.double() - target.double()).pow(2).sum())
        return total

    return objective


def test_seeded_grouped_run_end_to_end(run_dir: Path, assert_same_history) -> None:
    traj = Trajectory.open(run_dir)
    groups = resolve_groups(traj.keys, ["0"])  # layer 0, and the rest
    objective = split_objective(traj)
    config = SubspaceConfig(dims=6)
    got = search.run(traj, objective, config, budget=150, seed=4, groups=groups)
    again = search.run(traj, objective, config, budget=150, seed=4, groups=groups)
    assert_same_history(again.history, got.history)
    best = groups.matrix(got.best_coefficients, len(traj))
    np.testing.assert_allclose(best.sum(axis=1), 1.0, atol=1e-12)
    assert objective(combine_groups(traj, groups, best)) == pytest.approx(got.best_score, rel=1e-5)
    assert got.groups == groups
    assert objective(got.combine(traj)) == pytest.approx(got.best_score, rel=1e-5)
    one = search.run(traj, objective, config, budget=150, seed=4, groups=None)
    assert one.groups is None and one.best_coefficients.shape == (len(traj),)
    assert got.best_score < 0.5 * one.best_score  # two vectors fit the two targets
    # one group through the grouped code path: the ungrouped search, bit for bit
    everything = resolve_groups(traj.keys, ["*"])
    single = search.run(traj, objective, config, budget=40, seed=4, groups=everything)
    assert_same_history(single.history, one.history[:40])


def test_default_is_one_group_per_top_level_module(run_dir: Path, assert_same_history) -> None:
    traj = Trajectory.open(run_dir)
    objective = split_objective(traj)
    auto = resolve_groups(traj.keys, module_patterns(traj.keys))
    assert len(auto) > 1  # the fixture's Sequential: one group per layer
    got = search.run(traj, objective, budget=40, seed=1)
    assert got.groups == auto and got.method == search.DEFAULT_METHOD
    assert got.best_coefficients.shape == (len(auto) * len(traj),)
    explicit = search.run(traj, objective, budget=40, seed=1, groups=auto)
    assert_same_history(got.history, explicit.history)
    # Algorithm 1 and random search take no groups: "auto" is then one vector for all
    for method in ("evolutionary", "random"):
        default = search.run(traj, objective, method, budget=12, seed=1)
        one = search.run(traj, objective, method, budget=12, seed=1, groups=None)
        assert default.groups is None
        assert_same_history(default.history, one.history)
        np.testing.assert_array_equal(
            default.combine(traj)["0.weight"], traj.combine(default.best_coefficients)["0.weight"]
        )


def test_groups_with_a_method_that_takes_none_are_refused(run_dir: Path) -> None:
    traj = Trajectory.open(run_dir)
    groups = resolve_groups(traj.keys, ["0"])
    for method in ("evolutionary", "random", SubspaceConfig(full_after=10)):
        with pytest.raises(SearchError, match="groups need method 'subspace' or 'cmaes'"):
            search.run(traj, split_objective(traj), method, budget=5, groups=groups)
    with pytest.raises(SearchError, match="groups must be a Groups, 'auto' or None"):
        search.run(traj, split_objective(traj), budget=5, groups="layers")


@pytest.mark.parametrize("stop", [2, 9, 40])
def test_resume_after_a_break_equals_uninterrupted(
    stop: int, make_init, tmp_path: Path, assert_same_history
) -> None:
    f, init = block_quadratic(K, G), tile_init(make_init(K), G)
    config = GroupedConfig(inner=SubspaceConfig(dims=4), groups=G)
    want = minimize(f, init, config, budget=80, seed=2)
    evaluations = iterate(f, init, config, budget=80, seed=2, workdir=tmp_path)
    for e in evaluations:
        if e.index + 1 == stop:
            break
    evaluations.close()
    got = minimize(f, init, config, budget=80, seed=2, workdir=tmp_path)
    assert_same_history(got.history, want.history)
    assert sum(e.resumed for e in got.history) == stop


def test_resume_with_other_groups_is_refused(run_dir: Path, tmp_path: Path) -> None:
    traj = Trajectory.open(run_dir)
    objective = split_objective(traj)
    work = tmp_path / "work"
    first = resolve_groups(traj.keys, ["0"])
    search.run(traj, objective, "cmaes", budget=12, workdir=work, groups=first)
    other = resolve_groups(traj.keys, ["3"])
    with pytest.raises(SearchError, match="identity.groups"):
        search.run(traj, objective, "cmaes", budget=12, workdir=work, groups=other)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"inner": EvolutionaryConfig()}, "GroupedConfig.inner must be a cmaes or subspace"),
        ({"inner": SubspaceConfig(full_after=10)}, "without full_after"),
        ({"groups": 0}, "GroupedConfig.groups must be an integer >= 1"),
    ],
)
def test_bad_grouped_configs(kwargs, message: str) -> None:
    with pytest.raises(SearchError, match=message):
        GroupedConfig(**kwargs)


def test_init_rows_must_sum_to_one_per_group(make_init) -> None:
    init = tile_init(make_init(K), G)
    init[1, K : 2 * K] *= 2.0
    with pytest.raises(SearchError, match="row 1, group 1, sums to 2"):
        minimize(block_quadratic(K, G), init, GroupedConfig(groups=G), budget=5)
    with pytest.raises(SearchError, match=r"shape \(P, 3\*K\)"):
        minimize(block_quadratic(K, G), init[:, :-1], GroupedConfig(groups=G), budget=5)


def test_run_refuses_groups_of_other_keys(run_dir: Path) -> None:
    traj = Trajectory.open(run_dir)
    groups = resolve_groups(["a.weight", "b.weight"], ["a"])
    with pytest.raises(SearchError, match="resolved from the trajectory's keys"):
        search.run(traj, split_objective(traj), "cmaes", budget=5, groups=groups)


def test_grouped_penalty_is_the_mean_over_rows(make_init) -> None:
    """weight * K * ||A - A0||_F^2 / G: equal rows pay what one row pays without groups."""
    init = make_init(K)
    f = block_quadratic(K, G)
    config = GroupedConfig(inner=SubspaceConfig(dims=4), groups=G)
    result = minimize(f, tile_init(init, G), config, budget=40, seed=0, penalty=search.Penalty(0.3))
    anchor = init[int(np.argmin([f(np.tile(row, G)) for row in init]))]
    for e in result.history[len(init) :]:
        rows = e.coefficients.reshape(G, K)
        want = 0.3 * K * np.mean([np.sum((row - anchor) ** 2) for row in rows])
        assert e.penalty == pytest.approx(want, rel=1e-12, abs=0.0)
    # A K-number anchor is the centre of every group; a wrong length names both forms.
    given = minimize(
        f, tile_init(init, G), config, budget=40, seed=0, penalty=search.Penalty(0.3, anchor)
    )
    assert [e.penalty for e in given.history[len(init) :]] == [
        e.penalty for e in result.history[len(init) :]
    ]
    with pytest.raises(SearchError, match=rf"K={K} coefficients \(or {G * K}, one K per group\)"):
        minimize(f, tile_init(init, G), config, budget=5, penalty=search.Penalty(0.3, anchor[:-1]))
