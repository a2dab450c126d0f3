"""A search's evaluations spread over the processes of a ``torch.distributed`` group.

Under ``torchrun --nproc-per-node N``, every process runs the same search call. Rank 0 owns
the optimizer, the workdir (history, outputs) and the callback; each round it asks up to N
candidates that need no score of each other (the rest of a generation or CMA population,
:meth:`~lcsc.search.base.Optimizer.ask_many`), broadcasts them, and rank ``r`` scores the
``r``-th; the scores come back to rank 0, which logs and tells them in order. Asking ahead
proposes the same candidates as asking one by one, so for a deterministic objective the
history equals the one-process history, and a killed run resumes from rank 0's workdir like
any other. At the end rank 0 broadcasts the result, so every rank returns the same one.

Only candidates and scores travel (a few KB per round), over the default process group
(gloo on CPU; under NCCL, torch's object collectives need each rank's CUDA device set).

``split="samples"`` instead scores ONE candidate per round on every rank together: the
objective (one that has ``split_samples()``, as :class:`lcsc.objectives.SampleFD` does) scores
its share of the samples on each rank and reduces the feature moments exactly with
:func:`all_reduce_sum`, so every rank holds the same score. It helps when a round holds fewer
candidates than there are ranks, or one evaluation is too big for one process.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from lcsc.errors import SearchError

Vector = npt.NDArray[np.float64]
# What scoring one candidate gave: (score, wall seconds), or the exception it raised (locally)
# or its "Type: message" text (from another rank).
Outcome = tuple[float, float] | BaseException | str
_EVAL_CODE = 1
_RESULT, _FAILED = "result", "failed"
SPLITS = ("candidates", "samples")


class PeerFailed(SearchError):
    """Raised on the ranks whose share of a samples-split score was fine when another's failed."""


def check_split(split: str) -> str:
    """``split`` if it is one of :data:`SPLITS`, else a :class:`SearchError`."""
    if split not in SPLITS:
        raise SearchError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    return split


def for_split(objective: Any, split: str) -> Any:
    """The objective each rank scores with: itself for ``"candidates"``, its
    ``split_samples()`` version for ``"samples"``."""
    if check_split(split) == "candidates":
        return objective
    make = getattr(objective, "split_samples", None)
    if make is None:
        raise SearchError(
            f"split='samples' needs an objective that can split its samples over processes"
            f" (one with split_samples(), as lcsc.objectives.SampleFD has);"
            f" {type(objective).__name__} has none: use split='candidates'"
        )
    return make()


def all_reduce_sum(vector: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The elementwise float64 sum of every rank's ``vector`` (same shape on all ranks), on
    every rank; ``vector`` itself outside a process group. Under NCCL it travels on this
    rank's current CUDA device."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return np.asarray(vector, dtype=np.float64)
    t = torch.as_tensor(np.asarray(vector, dtype=np.float64).copy())
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)  # SUM
    return t.cpu().numpy()


def shard_rows(n: int, rank: int, world: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of ``n`` that rank ``rank`` of ``world`` scores: contiguous,
    balanced blocks (sizes differ by at most one) that cover ``0..n`` in rank order."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in 0..{world - 1}")
    return rank * n // world, (rank + 1) * n // world


def score_timed(score_fn: Callable[[Vector], float], candidate: Vector) -> tuple[float, float]:
    """``(score_fn(copy of candidate), wall seconds)``; the objective may mutate its copy."""
    start = time.perf_counter()
    score = float(score_fn(candidate.copy()))
    return score, time.perf_counter() - start


def _score_or_error(score_fn: Callable[[Vector], float], candidate: Vector) -> Outcome:
    try:
        return score_timed(score_fn, candidate)
    except Exception as exc:
        return exc


class LocalPool:
    """Scores candidates one at a time in this process."""

    size = 1

    def __init__(self, score_fn: Callable[[Vector], float]) -> None:
        self.score_fn = score_fn

    def map(self, candidates: Sequence[Vector]) -> list[Outcome]:
        return [_score_or_error(self.score_fn, c) for c in candidates]

    def close(self) -> None:
        pass


class ProcessGroupPool(LocalPool):
    """Rank 0's side: scores up to ``world_size`` candidates at once, one per rank; or, with
    ``split="samples"``, one candidate on every rank together."""

    def __init__(self, score_fn: Callable[[Vector], float], split: str = "candidates") -> None:
        import torch.distributed as dist

        super().__init__(score_fn)
        self.dist = dist
        self.world = dist.get_world_size()
        self.split = check_split(split)
        self.size = self.world if split == "candidates" else 1
        self._open = True

    def map(self, candidates: Sequence[Vector]) -> list[Outcome]:
        if not 1 <= len(candidates) <= self.size:
            raise ValueError(f"a round holds 1..{self.size} candidates, got {len(candidates)}")
        batch = np.stack(candidates)
        _broadcast_round(self.dist, batch)
        mine = _score_or_error(self.score_fn, candidates[0])
        outcomes = _gather(self.dist, mine, self.world)
        if self.split == "samples":  # one score; a failure is the failing rank's own error
            return [_first_cause([mine, *outcomes[1:]])]
        return [mine, *outcomes[1 : len(candidates)]]

    def close(self) -> None:
        if self._open:  # release the other ranks' serve() loops
            self._open = False
            _broadcast_round(self.dist, None)


