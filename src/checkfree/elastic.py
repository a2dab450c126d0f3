"""Multi-machine mode: one launcher per machine, meeting on a ``TCPStore`` (torchrun's names).

Each launcher (``checkfree train --processes --nnodes N --node-rank R --rdzv-endpoint
HOST:PORT``) starts the stage processes it hosts (stage ``i`` on launcher ``i % N`` at first),
heartbeats to the store and watches its processes. Launcher 0 hosts the store and leads the
recoveries: when a generation ends (a stage process exited, a launcher went silent or came
back restarted, or a survivor's gloo call failed) it waits until every stage is either a
survivor that reported its applied steps or lost, checks that the strategy can rebuild the lost
ones, picks a launcher for each replacement (its own launcher if that is alive or comes back
within ``rejoin_wait_s``, else the live launcher hosting the fewest stages) and opens the next
generation. Replacements are freshly initialised (never the old weights) and rebuilt by the
strategy from their neighbours. Every launcher reads the losses from the store into its log.

Only the neighbour strategies (checkfree, copy, uniform, random) run across machines: they
keep no replicas and no checkpoint files, so a survivor's memory is all a recovery needs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace

from checkfree.config import NEIGHBOUR_STRATEGIES, LaunchConfig, TrainConfig
from checkfree.distributed import ProcessInfo, process_context
from checkfree.elastic_worker import worker_main
from checkfree.plan import Plan, check_recoverable
from checkfree.rendezvous import LOST, Fault, JobStore
from checkfree.runner import LossSink
from lcsc.errors import LcscError

_POLL_S = 0.02
_HEARTBEAT_S = 0.25


def check_launch(config: TrainConfig) -> None:
    """Raise :class:`LcscError` unless ``config`` can run across machines."""
    if not config.processes:
        raise LcscError("TrainConfig.processes: a multi-machine run (--nnodes) needs --processes")
    if config.device != "cpu":
        raise LcscError("TrainConfig.device: multi-machine runs use gloo on CPU only")
    if config.strategy not in NEIGHBOUR_STRATEGIES:
        raise LcscError(
            f"TrainConfig.strategy: {config.strategy!r} cannot run across machines (--nnodes);"
            f" use one of {', '.join(NEIGHBOUR_STRATEGIES)}, which keep no replicas or files"
        )


class Launcher:
    """One machine's launcher; :meth:`run` returns when every stage has finished."""

    def __init__(
        self,
        config: TrainConfig,
        plan: Plan,
        launch: LaunchConfig,
        report: LossSink,
        on_failure: Callable[[int, tuple[int, ...]], None],
    ) -> None:
        check_launch(config)
        self.config, self.plan, self.launch = config, plan, launch
        self.report, self.on_failure = report, on_failure
        self.world = config.model.stages
        self.rank = launch.node_rank
        self.store = JobStore(launch, master=self.rank == 0, timeout_s=config.timeout_s)
        self.ctx = process_context(__name__)
        self.procs: dict[int, tuple[object, int | None]] = {}  # stage -> (process, joined_at)
        self.finished: list[ProcessInfo] = []
        self.pending: list[ProcessInfo] = []  # lost processes, until the failure step is known
        self.gen = 0
        self.next_loss = {"train": 1, "val": 0}
        self.failures: dict[int, tuple[int, ...]] = {}
        self._last_empty: int | None = None  # step of the last regroup that lost nothing
        # Leader state: where each stage runs (launcher, its incarnation), launchers' liveness.
        self.where = {i: (i % launch.nnodes, 1) for i in range(self.world)}
        self.seen: dict[int, tuple[int, float]] = {}  # launcher -> (heartbeat, when it changed)

    # -- processes ----------------------------------------------------------------------------

    def _start(self, stage: int, gen: int, joined_at: int | None, failed: tuple[int, ...]):
        proc = self.ctx.Process(
            target=worker_main,
            args=(stage, self.config, self.launch, gen, joined_at, failed),
            name=f"checkfree-stage{stage}",
            daemon=True,
        )
        proc.start()
        self.procs[stage] = (proc, joined_at)

    def _reap(self) -> None:
        """Note exited stage processes; a lost one ends the generation."""
        for stage, (proc, joined_at) in list(self.procs.items()):
            if proc.is_alive():
                continue
            del self.procs[stage]
            done = self.store.has(f"done/{stage}") and proc.exitcode == 0
            info = ProcessInfo(stage, proc.pid or -1, joined_at, None, proc.exitcode)
            if done:
                self.finished.append(info)
            else:  # lost at the step the next generation starts from
                self.pending.append(info)
                self.store.check_abort()
                self.store.set(f"g{self.gen}/dead/{stage}", proc.exitcode)
                self.store.add(f"g{self.gen}/fault")

    def _heartbeat_forever(self, stop: threading.Event) -> None:
        """Beat from a thread with its own connection: starting processes blocks the loop."""
        store = JobStore(self.launch, master=False, timeout_s=self.config.timeout_s)
        while not stop.wait(_HEARTBEAT_S):
            store.add(f"node/{self.rank}/hb")

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> tuple[ProcessInfo, ...]:
        store = self.store
        incarnation = store.add(f"node/{self.rank}/incarnation")
        if self.rank == 0 and store.get("gen") is None:
            store.set("gen", 0)
        if incarnation == 1:  # first start: this launcher's share of the stages
            for stage in range(self.rank, self.world, self.launch.nnodes):
                self._start(stage, 0, None, ())
        else:  # restarted: wait for the leader to give this launcher replacements
            self.gen = int(store.get("gen") or 0)
        last_event = time.monotonic()
        ok = False
        stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat_forever, args=(stop,), daemon=True)
        beat.start()
        try:
            while not self._complete():
                store.check_abort()
                self._reap()
                if self.rank == 0:
                    self._lead()
                self._follow()
                if self._read_losses():
                    last_event = time.monotonic()
                if time.monotonic() - last_event > self.config.timeout_s:
                    raise LcscError(f"checkfree: the run stalled for {self.config.timeout_s} s")
                time.sleep(_POLL_S)
            store.set(f"node/{self.rank}/finished", 1)
            if self.rank == 0:  # keep the store up until the others have read everything
                self._wait_others()
            ok = True
        except Fault as exc:
            raise LcscError(f"checkfree: the job failed: {str(exc).splitlines()[0]}") from None
        finally:
            stop.set()
            for stage, (proc, joined_at) in self.procs.items():
                proc.join(timeout=10 if ok else 0.5)
                if proc.is_alive():
                    proc.kill()
                    proc.join(timeout=10)
                self.finished.append(
                    ProcessInfo(stage, proc.pid or -1, joined_at, None, proc.exitcode)
                )
        every = self.finished + self.pending
        return tuple(sorted(every, key=lambda p: (p.joined_at or -1, p.stage)))

    def _complete(self) -> bool:
        done = all(self.store.has(f"done/{i}") for i in range(self.world))
        n = len(self.plan.slots)
        return done and self.next_loss["train"] > n and self.next_loss["val"] > n

    def _wait_others(self) -> None:
        deadline = time.monotonic() + min(30.0, self.config.timeout_s)
        while time.monotonic() < deadline:
            live = [r for r in range(1, self.launch.nnodes) if self._alive(r)]
            if all(self.store.has(f"node/{r}/finished") for r in live):
                return
            time.sleep(_POLL_S)

    def _follow(self) -> None:
        """Start the replacements a new generation assigns to this launcher."""
        gen = int(self.store.get("gen") or 0)
        if gen <= self.gen:
            return
        start = int(self.store.get(f"g{gen}/start") or 0)
        failed = tuple(int(v) for v in (self.store.get(f"g{gen}/failed") or "").split(",") if v)
        for stage in failed:
            if self.store.get(f"g{gen}/assign/{stage}") == str(self.rank):
                self._start(stage, gen, start, failed)
        self.finished += [replace(p, lost_at=start) for p in self.pending]
        self.pending.clear()
        self.gen = gen

    def _read_losses(self) -> bool:
        """Feed the losses that arrived, in step order, to the log; True if any did."""
        got = False
        slots = self.plan.slots
        while self.next_loss["train"] <= len(slots):
            k = self.next_loss["train"]
            value = self.store.get(f"loss/train/{k}")
            if value is None:
                break
            failed = self.store.get(f"failed/{k - 1}")
            if failed:
                self.on_failure(k - 1, tuple(int(v) for v in failed.split(",")))
            self.report("train", k, None if value == LOST else float(value))
            self.next_loss["train"] += 1
            got = True
        while self.next_loss["val"] <= len(slots):
            k = self.next_loss["val"]
            if k > 0 and not slots[k - 1].evaluate:
                self.next_loss["val"] += 1
                continue
            value = self.store.get(f"loss/val/{k}")
            if value is None:
                break
            self.report("val", k, None if value == LOST else float(value))
            self.next_loss["val"] += 1
            got = True
        return got

    # -- the leader (launcher 0) --------------------------------------------------------------

    def _alive(self, node: int) -> bool:
        """Launcher ``node`` heartbeat within ``heartbeat_timeout_s`` (as seen from here)."""
        if node == self.rank:
            return True
        beat = int(self.store.get(f"node/{node}/hb") or 0)
        now = time.monotonic()
        last = self.seen.get(node)
        if last is None or last[0] != beat:
            self.seen[node] = (beat, now)
            return True
        return now - last[1] <= self.launch.heartbeat_timeout_s

    def _incarnation(self, node: int) -> int:
        return int(self.store.get(f"node/{node}/incarnation") or 0)

    def _lost_launchers(self) -> set[int]:
        """Launchers whose processes are gone: silent, or restarted since they got them."""
        hosts = {node for node, _ in self.where.values()}
        out = set()
        for node in hosts:
            known = {inc for n, inc in self.where.values() if n == node}
            if not self._alive(node) or self._incarnation(node) > max(known):
                out.add(node)
        return out

    def _lead(self) -> None:
        gen, store = self.gen, self.store
        if self._lost_launchers() and not store.has(f"g{gen}/fault"):
            store.add(f"g{gen}/fault")
        if store.has(f"g{gen}/fault") and int(store.get("gen") or 0) == gen:
            self._recover(gen)

    def _recover(self, gen: int) -> None:
        store, world = self.store, self.world
        deadline = time.monotonic() + self.config.timeout_s
        while True:
            self._reap()
            gone = self._lost_launchers()
            alive = {i: store.get(f"g{gen}/alive/{i}") for i in range(world)}
            alive = {i: int(v) for i, v in alive.items() if v is not None}
            dead = {i for i in range(world) if store.has(f"g{gen}/dead/{i}")}
            dead |= {i for i, (node, _) in self.where.items() if node in gone}
            if set(alive) | dead >= set(range(world)):
                break
            if time.monotonic() > deadline:
                raise LcscError(f"checkfree: no recovery within {self.config.timeout_s} s")
            time.sleep(_POLL_S)
        failed = tuple(sorted(set(range(world)) - set(alive)))
        steps = set(alive.values())
        # Nothing lost (a launcher late to beat, say): regroup once at a step, then give up.
        again = not failed and self._last_empty in steps
        if len(steps) != 1 or again:
            errors = [store.get(f"g{gen}/error/{i}") for i in range(world)]
            why = "; ".join(e for e in errors if e) or f"survivors at steps {sorted(steps)}"
            store.abort(f"generation {gen} ended without a recoverable loss ({why})")
            raise Fault(why)
        (step,) = steps
        self._last_empty = None if failed else step
        try:
            check_recoverable(self.config.strategy, world, failed, step)
        except LcscError as exc:
            store.abort(str(exc))
            raise
        self._mark_lost_losses(step)
        hosts = self._hosts(failed)
        new = gen + 1
        store.set(f"g{new}/start", step)
        store.set(f"g{new}/failed", ",".join(map(str, failed)))
        for stage, node in hosts.items():
            store.set(f"g{new}/assign/{stage}", node)
            self.where[stage] = (node, self._incarnation(node))
        if failed:
            store.set(f"failed/{step}", ",".join(map(str, failed)))
        store.set("gen", new)

    def _mark_lost_losses(self, step: int) -> None:
        """Losses that died with the LM-head stage or an interrupted evaluation: ``lost``."""
        if step > 0 and not self.store.has(f"loss/train/{step}"):
            self.store.set(f"loss/train/{step}", LOST)
        evaluated = step == 0 or self.plan.slots[step - 1].evaluate
        if evaluated and not self.store.has(f"loss/val/{step}"):
            self.store.set(f"loss/val/{step}", LOST)

    def _hosts(self, failed: tuple[int, ...]) -> dict[int, int]:
        """A launcher per lost stage: its own if alive or back in time, else the least busy."""
        deadline = time.monotonic() + self.launch.rejoin_wait_s
        origin = {i: self.where[i] for i in failed}
        while True:
            back = {i: node for i, (node, _) in origin.items() if self._alive(node)}
            if len(back) == len(failed) or time.monotonic() >= deadline:
                break
            time.sleep(_POLL_S)
        load = {n: 0 for n in range(self.launch.nnodes) if self._alive(n)}
        for i, (node, _) in self.where.items():
            if i not in failed and node in load:
                load[node] += 1
        out = {}
        for i in failed:
            node = back.get(i)
            if node is None:
                node = min(load, key=lambda n: (load[n], n))
            out[i] = node
            load[node] = load.get(node, 0) + 1
        return out


def run_elastic(
    config: TrainConfig,
    plan: Plan,
    launch: LaunchConfig,
    report: LossSink,
    on_failure: Callable[[int, tuple[int, ...]], None],
) -> tuple[ProcessInfo, ...]:
    """Run this machine's share of ``plan``; returns the stage processes this launcher ran."""
    return Launcher(config, plan, launch, report, on_failure).run()
