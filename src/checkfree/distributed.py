"""Multi-process mode: one OS process per stage on torch.distributed, with real stage loss.

A coordinator (the calling process) starts one worker process per stage (``forkserver`` with
torch preloaded where available, else ``spawn``) and a process group over them: gloo on CPU,
NCCL on CUDA, rendezvous ``tcp://127.0.0.1:<free port>``. Workers follow the shared
:class:`~checkfree.plan.Plan`. At a step where stages fail:

1. each failed stage's process writes nothing but a "lost" note to the coordinator and calls
   ``os._exit``: its weights, AdamW state and replicas die with it;
2. each survivor tells the coordinator it is ready to rejoin and waits;
3. once every failed process has exited, the coordinator starts a replacement process per failed
   stage (it builds a freshly initialised stage, not the old weights) and sends every survivor
   a new port; all processes form a fresh process group there (survivors keep their in-memory
   model and optimizer);
4. all run the strategy's recovery (the neighbours send their weights) and training goes on.

The job is never restarted. The coordinator also receives the losses from the LM-head stage.
"""

from __future__ import annotations

import contextlib
import datetime
import multiprocessing as mp
import os
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path

import torch

from checkfree.config import TrainConfig
from checkfree.pipeline import DistTransport
from checkfree.plan import Plan, build_plan
from checkfree.runner import LossSink, PipelineRunner, new_worker
from lcsc.errors import LcscError
from lcsc.search.distributed import free_local_port as free_port

#: Exit status of a process whose stage failed (the coordinator expects it).
EXIT_LOST = 17


@dataclass(frozen=True)
class ProcessInfo:
    """One worker process: its stage, pid, the step it joined at (None: from the start), the
    step its stage was lost at (None: it finished) and its exit status."""

    stage: int
    pid: int
    joined_at: int | None
    lost_at: int | None
    exitcode: int | None


def process_context(module: str) -> mp.context.BaseContext:
    """``forkserver`` with torch (and ``module``) preloaded where available, else ``spawn``.

    Children fork from a server that imported torch once: ~0.1 s per process, not seconds
    (torch.optim's first use imports torch._dynamo: preloaded too).
    """
    try:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(
            ["torch", "torch.distributed", "torch._dynamo", "torch.optim", module]
        )
        return ctx
    except ValueError:
        return mp.get_context("spawn")


def _init_group(config: TrainConfig, rank: int, port: int) -> None:
    import torch.distributed as dist

    dist.init_process_group(
        "nccl" if config.device == "cuda" else "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=config.model.stages,
        timeout=datetime.timedelta(seconds=config.timeout_s),
    )


def _worker_main(
    rank: int,
    config: TrainConfig,
    port: int,
    conn: Connection,
    joined_at: int | None,
    checkpoint_dir: str | None,
) -> None:
    """A stage's process: run the plan, die at its stage's failure, rejoin after others'."""
    import torch.distributed as dist

    try:
        torch.set_num_threads(1)  # one process per stage already fills the cores
        plan = build_plan(config)
        if config.device == "cuda":
            device = torch.device("cuda", rank % torch.cuda.device_count())
            torch.cuda.set_device(device)
        else:
            device = torch.device("cpu")
        _init_group(config, rank, port)
        worker = new_worker(config, rank, device, replaced_at=joined_at)

        def report(kind: str, step: int, value: float) -> None:
            conn.send((kind, step, value))

        runner = PipelineRunner(
            config,
            plan,
            {rank: worker},
            DistTransport(device),
            Path(checkpoint_dir) if checkpoint_dir else None,
            report,
        )
        if joined_at is None:
            runner.start()
            first = 0
        else:
            runner.recover(plan.slots[joined_at])
            first = joined_at
        for slot in plan.slots[first:]:
            if slot.failed and slot.step != joined_at:
                if rank in slot.failed:
                    runner.snapshot(slot.step, "lost", [rank])
                    conn.send(("lost", rank, slot.step))
                    conn.close()
                    os._exit(EXIT_LOST)  # no cleanup: the stage's state dies with the process
                runner.snapshot(slot.step, "before", [rank])
                conn.send(("rejoin", rank, slot.step))
                new_port = conn.recv()
                dist.destroy_process_group()
                _init_group(config, rank, new_port)
                runner.recover(slot)
            runner.run_slot(slot)
        runner.snapshot(None, "final", [rank])
        dist.destroy_process_group()
        conn.send(("done", rank, 0))
    except BaseException as exc:  # report any crash to the coordinator, then exit non-zero
        with contextlib.suppress(Exception):
            kind = "lcsc-error" if isinstance(exc, LcscError) else "error"
            conn.send((kind, rank, f"stage {rank}: {exc}\n{traceback.format_exc()}"))
        os._exit(1)


