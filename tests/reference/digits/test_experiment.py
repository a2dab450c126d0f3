"""ExperimentConfig, the composite objective and the search levers in one comparison."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from lcsc.errors import LcscError
from lcsc.metrics import digits_features
from lcsc.objectives import SampleFD
from lcsc.reference.digits.evaluation import HeldOutEvaluator
from lcsc.reference.digits.experiment import EMA_STAR, LCSC, ExperimentConfig, compare
from lcsc.reference.digits.objective import CompositeFD, digits_reference
from lcsc.reference.generative.generator import FixedNoiseGenerator, run_metadata
from lcsc.trajectory import Trajectory
from lcsc.trajectory.groups import combine_groups

TINY = {"budget": 30, "search_samples": 60, "held_out_samples": 60, "held_out_seeds": 1}


def test_experiment_config_checks_and_round_trips() -> None:
    config = ExperimentConfig(search_spaces=["main", "alt"], validation=True, patience=3)
    assert config.search_spaces == ("main", "alt")
    assert ExperimentConfig.from_dict(config.to_dict()) == config
    with pytest.raises(LcscError, match="ExperimentConfig.search_spaces must be distinct"):
        ExperimentConfig(search_spaces=("main", "pixels"))
    with pytest.raises(LcscError, match="search_spaces"):
        ExperimentConfig(search_spaces=())
    with pytest.raises(LcscError, match="ExperimentConfig.patience needs validation=True"):
        ExperimentConfig(patience=3)
    with pytest.raises(LcscError, match="ExperimentConfig.penalty"):
        ExperimentConfig(penalty=-1.0)


def test_composite_fd_is_the_geometric_mean(ct_run: Path) -> None:
    md = run_metadata(ct_run)
    sd = Trajectory.open(ct_run / "trajectory").load(-1)
    gen = FixedNoiseGenerator(md, 80, 3, "search")
    fds = [SampleFD(gen, digits_features(k), digits_reference(md, k))(sd) for k in ("main", "alt")]
    got = CompositeFD(gen, md, ("main", "alt"))(sd)
    assert got == pytest.approx(math.sqrt(fds[0] * fds[1]), rel=1e-9)
    assert CompositeFD(gen, md, ("main",))(sd) == pytest.approx(fds[0], rel=1e-12)


def test_compare_with_validation_early_stop_and_penalty(ct_run: Path, tmp_path: Path) -> None:
    config = ExperimentConfig(**TINY, validation=True, patience=2, penalty=0.01, path_points=3)
    c = compare(ct_run, tmp_path / "search", config)
    result = c.lcsc
    validated = {v.index: v.score for v in result.validation_path}
    assert validated and result.best_index in validated
    assert result.best_validation_score == min(validated.values())
    stopped = len(result.history) < config.budget
    if stopped:  # early stop: the last `patience` validations did not improve
        scores = [v.score for v in result.validation_path]
        assert min(scores[-2:]) >= min(scores[:-2])
    assert any(ev.penalty > 0 for ev in result.history)
    assert set(c.held_out) == {"raw", "training_ema", EMA_STAR.id, "best_checkpoint", LCSC.id}
    # the baselines are chosen by FD in main on search noise, whatever the search's levers
    plain = compare(ct_run, tmp_path / "plain", ExperimentConfig(**TINY, path_points=0))
    assert plain.ema_star.label == c.ema_star.label and plain.path == ()
    np.testing.assert_array_equal(plain.ema_star.coefficients, c.ema_star.coefficients)
    again = compare(ct_run, tmp_path / "search", config)  # resumed: the same choice
    assert again.lcsc.best_index == result.best_index


def test_compare_convex_only_search(ct_run: Path, tmp_path: Path) -> None:
    config = ExperimentConfig(**TINY, nonnegative=True, path_points=0)
    c = compare(ct_run, tmp_path / "convex", config)
    for ev in c.lcsc.history:  # every evaluated candidate is a convex combination
        assert np.all(np.asarray(ev.coefficients) >= 0)
        assert np.sum(ev.coefficients) == pytest.approx(1.0)
    with pytest.raises(LcscError, match="ExperimentConfig.nonnegative"):
        ExperimentConfig(nonnegative="yes")


def test_one_group_of_every_key_is_the_ungrouped_comparison(ct_run: Path, tmp_path: Path) -> None:
    """groups=None searches one vector; a single group holding every key ("net") is the same
    search, candidate for candidate, and the same held-out scores."""
    settings = {**TINY, "method": "subspace", "penalty": 0.01, "path_points": 3}
    plain = compare(ct_run, tmp_path / "plain", ExperimentConfig(**settings))
    one = compare(ct_run, tmp_path / "one", ExperimentConfig(**settings, groups="net"))
    assert plain.groups is None and one.groups is not None and one.groups.names == ("net",)
    assert len(plain.lcsc.history) == len(one.lcsc.history) == TINY["budget"]
    for a, b in zip(plain.lcsc.history, one.lcsc.history, strict=True):
        np.testing.assert_array_equal(a.coefficients, b.coefficients)
        assert a.score == b.score and a.penalty == b.penalty
    assert plain.lcsc_coefficients.shape == (len(plain.trajectory),)
    np.testing.assert_array_equal(one.lcsc_coefficients, plain.lcsc_coefficients[None, :])
    assert {k: h.values for k, h in one.held_out.items()} == {
        k: h.values for k, h in plain.held_out.items()
    }
    assert one.path == plain.path


def test_grouped_comparison_scores_the_grouped_model(ct_run: Path, tmp_path: Path) -> None:
    config = ExperimentConfig(**TINY, method="cmaes", groups="net.inp,net.out", path_points=2)
    c = compare(ct_run, tmp_path / "grouped", config)
    assert c.groups is not None and c.groups.names == ("net.inp", "net.out", "rest")
    k = len(c.trajectory)
    assert all(len(ev.coefficients) == 3 * k for ev in c.lcsc.history)
    assert c.lcsc_coefficients.shape == (3, k)
    assert any(  # the groups are searched apart: some candidate has unequal rows
        np.ptp(np.reshape(ev.coefficients, (3, k)), axis=0).max() > 0 for ev in c.lcsc.history
    )
    # LCSC's held-out scores are those of the grouped combination
    evaluate = HeldOutEvaluator(c.trajectory.metadata, 60, (0,), None, 1)
    state = combine_groups(c.trajectory, c.groups, c.lcsc_coefficients)
    assert evaluate(state).values == c.held_out[LCSC.id].values
    with pytest.raises(LcscError, match="groups: pattern 'net.nothing' matches no key"):
        compare(
            ct_run, tmp_path / "bad", ExperimentConfig(**TINY, method="cmaes", groups="net.nothing")
        )
