"""The run's control flow, computed before training: what happens at each executed iteration.

Failures, rollbacks, checkpoint saves, evaluations and the modelled wall clock depend only on the
config (never on the losses), so they are laid out up front. Every process of a multi-process
run and the coordinator compute the same :class:`Plan`, and a configuration whose failures the
strategy cannot recover from is refused before any work is done.

Executed iterations are *steps* (wall-clock slots); training *iterations* are progress. They
differ only under checkpoint rollback, where a failure at step ``t`` sends every stage back to
the last checkpoint and the iterations since are redone (``lost_iterations`` counts them).
"""

from __future__ import annotations

from dataclasses import dataclass

from checkfree.config import NEIGHBOUR_STRATEGIES, TrainConfig
from checkfree.failures import FailureSchedule
from lcsc.errors import LcscError

#: A run whose rollbacks need more than this many steps per training iteration is refused.
MAX_STEPS_PER_ITERATION = 50


@dataclass(frozen=True)
class Slot:
    """One executed iteration.

    Attributes:
        step: index of this executed iteration, from 0.
        iteration: index of the training iteration it computes (its batch and learning rate).
        failed: stages lost at its start (recovered before it runs).
        rollback_to: ``checkpoint``: the checkpointed iteration every stage returns to.
        save_checkpoint: ``checkpoint``: save after this iteration's update.
        evaluate: compute the validation loss after this iteration's update.
        wall_clock_s: modelled wall clock at its end.
    """

    step: int
    iteration: int
    failed: tuple[int, ...]
    rollback_to: int | None
    save_checkpoint: bool
    evaluate: bool
    wall_clock_s: float


@dataclass(frozen=True)
class Plan:
    """All slots of a run plus its totals."""

    slots: tuple[Slot, ...]
    lost_iterations: int
    checkpoints: int
    iteration_time_s: float

    @property
    def failures(self) -> tuple[tuple[int, tuple[int, ...]], ...]:
        """``(step, failed stages)`` for every step with a failure."""
        return tuple((s.step, s.failed) for s in self.slots if s.failed)

    @property
    def wall_clock_s(self) -> float:
        return self.slots[-1].wall_clock_s if self.slots else 0.0


def check_recoverable(strategy: str, stages: int, failed: tuple[int, ...], step: int) -> None:
    """Raise :class:`LcscError` if ``strategy`` cannot rebuild the ``failed`` stages.

    * CheckFree and its ablations rebuild stage ``i`` from stages ``i - 1`` and ``i + 1``: the
      first and last stage have one neighbour only, and two adjacent stages lost together leave
      one of them without its neighbour's weights.
    * CheckFree+ copies an edge stage from its one neighbour (and the embedding or LM head from
      that neighbour's replica), so two adjacent stages lost together are still unrecoverable.
    * Redundant computation keeps stage ``i``'s state on stage ``(i + 1) mod S``; losing both
      loses it.
    * Checkpointing recovers anything (every stage rolls back).
    """
    lost = set(failed)
    where = f"at step {step}"
    if strategy in NEIGHBOUR_STRATEGIES:
        for i in failed:
            if i in (0, stages - 1):
                part = "embedding" if i == 0 else "LM head"
                raise LcscError(
                    f"{strategy} cannot recover stage {i} {where}: it is an edge stage (with the"
                    f" {part}) and has only one neighbour; use checkfree+, or failures on"
                    " intermediate stages only (--failing-stages intermediate)"
                )
    if strategy in NEIGHBOUR_STRATEGIES or strategy == "checkfree+":
        for i in failed:
            if i + 1 in lost:
                raise LcscError(
                    f"{strategy} cannot recover stages {i} and {i + 1} {where}: two adjacent"
                    " stages failed in the same iteration, so neither has both neighbours' weights"
                )
    if strategy == "redundant":
        for i in failed:
            if (i + 1) % stages in lost:
                raise LcscError(
                    f"redundant computation cannot restore stage {i} {where}: stage"
                    f" {(i + 1) % stages}, which holds its replica, failed in the same iteration"
                )


def build_plan(config: TrainConfig) -> Plan:
    """Lay out every executed iteration of ``config``'s run (see the module docstring).

    Modelled cost of a step: ``iteration_time_s`` (times ``redundant_time_factor`` for the
    ``redundant`` strategy), plus ``checkpoint_save_s`` when a checkpoint is saved.
    Evaluations run after every ``eval_every``-th step and after the last one.
    """
    stages = config.model.stages
    schedule = FailureSchedule.from_config(config.failures, config.seed, stages)
    step_time = config.failures.iteration_time_s
    if config.strategy == "redundant":
        step_time *= config.redundant_time_factor
    checkpointing = config.strategy == "checkpoint"
    max_steps = MAX_STEPS_PER_ITERATION * config.iterations
    slots: list[Slot] = []
    progress = last_checkpoint = lost = saves = 0
    clock = 0.0
    step = 0
    while progress < config.iterations:
        if step >= max_steps:
            raise LcscError(
                f"checkpointing makes no progress: after {step} steps only {progress} of"
                f" {config.iterations} iterations are done; failures come faster than every"
                f" {config.checkpoint_interval} iterations (lower --checkpoint-interval)"
            )
        failed = schedule.failed(step)
        check_recoverable(config.strategy, stages, failed, step)
        rollback = None
        if failed and checkpointing:
            rollback = last_checkpoint
            lost += progress - last_checkpoint
            progress = last_checkpoint
        iteration = progress
        progress += 1
        save = checkpointing and progress % config.checkpoint_interval == 0
        if save and progress < config.iterations:
            last_checkpoint = progress
            saves += 1
            clock += config.checkpoint_save_s
        else:
            save = False  # no save after the final iteration: nothing left to protect
        clock += step_time
        done = progress >= config.iterations
        evaluate = (step + 1) % config.eval_every == 0 or done
        slots.append(Slot(step, iteration, failed, rollback, save, evaluate, clock))
        step += 1
    return Plan(tuple(slots), lost, saves, step_time)
