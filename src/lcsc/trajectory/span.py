"""Combinations inside a fixed span, from a few precomputed models instead of K checkpoints.

A search in a subspace only asks candidates ``a = V^T c`` for a fixed ``V`` of shape ``(m, K)``
with ``m << K`` (the initial rows and the subspace directions). The model of such a candidate
is ``sum_j c_j theta(V_j)``: ``m`` models computed once, then one small matrix-vector product per
candidate, which reads ``m`` models rather than ``K`` checkpoints. Candidates outside the span
fall back to the trajectory's own ``combine``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt
import torch

# A candidate is in the span when V^T c reproduces it to this (relative) accuracy.
SPAN_TOLERANCE = 1e-10
MAX_BYTES = 2 << 30  # the precomputed models must fit in this much memory


class Combinable(Protocol):
    @property
    def steps(self) -> Sequence[int]: ...

    def combine(
        self, coefficients: npt.NDArray[np.float64], *, keys: Collection[str] | None = None
    ) -> dict[str, torch.Tensor]: ...


class SpanCombiner:
    """``combine(a)`` for ``a`` in the row span of ``vectors`` (shape ``(m, K)``); build with
    :meth:`build`. Floating tensors are summed in float32 (float64 tensors in float64)."""

    def __init__(self, trajectory: Combinable, vectors: npt.NDArray[np.float64]) -> None:
        self.trajectory = trajectory
        self.vectors = np.array(vectors, dtype=np.float64)
        self._solve = np.linalg.pinv(self.vectors.T)  # (m, K): least-squares coordinates
        self._keys: list[str] = []
        self._groups: dict[torch.dtype, tuple[list[tuple[str, torch.Size, int]], torch.Tensor]] = {}
        self._other: dict[str, torch.Tensor] = {}
        self.in_span = 0  # candidates served from the span (the rest fell back)

    @classmethod
    def build(
        cls, trajectory: Combinable, vectors: npt.ArrayLike, max_bytes: int = MAX_BYTES
    ) -> SpanCombiner | None:
        """Precompute the models of ``vectors``' rows; None if they would take more than
        ``max_bytes`` of memory."""
        self = cls(trajectory, np.asarray(vectors, dtype=np.float64))
        first = trajectory.combine(self.vectors[0])
        size = sum(t.numel() * t.element_size() for t in first.values())
        if size * len(self.vectors) > max_bytes:
            return None
        self._keys = list(first)
        rows: dict[torch.dtype, list[torch.Tensor]] = {}
        for j, vector in enumerate(self.vectors):
            state = first if j == 0 else trajectory.combine(vector)
            for dtype, flat in _flatten(state).items():
                rows.setdefault(dtype, []).append(flat)
        for dtype, flats in rows.items():
            keys = [(k, t.shape, t.numel()) for k, t in first.items() if t.dtype == dtype]
            self._groups[dtype] = (keys, torch.stack(flats))  # (m, N) for this dtype
        self._other = {k: t for k, t in first.items() if not t.is_floating_point()}
        return self

    @property
    def steps(self) -> Sequence[int]:
        return self.trajectory.steps

    def combine(
        self, coefficients: npt.NDArray[np.float64], *, keys: Collection[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """``trajectory.combine(coefficients, keys=keys)``, from the span when ``coefficients``
        (shape ``(K,)``) lie in it."""
        a = np.asarray(coefficients, dtype=np.float64)
        c = self._solve @ a
        scale = max(1.0, float(np.abs(a).max()))
        if float(np.abs(self.vectors.T @ c - a).max()) > SPAN_TOLERANCE * scale:
            return self.trajectory.combine(a, **({} if keys is None else {"keys": keys}))
        self.in_span += 1
        chosen = set(self._keys if keys is None else keys)
        out = {k: t.clone() for k, t in self._other.items() if k in chosen}
        for dtype, (layout, matrix) in self._groups.items():
            weights = torch.from_numpy(c).to(matrix.dtype)
            for begin, end, parts in _runs(layout, chosen):  # all keys: one run, one product
                flat = (weights @ matrix[:, begin:end]).to(dtype)
                for key, shape, start, numel in parts:
                    out[key] = flat[start - begin : start - begin + numel].view(shape)
        return {k: out[k] for k in self._keys if k in chosen}


def _runs(
    layout: list[tuple[str, torch.Size, int]], chosen: Collection[str]
) -> list[tuple[int, int, list[tuple[str, torch.Size, int, int]]]]:
    """Maximal runs ``(begin, end, [(key, shape, offset, numel)])`` of consecutive keys of
    ``layout`` (in flat order) that are in ``chosen``."""
    runs: list[tuple[int, int, list[tuple[str, torch.Size, int, int]]]] = []
    offset, previous = 0, False
    for key, shape, numel in layout:
        if key in chosen:
            if previous:
                begin, _, parts = runs[-1]
                runs[-1] = (begin, offset + numel, parts)
            else:
                runs.append((offset, offset + numel, []))
            runs[-1][2].append((key, shape, offset, numel))
        previous = key in chosen
        offset += numel
    return runs


def _flatten(state: dict[str, torch.Tensor]) -> dict[torch.dtype, torch.Tensor]:
    """The floating tensors of ``state`` concatenated per dtype, in the accumulation dtype."""
    parts: dict[torch.dtype, list[torch.Tensor]] = {}
    for t in state.values():
        if t.is_floating_point():
            parts.setdefault(t.dtype, []).append(t.reshape(-1))
    wide = {d: torch.float64 if d == torch.float64 else torch.float32 for d in parts}
    return {d: torch.cat(ps).to(wide[d]) for d, ps in parts.items()}
