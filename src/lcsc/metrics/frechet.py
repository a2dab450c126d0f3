"""Gaussian feature statistics and the Fréchet distance between them (the "F" in FID).

Everything is computed in float64: FID differences between good candidates are small, and
float32 covariance sums over thousands of samples lose exactly the digits that tell them apart.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lcsc.atomic import atomic_path
from lcsc.errors import LcscError

if TYPE_CHECKING:
    import torch

_KEYS = ("mean", "cov", "n")


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64, copy=True)
    a.setflags(write=False)
    return a


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (D, D), clipping round-off negatives."""
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


@dataclass(frozen=True, eq=False)
class FeatureStats:
    """Mean ``(D,)`` and covariance ``(D, D)`` of ``n`` feature vectors, in float64 (read-only).

    ``cov`` is the unbiased sample covariance (``ddof=1``), as in the reference FID code.
    """

    mean: np.ndarray
    cov: np.ndarray
    n: int

    def __post_init__(self) -> None:
        mean = _readonly(self.mean)
        cov = _readonly(self.cov)
        if mean.ndim != 1 or cov.shape != (mean.shape[0], mean.shape[0]):
            raise LcscError(
                f"feature statistics: mean {mean.shape} and covariance {cov.shape} do not match"
                " (expected (D,) and (D, D))"
            )
        if not (np.isfinite(mean).all() and np.isfinite(cov).all()):
            raise LcscError("feature statistics: mean or covariance is not finite")
        # Frozen dataclass: bypass __setattr__ to store the normalised arrays.
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "cov", cov)
        object.__setattr__(self, "n", int(self.n))

    @property
    def dim(self) -> int:
        """Feature dimension D."""
        return int(self.mean.shape[0])

    @classmethod
    def from_features(cls, features: np.ndarray | torch.Tensor) -> FeatureStats:
        """Statistics of ``features`` (N, D), N >= 2; a torch tensor is accepted too.

        Raises :class:`LcscError` if any feature is NaN or infinite.
        """
        f = _as_float64(features)
        if f.ndim != 2:
            raise LcscError(f"features must have shape (N, D), got {f.shape}")
        if f.shape[0] < 2:
            raise LcscError(f"need at least 2 feature vectors for a covariance, got {f.shape[0]}")
        if not np.isfinite(f).all():
            bad = int((~np.isfinite(f)).any(axis=1).sum())
            raise LcscError(
                f"features are not finite: {bad} of {f.shape[0]} feature vectors hold NaN or Inf"
                " (did the model diverge or produce NaN samples?)"
            )
        mean = f.mean(axis=0)
        centred = f - mean
        cov = centred.T @ centred / (f.shape[0] - 1)
        return cls(mean, (cov + cov.T) / 2, f.shape[0])

    @classmethod
    def from_moments(cls, moments: FeatureMoments) -> FeatureStats:
        """Statistics from summed moments (e.g. merged over processes); ``moments.n`` >= 2.

        With ``s1 = sum (f - c)`` and ``s2 = sum (f - c)(f - c)^T`` about the shift ``c``:
        ``mean = c + s1 / n``, ``cov = (s2 - s1 s1^T / n) / (n - 1)`` (unbiased, as
        :meth:`from_features`; equal to it up to float64 rounding).
        """
        n = moments.n
        if n < 2:
            raise LcscError(f"need at least 2 feature vectors for a covariance, got {n}")
        s1 = moments.total
        cov = (moments.outer - np.outer(s1, s1) / n) / (n - 1)
        return cls(moments.shift + s1 / n, (cov + cov.T) / 2, n)

    @cached_property
    def cov_sqrt(self) -> np.ndarray:
        """Symmetric PSD square root of ``cov`` (D, D); cached, so a fixed reference pays once."""
        sq = _psd_sqrt(self.cov)
        sq.setflags(write=False)
        return sq

    def save(self, path: str | os.PathLike[str], metadata: Mapping[str, str] | None = None) -> None:
        """Write an ``.npz`` atomically (no pickled objects; metadata stored as a JSON string)."""
        meta = json.dumps({str(k): str(v) for k, v in (metadata or {}).items()}, sort_keys=True)
        # np.savez appends ".npz" to a path without it, so hand it the open temp file instead.
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, mean=self.mean, cov=self.cov, n=np.int64(self.n), metadata=np.str_(meta))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FeatureStats:
        """Read statistics written by :meth:`save` (``allow_pickle=False``)."""
        data = _read_npz(path)
        try:
            return cls(data["mean"], data["cov"], int(data["n"]))
        except LcscError as exc:
            raise LcscError(f"{path}: {exc}") from exc

    @staticmethod
    def load_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
        """The metadata mapping stored by :meth:`save` (empty if none)."""
        data = _read_npz(path)
        if "metadata" not in data:
            return {}
        try:
            meta = json.loads(str(data["metadata"]))
        except ValueError as exc:
            raise LcscError(f"{path}: corrupt metadata: {exc}") from exc
        return {str(k): str(v) for k, v in meta.items()}


