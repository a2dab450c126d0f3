"""A stage's process in a multi-machine run: train, survive other stages' loss, rejoin.

The process joins generation ``gen`` (from the start, or as a replacement rebuilt at step
``joined_at``) and runs the plan. Every step's update waits for all stages to agree
(:meth:`~checkfree.rendezvous.JobStore.agree`), so when a stage or a whole launcher is lost —
at a planned failure (its process exits) or killed from outside — every survivor has applied
the same steps. A survivor then closes its process group (so that peers blocked on it fail
too), reports how many steps it applied, waits for the next generation and runs the
strategy's recovery with the replacements; its model and optimizer stay in memory.
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
import traceback
from dataclasses import replace

import torch
import torch.distributed as dist

from checkfree.config import LaunchConfig, TrainConfig
from checkfree.distributed import EXIT_LOST
from checkfree.pipeline import DistTransport
from checkfree.plan import build_plan
from checkfree.rendezvous import Fault, JobStore, init_group
from checkfree.runner import PipelineRunner, new_worker


def _leave_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
    gc.collect()  # drop the group's last references: its sockets close, blocked peers fail


def _next_generation(store: JobStore, gen: int) -> tuple[int, int, tuple[int, ...]]:
    deadline = time.monotonic() + store.timeout_s
    while True:
        store.check_abort()
        current = int(store.get("gen") or 0)
        if current > gen:
            start = int(store.get(f"g{current}/start") or 0)
            failed = tuple(int(v) for v in (store.get(f"g{current}/failed") or "").split(",") if v)
            return current, start, failed
        if time.monotonic() > deadline:
            raise Fault(f"no new generation after {gen} within {store.timeout_s} s")
        time.sleep(0.01)


def worker_main(
    stage: int,
    config: TrainConfig,
    launch: LaunchConfig,
    gen: int,
    joined_at: int | None,
    failed: tuple[int, ...],
) -> None:
    """Entry point of a stage process (started by :mod:`checkfree.elastic`)."""
    store = None
    try:
        torch.set_num_threads(1)  # one process per stage already fills the cores
        store = JobStore(launch, master=False, timeout_s=config.timeout_s)
        _run(store, stage, config, gen, joined_at, failed)
    except BaseException as exc:  # the job cannot go on: say why, then exit non-zero
        with contextlib.suppress(Exception):
            if store is not None and not isinstance(exc, Fault):
                store.abort(f"stage {stage}: {exc}\n{traceback.format_exc()}")
        os._exit(1)


def _run(
    store: JobStore,
    stage: int,
    config: TrainConfig,
    gen: int,
    joined_at: int | None,
    failed: tuple[int, ...],
) -> None:
    plan = build_plan(config)
    world = config.model.stages
    device = torch.device("cpu")

    def report(kind: str, step: int, value: float) -> None:
        store.set(f"loss/{kind}/{step}", repr(float(value)))

    worker = new_worker(config, stage, device, replaced_at=joined_at)
    runner = PipelineRunner(config, plan, {stage: worker}, DistTransport(device), None, report)
    current = {"gen": gen}
    runner.commit = lambda slot: store.agree(current["gen"], slot.step, world)
    joining: tuple[int | None, tuple[int, ...]] | None = (joined_at, failed)
    while True:
        lost = False
        try:
            init_group(store, current["gen"], stage, world, config.timeout_s)
            if joining is not None:
                at, rebuilt = joining
                if at is None:
                    runner.start()
                else:
                    runner.completed = at
                    runner.recover(replace(plan.slots[at], failed=rebuilt))
                joining = None
            for slot in plan.slots[runner.completed :]:
                if stage in slot.failed and slot.step != joined_at:
                    os._exit(EXIT_LOST)  # planned: the stage's state dies with the process
                runner.run_slot(slot)
        except (Fault, RuntimeError) as exc:  # a peer or its launcher is gone
            store.set(f"g{current['gen']}/error/{stage}", str(exc).splitlines()[0])
            lost = True
        if not lost:
            break
        store.check_abort()
        store.add(f"g{current['gen']}/fault")
        worker.discard_iteration()  # the step is redone from its start after the recovery
        _leave_group()
        store.set(f"g{current['gen']}/alive/{stage}", runner.completed)
        new_gen, start, rebuilt = _next_generation(store, current["gen"])
        if start != runner.completed:
            raise Fault(f"stage {stage} applied {runner.completed} steps, the job {start}")
        current["gen"] = new_gen
        joining = (start, rebuilt)
    store.set(f"done/{stage}", 1)
    _leave_group()
