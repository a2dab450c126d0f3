"""``train(config)``: one pipeline run with failures and recovery, and its loss log.

With an output directory ``OUT`` it writes::

    OUT/config.json     the TrainConfig
    OUT/log.jsonl       one line per executed iteration (and one for the initial model):
                        step, iteration, train_loss, val_loss (when evaluated), failures,
                        rollback_to (checkpoint rollbacks), wall_clock_s (modelled)
    OUT/summary.json    totals: failures, lost iterations, modelled wall clock, final losses
    OUT/checkpoints/    the ``checkpoint`` strategy's per-stage checkpoints
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from checkfree.config import LaunchConfig, TrainConfig
from checkfree.distributed import ProcessInfo, run_processes
from checkfree.elastic import check_launch, run_elastic
from checkfree.plan import Plan, build_plan
from checkfree.runner import run_single
from lcsc.atomic import write_json
from lcsc.errors import LcscError
from lcsc.progress import Progress, report


@dataclass(frozen=True)
class RunResult:
    """What a run did.

    Attributes:
        config: the run's settings.
        records: the loss log, one dict per line of ``log.jsonl``.
        failures: ``(step, failed stages)`` of every failure.
        steps: executed iterations (``iterations`` plus redone ones).
        lost_iterations: iterations redone after checkpoint rollbacks.
        checkpoints: checkpoints saved (``checkpoint`` strategy; the initial one not counted).
        step_time_s: modelled duration of one executed iteration.
        wall_clock_s: modelled wall clock of the whole run.
        runtime_s: real seconds the run took here.
        processes: multi-process mode: every worker process that took part.
    """

    config: TrainConfig
    records: tuple[dict[str, Any], ...]
    failures: tuple[tuple[int, tuple[int, ...]], ...]
    steps: int
    lost_iterations: int
    checkpoints: int
    step_time_s: float
    wall_clock_s: float
    runtime_s: float
    processes: tuple[ProcessInfo, ...] = ()

    @property
    def train_losses(self) -> list[float]:
        """Training loss of every executed iteration, in execution order."""
        return [r["train_loss"] for r in self.records if r["train_loss"] is not None]

    @property
    def val_curve(self) -> list[tuple[float, float]]:
        """``(modelled wall clock in seconds, validation loss)`` at every evaluation."""
        return [(r["wall_clock_s"], r["val_loss"]) for r in self.records if "val_loss" in r]

    @property
    def final_val_loss(self) -> float:
        return self.val_curve[-1][1]

    def time_to_loss(self, target: float) -> float | None:
        """Modelled wall clock of the first evaluation at or below ``target``; None if never."""
        return next((t for t, v in self.val_curve if v <= target), None)

    def summary(self) -> dict[str, Any]:
        return {
            "strategy": self.config.strategy,
            "failures": [[s, list(f)] for s, f in self.failures],
            "failed_stages": sum(len(f) for _, f in self.failures),
            "steps": self.steps,
            "iterations": self.config.iterations,
            "lost_iterations": self.lost_iterations,
            "checkpoints": self.checkpoints,
            "step_time_s": self.step_time_s,
            "wall_clock_s": self.wall_clock_s,
            "final_val_loss": self.final_val_loss,
            "final_train_loss": self.train_losses[-1],
            "runtime_s": self.runtime_s,
            "processes": [asdict(p) for p in self.processes],
        }


class LossLog:
    """Collects ``(kind, step, value)`` reports into log records, in step order.

    Record ``k`` is complete once its training loss (``k > 0``) and, if the plan evaluates
    there, its validation loss have arrived; complete records are appended to ``log.jsonl``.
    """

    def __init__(self, plan: Plan, stream: TextIO | None, progress: Progress | None) -> None:
        self.plan = plan
        #: Stages lost at the start of each step: the plan's, plus any a launcher reports.
        self.failed = {s.step: s.failed for s in plan.slots if s.failed}
        self.stream = stream
        self.progress = progress
        self.iterations = max((s.iteration + 1 for s in plan.slots), default=0)
        self._failed = 0
        self.records: list[dict[str, Any]] = []
        self._train: dict[int, float | None] = {}
        self._val: dict[int, float | None] = {}

    def __call__(self, kind: str, step: int, value: float | None) -> None:
        """``value`` None: the loss was lost with a stage (multi-machine runs)."""
        (self._train if kind == "train" else self._val)[step] = (
            None if value is None else float(value)
        )
        while self._complete(len(self.records)):
            self._emit(len(self.records))

    def _complete(self, k: int) -> bool:
        if k > len(self.plan.slots):
            return False
        if k == 0:
            return 0 in self._val
        return k in self._train and (not self.plan.slots[k - 1].evaluate or k in self._val)

    def _emit(self, k: int) -> None:
        record: dict[str, Any] = {"step": k, "iteration": 0, "train_loss": None}
        if k:
            slot = self.plan.slots[k - 1]
            record.update(iteration=slot.iteration + 1, train_loss=self._train.pop(k))
        if k in self._val:
            val = self._val.pop(k)
            if val is not None:
                record["val_loss"] = val
        record["failures"] = list(self.failed.get(k - 1, ())) if k else []
        if k and self.plan.slots[k - 1].rollback_to is not None:
            record["rollback_to"] = self.plan.slots[k - 1].rollback_to
        record["wall_clock_s"] = self.plan.slots[k - 1].wall_clock_s if k else 0.0
        self.records.append(record)
        if self.stream is not None:
            self.stream.write(json.dumps(record) + "\n")
            self.stream.flush()
        if self.progress is not None and k:
            self._failed += len(record["failures"])
            info = {"failures": self._failed}
            if record["train_loss"] is not None:
                info["loss"] = record["train_loss"]
            if "val_loss" in record:
                info["val"] = record["val_loss"]
            report(self.progress, "train", record["iteration"], self.iterations, **info)


def train(
    config: TrainConfig,
    out: str | Path | None = None,
    progress: Progress | None = None,
    launch: LaunchConfig | None = None,
) -> RunResult:
    """Train ``config`` with its failures and recovery strategy; see the module docstring.

    Raises :class:`~lcsc.errors.LcscError` before any work if the failures cannot be recovered
    by the strategy (for example an edge stage under CheckFree). ``progress`` is called as
    ``progress("train", iteration, iterations, loss=..., failures=..., [val=...])`` with every
    log record as it completes (the iteration goes back after a checkpoint rollback).
    ``launch`` (multi-process mode only): this machine's launcher in a multi-machine
    run (see :mod:`checkfree.elastic`); every machine calls ``train`` with the same config.
    """
    plan = build_plan(config)
    _check_device(config)
    if launch is not None:
        check_launch(config)
    t0 = time.perf_counter()
    out_dir = Path(out) if out is not None else None
    with contextlib.ExitStack() as stack:
        stream = None
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            write_json(out_dir / "config.json", asdict(config))
            stream = stack.enter_context(open(out_dir / "log.jsonl", "w"))
        checkpoint_dir = None
        if config.strategy == "checkpoint":
            if out_dir is not None:
                checkpoint_dir = out_dir / "checkpoints"
            else:
                checkpoint_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        log = LossLog(plan, stream, progress)
        processes: tuple[ProcessInfo, ...] = ()
        if launch is not None:
            processes = run_elastic(config, plan, launch, log, log.failed.__setitem__)
        elif config.processes:
            processes = run_processes(config, plan, checkpoint_dir, log)
        else:
            run_single(config, plan, checkpoint_dir, log)
    result = RunResult(
        config=config,
        records=tuple(log.records),
        failures=tuple(sorted(log.failed.items())),
        steps=len(plan.slots),
        lost_iterations=plan.lost_iterations,
        checkpoints=plan.checkpoints,
        step_time_s=plan.iteration_time_s,
        wall_clock_s=plan.wall_clock_s,
        runtime_s=time.perf_counter() - t0,
        processes=processes,
    )
    if len(result.records) != len(plan.slots) + 1:
        raise RuntimeError(
            f"checkfree: {len(result.records)} log records for {len(plan.slots)} steps"
        )
    if out_dir is not None:
        write_json(out_dir / "summary.json", result.summary())
    return result


def _check_device(config: TrainConfig) -> None:
    if config.device != "cuda":
        return
    import torch

    if not torch.cuda.is_available():
        raise LcscError("TrainConfig.device: 'cuda' requested but no CUDA device is visible")
    n = torch.cuda.device_count()
    if config.processes and n < config.model.stages:
        raise LcscError(
            f"TrainConfig.device: multi-process mode on CUDA runs one NCCL rank per GPU;"
            f" {config.model.stages} stages need {config.model.stages} GPUs, {n} visible"
            " (use the single-process mode)"
        )
