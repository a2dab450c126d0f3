"""Rebuilding lost stages: the recovery formulas and who sends what to whom.

CheckFree (intermediate stage ``i`` lost) sets its transformer blocks to

    W_i = (w_{i-1} W_{i-1} + w_{i+1} W_{i+1}) / (w_{i-1} + w_{i+1}),   w_j = g_j + 1e-4,

where ``g_j`` is stage ``j``'s last gradient norm after clipping. The rebuilt stage starts with
a fresh AdamW state and trains at ``recovery_lr_factor`` (1.1) times the scheduled learning
rate. The ablations replace only the formula: ``copy`` takes ``W_{i-1}``, ``uniform`` uses
``w = 1``, ``random`` keeps the replacement's fresh random initialisation.

CheckFree+ rebuilds an intermediate stage the same way and an edge stage by copying its one
neighbour's blocks (trained to stand in for it by the swapped micro-batches) plus the embedding
(stage 0) or final norm and LM head (stage ``S - 1``) from the replica that neighbour keeps.
Redundant computation restores the whole state (weights, AdamW, learning-rate factor) from the
replica on stage ``(i + 1) mod S``: as if nothing had happened. Checkpoint rollback needs no
messages (every stage reloads its file; see :mod:`checkfree.runner`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from checkfree.config import TrainConfig
from checkfree.model import BLOCK_PREFIX, EMBED_KEYS, HEAD_KEYS
from checkfree.pipeline import Transfer
from checkfree.stage import Shapes, StageWorker, param_shapes, state_shapes

#: Added to each gradient norm so that two zero norms still give a defined average.
WEIGHT_EPS = 1e-4


def checkfree_weight(grad_norm: float) -> float:
    """CheckFree's weight of a neighbour: its last clipped gradient norm plus ``1e-4``."""
    return float(grad_norm) + WEIGHT_EPS


def weighted_average(
    left: Mapping[str, torch.Tensor],
    right: Mapping[str, torch.Tensor],
    w_left: float,
    w_right: float,
) -> dict[str, torch.Tensor]:
    """``(w_left * left + w_right * right) / (w_left + w_right)``, name by name.

    Computed in float64 and returned in each tensor's dtype.
    """
    if set(left) != set(right):
        raise ValueError("weighted_average: the two stages hold different parameter names")
    total = w_left + w_right
    return {
        k: ((w_left * left[k].double() + w_right * right[k].double()) / total).to(left[k].dtype)
        for k in left
    }


def _edge_neighbour(stages: int, index: int) -> int | None:
    return 1 if index == 0 else stages - 2 if index == stages - 1 else None


def recovery_transfers(strategy: str, stages: int, failed: tuple[int, ...]) -> list[Transfer]:
    """The messages that rebuild ``failed`` (checked recoverable by the plan), in order."""
    out: list[Transfer] = []
    for i in sorted(failed):
        if strategy == "redundant":
            out.append(Transfer((i + 1) % stages, i, "replica"))
        elif strategy == "checkfree+" and _edge_neighbour(stages, i) is not None:
            n = _edge_neighbour(stages, i)
            assert n is not None
            out += [Transfer(n, i, "blocks"), Transfer(n, i, "replica")]
        elif strategy in ("checkfree", "checkfree+", "uniform"):
            out += [Transfer(i - 1, i, "blocks"), Transfer(i + 1, i, "blocks")]
        elif strategy == "copy":
            out.append(Transfer(i - 1, i, "blocks"))
    return out


def replica_transfers(strategy: str, stages: int) -> list[Transfer]:
    """Messages that refresh the replicas after every update (and after a recovery).

    ``redundant``: each stage sends its whole state to stage ``(i + 1) mod S`` (a ring, sent in
    stage order, which is deadlock-free with blocking messages). ``checkfree+``: stage 0 sends
    its embedding to stage 1, stage ``S - 1`` its norm and head to stage ``S - 2``.
    """
    if strategy == "redundant":
        return [Transfer(i, (i + 1) % stages, "own") for i in range(stages)]
    if strategy == "checkfree+":
        return [Transfer(0, 1, "own"), Transfer(stages - 1, stages - 2, "own")]
    return []


