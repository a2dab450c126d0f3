"""How a combination streams: floating tensors grouped into segments, each summed as one flat
vector by :func:`lcsc.trajectory.combine.weighted_sum`.

When every file shares one safetensors layout, a run of adjacent same-dtype tensors is one
segment (one weighted sum over a zero-copy view of each file instead of one per tensor); else,
and for compact deltas, each tensor is its own segment.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lcsc.checkpoint import Checkpoint
from lcsc.errors import LcscError
from lcsc.trajectory import layout
from lcsc.trajectory.combine import weighted_sum
from lcsc.trajectory.entries import Entry


@dataclass(frozen=True)
class Segment:
    """A run of same-dtype floating tensors combined as one flat vector."""

    dtype: torch.dtype
    keys: tuple[tuple[str, tuple[int, ...], int, int], ...]  # (key, shape, offset, numel)
    byte_range: tuple[int, int] | None  # flat safetensors view, else None (one key)


def plan_segments(entries: Sequence[Entry], only: Collection[str] | None = None) -> list[Segment]:
    """The segments of the floating tensors (of ``only``, default all) of ``entries``, the
    files a combination reads."""
    ref = entries[0].ckpt
    floats = [
        k for k, t in ref.tensors.items() if t.is_floating_point() and (only is None or k in only)
    ]
    shared = ref.layout is not None and all(
        e.encoding == layout.FULL
        and e.ckpt.layout is not None
        and all(e.ckpt.layout.get(k) == ref.layout[k] for k in floats)
        for e in entries
    )
    if not shared:
        return [
            Segment(
                ref.tensors[k].dtype,
                ((k, tuple(ref.tensors[k].shape), 0, ref.tensors[k].numel()),),
                None,
            )
            for k in floats
        ]
    assert ref.layout is not None
    segments: list[Segment] = []
    run: list[str] = []
    for key in sorted(floats, key=lambda k: ref.layout[k].begin):  # type: ignore[index]
        info = ref.layout[key]
        if run and (
            ref.layout[run[-1]].dtype != info.dtype or ref.layout[run[-1]].end != info.begin
        ):
            segments.append(_flat_segment(ref, run))
            run = []
        run.append(key)
    if run:
        segments.append(_flat_segment(ref, run))
    return segments


def combine_segment(
    seg: Segment,
    entries: Sequence[Entry],
    plain: np.ndarray,
    chained: np.ndarray,
    *,
    accumulate: torch.dtype,
    device: torch.device | str | None,
) -> dict[str, torch.Tensor]:
    """The tensors of ``seg`` combined over ``entries`` with per-file weights ``plain`` (or,
    for compact deltas, ``chained``: :func:`lcsc.trajectory.compact.chain_weights`), in the
    segment's dtype. Shapes: ``plain`` and ``chained`` (len(entries),)."""
    acc = torch.float64 if torch.float64 in (accumulate, seg.dtype) else torch.float32
    key = seg.keys[0][0]
    # Delta-coded keys combine through their chains; all others value by value.
    coded = seg.byte_range is None and any(key in e.exponents for e in entries)
    sources, ws, small = [], [], []
    for e, w_plain, w_chain in zip(entries, plain, chained, strict=True):
        if seg.byte_range is not None:
            sources.append(e.ckpt.flat_view(seg.dtype, *seg.byte_range))
        else:
            sources.append(e.ckpt.tensors[key].reshape(-1))
        delta = key in e.exponents
        w = w_chain if coded else w_plain
        ws.append(w * 2.0 ** e.exponents[key] if delta else w)
        small.append(delta)
    _check_weights(ws, acc)
    flat = weighted_sum(sources, ws, acc_dtype=acc, device=device, separate=small)
    flat = flat.to(seg.dtype)
    return {k: flat[offset : offset + numel].view(shape) for k, shape, offset, numel in seg.keys}


def _check_weights(weights: list[float], acc: torch.dtype) -> None:
    """Refuse weights the accumulator cannot hold (torch would fail converting them)."""
    limit = torch.finfo(acc).max
    for w in weights:
        if not abs(w) <= limit:  # also NaN, from inf - inf in a chain's suffix sums
            raise LcscError(
                f"coefficients too large to combine: a weight of {w:.3g} exceeds the"
                f" {str(acc).removeprefix('torch.')} range ({limit:.3g})"
            )


def _flat_segment(ref: Checkpoint, keys: list[str]) -> Segment:
    assert ref.layout is not None
    infos = [ref.layout[k] for k in keys]
    dtype = infos[0].dtype
    size = torch.empty((), dtype=dtype).element_size()
    begin = infos[0].begin
    parts = tuple(
        (k, i.shape, (i.begin - begin) // size, i.numel) for k, i in zip(keys, infos, strict=True)
    )
    return Segment(dtype, parts, (begin, infos[-1].end))
