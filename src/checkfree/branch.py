"""Many runs that share a failure-free start, each trained once from where it departs.

Runs that differ only in their failures and in a neighbour-based recovery (CheckFree and its
ablations, or CheckFree+ alone) compute exactly the same numbers until their first failure:
the failures and the recovery formula change nothing before it. :func:`branches` therefore
trains the failure-free *trunk* once, keeps a copy of every stage (weights, AdamW state) at
each step where some run has its first failure, and continues each run from its copy. Each
run's losses are those of :func:`checkfree.train` on its config (tested); the saving is the
shared prefix, which makes benchmarks of late failures affordable.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace

import torch

from checkfree.config import NEIGHBOUR_STRATEGIES, FailureConfig, TrainConfig
from checkfree.pipeline import LocalTransport
from checkfree.plan import Plan, Slot, build_plan
from checkfree.runner import PipelineRunner, new_worker
from checkfree.stage import StageWorker
from lcsc.errors import LcscError


@dataclass
class Branch:
    """One run's losses.

    Attributes:
        config: the run's settings.
        plan: its plan (failures, modelled wall clock per step).
        val: validation loss after ``step`` executed iterations, at the plan's evaluations and
            at the extra steps asked for.
        train: training loss of every executed step (``train[k]``: the step ending at ``k``).
        recovered: validation loss right after each recovery, before the step trains
            (``recovered[k]``: the failure at the start of step ``k``).
    """

    config: TrainConfig
    plan: Plan
    val: dict[int, float] = field(default_factory=dict)
    train: dict[int, float] = field(default_factory=dict)
    recovered: dict[int, float] = field(default_factory=dict)

    def sink(self, kind: str, step: int, value: float) -> None:
        (self.train if kind == "train" else self.val)[step] = float(value)


def _first_failure(plan: Plan) -> int:
    return next((s.step for s in plan.slots if s.failed), len(plan.slots))


def _trunk_config(configs: Sequence[TrainConfig]) -> TrainConfig:
    base = configs[0]
    strategies = {c.strategy for c in configs}
    if not (strategies <= set(NEIGHBOUR_STRATEGIES) or strategies == {"checkfree+"}):
        raise LcscError(
            f"branches: strategies {sorted(strategies)} do not share their failure-free"
            f" training; use {', '.join(NEIGHBOUR_STRATEGIES)} together, or checkfree+ alone"
        )
    trunk = replace(base, failures=FailureConfig(rate_percent=0.0, events=()))
    for c in configs:
        same = replace(c, strategy=base.strategy, failures=trunk.failures) == trunk
        if not same:
            raise LcscError("branches: the configs may differ only in strategy and failures")
        if c.processes or c.device != "cpu" or c.snapshot_dir is not None:
            raise LcscError("branches: single-process CPU runs without snapshots only")
    return trunk


def _run_slot(runner: PipelineRunner, slot: Slot, extra: Collection[int]) -> None:
    runner.run_slot(slot)
    if slot.step + 1 in extra and not slot.evaluate:
        runner.evaluate(slot.step + 1)


def branches(
    configs: Sequence[TrainConfig],
    evaluate_at: Collection[int] = (),
    until: int | None | Sequence[int | None] = None,
) -> list[Branch]:
    """Train every config of ``configs`` (see the module docstring), sharing the trunk.

    ``evaluate_at``: extra steps after which to compute the validation loss. ``until``: stop
    a run after this many executed steps (None: run it to its end), one value for all runs or
    one per run.
    """
    trunk_config = _trunk_config(configs)
    device = torch.device("cpu")
    plans = [build_plan(c) for c in configs]
    stops = list(until) if isinstance(until, Sequence) else [until] * len(configs)
    if len(stops) != len(configs):
        raise LcscError(f"branches: {len(stops)} values of until for {len(configs)} configs")
    trunk_plan = build_plan(trunk_config)
    departures = {
        min(_first_failure(p), u or len(p.slots)) for p, u in zip(plans, stops, strict=True)
    }
    trunk = Branch(trunk_config, trunk_plan)
    workers = {i: new_worker(trunk_config, i, device) for i in range(trunk_config.model.stages)}
    runner = PipelineRunner(trunk_config, trunk_plan, workers, LocalTransport(), None, trunk.sink)
    runner.start()
    kept: dict[int, dict[int, StageWorker]] = {}
    last = max(departures)
    for slot in trunk_plan.slots[:last]:
        if slot.step in departures:
            kept[slot.step] = copy.deepcopy(workers)
        _run_slot(runner, slot, evaluate_at)
    kept[last] = workers
    return [
        _continue(c, p, trunk, kept, evaluate_at, u)
        for c, p, u in zip(configs, plans, stops, strict=True)
    ]


def _continue(
    config: TrainConfig,
    plan: Plan,
    trunk: Branch,
    kept: dict[int, dict[int, StageWorker]],
    evaluate_at: Collection[int],
    until: int | None,
) -> Branch:
    start = min(_first_failure(plan), until or len(plan.slots))
    out = Branch(config, plan)
    out.val = {k: v for k, v in trunk.val.items() if k <= start}
    out.train = {k: v for k, v in trunk.train.items() if k <= start}
    end = len(plan.slots) if until is None else min(until, len(plan.slots))
    if start >= end:
        return out
    workers = copy.deepcopy(kept[start])
    for w in workers.values():
        w.config = config
    runner = PipelineRunner(config, plan, workers, LocalTransport(), None, out.sink)
    for slot in plan.slots[start:end]:
        if slot.failed:
            for i in slot.failed:
                workers[i] = new_worker(config, i, workers[i].device, replaced_at=slot.step)
            runner.recover(slot)
            loss = runner.validation_loss()
            assert loss is not None
            out.recovered[slot.step] = loss
        _run_slot(runner, slot, evaluate_at)
    return out
