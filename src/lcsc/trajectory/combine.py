"""The weighted sum at the heart of LCSC: ``theta = sum_i w_i x_i`` (Eq. (7) of the paper).

It runs once per search candidate, so it is written to be memory-bandwidth-bound: the output is
produced in cache-sized chunks, and for each chunk every source is read once and accumulated into
the chunk while it is still in cache. Sources are 1-D tensors, typically zero-copy views of
memory-mapped files.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

CHUNK_ELEMENTS = 1 << 18  # 1 MiB of float32: few calls per source, accumulator near cache


def weighted_sum(
    sources: Sequence[torch.Tensor],
    weights: Sequence[float],
    *,
    acc_dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    separate: Sequence[bool] | None = None,
    chunk: int = CHUNK_ELEMENTS,
) -> torch.Tensor:
    """Return ``sum_i weights[i] * sources[i]`` accumulated in ``acc_dtype``.

    Shapes: ``sources`` is a sequence of N tensors of shape (M,); the result has shape (M,) and
    dtype ``acc_dtype``, on ``device`` (default: CPU). Sources with a zero weight are not read.
    Sources flagged in ``separate`` (small differences, see :mod:`lcsc.trajectory.compact`) are
    summed in their own accumulator first, so their rounding errors stay relative to their own
    small magnitude rather than to the magnitude of the weights.
    """
    if not sources:
        raise ValueError("weighted_sum needs at least one source")
    n = sources[0].numel()
    dev = torch.device(device) if device is not None else torch.device("cpu")
    flags = separate if separate is not None else [False] * len(sources)
    terms = [
        (s, float(w), bool(f))
        for s, w, f in zip(sources, weights, flags, strict=True)
        if float(w) != 0.0
    ]
    main = [(s, w) for s, w, f in terms if not f]
    small = [(s, w) for s, w, f in terms if f]
    out = torch.zeros(n, dtype=acc_dtype, device=dev)
    side = torch.empty(min(chunk, n), dtype=acc_dtype, device=dev) if small else None
    on_cpu = dev.type == "cpu"
    for begin in range(0, n, chunk):
        end = min(begin + chunk, n)
        acc = out[begin:end]
        for s, w in main:
            piece = s[begin:end] if on_cpu else s[begin:end].to(dev, non_blocking=True)
            acc.add_(piece, alpha=w)
        if side is not None:
            part = side[: end - begin]
            part.zero_()
            for s, w in small:
                piece = s[begin:end] if on_cpu else s[begin:end].to(dev, non_blocking=True)
                part.add_(piece, alpha=w)
            acc.add_(part)
    return out
