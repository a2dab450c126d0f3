"""A trajectory: the checkpoints ``theta_1 .. theta_K`` of one training run, and their combination.

Opening validates everything once (readable files, same keys, shapes and dtypes, finite values)
and raises one :class:`TrajectoryError` naming the file and key at fault. Tensors stay
memory-mapped, so :meth:`Trajectory.combine` streams from the page cache (or disk) tensor by
tensor and works for trajectories larger than RAM.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lcsc.checkpoint import Checkpoint
from lcsc.errors import LcscError, TrajectoryError
from lcsc.state_dict import Extraction
from lcsc.trajectory import entries as stored
from lcsc.trajectory import layout, saving, sources
from lcsc.trajectory.checks import all_finite, check_structure, check_values
from lcsc.trajectory.compact import chain_weights
from lcsc.trajectory.groups import Groups, combine_groups
from lcsc.trajectory.segments import Segment, combine_segment, plan_segments

__all__ = ["Trajectory", "all_finite"]  # all_finite: also importable from here


class Trajectory:
    """The saved checkpoints of one run, at increasing training steps.

    Build with :meth:`open` (a Recorder directory), :meth:`from_files` or :meth:`from_paths`.
    """

    def __init__(
        self,
        entries: list[stored.Entry],
        selected: list[int],
        metadata: dict[str, Any],
        *,
        check_finite: bool = True,
    ) -> None:
        self._entries = entries
        self._selected = selected
        self.metadata = metadata
        self.source: sources.Source | None = None  # how from_paths found the files
        check_structure(entries)
        if check_finite:
            check_values(entries)
        self._segments = self._plan_segments()

    # ----------------------------------------------------------------- construction
    @classmethod
    def open(cls, directory: str | os.PathLike[str], **options: Any) -> Trajectory:
        """Open a Recorder directory or any folder :meth:`from_paths` recognises."""
        d = Path(directory)
        if not d.is_dir():
            raise TrajectoryError(f"{d}: no such directory")
        return cls.from_paths([d], **options)

    @classmethod
    def from_files(
        cls,
        paths: Iterable[str | os.PathLike[str]],
        steps: Sequence[int] | None = None,
        *,
        key: str | None = None,
        strip_prefix: str | None = None,
        check_finite: bool = True,
        _metadata: dict[str, Any] | None = None,
    ) -> Trajectory:
        """Open checkpoint files (``.safetensors`` or ``.pt``-style), sorted by step.

        Without ``steps``, each file's step is, for files lcsc wrote, the step stored in the
        file, else the last number in its name (``ckpt_012000.pt``) or its nearest numbered
        folder (``checkpoint-500/unet/...``); see :func:`lcsc.trajectory.sources.step_from_path`.
        ``key`` and ``strip_prefix`` are passed to :func:`lcsc.checkpoint.read_checkpoint`.
        """
        paths = [Path(p) for p in paths]
        entries = stored.read_entries(paths, steps, key=key, strip_prefix=strip_prefix)
        metadata = _metadata
        if metadata is None:
            raw = entries[-1].ckpt.metadata.get(layout.KEY_METADATA)
            metadata = json.loads(raw) if raw else {}
        return cls(entries, list(range(len(entries))), metadata, check_finite=check_finite)

    @classmethod
    def from_paths(
        cls,
        paths: Sequence[str | os.PathLike[str]],
        *,
        steps: Sequence[int] | None = None,
        component: str | None = None,
        key: str | None = None,
        strip_prefix: str | None = None,
        check_finite: bool = True,
    ) -> Trajectory:
        """The checkpoints of one folder in any layout :func:`lcsc.trajectory.sources.find_source`
        recognises (a Recorder directory, diffusers/accelerate ``checkpoint-<step>/`` folders
        with ``component``, Lightning, timm or plain checkpoint files), or of the given files
        and checkpoint folders; ``steps`` (in that order) replace the steps found. How they were
        found is in ``.source``."""
        source = sources.find_source(paths, component)
        if not source.files:
            raise TrajectoryError(sources.no_checkpoints(Path(paths[0])))
        return cls.from_source(
            source, steps, key=key, strip_prefix=strip_prefix, check_finite=check_finite
        )

    @classmethod
    def from_source(
        cls,
        source: sources.Source,
        steps: Sequence[int] | None = None,
        *,
        key: str | None = None,
        strip_prefix: str | None = None,
        check_finite: bool = True,
    ) -> Trajectory:
        """The files of a :class:`~lcsc.trajectory.sources.Source` (see :meth:`from_paths`)."""
        traj = cls.from_files(
            source.files,
            steps,
            key=key,
            strip_prefix=strip_prefix,
            check_finite=check_finite,
            _metadata=source.metadata,
        )
        traj.source = source
        return traj

    def select(
        self, start: int | None = None, stop: int | None = None, every: int = 1
    ) -> Trajectory:
        """The checkpoints with ``start <= step <= stop``, taking every ``every``-th one
        counted back from the last, so the latest checkpoint of the window is always kept."""
        if every < 1:
            raise TrajectoryError(f"every must be >= 1, got {every}")
        window = [
            i
            for i in self._selected
            if (start is None or self._entries[i].step >= start)
            and (stop is None or self._entries[i].step <= stop)
        ]
        chosen = window[::-1][::every][::-1]
        if not chosen:
            raise TrajectoryError(f"no checkpoint between steps {start} and {stop}")
        return self._view(chosen)

    def _view(self, selected: list[int]) -> Trajectory:
        """The same (already validated) files with another selection."""
        sub = object.__new__(Trajectory)
        sub._entries, sub._selected, sub.metadata = self._entries, selected, self.metadata
        sub.source = self.source
        sub._segments = sub._plan_segments()
        return sub

    # ----------------------------------------------------------------- properties
    def __len__(self) -> int:
        return len(self._selected)

    def __repr__(self) -> str:
        return f"Trajectory({len(self)} checkpoints, steps {self.steps[0]}..{self.steps[-1]})"

    @property
    def steps(self) -> list[int]:
        return [self._entries[i].step for i in self._selected]

    @property
    def paths(self) -> list[Path]:
        return [self._entries[i].path for i in self._selected]

    @property
    def keys(self) -> list[str]:
        return list(self._reference.tensors)

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(t.shape) for k, t in self._reference.tensors.items()}

    @property
    def dtypes(self) -> dict[str, torch.dtype]:
        return {k: t.dtype for k, t in self._reference.tensors.items()}

    @property
    def extraction(self) -> Extraction:
        """How the weights were found in the first file: sub-dict, prefixes removed, ..."""
        return self._reference.extraction

    @property
    def num_parameters(self) -> int:
        """Number of values in one checkpoint (all tensors)."""
        return sum(t.numel() for t in self._reference.tensors.values())

    @property
    def nbytes(self) -> int:
        """Bytes on disk of the files a combination reads (a sharded one's index and shards)."""
        return sum(f.stat().st_size for i in self._needed() for f in self._entries[i].ckpt.files)

    def fingerprint(self) -> str:
        """A short hash of the selected checkpoints' names (with the component folder of a
        diffusers component's weights), steps, sizes and layouts, each shard of a sharded
        checkpoint included. Cheap: no file is read, so an edit that keeps every size and
        tensor offset goes unseen."""
        return stored.fingerprint([self._entries[i] for i in self._needed()], self._selected)

    # ----------------------------------------------------------------- combination
    def combine(
        self,
        coefficients: Sequence[float] | np.ndarray | torch.Tensor,
        *,
        accumulate: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        keys: Collection[str] | None = None,
    ) -> dict[str, torch.Tensor]:
        """``theta = sum_i a_i theta_i`` over the selected checkpoints (Eq. (7) of the paper).

        Shapes: ``coefficients`` (K,) with K = ``len(self)``. Floating tensors are accumulated
        in ``accumulate`` (float32, or torch.float64 on request; float64 tensors always in
        float64) and returned in the checkpoints' dtypes; other tensors (integer buffers,
        counters) are taken from the last checkpoint. The sum-to-one constraint is the
        search's business and is not enforced here. ``keys`` (default: all) computes and returns
        only those keys, in the checkpoints' order (per-group coefficients,
        :mod:`lcsc.trajectory.groups`).
        """
        a = _coefficient_vector(coefficients, len(self))
        needed = self._needed()
        plain = np.zeros(len(needed))
        position = {idx: n for n, idx in enumerate(needed)}
        for coef, idx in zip(a, self._selected, strict=True):
            plain[position[idx]] = coef
        starts = np.array([position[self._entries[i].chain_start] for i in needed])
        chained = chain_weights(plain, starts)
        entries = [self._entries[i] for i in needed]
        last = self._entries[self._selected[-1]]
        wanted = self.keys if keys is None else self._subset(keys)
        chosen = set(wanted)
        out: dict[str, torch.Tensor] = {}
        for seg in self._segments if keys is None else self._plan_segments(chosen):
            out.update(
                combine_segment(seg, entries, plain, chained, accumulate=accumulate, device=device)
            )
        for key, t in last.ckpt.tensors.items():
            if not t.is_floating_point() and key in chosen:
                out[key] = t.to(device or "cpu", copy=True)
        return {k: out[k] for k in wanted}

    def save_combination(
        self,
        path: str | os.PathLike[str],
        coefficients: Sequence[float] | np.ndarray,
        *,
        groups: Groups | None = None,
    ) -> Path:
        """Write ``combine(coefficients)`` atomically as ``.safetensors``, with the trajectory's
        metadata (e.g. the model config), steps and coefficients in the file's metadata.
        With ``groups``, ``coefficients`` is ``(G, K)`` (or flattened) and the combination is
        :func:`lcsc.trajectory.groups.combine_groups`; the group names join the metadata.

        For a diffusers component (opened from ``checkpoint-<step>/`` folders), a ``path``
        without the ``.safetensors`` suffix is a folder that ``from_pretrained`` loads: the
        weights plus the component's ``config.json`` (:mod:`lcsc.trajectory.export`).
        Returns the path of the weights file written.

        Refused, before any work: ``path`` is one of the trajectory's files, or lies in the
        folder it was opened from under a name that folder lists as a checkpoint; the
        combination holds NaN/Inf (coefficients too large for the checkpoints' dtypes).
        """
        target = Path(path)
        inputs = [f for e in self._entries for f in e.ckpt.files]
        saving.check_output(target, inputs, self.source)
        state = combine_groups(self, groups, coefficients)
        if groups is None:
            written = [float(c) for c in coefficients]
        else:
            written = groups.matrix(coefficients, len(self)).tolist()
        metadata = saving.combination_metadata(self.metadata, self.steps, written, groups)
        return saving.write_combination(target, state, metadata, self.source)

    def writes_folder(self, path: str | os.PathLike[str]) -> bool:
        """Whether :meth:`save_combination` writes a ``from_pretrained`` folder at ``path``."""
        return saving.writes_folder(self.source, path)

    def load(self, index: int) -> dict[str, torch.Tensor]:
        """Checkpoint ``index`` (of the selection) as a state dict, decoded if compact."""
        return self._view([self._selected[index]]).combine([1.0])

    # ----------------------------------------------------------------- internals
    @property
    def _reference(self) -> Checkpoint:
        return self._entries[self._entries[self._selected[0]].chain_start].ckpt

    def _needed(self) -> list[int]:
        """Indices of the files a combination reads: chain starts and deltas in between."""
        first = self._entries[self._selected[0]].chain_start
        return list(range(first, self._selected[-1] + 1))

    def _subset(self, keys: Collection[str]) -> list[str]:
        """``keys`` in the checkpoints' order; an unknown key is an error."""
        chosen = set(keys)
        unknown = chosen - set(self._reference.tensors)
        if unknown:
            raise LcscError(f"no key {min(unknown)!r} in the checkpoints")
        return [k for k in self.keys if k in chosen]

    def _plan_segments(self, only: Collection[str] | None = None) -> list[Segment]:
        """The segments of a combination (of the keys ``only``, default all)."""
        return plan_segments([self._entries[i] for i in self._needed()], only)


def _coefficient_vector(
    coefficients: Sequence[float] | np.ndarray | torch.Tensor, k: int
) -> np.ndarray:
    """``coefficients`` as a finite float64 array of shape ``(k,)``."""
    a = np.asarray(
        coefficients.detach().cpu() if isinstance(coefficients, torch.Tensor) else coefficients,
        dtype=np.float64,
    )
    if a.shape != (k,):
        raise LcscError(f"expected {k} coefficients, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise LcscError("coefficients must be finite")
    return a
