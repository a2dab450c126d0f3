"""Branching runs from a shared failure-free trunk: the same losses as separate runs."""

from __future__ import annotations

from dataclasses import replace

import pytest

from checkfree import FailureConfig, train
from checkfree.branch import branches
from lcsc.errors import LcscError

from .conftest import tiny


def test_branches_equal_separate_runs() -> None:
    base = tiny(iterations=8, eval_every=4)
    configs = [
        replace(base, strategy="checkfree", failures=FailureConfig(0.0, events=((5, 1),))),
        replace(base, strategy="random", failures=FailureConfig(0.0, events=((3, 2), (6, 1)))),
        replace(base, strategy="uniform"),  # no failure: the trunk itself
    ]
    runs = branches(configs, evaluate_at={5, 6})
    for config, branch in zip(configs, runs, strict=True):
        alone = train(config)
        steps = [r["step"] for r in alone.records if "val_loss" in r]
        assert sorted(k for k in branch.val if k not in (5, 6)) == steps
        assert [branch.val[k] for k in steps] == pytest.approx(
            [v for _, v in alone.val_curve], abs=1e-6
        )
        assert [branch.train[k] for k in sorted(branch.train)] == pytest.approx(
            alone.train_losses, abs=1e-6
        )
        assert set(branch.recovered) == {s for s, _ in alone.failures}
    assert 6 in runs[0].val and runs[0].val[6] != runs[2].val[6]
    # Right after the recovery the loss is that of the rebuilt model, before any training.
    assert runs[0].val[5] == runs[2].val[5]  # shared up to the failure
    assert runs[0].recovered[5] != pytest.approx(runs[0].val[5], abs=1e-6)


def test_branches_stop_early_and_refuse_incompatible_runs() -> None:
    base = tiny(iterations=8)
    (short,) = branches([replace(base, failures=FailureConfig(0.0, events=((2, 1),)))], until=4)
    assert max(short.train) == 4
    with pytest.raises(LcscError, match="do not share"):
        branches([base, replace(base, strategy="checkfree+")])
    with pytest.raises(LcscError, match="differ only"):
        branches([base, replace(base, lr=1e-3)])