class _Coordinator:
    def __init__(
        self, config: TrainConfig, plan: Plan, checkpoint_dir: Path | None, report: LossSink
    ) -> None:
        self.config = config
        self.plan = plan
        self.checkpoint_dir = str(checkpoint_dir) if checkpoint_dir else None
        self.report = report
        self.ctx = process_context(__name__)
        self.procs: dict[int, tuple[mp.process.BaseProcess, Connection, int | None]] = {}
        self.finished: list[ProcessInfo] = []
        self.done: set[int] = set()
        self.lost: dict[int, int] = {}  # stage -> step, for the current failure
        self.rejoined: set[int] = set()

    def start(self, rank: int, port: int, joined_at: int | None) -> None:
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(
            target=_worker_main,
            args=(rank, self.config, port, child, joined_at, self.checkpoint_dir),
            name=f"checkfree--stage{rank}",
            daemon=True,
        )
        proc.start()
        child.close()
        self.procs[rank] = (proc, parent, joined_at)

    def run(self) -> tuple[ProcessInfo, ...]:
        stages = self.config.model.stages
        failures = dict(self.plan.failures)
        port = free_port()
        for rank in range(stages):
            self.start(rank, port, None)
        last_event = time.monotonic()
        try:
            while len(self.done) < stages:
                # Wait on what can still speak: open pipes and live processes (a dead one's
                # sentinel stays ready and would make this loop spin).
                conns = [c for _, c, _ in self.procs.values() if not c.closed]
                sentinels = [p.sentinel for p, _, _ in self.procs.values() if p.is_alive()]
                ready = wait(conns + sentinels, timeout=1.0)
                if ready:
                    last_event = time.monotonic()
                for rank in list(self.procs):
                    self._drain(rank)
                self._check_alive()
                if self.lost and self._failure_complete(failures):
                    self._replace()
                if time.monotonic() - last_event > self.config.timeout_s:
                    raise LcscError(
                        f"checkfree: the multi-process run stalled for {self.config.timeout_s} s"
                    )
        finally:
            for rank, (proc, _, _) in self.procs.items():
                if rank in self.done:
                    proc.join(timeout=10)  # finished: let it exit on its own
                if proc.is_alive():
                    proc.kill()
                proc.join(timeout=10)
        for rank, (proc, _, joined_at) in self.procs.items():
            self.finished.append(ProcessInfo(rank, proc.pid or -1, joined_at, None, proc.exitcode))
        return tuple(sorted(self.finished, key=lambda p: (p.joined_at or -1, p.stage)))

    def _drain(self, rank: int) -> None:
        _, conn, _ = self.procs[rank]
        try:
            while not conn.closed and conn.poll():
                self._handle(conn.recv())
        except (EOFError, OSError):
            conn.close()

    def _handle(self, msg: tuple) -> None:
        kind, a, b = msg
        if kind in ("train", "val"):
            self.report(kind, a, b)
        elif kind == "lost":
            self.lost[a] = b
        elif kind == "rejoin":
            self.rejoined.add(a)
        elif kind == "done":
            self.done.add(a)
        elif kind == "lcsc-error":
            raise LcscError(b.splitlines()[0])
        else:
            raise RuntimeError(f"checkfree worker failed:\n{b}")

    def _check_alive(self) -> None:
        for rank, (proc, _, _) in self.procs.items():
            if proc.is_alive() or rank in self.done:
                continue
            self._drain(rank)  # it may have written its last words just before exiting
            if rank in self.lost and proc.exitcode == EXIT_LOST:
                continue
            if rank not in self.done:
                raise RuntimeError(
                    f"checkfree: the process of stage {rank} exited unexpectedly"
                    f" (status {proc.exitcode})"
                )

    def _failure_complete(self, failures: dict[int, tuple[int, ...]]) -> bool:
        steps = set(self.lost.values())
        assert len(steps) == 1, steps
        (step,) = steps
        failed = failures.get(step, ())
        if set(self.lost) != set(failed):
            return False
        survivors = set(range(self.config.model.stages)) - set(failed)
        if self.rejoined != survivors:
            return False
        return all(not self.procs[r][0].is_alive() for r in failed)

    def _replace(self) -> None:
        port = free_port()
        for rank, step in sorted(self.lost.items()):
            proc, conn, joined_at = self.procs.pop(rank)
            proc.join()
            conn.close()
            self.finished.append(ProcessInfo(rank, proc.pid or -1, joined_at, step, proc.exitcode))
            self.start(rank, port, step)
        for rank in sorted(self.rejoined):
            self.procs[rank][1].send(port)
        self.lost.clear()
        self.rejoined.clear()


def run_processes(
    config: TrainConfig, plan: Plan, checkpoint_dir: Path | None, report: LossSink
) -> tuple[ProcessInfo, ...]:
    """Run ``plan`` with one process per stage; returns every process that took part."""
    return _Coordinator(config, plan, checkpoint_dir, report).run()
