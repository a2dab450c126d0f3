"""The stored files of a trajectory: each file's step and encoding, the compact chains that
link delta files to the full file they start from, and a cheap fingerprint of the files."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lcsc.checkpoint import Checkpoint, read_checkpoint
from lcsc.errors import TrajectoryError
from lcsc.trajectory import layout, sources


@dataclass
class Entry:
    """One stored file of a trajectory."""

    step: int
    ckpt: Checkpoint
    encoding: str = layout.FULL
    exponents: dict[str, int] = field(default_factory=dict)
    chain_start: int = 0  # index of the full file that starts this entry's chain

    @property
    def path(self) -> Path:
        return self.ckpt.path


def read_entries(
    paths: Sequence[Path],
    steps: Sequence[int] | None,
    *,
    key: str | None,
    strip_prefix: str | None,
) -> list[Entry]:
    """The files at ``paths``, sorted by step, each delta linked to its chain's full file."""
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
    return entries


def fingerprint(files: Sequence[Entry], selected: Sequence[int]) -> str:
    """A short hash of ``files`` (see :meth:`lcsc.trajectory.Trajectory.fingerprint`) and of
    the ``selected`` indices."""
    h = hashlib.sha256()
    for e in files:
        name = e.path.name
        if sources.is_component_weights(e.path):  # unet/ and unet_ema/ share file names
            name = f"{e.path.parent.name}/{name}"
        h.update(f"{name}|{e.step}|{e.path.stat().st_size}|{e.encoding}".encode())
        for part in (e.ckpt, *e.ckpt.shards):
            if part is not e.ckpt:
                h.update(f"|{part.path.name}|{part.path.stat().st_size}".encode())
            if part.layout is not None:
                h.update(repr(sorted((k, v.begin, v.end) for k, v in part.layout.items())).encode())
    h.update(repr(list(selected)).encode())
    return h.hexdigest()[:16]


def _make_entry(ckpt: Checkpoint, step: int | None) -> Entry:
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
    return Entry(step, ckpt, encoding, exponents)


def _link_chains(entries: list[Entry]) -> None:
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
