"""The paper's search objective: FD of a candidate's samples from FIXED noise (Sec. 4, App. B).

Fixed noise makes the score a deterministic function of the weights, so the search compares
candidates, not noise draws. The same objective with another seed and more samples is the
held-out evaluation; search and held-out noise come from disjoint seed streams, so they never
coincide. :class:`SampleFD` works with any generator ``state_dict -> samples``: your own sampler,
or :class:`lcsc.reference.generative.FixedNoiseGenerator` for models trained by ``lcsc train``.

:meth:`SampleFD.split_samples` scores one candidate with the processes of a
``torch.distributed`` group together: each its block of rows of the same fixed noise, its
features' moments summed over the group in float64 (as EDM2's FID code does), the FD computed
on every rank from the sums; equal to the one-process FD up to float64 rounding of the sums
when each block samples bitwise alike (see docs/search.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import torch

from lcsc.errors import LcscError
from lcsc.metrics import FeatureMoments, FeatureStats, compute_features, frechet_distance

Role = Literal["search", "held_out"]
_ROLES: dict[str, int] = {"search": 0, "held_out": 1}
Generator = Callable[[Mapping[str, torch.Tensor]], torch.Tensor]


@runtime_checkable
class ShardableGenerator(Protocol):
    """A generator of ``len(g)`` samples whose rows ``[start, stop)`` can be sampled alone."""

    def __call__(self, state_dict: Mapping[str, torch.Tensor]) -> torch.Tensor: ...

    def __len__(self) -> int: ...

    def shard(self, start: int, stop: int) -> Generator:
        """The generator of rows ``[start, stop)`` of the same fixed noise."""
        ...


def fixed_noise(
    n: int, shape: tuple[int, ...], seed: int, role: Role, stream: int = 0
) -> torch.Tensor:
    """Noise (n, *shape) ~ N(0, I), the same whatever the batch size used later.

    The generator seed is ``4 * seed + 2 * stream + role`` (role 0: search, 1: held-out; stream
    0: initial noise, 1: consistency re-noising), an injective map: search and held-out noise
    are different streams even for equal ``seed``.
    """
    if role not in _ROLES:
        raise LcscError(f"noise role must be 'search' or 'held_out', got {role!r}")
    if stream not in (0, 1) or seed < 0:
        raise LcscError(f"noise seed must be >= 0 (got {seed}) and stream 0 or 1 (got {stream})")
    g = torch.Generator().manual_seed(4 * int(seed) + 2 * stream + _ROLES[role])
    return torch.randn(n, *shape, generator=g)


class SampleFD:
    """``state_dict -> FD`` of its samples against reference statistics (lower is better).

    A candidate whose samples are not finite scores NaN (the search ranks it last).
    ``batch_size`` bounds the extractor's batches (default: all samples at once).
    """

    def __init__(
        self,
        generator: Generator,
        extractor: torch.nn.Module,
        reference: FeatureStats,
        batch_size: int | None = None,
    ) -> None:
        self.generator, self.extractor, self.reference = generator, extractor, reference
        self.batch_size = batch_size

    def __call__(self, state_dict: Mapping[str, torch.Tensor]) -> float:
        x = self.generator(state_dict)
        if not bool(torch.isfinite(x).all()):
            return math.nan
        feats = compute_features(self.extractor, x, batch_size=self.batch_size or len(x))
        return frechet_distance(self.reference, FeatureStats.from_features(feats))

    def split_samples(self) -> SplitSampleFD:
        """This objective with the samples of each call split over the current
        ``torch.distributed`` group (every rank must call it with the same weights)."""
        if not isinstance(self.generator, ShardableGenerator):
            raise LcscError(
                f"SampleFD.split_samples: the generator ({type(self.generator).__name__}) must"
                " have __len__ and shard(start, stop), as FixedNoiseGenerator has"
            )
        return SplitSampleFD(self)


class SplitSampleFD:
    """``state_dict -> FD``, scored by every rank of the process group together.

    Rank ``r`` of ``W`` samples rows :func:`~lcsc.search.distributed.shard_rows` of the fixed
    noise and computes their features. Two ``all_reduce`` sums in float64 follow: ``[failed,
    not finite, n, sum f]``, whose mean every rank then centres on, and the
    :class:`~lcsc.metrics.FeatureMoments` about that mean (two passes, like
    :meth:`FeatureStats.from_features`: one pass about a fixed shift loses digits to
    cancellation, and a feature that never varies would get a round-off variance). Every rank
    returns the same FD (NaN when any sample is not finite). A rank whose share failed raises
    its error, the others :class:`~lcsc.search.distributed.PeerFailed`; the first reduction
    happens either way, so no rank is left waiting. Outside a group: one share.
    """

    def __init__(self, objective: SampleFD) -> None:
        self.objective = objective
        self._shards: dict[tuple[int, int], Generator | None] = {}

    def _shard(self, rank: int, world: int) -> Generator | None:
        from lcsc.search.distributed import shard_rows

        if (rank, world) not in self._shards:
            generator = self.objective.generator
            start, stop = shard_rows(len(generator), rank, world)  # type: ignore[arg-type]
            self._shards[rank, world] = (
                generator.shard(start, stop) if stop > start else None  # type: ignore[attr-defined]
            )
        return self._shards[rank, world]

    def _features(self, state_dict: Mapping[str, torch.Tensor]) -> np.ndarray | None:
        """This rank's features (n_r, D), or None when a sample is not finite."""
        import torch.distributed as dist

        grouped = dist.is_available() and dist.is_initialized()
        rank, world = (dist.get_rank(), dist.get_world_size()) if grouped else (0, 1)
        generator = self._shard(rank, world)
        if generator is None:  # more ranks than samples
            return np.zeros((0, self.objective.reference.dim))
        x = generator(state_dict)
        if not bool(torch.isfinite(x).all()):
            return None
        batch = self.objective.batch_size or len(x)
        return compute_features(self.objective.extractor, x, batch_size=batch)

    def __call__(self, state_dict: Mapping[str, torch.Tensor]) -> float:
        from lcsc.search.distributed import PeerFailed, all_reduce_sum

        reference = self.objective.reference
        d = reference.dim
        first, feats, error = np.zeros(3 + d), None, None  # [failed, not finite, n, sum f]
        try:
            feats = self._features(state_dict)
            if feats is None:
                first[1] = 1.0
            elif feats.shape[1] != d:
                raise LcscError(f"features have D={feats.shape[1]}, the reference D={d}")
            else:
                first[2], first[3:] = len(feats), feats.sum(axis=0)
        except Exception as exc:  # reduce anyway: the other ranks wait in the all_reduce
            first[0], error = 1.0, exc
        first = all_reduce_sum(first)
        if error is not None:
            raise error
        if first[0]:
            raise PeerFailed("another process failed scoring its share of the samples")
        if first[1]:
            return math.nan
        mean = first[3:] / first[2]
        local = FeatureMoments.of(feats, mean).to_vector()  # type: ignore[arg-type]
        merged = FeatureMoments.from_vector(all_reduce_sum(local), mean)
        return frechet_distance(reference, FeatureStats.from_moments(merged))
