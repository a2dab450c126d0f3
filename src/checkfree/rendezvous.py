"""The job's meeting point across machines: one ``torch.distributed.TCPStore`` and its keys.

Launcher 0 hosts the store at ``rdzv_endpoint``; every launcher and stage process is a client.
A *generation* ``g`` is one process group over all stages (gloo, formed on the store under the
prefix ``pg<g>/``); a lost stage ends it and the next one starts after the recovery. Keys:

    gen                     the current generation
    g<g>/start, g<g>/failed the step generation g starts at and the stages rebuilt there
    g<g>/assign/<stage>     the launcher that starts a replacement for <stage> in generation g
    g<g>/fault              set (added to) by whoever notices a lost stage or launcher
    g<g>/commit/<step>, g<g>/go/<step>   the agreement to apply a step's update
    g<g>/alive/<stage>      a survivor's count of applied steps, after generation g ended
    g<g>/dead/<stage>       a launcher saw its process of <stage> exit
    node/<r>/hb, node/<r>/incarnation, node/<r>/finished   launcher r's heartbeat and restarts
    loss/train/<k>, loss/val/<k>   the LM-head stage's losses (``lost`` if a failure ate them)
    failed/<k>              stages lost at the start of step k
    done/<stage>, abort     a stage finished; the job failed, with the reason
"""

from __future__ import annotations

import datetime
import time

import torch.distributed as dist

from checkfree.config import LaunchConfig

LOST = "lost"


class Fault(Exception):
    """A stage or launcher of the job was lost: this generation is over."""


class JobStore:
    """String values on a ``TCPStore``; ``get`` returns None for a missing key."""

    def __init__(self, launch: LaunchConfig, master: bool, timeout_s: float) -> None:
        self.store = dist.TCPStore(
            launch.host,
            launch.port,
            is_master=master,
            wait_for_workers=False,
            timeout=datetime.timedelta(seconds=timeout_s),
        )
        self.timeout_s = timeout_s

    def get(self, key: str) -> str | None:
        if not self.store.check([key]):
            return None
        return self.store.get(key).decode()

    def has(self, key: str) -> bool:
        return self.store.check([key])

    def set(self, key: str, value: object) -> None:
        self.store.set(key, str(value))

    def add(self, key: str, n: int = 1) -> int:
        return int(self.store.add(key, n))

    def abort(self, message: str) -> None:
        self.set("abort", message)

    def check_abort(self) -> None:
        message = self.get("abort")
        if message is not None:
            raise Fault(message)

    def agree(self, gen: int, step: int, world: int) -> None:
        """Return once every stage of generation ``gen`` reached ``step``'s update; raise
        :class:`Fault` if the generation ends first. A generation that ends after the
        agreement still applies the update everywhere, so survivors never disagree on it."""
        go = f"g{gen}/go/{step}"
        if self.add(f"g{gen}/commit/{step}") == world:
            self.set(go, 1)
        deadline = time.monotonic() + self.timeout_s
        while not self.has(go):
            if self.has(f"g{gen}/fault") or self.has("abort"):
                raise Fault(f"generation {gen} ended at step {step}")
            if time.monotonic() > deadline:
                raise Fault(f"no agreement on step {step} within {self.timeout_s} s")
            time.sleep(0.0005)


def init_group(store: JobStore, gen: int, rank: int, world: int, timeout_s: float) -> None:
    """Join generation ``gen``'s gloo process group (rank = stage) on the job's store."""
    dist.init_process_group(
        "gloo",
        store=dist.PrefixStore(f"pg{gen}/", store.store),
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=timeout_s),
    )
