"""Multi-process mode: one process per stage on gloo over 127.0.0.1, with real stage loss."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from checkfree import train
from checkfree.distributed import EXIT_LOST

from .conftest import tiny
from .recovery_checks import check_recovery


def test_single_and_multi_process_losses_agree_without_failures() -> None:
    config = tiny(stages=3, iterations=4)
    single = train(config)
    multi = train(replace(config, processes=True))
    assert multi.train_losses == pytest.approx(single.train_losses, abs=1e-5)
    assert [v for _, v in multi.val_curve] == pytest.approx(
        [v for _, v in single.val_curve], abs=1e-5
    )
    assert [p.stage for p in multi.processes] == [0, 1, 2]
    assert all(p.exitcode == 0 and p.lost_at is None for p in multi.processes)


#: (strategy, stages, failures) run in both modes.
CASES = [
    ("checkfree", 3, ((2, 1),)),
    ("checkfree+", 4, ((2, 0), (3, 3), (4, 1))),
    ("redundant", 3, ((2, 1), (3, 0))),
    ("checkpoint", 3, ((3, 1), (3, 2))),
]


@pytest.mark.parametrize(("strategy", "stages", "events"), CASES, ids=[c[0] for c in CASES])
def test_a_failed_stage_process_dies_and_its_replacement_is_rebuilt(
    tmp_path: Path, strategy: str, stages: int, events: tuple[tuple[int, int], ...]
) -> None:
    config = tiny(stages, strategy, events, iterations=5, processes=True)
    multi = train(replace(config, snapshot_dir=str(tmp_path / "multi")))
    # Each failure ended the stage's process (exit status EXIT_LOST) and a new process, with
    # a new pid, joined at that step; the survivors ran from start to end.
    for step, stage in events:
        old = [p for p in multi.processes if p.stage == stage and p.lost_at == step]
        new = [p for p in multi.processes if p.stage == stage and p.joined_at == step]
        assert len(old) == 1 and old[0].exitcode == EXIT_LOST
        assert len(new) == 1 and new[0].pid != old[0].pid
    assert len(multi.processes) == stages + len(events)
    assert all(p.exitcode == 0 for p in multi.processes if p.lost_at is None)
    # The replacement holds the strategy's formula applied to its neighbours, not the old weights.
    for step in sorted({s for s, _ in events}):
        failed = tuple(sorted(i for s, i in events if s == step))
        check_recovery(config, tmp_path / "multi", step, failed)
    # And it is the same computation as in one process.
    single = train(replace(config, processes=False))
    assert multi.train_losses == pytest.approx(single.train_losses, abs=1e-5)
    assert multi.final_val_loss == pytest.approx(single.final_val_loss, abs=1e-5)
