"""The failure model and the precomputed plan: probabilities, schedules, rollbacks, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from checkfree import (
    FailureConfig,
    FailureSchedule,
    ModelConfig,
    TrainConfig,
    build_plan,
    failure_probability,
    train,
)
from lcsc.errors import LcscError

from .conftest import tiny


def test_failure_probability_formula() -> None:
    # p = 1 - (1 - h)^(t / 3600): one hour of iterations fails with probability h.
    assert failure_probability(0.10, 3600.0) == pytest.approx(0.10)
    assert failure_probability(0.16, 60.0) == pytest.approx(1 - 0.84 ** (1 / 60), rel=1e-12)
    assert failure_probability(0.0, 60.0) == 0.0
    p = failure_probability(0.05, 90.0)
    assert 1 - (1 - p) ** 40 == pytest.approx(0.05)  # 40 iterations of 90 s = 1 h
    with pytest.raises(LcscError):
        failure_probability(1.0, 60.0)


def test_schedule_is_seeded_and_independent_of_strategy() -> None:
    a = FailureSchedule(7, 6, 0.05).table(3000)
    b = FailureSchedule(7, 6, 0.05).table(3000)
    c = FailureSchedule(8, 6, 0.05).table(3000)
    assert (a == b).all() and (a != c).any()
    assert abs(a.mean() - 0.05) < 0.01
    # Protecting the edge stages drops their failures and keeps every other one.
    inner = FailureSchedule(7, 6, 0.05, failing=range(1, 5)).table(3000)
    assert not inner[:, [0, 5]].any() and (inner[:, 1:5] == a[:, 1:5]).all()
    # Every strategy's plan sees the same failures for a seed.
    failures = FailureConfig(rate_percent=16.0, iteration_time_s=600.0, stages="intermediate")
    model = ModelConfig(stages=6)
    plans = {
        s: build_plan(TrainConfig(model=model, failures=failures, strategy=s, iterations=200))
        for s in ("checkfree", "redundant", "random", "uniform")
    }
    expected = plans["checkfree"].failures
    assert expected and all(p.failures == expected for p in plans.values())


def test_checkpoint_plan_rolls_back_and_counts_lost_iterations() -> None:
    config = tiny(strategy="checkpoint", events=((3, 1), (6, 2)), iterations=6)
    plan = build_plan(config)
    # Interval 2: saves after iterations 2 and 4. Step 3 would compute iteration 3: back to
    # 2 (1 lost); step 6 would compute iteration 5: back to 4 (1 lost).
    assert [s.iteration for s in plan.slots] == [0, 1, 2, 2, 3, 4, 4, 5]
    assert plan.slots[3].rollback_to == 2 and plan.slots[6].rollback_to == 4
    assert [s.save_checkpoint for s in plan.slots] == [0, 1, 0, 0, 1, 0, 0, 0]
    assert plan.lost_iterations == 2 and plan.checkpoints == 2
    assert len(plan.slots) == config.iterations + plan.lost_iterations


def test_wall_clock_is_modelled() -> None:
    plain = build_plan(tiny(iterations=5))
    assert plain.wall_clock_s == pytest.approx(5 * 60.0)
    slow = build_plan(tiny(strategy="redundant", iterations=5, redundant_time_factor=151 / 91))
    assert slow.wall_clock_s == pytest.approx(5 * 60.0 * 151 / 91)


@pytest.mark.parametrize(
    ("strategy", "events", "message"),
    [
        ("checkfree", ((2, 0),), "edge stage"),
        ("checkfree", ((2, 3),), "edge stage"),
        ("copy", ((2, 0),), "edge stage"),
        ("checkfree", ((2, 1), (2, 2)), "two adjacent stages"),
        ("checkfree+", ((1, 0), (1, 1)), "two adjacent stages"),
        ("redundant", ((1, 3), (1, 0)), "holds its replica"),
    ],
)
def test_unrecoverable_failures_raise_before_training(strategy, events, message) -> None:
    config = tiny(strategy=strategy, events=events)
    with pytest.raises(LcscError, match=message):
        build_plan(config)
    with pytest.raises(LcscError, match=message):
        train(config)


def test_recoverable_failures_of_the_same_kind_are_fine() -> None:
    build_plan(tiny(strategy="checkfree+", events=((2, 0), (2, 3))))  # both edges, apart
    build_plan(tiny(strategy="checkpoint", events=((2, 0), (2, 1), (2, 2))))
    build_plan(tiny(strategy="redundant", events=((2, 0), (2, 2))))
    build_plan(tiny(stages=5, strategy="checkfree", events=((2, 1), (2, 3))))


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: ModelConfig(stages=2), "ModelConfig.stages"),
        (lambda: ModelConfig(dim=30, heads=4), "ModelConfig.heads"),
        (lambda: tiny(stages=3, strategy="checkfree+"), "TrainConfig.strategy"),
        (lambda: tiny(strategy="nope"), "TrainConfig.strategy"),
        (lambda: tiny(micro_batches=3), "TrainConfig.micro_batches"),
        (lambda: tiny(strategy="checkfree+", batch_size=1, micro_batches=1), "micro_batches"),
        (lambda: FailureConfig(rate_percent=100.0), "FailureConfig.rate_percent"),
        (lambda: FailureConfig(iteration_time_s=0.0), "FailureConfig.iteration_time_s"),
        (lambda: FailureConfig(stages="edges"), "FailureConfig.stages"),
        (lambda: tiny(events=((1, 9),)), "stage 9 does not exist"),
        (lambda: tiny(iterations=0), "TrainConfig.iterations"),
        (lambda: tiny(lr=math.nan), "TrainConfig.lr"),
    ],
)
def test_bad_configurations_name_the_field(make, field) -> None:
    with pytest.raises(LcscError, match=field.replace(".", r"\.")):
        make()


def test_checkpointing_that_cannot_progress_is_refused() -> None:
    failures = FailureConfig(rate_percent=99.0, iteration_time_s=36000.0)
    config = TrainConfig(model=ModelConfig(stages=3), failures=failures, strategy="checkpoint")
    with pytest.raises(LcscError, match="no progress"):
        build_plan(config)


def test_schedule_blocks_extend_without_changing_the_start() -> None:
    s = FailureSchedule(3, 4, 0.2)
    early = [s.failed(t) for t in range(100)]
    _ = s.failed(5000)  # touches a later block
    assert [FailureSchedule(3, 4, 0.2).failed(t) for t in range(100)] == early
    assert any(early) and np.mean([len(f) for f in early]) < 4
