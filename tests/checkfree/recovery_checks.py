"""Checks that a snapshot directory shows the strategy's recovery, shared by both modes."""

from __future__ import annotations

from pathlib import Path

import torch

from checkfree import TrainConfig, build_plan, checkfree_weight, weighted_average

from .conftest import blocks, load_state


def _exact(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert set(a) == set(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def _differs(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in a)


def check_recovery(config: TrainConfig, snaps: Path, step: int, failed: tuple[int, ...]) -> None:
    """The stages rebuilt at ``step`` hold exactly what the strategy's formula gives from the
    neighbours' states just before the failure, not the lost weights."""
    stages = config.model.stages
    before = {
        i: load_state(snaps, f"step{step}-{'lost' if i in failed else 'before'}-stage{i}")
        for i in range(stages)
    }
    after = {i: load_state(snaps, f"step{step}-after-stage{i}") for i in range(stages)}
    strategy = config.strategy
    if strategy == "checkpoint":
        # Every stage is back at the last checkpoint: its AdamW step count is that iteration.
        rollback_to = build_plan(config).slots[step].rollback_to
        steps = {float(s[k]) for s in after.values() for k in s if k.endswith("/step")}
        assert steps == {float(rollback_to)}
        return
    for i in range(stages):
        if i not in failed:
            _exact(after[i], before[i])  # survivors keep their in-memory state
    for i in failed:
        lost, new = before[i], after[i]
        if strategy == "redundant":
            _exact(new, lost)  # restored exactly, optimizer state and all
            continue
        got = blocks(new)
        assert _differs(got, blocks(lost)), "the lost weights came back: the state was not lost"
        if strategy == "checkfree+" and i in (0, stages - 1):
            n = 1 if i == 0 else stages - 2
            _exact(got, blocks(before[n]))
            edge = [k for k in new if k.startswith("param/") and not k.startswith("param/blocks.")]
            _exact({k: new[k] for k in edge}, {k: lost[k] for k in edge})  # from the replica
        elif strategy in ("checkfree", "checkfree+", "uniform"):
            left, right = before[i - 1], before[i + 1]
            if strategy == "uniform":
                w_l = w_r = 1.0
            else:
                w_l = checkfree_weight(float(left["meta/grad_norm"]))
                w_r = checkfree_weight(float(right["meta/grad_norm"]))
            want = weighted_average(blocks(left), blocks(right), w_l, w_r)
            for k in want:
                torch.testing.assert_close(got[k], want[k], rtol=1e-6, atol=1e-7, msg=k)
        elif strategy == "copy":
            _exact(got, blocks(before[i - 1]))
        else:  # random: fresh weights, nobody's
            assert _differs(got, blocks(before[i - 1])) and _differs(got, blocks(before[i + 1]))
        # Fresh optimizer state and the recovery learning-rate factor.
        moments = [v for k, v in new.items() if k.startswith("adam/")]
        assert all(float(v.abs().max()) == 0.0 for v in moments)
        assert float(new["meta/lr_factor"]) == config.recovery_lr_factor
