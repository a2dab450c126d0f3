"""Batched feature extraction, and reference statistics cached on disk.

The reference set's statistics are computed once per (data set, extractor) and reused for every
candidate a search scores. The cache file name carries a hash of the extractor (its class, its
configuration ``repr`` and every weight) and of the samples, so changed weights, a different
layer or different reference samples can never silently reuse stale statistics.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lcsc.errors import LcscError
from lcsc.metrics.frechet import FeatureStats
from lcsc.progress import Progress, report

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def _first_param(module: nn.Module) -> torch.Tensor | None:
    for t in module.parameters():
        if t.is_floating_point():
            return t
    return None


def _as_2d(out: object, batch: int) -> torch.Tensor:
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise LcscError(f"feature extractor returned {type(out).__name__}, expected a tensor")
    if out.ndim < 2 or out.shape[0] != batch:
        raise LcscError(
            f"feature extractor returned shape {tuple(out.shape)} for a batch of {batch}"
        )
    return out.reshape(batch, -1)  # (N, D, 1, 1) pooled maps -> (N, D)


def _run(
    fn: Callable[[torch.Tensor], tuple[torch.Tensor, ...]],
    extractor: nn.Module,
    samples: torch.Tensor | np.ndarray,
    batch_size: int,
    device: torch.device | str | None,
    progress: Progress | None,
) -> list[np.ndarray]:
    if batch_size < 1:
        raise LcscError(f"batch_size must be >= 1, got {batch_size}")
    n = len(samples)
    if n == 0:
        raise LcscError("no samples to extract features from")
    param = _first_param(extractor)
    dev = (
        torch.device(device)
        if device is not None
        else (param.device if param is not None else None)
    )
    float_dtype = param.dtype if param is not None else torch.float32
    # Metrics need eval mode (dropout off, BatchNorm running stats); restore the caller's modes.
    modes = [(m, m.training) for m in extractor.modules()]
    extractor.eval()
    chunks: list[list[np.ndarray]] = []
    try:
        with torch.no_grad():
            for i in range(0, n, batch_size):
                x = torch.as_tensor(samples[i : i + batch_size])
                if x.is_floating_point():
                    x = x.to(float_dtype)
                if dev is not None:
                    x = x.to(dev)
                outs = fn(x)
                chunks.append([o.detach().to("cpu", torch.float64).numpy() for o in outs])
                report(progress, "features", min(i + batch_size, n), n)
    finally:
        for m, mode in modes:
            m.training = mode
    results = [np.concatenate(parts) for parts in zip(*chunks, strict=True)]
    for r in results:
        if not np.isfinite(r).all():
            bad = int((~np.isfinite(r)).reshape(n, -1).any(axis=1).sum())
            raise LcscError(
                f"features are not finite: {bad} of {n} samples gave NaN or Inf features"
                " (NaN samples from a diverged model?)"
            )
    return results


def compute_features(
    extractor: nn.Module,
    samples: torch.Tensor | np.ndarray,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Features (N, D) float64 of ``samples`` (N, ...), in batches under ``torch.no_grad``.

    ``extractor`` is any ``nn.Module`` (run in eval mode, its modes restored afterwards).
    Floating samples are cast to the extractor's parameter dtype; others (uint8 images) pass as
    they are. ``device`` defaults to the extractor's. Raises :class:`LcscError` on NaN/Inf.
    """

    def fn(x: torch.Tensor) -> tuple[torch.Tensor]:
        return (_as_2d(extractor(x), x.shape[0]),)

    return _run(fn, extractor, samples, batch_size, device, progress)[0]


