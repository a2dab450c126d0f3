"""The pipeline schedule, written once for both modes.

A micro-batch follows a *route*: a sequence of visits to stages. In normal order that is
stage 0 (embedding + blocks), 1, ..., ``S - 1`` (blocks + norm + head). CheckFree+ sends every
odd micro-batch through the *swapped* order, where the blocks of stages 0 and 1 and of stages
``S - 2`` and ``S - 1`` trade places (the embedding and the head stay put)::

    0:embed -> 1:blocks -> 0:blocks -> 2 -> ... -> S-3 -> S-1:blocks -> S-2:blocks -> S-1:head

Schedule (GPipe): all forward visits in micro-batch order, then all backward visits in reverse.
Each process executes, in that global order, only the visits to stages it holds, receiving its
input from the previous visit's stage and sending its output to the next one. Since every
process follows the same global order and each message has exactly one sender and one
receiver, the earliest unfinished message always has both ends waiting on it: no deadlock,
even when a route returns to a stage. In one process (all stages held) the same code runs with
a :class:`LocalTransport`, so both modes compute the same numbers in the same order.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from checkfree.stage import Shapes, StageWorker


@dataclass(frozen=True)
class Visit:
    """What a micro-batch does on one stage: embed tokens, run the blocks, and/or the head."""

    stage: int
    embed: bool = False
    blocks: bool = True
    head: bool = False


def route(stages: int, swapped: bool = False) -> tuple[Visit, ...]:
    """The visits of one micro-batch through ``stages`` stages (see the module docstring)."""
    if not swapped:
        middle = [Visit(i) for i in range(1, stages - 1)]
        return (Visit(0, embed=True), *middle, Visit(stages - 1, head=True))
    order = list(range(stages))
    order[0], order[1] = order[1], order[0]
    order[-2], order[-1] = order[-1], order[-2]
    return (
        Visit(0, embed=True, blocks=False),
        *(Visit(i) for i in order),
        Visit(stages - 1, blocks=False, head=True),
    )


def routes(strategy: str, stages: int, micro_batches: int) -> list[tuple[Visit, ...]]:
    """Per micro-batch routes: CheckFree+ swaps every odd micro-batch, others never swap."""
    swap = strategy == "checkfree+"
    return [route(stages, swap and m % 2 == 1) for m in range(micro_batches)]


class Transport(Protocol):
    """Point-to-point tensor messages between stages."""

    def send(self, tensor: torch.Tensor, src: int, dst: int) -> None: ...

    def recv(
        self, shape: Sequence[int], dtype: torch.dtype, src: int, dst: int
    ) -> torch.Tensor: ...


class LocalTransport:
    """All stages in one process: a FIFO per (source, destination) pair."""

    def __init__(self) -> None:
        self._queues: dict[tuple[int, int], deque[torch.Tensor]] = defaultdict(deque)

    def send(self, tensor: torch.Tensor, src: int, dst: int) -> None:
        self._queues[src, dst].append(tensor)

    def recv(self, shape: Sequence[int], dtype: torch.dtype, src: int, dst: int) -> torch.Tensor:
        out = self._queues[src, dst].popleft()
        assert tuple(out.shape) == tuple(shape) and out.dtype == dtype, (out.shape, shape)
        return out


class DistTransport:
    """One process per stage (rank = stage index): blocking ``torch.distributed`` send/recv."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def send(self, tensor: torch.Tensor, src: int, dst: int) -> None:
        import torch.distributed as dist

        dist.send(tensor.detach().to(self.device).contiguous(), dst)

    def recv(self, shape: Sequence[int], dtype: torch.dtype, src: int, dst: int) -> torch.Tensor:
        import torch.distributed as dist

        out = torch.empty(tuple(shape), dtype=dtype, device=self.device)
        dist.recv(out, src)
        return out


# -- the passes ---------------------------------------------------------------------------------


