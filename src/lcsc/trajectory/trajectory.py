"""A trajectory: the checkpoints ``theta_1 .. theta_K`` of one training run, and their combination.

Opening validates everything once (readable files, same keys, shapes and dtypes, finite values)
and raises one :class:`TrajectoryError` naming the file and key at fault. Tensors stay
memory-mapped, so :meth:`Trajectory.combine` streams from the page cache (or disk) tensor by
tensor and works for trajectories larger than RAM.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lcsc.atomic import check_not_input
from lcsc.checkpoint import Checkpoint, read_checkpoint, write_checkpoint
from lcsc.errors import LcscError, TrajectoryError
from lcsc.state_dict import Extraction
from lcsc.trajectory import layout, sources
from lcsc.trajectory.combine import weighted_sum
from lcsc.trajectory.compact import chain_weights


@dataclass
class _Entry:
    """One stored file of a trajectory."""

    step: int
    ckpt: Checkpoint
    encoding: str = layout.FULL
    exponents: dict[str, int] = field(default_factory=dict)
    chain_start: int = 0  # index of the full file that starts this entry's chain

    @property
    def path(self) -> Path:
        return self.ckpt.path


@dataclass(frozen=True)
class _Segment:
    """A run of same-dtype floating tensors combined as one flat vector."""

    dtype: torch.dtype
    keys: tuple[tuple[str, tuple[int, ...], int, int], ...]  # (key, shape, offset, numel)
    byte_range: tuple[int, int] | None  # flat safetensors view, else None (one key)


class Trajectory:
    """The saved checkpoints of one run, at increasing training steps.

    Build with :meth:`open` (a Recorder directory), :meth:`from_files` or :meth:`from_paths`.
    """

    def __init__(
        self,
        entries: list[_Entry],
        selected: list[int],
        metadata: dict[str, Any],
        *,
        check_finite: bool = True,
    ) -> None:
        self._entries = entries
        self._selected = selected
        self.metadata = metadata
        self.source: sources.Source | None = None  # how from_paths found the files
        self._check_structure()
        if check_finite:
            self._check_values()
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
        if not paths:
            raise TrajectoryError("no checkpoint files given")
        if steps is not None and len(steps) != len(paths):
            raise TrajectoryError(f"got {len(steps)} steps for {len(paths)} files")
        entries = []
        for i, p in enumerate(paths):
            ckpt = read_checkpoint(p, key=key, strip_prefix=strip_prefix)
            entries.append(_make_entry(ckpt, None if steps is None else int(steps[i])))
        entries.sort(key=lambda e: e.step)
        for a, b in zip(entries, entries[1:], strict=False):
            if a.step == b.step:
                raise TrajectoryError(
                    f"{a.path} and {b.path} have the same step {a.step}; pass the steps"
                    " explicitly (--steps)"
                )
        _link_chains(entries)
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
        h = hashlib.sha256()
        for i in self._needed():
            e = self._entries[i]
            name = e.path.name
            if sources.is_component_weights(e.path):  # unet/ and unet_ema/ share file names
                name = f"{e.path.parent.name}/{name}"
            h.update(f"{name}|{e.step}|{e.path.stat().st_size}|{e.encoding}".encode())
            for part in (e.ckpt, *e.ckpt.shards):
                if part is not e.ckpt:
                    h.update(f"|{part.path.name}|{part.path.stat().st_size}".encode())
                if part.layout is not None:
                    h.update(
                        repr(sorted((k, v.begin, v.end) for k, v in part.layout.items())).encode()
                    )
        h.update(repr(self._selected).encode())
        return h.hexdigest()[:16]

    # ----------------------------------------------------------------- combination
    def combine(
        self,
        coefficients: Sequence[float] | np.ndarray | torch.Tensor,
        *,
        accumulate: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> dict[str, torch.Tensor]:
        """``theta = sum_i a_i theta_i`` over the selected checkpoints (Eq. (7) of the paper).

        Shapes: ``coefficients`` (K,) with K = ``len(self)``. Floating tensors are accumulated
        in ``accumulate`` (float32, or torch.float64 on request; float64 tensors always in
        float64) and returned in the checkpoints' dtypes; other tensors (integer buffers,
        counters) are taken from the last checkpoint. The sum-to-one constraint is the
        search's business and is not enforced here.
        """
        a = np.asarray(
            coefficients.detach().cpu() if isinstance(coefficients, torch.Tensor) else coefficients,
            dtype=np.float64,
        )
        if a.shape != (len(self),):
            raise LcscError(f"expected {len(self)} coefficients, got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise LcscError("coefficients must be finite")
        needed = self._needed()
        full = np.zeros(len(needed))
        position = {idx: n for n, idx in enumerate(needed)}
        for coef, idx in zip(a, self._selected, strict=True):
            full[position[idx]] = coef
        starts = np.array([position[self._entries[i].chain_start] for i in needed])
        chained = chain_weights(full, starts)
        entries = [self._entries[i] for i in needed]
        last = self._entries[self._selected[-1]]
        out: dict[str, torch.Tensor] = {}
        for seg in self._segments:
            acc = torch.float64 if torch.float64 in (accumulate, seg.dtype) else torch.float32
            key = seg.keys[0][0]
            # Delta-coded keys combine through their chains; all others value by value.
            coded = seg.byte_range is None and any(key in e.exponents for e in entries)
            sources, ws, small = [], [], []
            for e, w_plain, w_chain in zip(entries, full, chained, strict=True):
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
            for key, shape, offset, numel in seg.keys:
                out[key] = flat[offset : offset + numel].view(shape)
        for key, t in last.ckpt.tensors.items():
            if not t.is_floating_point():
                out[key] = t.to(device or "cpu", copy=True)
        return {k: out[k] for k in self.keys}

    def save_combination(
        self, path: str | os.PathLike[str], coefficients: Sequence[float] | np.ndarray
    ) -> Path:
        """Write ``combine(coefficients)`` atomically as ``.safetensors``, with the trajectory's
        metadata (e.g. the model config), steps and coefficients in the file's metadata.

        For a diffusers component (opened from ``checkpoint-<step>/`` folders), a ``path``
        without the ``.safetensors`` suffix is a folder that ``from_pretrained`` loads: the
        weights plus the component's ``config.json`` (:mod:`lcsc.trajectory.export`).
        Returns the path of the weights file written.

        Refused, before any work: ``path`` is one of the trajectory's files, or lies in the
        folder it was opened from under a name that folder lists as a checkpoint; the
        combination holds NaN/Inf (coefficients too large for the checkpoints' dtypes).
        """
        target = Path(path)
        self._check_output(target)
        state = self.combine(coefficients)
        for key, t in state.items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise LcscError(
                    f"{path}: not written: key '{key}' of the combination overflows to NaN/Inf"
                    " (coefficients too large for its dtype?)"
                )
        metadata = {
            layout.KEY_METADATA: json.dumps(self.metadata, sort_keys=True),
            "lcsc_steps": json.dumps(self.steps),
            "lcsc_coefficients": json.dumps([float(c) for c in coefficients]),
        }
        if self.writes_folder(target):
            from lcsc.trajectory.export import save_pretrained

            assert self.source is not None
            return save_pretrained(target, state, metadata, self.source)
        write_checkpoint(target, state, metadata)
        return target

    def writes_folder(self, path: str | os.PathLike[str]) -> bool:
        """Whether :meth:`save_combination` writes a ``from_pretrained`` folder at ``path``."""
        has_config = self.source is not None and self.source.config is not None
        return has_config and Path(path).suffix != ".safetensors"

    def load(self, index: int) -> dict[str, torch.Tensor]:
        """Checkpoint ``index`` (of the selection) as a state dict, decoded if compact."""
        return self._view([self._selected[index]]).combine([1.0])

    # ----------------------------------------------------------------- internals
    def _check_output(self, path: Path) -> None:
        if path.suffix != ".safetensors" and not self.writes_folder(path):
            what = "is a directory" if path.is_dir() else "expected a .safetensors file name"
            raise TrajectoryError(  # lcsc could not read a file of another name back
                f"{path}: {what}; write FILE.safetensors (a folder output needs a diffusers"
                " component with a config.json)"
            )
        inputs = [f for e in self._entries for f in e.ckpt.files]
        check_not_input(path, inputs, "one of the trajectory's files")
        if self.writes_folder(path):
            from lcsc.trajectory.export import weights_name

            assert self.source is not None
            check_not_input(path / weights_name(self.source), inputs, "a trajectory's file")
        if self.source is not None and sources.lists_as_checkpoint(self.source, path):
            raise TrajectoryError(
                f"{path}: would become a checkpoint of the trajectory folder"
                f" {self.source.root} (and break the next run on it); write it outside that"
                " folder"
            )

    @property
    def _reference(self) -> Checkpoint:
        return self._entries[self._entries[self._selected[0]].chain_start].ckpt

    def _needed(self) -> list[int]:
        """Indices of the files a combination reads: chain starts and deltas in between."""
        first = self._entries[self._selected[0]].chain_start
        return list(range(first, self._selected[-1] + 1))

    def _check_structure(self) -> None:
        ref = self._entries[0]
        for e in self._entries:
            start = self._entries[e.chain_start]
            for key in ref.ckpt.tensors.keys() - e.ckpt.tensors.keys():
                raise TrajectoryError(f"{e.path}: key '{key}' missing (present in {ref.path})")
            for key in e.ckpt.tensors.keys() - ref.ckpt.tensors.keys():
                raise TrajectoryError(f"{e.path}: unexpected key '{key}' (absent from {ref.path})")
            for key, t in e.ckpt.tensors.items():
                r = ref.ckpt.tensors[key]
                if tuple(t.shape) != tuple(r.shape):
                    raise TrajectoryError(
                        f"{e.path}: key '{key}' has shape {tuple(t.shape)}, expected"
                        f" {tuple(r.shape)} as in {ref.path}"
                    )
                coded = key in e.exponents
                dtype = start.ckpt.tensors[key].dtype if coded else t.dtype
                if dtype != r.dtype:
                    raise TrajectoryError(
                        f"{e.path}: key '{key}' has dtype {dtype}, expected {r.dtype} as in"
                        f" {ref.path}"
                    )
                if coded and (t.dtype != torch.float16 or not r.is_floating_point()):
                    raise TrajectoryError(f"{e.path}: key '{key}': corrupt compact delta")

    def _check_values(self) -> None:
        for e in self._entries:
            for key, t in e.ckpt.tensors.items():
                if t.is_floating_point() and not all_finite(t):
                    bad = int((~torch.isfinite(t)).sum())
                    raise TrajectoryError(f"{e.path}: key '{key}' holds {bad} NaN/Inf values")

    def _plan_segments(self) -> list[_Segment]:
        """Group floating tensors into flat runs when every file shares one safetensors layout
        (one weighted sum per run instead of per tensor); else one segment per tensor."""
        entries = [self._entries[i] for i in self._needed()]
        ref = entries[0].ckpt
        floats = [k for k, t in ref.tensors.items() if t.is_floating_point()]
        shared = ref.layout is not None and all(
            e.encoding == layout.FULL
            and e.ckpt.layout is not None
            and all(e.ckpt.layout.get(k) == ref.layout[k] for k in floats)
            for e in entries
        )
        if not shared:
            return [
                _Segment(
                    ref.tensors[k].dtype,
                    ((k, tuple(ref.tensors[k].shape), 0, ref.tensors[k].numel()),),
                    None,
                )
                for k in floats
            ]
        assert ref.layout is not None
        segments: list[_Segment] = []
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


def _check_weights(weights: list[float], acc: torch.dtype) -> None:
    """Refuse weights the accumulator cannot hold (torch would fail converting them)."""
    limit = torch.finfo(acc).max
    for w in weights:
        if not abs(w) <= limit:  # also NaN, from inf - inf in a chain's suffix sums
            raise LcscError(
                f"coefficients too large to combine: a weight of {w:.3g} exceeds the"
                f" {str(acc).removeprefix('torch.')} range ({limit:.3g})"
            )


def all_finite(t: torch.Tensor) -> bool:
    """Whether every value of the floating tensor ``t`` is finite, at about the cost of a read.

    One pass for the smallest and largest value: NaN propagates into both, an infinity is one
    of them. Unlike a sum, this cannot overflow, and unlike ``isfinite(t).all()`` it writes no
    mask (10x slower).
    """
    if t.numel() == 0:
        return True
    lo, hi = torch.aminmax(t)
    return bool(torch.isfinite(lo)) and bool(torch.isfinite(hi))


def _flat_segment(ref: Checkpoint, keys: list[str]) -> _Segment:
    assert ref.layout is not None
    infos = [ref.layout[k] for k in keys]
    dtype = infos[0].dtype
    size = torch.empty((), dtype=dtype).element_size()
    begin = infos[0].begin
    parts = tuple(
        (k, i.shape, (i.begin - begin) // size, i.numel) for k, i in zip(keys, infos, strict=True)
    )
    return _Segment(dtype, parts, (begin, infos[-1].end))


def _make_entry(ckpt: Checkpoint, step: int | None) -> _Entry:
    md = ckpt.metadata
    if step is None:
        stored = md.get(layout.KEY_STEP)
        step = int(stored) if stored is not None else sources.step_from_path(ckpt.path)
        if step is None:
            raise TrajectoryError(
                f"{ckpt.path}: no step number in the file name or its folders; pass the steps"
                " explicitly (--steps)"
            )
    encoding = md.get(layout.KEY_ENCODING, layout.FULL)
    if encoding not in (layout.FULL, layout.DELTA):
        raise TrajectoryError(f"{ckpt.path}: unknown encoding '{encoding}'")
    exponents = json.loads(md[layout.KEY_EXPONENTS]) if encoding == layout.DELTA else {}
    for prefix in ckpt.extraction.stripped:  # keyed like the tensors: without the prefixes
        exponents = {k[len(prefix) :]: e for k, e in exponents.items() if k.startswith(prefix)}
    return _Entry(step, ckpt, encoding, exponents)


def _link_chains(entries: list[_Entry]) -> None:
    """Point each compact delta at the full file that starts its chain."""
    for i, e in enumerate(entries):
        if e.encoding == layout.FULL:
            e.chain_start = i
            continue
        base = int(e.ckpt.metadata.get(layout.KEY_BASE_STEP, -1))
        if i == 0 or entries[i - 1].step != base:
            raise TrajectoryError(
                f"{e.path}: compact checkpoint needs the checkpoint of step {base}, which is"
                " missing; open the whole Recorder directory"
            )
        e.chain_start = entries[i - 1].chain_start
