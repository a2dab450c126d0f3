"""The paper's search objective: FD of a candidate's samples from FIXED noise (Sec. 4, App. B).

Fixed noise makes the score a deterministic function of the weights, so the search compares
candidates, not noise draws. The same objective with another seed and more samples is the
held-out evaluation; search and held-out noise come from disjoint seed streams, so they never
coincide. :class:`SampleFD` works with any generator ``state_dict -> samples``: your own sampler,
or :class:`lcsc.reference.generative.FixedNoiseGenerator` for models trained by ``lcsc train``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Literal

import torch

from lcsc.errors import LcscError
from lcsc.metrics import FeatureStats, compute_features, frechet_distance

Role = Literal["search", "held_out"]
_ROLES: dict[str, int] = {"search": 0, "held_out": 1}
Generator = Callable[[Mapping[str, torch.Tensor]], torch.Tensor]


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