@dataclass(frozen=True, eq=False)
class FeatureMoments:
    """Summed float64 moments of ``n`` feature vectors ``f`` (D,) about a fixed shift ``c`` (D,):
    ``total = sum (f - c)`` (D,) and ``outer = sum (f - c)(f - c)^T`` (D, D).

    Moments about the same shift add up (:meth:`merge`; or sum :meth:`to_vector` elementwise,
    as an ``all_reduce`` does), so statistics of a sample set split into parts, computed part by
    part, equal those of the whole up to float64 rounding (:meth:`FeatureStats.from_moments`).
    A shift near the mean (e.g. a reference's) keeps ``outer`` free of cancellation.
    """

    n: int
    total: np.ndarray
    outer: np.ndarray
    shift: np.ndarray

    @classmethod
    def of(cls, features: np.ndarray | torch.Tensor, shift: np.ndarray) -> FeatureMoments:
        """Moments of ``features`` (N, D), N >= 0, about ``shift`` (D,)."""
        f = _as_float64(features)
        c = np.asarray(shift, dtype=np.float64)
        if f.ndim != 2 or c.shape != (f.shape[1],):
            raise LcscError(f"features (N, D) and shift (D,) do not match: {f.shape}, {c.shape}")
        centred = f - c
        return cls(f.shape[0], centred.sum(axis=0), centred.T @ centred, c)

    def merge(self, other: FeatureMoments) -> FeatureMoments:
        """The moments of both sets together (same shift)."""
        if not np.array_equal(self.shift, other.shift):
            raise LcscError("feature moments about different shifts cannot be merged")
        n, total, outer = self.n + other.n, self.total + other.total, self.outer + other.outer
        return FeatureMoments(n, total, outer, self.shift)

    def to_vector(self) -> np.ndarray:
        """``[n, total (D), outer (D*D)]``, float64 of length ``1 + D + D^2``."""
        return np.concatenate([[float(self.n)], self.total, self.outer.ravel()])

    @classmethod
    def from_vector(cls, vector: np.ndarray, shift: np.ndarray) -> FeatureMoments:
        """Inverse of :meth:`to_vector`, given the shift (D,)."""
        d = len(shift)
        v = np.asarray(vector, dtype=np.float64)
        if v.shape != (1 + d + d * d,):
            size = 1 + d + d * d
            raise LcscError(f"a moments vector for D={d} has {size} numbers, not {v.shape}")
        return cls(int(round(v[0])), v[1 : 1 + d], v[1 + d :].reshape(d, d), np.asarray(shift))


def _as_float64(x: object) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().double().numpy()  # type: ignore[union-attr]
    return np.asarray(x, dtype=np.float64)


def read_npz(path: str | os.PathLike[str], what: str = "statistics file") -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, read with ``allow_pickle=False``; one error line naming
    the file (``what`` it should be) when it is missing or unreadable."""
    p = Path(path)
    if not p.is_file():
        raise LcscError(f"{p}: no such {what}")
    try:
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as exc:
        raise LcscError(f"{p}: unreadable or corrupt {what}: {exc}") from exc


def _read_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    data = read_npz(path)
    missing = [k for k in _KEYS if k not in data]
    if missing:
        raise LcscError(f"{path}: not a feature statistics file (missing {', '.join(missing)})")
    return data


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    """Fréchet distance between the Gaussians N(m1, S1) and N(m2, S2), in float64.

    ``|m1 - m2|^2 + tr(S1) + tr(S2) - 2 tr(sqrt(S1 S2))``.

    How the trace term is computed: ``S1 S2`` is not symmetric, and ``scipy.linalg.sqrtm`` of it
    returns complex noise or fails when a covariance is (near-)singular, as it is whenever there
    are fewer samples than feature dimensions (N < D). Instead we use the identity
    ``tr(sqrt(S1 S2)) = tr(sqrt(R S2 R))`` with ``R = sqrt(S1)``: ``R S2 R`` is symmetric PSD, so
    its eigenvalues come from ``eigh``; round-off negatives are clipped to 0 and the square roots
    of the eigenvalues summed. ``R`` is itself computed by ``eigh`` with clipping, and is cached
    on ``a`` (:attr:`FeatureStats.cov_sqrt`): pass the fixed reference statistics as ``a`` when
    scoring many candidates. The result is clipped at 0 (round-off can make FD(a, a) -1e-13).
    """
    if a.dim != b.dim:
        raise LcscError(f"feature dimensions differ: {a.dim} vs {b.dim} (different extractors?)")
    r = a.cov_sqrt
    m = r @ b.cov @ r
    eig = np.linalg.eigvalsh((m + m.T) / 2)
    tr_sqrt = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = a.mean - b.mean
    fd = float(diff @ diff) + float(np.trace(a.cov)) + float(np.trace(b.cov)) - 2.0 * tr_sqrt
    return max(fd, 0.0)