def forward_backward(
    workers: Mapping[int, StageWorker],
    transport: Transport,
    paths: Sequence[tuple[Visit, ...]],
    tokens: torch.Tensor,
    targets: torch.Tensor,
    dim: int,
) -> list[float]:
    """One iteration's forwards and backwards (no update) over ``len(paths)`` micro-batches.

    ``tokens`` and ``targets`` are the whole batch ``[B, T]``, split into equal micro-batches.
    Gradients accumulate in the held stages' ``.grad``. Returns the micro-batch losses if this
    process holds the LM head, else an empty list.
    """
    m_count = len(paths)
    tok, tgt = tokens.chunk(m_count), targets.chunk(m_count)
    shape = (tok[0].shape[0], tok[0].shape[1], dim)
    losses = _forward(workers, transport, paths, tok, tgt, shape)
    for m in reversed(range(m_count)):
        path = paths[m]
        for h in reversed(range(len(path))):
            w = workers.get(path[h].stage)
            if w is None:
                continue
            last = h == len(path) - 1
            grad = (
                None if last else transport.recv(shape, torch.float32, path[h + 1].stage, w.index)
            )
            grad_in = w.backward((m, h), grad, 1.0 / m_count)
            if h > 0:
                assert grad_in is not None
                transport.send(grad_in, w.index, path[h - 1].stage)
    return losses


def _forward(
    workers: Mapping[int, StageWorker],
    transport: Transport,
    paths: Sequence[tuple[Visit, ...]],
    tok: Sequence[torch.Tensor],
    tgt: Sequence[torch.Tensor],
    shape: tuple[int, int, int],
) -> list[float]:
    losses: list[float] = []
    for m, path in enumerate(paths):
        for h, v in enumerate(path):
            w = workers.get(v.stage)
            if w is None:
                continue
            x = (
                tok[m]
                if h == 0
                else transport.recv(shape, torch.float32, path[h - 1].stage, w.index)
            )
            out = w.forward((m, h), v.embed, v.blocks, v.head, x, tgt[m] if v.head else None)
            if h + 1 < len(path):
                transport.send(out, w.index, path[h + 1].stage)
            else:
                losses.append(float(out))
    return losses


@torch.no_grad()
def evaluate(
    workers: Mapping[int, StageWorker],
    transport: Transport,
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    stages: int,
    micro_batches: int,
    dim: int,
) -> float | None:
    """Mean validation loss over ``batches`` in normal stage order; None off the head stage."""
    paths = [route(stages)] * micro_batches
    losses: list[float] = []
    for tokens, targets in batches:
        tok, tgt = tokens.chunk(micro_batches), targets.chunk(micro_batches)
        shape = (tok[0].shape[0], tok[0].shape[1], dim)
        losses += _forward(workers, transport, paths, tok, tgt, shape)
    return sum(losses) / len(losses) if losses else None


# -- state messages -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Transfer:
    """One state message: stage ``src`` sends ``kind`` to stage ``dst``."""

    src: int
    dst: int
    kind: str


def pack(tensors: Mapping[str, torch.Tensor], shapes: Shapes) -> torch.Tensor:
    """Flatten ``tensors`` (the keys of ``shapes``, sorted) into one float64 CPU vector."""
    parts = [tensors[k].detach().reshape(-1).to("cpu", torch.float64) for k in sorted(shapes)]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)


def unpack(flat: torch.Tensor, shapes: Shapes) -> dict[str, torch.Tensor]:
    """Inverse of :func:`pack` (float32 values survive the float64 round trip exactly)."""
    out: dict[str, torch.Tensor] = {}
    offset = 0
    for k in sorted(shapes):
        shape, dtype = shapes[k]
        n = 1
        for s in shape:
            n *= s
        out[k] = flat[offset : offset + n].reshape(shape).to(dtype)
        offset += n
    assert offset == flat.numel()
    return out


def exchange(
    workers: Mapping[int, StageWorker],
    transport: Transport,
    transfers: Sequence[Transfer],
    payload: Callable[[StageWorker, Transfer], Mapping[str, torch.Tensor]],
    shapes: Callable[[Transfer], Shapes],
) -> dict[Transfer, dict[str, torch.Tensor]]:
    """Run ``transfers`` in order; returns what the held stages received, by transfer.

    Same global-order argument as the pipeline passes: deadlock-free with blocking messages.
    """
    received: dict[Transfer, dict[str, torch.Tensor]] = {}
    for t in transfers:
        s = shapes(t)
        if t.src in workers:
            transport.send(pack(payload(workers[t.src], t), s), t.src, t.dst)
        if t.dst in workers:
            n = sum(_numel(shape) for shape, _ in s.values())
            received[t] = unpack(transport.recv((n,), torch.float64, t.src, t.dst), s)
    return received


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n