# A round is three small tensor collectives (header, candidates, outcomes), plus one object
# collective for the error texts only when a candidate failed.
def _broadcast_round(dist: Any, batch: npt.NDArray[np.float64] | None) -> None:
    import torch

    shape = (0, 0) if batch is None else batch.shape
    dist.broadcast(torch.tensor([_EVAL_CODE if batch is not None else 0, *shape]), src=0)
    if batch is not None:
        dist.broadcast(torch.from_numpy(batch), src=0)


def _receive_round(dist: Any) -> npt.NDArray[np.float64] | None:
    import torch

    header = torch.zeros(3, dtype=torch.int64)
    dist.broadcast(header, src=0)
    code, n, k = (int(v) for v in header)
    if code != _EVAL_CODE:
        return None
    batch = torch.zeros(n, k, dtype=torch.float64)
    dist.broadcast(batch, src=0)
    return batch.numpy()


def _gather(dist: Any, outcome: Outcome, size: int) -> list[Outcome]:
    """Every rank's outcome, in rank order; exceptions come back as ``"Type: message"``."""
    import torch

    failed = isinstance(outcome, (BaseException, str))
    score, wall = (np.nan, 0.0) if failed else outcome  # type: ignore[misc]
    mine = torch.tensor([score, wall, float(failed)], dtype=torch.float64)
    parts = [torch.zeros(3, dtype=torch.float64) for _ in range(size)]
    dist.all_gather(parts, mine)
    out: list[Outcome] = [(float(p[0]), float(p[1])) for p in parts]
    if any(bool(p[2]) for p in parts):  # exceptions need not pickle: send their text
        text = (
            f"{type(outcome).__name__}: {outcome}"
            if isinstance(outcome, BaseException)
            else outcome
        )
        texts: list[Any] = [None] * size
        dist.all_gather_object(texts, text if failed else None)
        out = [t if t is not None else o for t, o in zip(texts, out, strict=True)]
    return out


def _first_cause(outcomes: Sequence[Outcome]) -> Outcome:
    """Rank 0's outcome of a samples-split score, or the first failure that is not a
    :class:`PeerFailed` (the ranks that only heard of another's failure)."""
    peer = f"{PeerFailed.__name__}:"
    for outcome in outcomes:
        if isinstance(outcome, PeerFailed) or (
            isinstance(outcome, str) and outcome.startswith(peer)
        ):
            continue
        if isinstance(outcome, (BaseException, str)):
            return outcome
    return outcomes[0]


def serve(score_fn: Callable[[Vector], float], split: str = "candidates") -> None:
    """A rank > 0's side: score this rank's candidate of each round (with ``split="samples"``:
    its share of the round's one candidate) until rank 0 stops."""
    import torch.distributed as dist

    rank, size = dist.get_rank(), dist.get_world_size()
    mine_index = 0 if check_split(split) == "samples" else rank
    while (batch := _receive_round(dist)) is not None:
        mine: Outcome = (np.nan, 0.0)  # this rank has no candidate this round
        if mine_index < len(batch):
            mine = _score_or_error(score_fn, batch[mine_index].copy())
        _gather(dist, mine, size)


def share_result(result: Any) -> Any:
    """Rank 0 passes its result (or a :class:`SearchError` text); every rank returns it."""
    import torch.distributed as dist

    message: list[Any] = [(_RESULT, result) if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(message, src=0)
    kind, payload = message[0]
    if kind == _FAILED:
        raise SearchError(f"the search failed on rank 0: {payload}")
    return payload


def share_failure(error: BaseException) -> None:
    """Rank 0 tells the other ranks (waiting in :func:`share_result`) that the search failed."""
    import torch.distributed as dist

    dist.broadcast_object_list([(_FAILED, str(error))], src=0)


def active(requested: bool | None) -> bool:
    """Whether a search spreads over processes: ``requested``, or (``None``) whenever a
    ``torch.distributed`` group of more than one process is initialised."""
    if requested is False:
        return False
    import torch.distributed as dist

    on = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    if requested and not on:
        raise SearchError("distributed=True needs an initialised torch.distributed group")
    return on


def is_leader() -> bool:
    """True on rank 0 of an initialised group, and in a process outside any group."""
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def free_local_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a local rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def local_launcher(nproc: int) -> list[str]:
    """The command prefix that runs a Python script (or ``-m module``) on ``nproc`` processes
    of this machine under torchrun: gloo's rendezvous on 127.0.0.1, at a free port."""
    return [
        *(sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc)),
        *("--master-addr", "127.0.0.1", "--master-port", str(free_local_port())),
    ]


@contextlib.contextmanager
def process_group_from_env() -> Iterator[bool]:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1, over gloo) for a block,
    then leave it; yields False when not launched by torchrun. Multi-node: torchrun's usual
    ``--nnodes`` / ``--rdzv-endpoint`` options."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield False
        return
    import torch.distributed as dist

    created = not dist.is_initialized()
    if created:
        dist.init_process_group(backend="gloo")
    try:
        yield True
    finally:
        if created:  # a group left alive aborts the interpreter at exit
            dist.destroy_process_group()
