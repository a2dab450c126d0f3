"""Single-process training: every failure kind is recovered and training goes on."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from checkfree import FailureConfig, train
from checkfree.cli import main

from .conftest import tiny
from .recovery_checks import check_recovery

#: (strategy, stages, failures): each strategy's failure kinds, edge stages where it can.
CASES = [
    ("checkfree", 4, ((2, 1), (4, 2))),
    ("checkfree+", 4, ((2, 0), (3, 3), (4, 1))),
    ("checkpoint", 4, ((3, 0), (3, 2), (5, 3))),
    ("redundant", 4, ((2, 0), (3, 3), (4, 1))),
    ("copy", 4, ((2, 2),)),
    ("uniform", 4, ((2, 1),)),
    ("random", 4, ((2, 2),)),
]


@pytest.mark.parametrize(("strategy", "stages", "events"), CASES, ids=[c[0] for c in CASES])
def test_every_strategy_recovers_and_training_goes_on(
    tmp_path: Path, strategy: str, stages: int, events: tuple[tuple[int, int], ...]
) -> None:
    config = tiny(stages, strategy, events, snapshot_dir=str(tmp_path / "snaps"))
    result = train(config, tmp_path / "run")
    assert len(result.records) == result.steps + 1
    assert all(math.isfinite(v) for v in result.train_losses)
    assert result.failures == tuple((s, (i,)) for s, i in events) or strategy == "checkpoint"
    steps = sorted({s for s, _ in events})
    for step in steps:
        failed = tuple(sorted(i for s, i in events if s == step))
        check_recovery(config, tmp_path / "snaps", step, failed)
    # The log: one JSON line per executed iteration plus the initial evaluation.
    lines = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    log = [json.loads(line) for line in lines]
    assert log[0]["step"] == 0 and "val_loss" in log[0] and log[0]["train_loss"] is None
    assert [r["step"] for r in log] == list(range(result.steps + 1))
    assert {tuple(r["failures"]) for r in log if r["failures"]} >= {(events[-1][1],)}
    assert log[-1]["iteration"] == config.iterations and "val_loss" in log[-1]
    assert log[-1]["wall_clock_s"] == pytest.approx(result.wall_clock_s)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["lost_iterations"] == result.lost_iterations


def test_checkpoint_redoes_the_lost_iterations_identically() -> None:
    result = train(tiny(strategy="checkpoint", events=((3, 1),)))
    losses = result.train_losses
    # Step 3 rolls back to iteration 2: step 3 recomputes iteration 2 from the same state.
    assert result.lost_iterations == 1
    assert losses[3] == pytest.approx(losses[2], abs=1e-6)
    assert result.records[4]["rollback_to"] == 2


def test_redundant_computation_is_unaffected_by_failures() -> None:
    clean = train(tiny(strategy="redundant"))
    failed = train(tiny(strategy="redundant", events=((2, 1), (4, 3))))
    assert failed.train_losses == pytest.approx(clean.train_losses, abs=1e-6)
    assert failed.wall_clock_s == pytest.approx(clean.wall_clock_s)  # slower either way
    assert clean.step_time_s == pytest.approx(60.0 * 151 / 91)


def test_same_seed_same_failures_and_losses() -> None:
    failures = FailureConfig(rate_percent=20.0, iteration_time_s=1800.0, stages="intermediate")
    config = tiny(stages=6, strategy="checkfree+", events=None, failures=failures, iterations=8)
    a, b = train(config), train(config)
    assert a.failures and a.failures == b.failures
    assert a.train_losses == b.train_losses and a.val_curve == b.val_curve
    c = train(replace(config, seed=1))
    assert c.failures != a.failures and c.train_losses != a.train_losses


def test_a_failure_changes_training_only_from_its_step() -> None:
    clean = train(tiny())
    failed = train(tiny(events=((3, 2),)))
    assert failed.train_losses[:3] == clean.train_losses[:3]
    assert failed.train_losses[3] != clean.train_losses[3]


def test_cli_trains_and_logs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    args = ["train", "--stages", "4", "--strategy", "checkfree+", "--iterations", "3"]
    args += ["--dim", "32", "--heads", "2", "--seq-len", "32", "--batch-size", "4"]
    args += ["--fail-at", "1:0", "--eval-every", "2", "--out", str(out)]
    assert main(args) == 0
    assert "checkfree+: final validation loss" in capsys.readouterr().out
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["failures"] for r in log] == [[], [], [0], []]


def test_cli_bad_configuration_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--stages", "2"]) == 1
    assert "at least 3 pipeline stages" in capsys.readouterr().err
    args = ["train", "--stages", "4", "--iterations", "3", "--fail-at", "1:0"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "checkfree cannot recover stage 0" in err