def _edge_param_shapes(config: TrainConfig, index: int) -> Shapes:
    keys = EMBED_KEYS if index == 0 else HEAD_KEYS
    shapes = param_shapes(config.model, index)
    return {f"param/{k}": (shapes[k], torch.float32) for k in keys}


def transfer_shapes(config: TrainConfig, t: Transfer) -> Shapes:
    """Names, shapes and dtypes of the tensors in message ``t``."""
    if t.kind == "blocks":
        shapes = param_shapes(config.model, t.src)
        out: Shapes = {
            f"param/{k}": (s, torch.float32)
            for k, s in shapes.items()
            if k.startswith(BLOCK_PREFIX)
        }
        out["meta/grad_norm"] = ((), torch.float64)
        return out
    owner = t.dst if t.kind == "replica" else t.src  # whose state the message carries
    if config.strategy == "redundant":
        return state_shapes(config.model, owner)
    return _edge_param_shapes(config, owner)


def transfer_payload(worker: StageWorker, t: Transfer) -> dict[str, torch.Tensor]:
    """What ``worker`` (stage ``t.src``) sends in message ``t``."""
    if t.kind == "blocks":
        out = {f"param/{k}": v for k, v in worker.block_tensors().items()}
        out["meta/grad_norm"] = torch.tensor(worker.grad_norm, dtype=torch.float64)
        return out
    if t.kind == "replica":
        return worker.replica
    if worker.config.strategy == "redundant":
        return worker.state_tensors()
    keys = EMBED_KEYS if worker.index == 0 else HEAD_KEYS
    return {f"param/{k}": worker.params[k].detach() for k in keys}


def store_replicas(
    workers: Mapping[int, StageWorker], received: Mapping[Transfer, dict[str, torch.Tensor]]
) -> None:
    """Keep each received ``own`` message as the receiving stage's replica (cloned)."""
    for t, tensors in received.items():
        workers[t.dst].replica = {k: v.clone() for k, v in tensors.items()}


def apply_recovery(
    worker: StageWorker,
    config: TrainConfig,
    received: Mapping[Transfer, dict[str, torch.Tensor]],
) -> None:
    """Rebuild the freshly created ``worker`` from the messages addressed to it."""
    strategy, i, stages = config.strategy, worker.index, config.model.stages
    mine = {t: v for t, v in received.items() if t.dst == i}
    if strategy == "redundant":
        (tensors,) = mine.values()
        worker.load_state_tensors(tensors)
        return
    blocks = {t.src: v for t, v in mine.items() if t.kind == "blocks"}
    replica = next((v for t, v in mine.items() if t.kind == "replica"), None)

    def strip(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k[len("param/") :]: v for k, v in tensors.items() if k.startswith("param/")}

    if strategy == "checkfree+" and _edge_neighbour(stages, i) is not None:
        assert replica is not None
        new = strip(blocks[_edge_neighbour(stages, i)])
        new.update(strip(replica))
    elif strategy in ("checkfree", "checkfree+", "uniform"):
        left, right = blocks[i - 1], blocks[i + 1]
        if strategy == "uniform":
            w_left = w_right = 1.0
        else:
            w_left = checkfree_weight(float(left["meta/grad_norm"]))
            w_right = checkfree_weight(float(right["meta/grad_norm"]))
        new = weighted_average(strip(left), strip(right), w_left, w_right)
    elif strategy == "copy":
        new = strip(blocks[i - 1])
    else:  # random: the replacement's fresh initialisation is the recovery
        new = {}
    worker.load_params(new)
    worker.lr_factor = config.recovery_lr_factor
