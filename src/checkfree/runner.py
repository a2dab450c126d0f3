"""Executing a :class:`~checkfree.plan.Plan` on the stages a process holds.

The same :class:`PipelineRunner` drives every stage in the single-process mode and one stage
per process in the multi-process mode; only the transport and what happens to a failed stage's
worker differ (dropped and recreated here, versus the whole process exiting and a new one
joining there). Values are reported through a callback as ``(kind, step, value)``: ``"train"``
(mean micro-batch loss of executed iteration ``step - 1``) and ``"val"`` (validation loss after
``step`` executed iterations; step 0 is the initial model). Only the LM-head holder reports.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from checkfree import pipeline, recovery
from checkfree.config import TrainConfig
from checkfree.data import load_corpus, train_batch, val_batches
from checkfree.plan import Plan, Slot
from checkfree.rng import torch_generator
from checkfree.stage import StageWorker
from lcsc.checkpoint import read_checkpoint, write_checkpoint
from lcsc.errors import CheckpointError

# loss_sink(kind, step, value): "train" or "val" losses on their way to the log
LossSink = Callable[[str, int, float], None]


def learning_rate(config: TrainConfig, iteration: int) -> float:
    """Linear warm-up to ``lr`` over ``warmup`` iterations, then cosine decay to
    ``min_lr_ratio * lr`` at the last iteration: ``lr * (r + (1 - r) (1 + cos(pi u)) / 2)``.
    """
    if iteration < config.warmup:
        return config.lr * (iteration + 1) / config.warmup
    u = (iteration - config.warmup) / max(1, config.iterations - config.warmup)
    r = config.min_lr_ratio
    return config.lr * (r + (1 - r) * 0.5 * (1 + math.cos(math.pi * min(u, 1.0))))


def new_worker(
    config: TrainConfig, index: int, device: torch.device, replaced_at: int | None = None
) -> StageWorker:
    """Stage ``index`` as first built (``replaced_at=None``), or as a replacement joining at
    step ``replaced_at``: freshly initialised from a different stream, so it holds nothing of
    the lost stage (its weights are then set by the strategy).
    """
    if replaced_at is None:
        gen = torch_generator(config.seed, "init", index)
    else:
        gen = torch_generator(config.seed, "reinit", replaced_at, index)
    return StageWorker(config, index, gen, device)


def checkpoint_path(directory: Path, index: int) -> Path:
    return directory / f"stage{index}.safetensors"


class PipelineRunner:
    """Runs plan slots on ``workers`` (the stages this process holds)."""

    def __init__(
        self,
        config: TrainConfig,
        plan: Plan,
        workers: dict[int, StageWorker],
        transport: pipeline.Transport,
        checkpoint_dir: Path | None,
        report: LossSink,
    ) -> None:
        self.config = config
        self.plan = plan
        self.workers = workers
        self.transport = transport
        self.checkpoint_dir = checkpoint_dir
        self.report = report
        model = config.model
        self.corpus = load_corpus(config.corpus_bytes, config.val_fraction)
        self.val = val_batches(self.corpus, config.eval_batches, config.batch_size, model.seq_len)
        self.paths = pipeline.routes(config.strategy, model.stages, config.micro_batches)
        #: Called between a step's backward pass and its update (None: no agreement needed).
        self.commit: Callable[[Slot], None] | None = None
        #: Executed steps whose update is applied.
        self.completed = 0

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Before the first step: fill the replicas, save checkpoint 0, evaluate the start."""
        self._sync_replicas()
        if self.config.strategy == "checkpoint":
            self._save_checkpoint(0)
        self.evaluate(0)

    def recover(self, slot: Slot) -> None:
        """Rebuild ``slot.failed`` (the failed stages held here are fresh workers already)."""
        config = self.config
        if config.strategy == "checkpoint":
            for w in self.workers.values():
                done = self._load_checkpoint(w)
                if done != slot.rollback_to:
                    raise CheckpointError(
                        f"stage {w.index}: its checkpoint is at iteration {done}, expected"
                        f" {slot.rollback_to} (another run writing to the same folder?)"
                    )
        else:
            transfers = recovery.recovery_transfers(
                config.strategy, config.model.stages, slot.failed
            )
            received = pipeline.exchange(
                self.workers,
                self.transport,
                transfers,
                recovery.transfer_payload,
                lambda t: recovery.transfer_shapes(config, t),
            )
            for i in slot.failed:
                if i in self.workers:
                    recovery.apply_recovery(self.workers[i], config, received)
        self._sync_replicas()
        self.snapshot(slot.step, "after", self.workers)

    def run_slot(self, slot: Slot) -> None:
        """One executed iteration: forwards, backwards, updates, then save / evaluate / report."""
        config = self.config
        tokens, targets = train_batch(
            self.corpus, config.seed, slot.iteration, config.batch_size, config.model.seq_len
        )
        losses = pipeline.forward_backward(
            self.workers, self.transport, self.paths, tokens, targets, config.model.dim
        )
        if self.commit is not None:
            self.commit(slot)  # every stage agrees to take this step (elastic mode)
        lr = learning_rate(config, slot.iteration)
        for w in self.workers.values():
            w.step(lr)
        self.completed = slot.step + 1
        self._sync_replicas()
        if losses:
            self.report("train", slot.step + 1, sum(losses) / len(losses))
        if slot.save_checkpoint:
            self._save_checkpoint(slot.iteration + 1)
        if slot.evaluate:
            self.evaluate(slot.step + 1)

    def snapshot(self, step: int | None, phase: str, indices: Iterable[int]) -> None:
        """With ``snapshot_dir`` set, write the state of the held stages in ``indices``."""
        if self.config.snapshot_dir is None:
            return
        name = phase if step is None else f"step{step}-{phase}"
        for i in indices:
            path = Path(self.config.snapshot_dir) / f"{name}-stage{i}.safetensors"
            write_checkpoint(path, self.workers[i].state_tensors())

    # -- helpers ------------------------------------------------------------------------------

    def _sync_replicas(self) -> None:
        config = self.config
        transfers = recovery.replica_transfers(config.strategy, config.model.stages)
        if not transfers:
            return
        received = pipeline.exchange(
            self.workers,
            self.transport,
            transfers,
            recovery.transfer_payload,
            lambda t: recovery.transfer_shapes(config, t),
        )
        recovery.store_replicas(self.workers, received)

    def validation_loss(self) -> float | None:
        """The current model's validation loss (None off the LM-head stage)."""
        config = self.config
        return pipeline.evaluate(
            self.workers,
            self.transport,
            self.val,
            config.model.stages,
            config.micro_batches,
            config.model.dim,
        )

    def evaluate(self, step: int) -> None:
        """Report the validation loss as that after ``step`` executed iterations."""
        loss = self.validation_loss()
        if loss is not None:
            self.report("val", step, loss)

    def _save_checkpoint(self, iteration: int) -> None:
        assert self.checkpoint_dir is not None
        for i, w in self.workers.items():
            write_checkpoint(
                checkpoint_path(self.checkpoint_dir, i),
                w.state_tensors(),
                {"iteration": str(iteration)},
            )

    def _load_checkpoint(self, worker: StageWorker) -> int:
        assert self.checkpoint_dir is not None
        ckpt = read_checkpoint(checkpoint_path(self.checkpoint_dir, worker.index))
        try:
            iteration = int(ckpt.metadata["iteration"])
        except (KeyError, ValueError) as exc:
            raise CheckpointError(f"{ckpt.path}: no iteration in its metadata") from exc
        worker.load_state_tensors(ckpt.tensors)
        return iteration


def run_single(
    config: TrainConfig, plan: Plan, checkpoint_dir: Path | None, report: LossSink
) -> None:
    """All stages in this process. A failed stage's worker is dropped (its weights and AdamW
    state with it) and a fresh one takes its place before the strategy rebuilds it.
    """
    device = torch.device("cuda" if config.device == "cuda" else "cpu")
    workers = {i: new_worker(config, i, device) for i in range(config.model.stages)}
    runner = PipelineRunner(
        config, plan, workers, pipeline.LocalTransport(), checkpoint_dir, report
    )
    runner.start()
    for slot in plan.slots:
        if slot.failed:
            survivors = [i for i in workers if i not in slot.failed]
            runner.snapshot(slot.step, "before", survivors)
            runner.snapshot(slot.step, "lost", slot.failed)
            for i in slot.failed:
                # The old worker, its weights and AdamW state are dropped here: the stage is gone.
                workers[i] = new_worker(config, i, device, replaced_at=slot.step)
            runner.recover(slot)
        runner.run_slot(slot)
    runner.snapshot(None, "final", workers)