def compute_features_and_logits(
    extractor: nn.Module,
    samples: torch.Tensor | np.ndarray,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Features (N, D) and logits (N, C), float64, from ``extractor.features_and_logits``."""
    method = getattr(extractor, "features_and_logits", None)
    if not callable(method):
        raise LcscError(
            f"{type(extractor).__name__} has no features_and_logits(x) method: it gives no logits"
        )

    def fn(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f, z = method(x)
        return _as_2d(f, x.shape[0]), _as_2d(z, x.shape[0])

    feats, logits = _run(fn, extractor, samples, batch_size, device, progress)
    return feats, logits


def extractor_fingerprint(extractor: nn.Module) -> str:
    """SHA-256 (hex) of the extractor's class, configuration ``repr`` and all state tensors."""
    h = hashlib.sha256()
    h.update(f"{type(extractor).__module__}.{type(extractor).__qualname__}\n".encode())
    h.update(repr(extractor).encode())
    for name, t in sorted(extractor.state_dict().items()):
        h.update(f"\n{name}:{t.dtype}:{tuple(t.shape)}\n".encode())
        h.update(t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def samples_fingerprint(samples: torch.Tensor | np.ndarray) -> str:
    """SHA-256 (hex) of the samples' shape, dtype and bytes."""
    h = hashlib.sha256()
    if isinstance(samples, torch.Tensor):
        h.update(f"{tuple(samples.shape)}:{samples.dtype}\n".encode())
        h.update(samples.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().data)
    else:
        a = np.ascontiguousarray(samples)
        h.update(f"{a.shape}:{a.dtype}\n".encode())
        h.update(a.reshape(-1).view(np.uint8).data)
    return h.hexdigest()


def _cache_key(
    cache_dir: str | os.PathLike[str],
    dataset_name: str,
    extractor: nn.Module,
    samples: torch.Tensor | np.ndarray,
    extractor_name: str | None,
) -> tuple[Path, dict[str, str]]:
    name = extractor_name or type(extractor).__name__
    for what, value in (("dataset name", dataset_name), ("extractor name", name)):
        if not _SAFE_NAME.match(value):
            raise LcscError(
                f"{what} {value!r} must be letters, digits, '.', '_', '+' or '-' (it names a file)"
            )
    ext_hash = extractor_fingerprint(extractor)
    samples_hash = samples_fingerprint(samples)
    key = hashlib.sha256(f"{ext_hash}:{samples_hash}".encode()).hexdigest()[:16]
    meta = {
        "dataset": dataset_name,
        "extractor": name,
        "extractor_sha256": ext_hash,
        "samples_sha256": samples_hash,
    }
    return Path(cache_dir).expanduser() / f"{dataset_name}-{name}-{key}.npz", meta


def reference_cache_path(
    cache_dir: str | os.PathLike[str],
    dataset_name: str,
    extractor: nn.Module,
    samples: torch.Tensor | np.ndarray,
    extractor_name: str | None = None,
) -> Path:
    """``cache_dir / f"{dataset}-{extractor_name}-{hash}.npz"``; hash of weights and samples.

    ``extractor_name`` defaults to the extractor's class name.
    """
    return _cache_key(cache_dir, dataset_name, extractor, samples, extractor_name)[0]


def reference_stats(
    dataset_name: str,
    samples: torch.Tensor | np.ndarray,
    extractor: nn.Module,
    cache_dir: str | os.PathLike[str],
    extractor_name: str | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    progress: Progress | None = None,
) -> FeatureStats:
    """Feature statistics of the reference ``samples`` (N, ...), computed once and cached.

    On a cache hit nothing is computed (``progress`` is not called). Otherwise the features are
    computed in batches, and the statistics written atomically to
    :func:`reference_cache_path` (an unreadable cache file is recomputed, with a warning).
    """
    path, meta = _cache_key(cache_dir, dataset_name, extractor, samples, extractor_name)
    if path.is_file():
        try:
            return FeatureStats.load(path)
        except LcscError as exc:
            warnings.warn(f"recomputing reference statistics: {exc}", stacklevel=2)
    feats = compute_features(extractor, samples, batch_size, device, progress)
    stats = FeatureStats.from_features(feats)
    stats.save(path, metadata={**meta, "n": str(stats.n), "dim": str(stats.dim)})
    return stats
