"""What ``lcsc inspect`` reports about checkpoints: a summary plus every problem found."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lcsc.checkpoint import SHARD_INDEX, read_checkpoint
from lcsc.errors import LcscError
from lcsc.sharded import shard_paths
from lcsc.state_dict import Extraction
from lcsc.trajectory import Trajectory
from lcsc.trajectory.sources import Source, find_source, no_checkpoints


@dataclass(frozen=True)
class Inspection:
    """Facts about a set of checkpoints; ``problems`` is empty when they form a valid trajectory."""

    files: int
    steps: list[int] = field(default_factory=list)
    parameters: int = 0
    bytes: int = 0
    dtypes: dict[str, int] = field(default_factory=dict)  # dtype name -> number of tensors
    intervals: dict[int, int] = field(default_factory=dict)  # step gap -> how often
    metadata: dict[str, object] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    source: Source | None = None  # the layout recognised
    extraction: Extraction | None = None  # how the weights were found in the files

    def lines(self) -> list[str]:
        out = [f"checkpoints: {len(self.steps)} of {self.files} files"]
        out.extend(_source_lines(self.source))
        out.extend(_extraction_lines(self.extraction))
        if self.steps:
            out.append(f"steps:       {self.steps[0]} .. {self.steps[-1]}")
        if self.intervals:
            gaps = ", ".join(f"{g} (x{n})" for g, n in sorted(self.intervals.items()))
            out.append(f"interval:    {gaps}")
        if self.steps:  # else unknown: the files did not open as a trajectory
            out.append(f"parameters:  {self.parameters:,} per checkpoint")
        out.append(f"bytes:       {self.bytes:,} on disk ({self.bytes / 2**20:.1f} MiB)")
        if self.dtypes:
            out.append("dtypes:      " + ", ".join(f"{d} x{n}" for d, n in self.dtypes.items()))
        if self.metadata:
            out.append(f"metadata:    {self.metadata}")
        out.append("problems:    " + ("none" if not self.problems else f"{len(self.problems)}"))
        out.extend(f"  - {p}" for p in self.problems)
        return out


def inspect_paths(
    paths: Sequence[str | os.PathLike[str]],
    *,
    steps: Sequence[int] | None = None,
    component: str | None = None,
    key: str | None = None,
    strip_prefix: str | None = None,
) -> Inspection:
    """Summarise checkpoints in any layout :meth:`Trajectory.from_paths` opens (same options),
    collecting problems instead of stopping at the first one."""
    try:
        source = find_source(paths, component)
    except LcscError as exc:
        return Inspection(0, problems=[str(exc)])
    files = list(source.files)
    if not files:
        return Inspection(0, source=source, problems=[no_checkpoints(Path(paths[0]))])
    problems: list[str] = []
    try:
        traj = Trajectory.from_source(source, steps, key=key, strip_prefix=strip_prefix)
    except LcscError as exc:
        problems.append(str(exc))
        traj = None
    if traj is None:
        # Still check each file on its own, so that every unreadable one is listed.
        for p in files:
            try:
                read_checkpoint(p, key=key, strip_prefix=strip_prefix)
            except LcscError as exc:
                if str(exc) not in problems:
                    problems.append(str(exc))
        return Inspection(
            len(files),
            bytes=sum(f.stat().st_size for f in _on_disk(files) if f.is_file()),
            problems=problems,
            source=source,
        )
    steps = traj.steps
    return Inspection(
        files=len(files),
        steps=steps,
        parameters=traj.num_parameters,
        bytes=traj.nbytes,
        dtypes=dict(Counter(str(d).removeprefix("torch.") for d in traj.dtypes.values())),
        intervals=dict(Counter(b - a for a, b in zip(steps, steps[1:], strict=False))),
        metadata=dict(traj.metadata),
        problems=problems,
        source=source,
        extraction=traj.extraction,
    )


def _on_disk(files: list[Path]) -> list[Path]:
    """``files`` with the shards that each sharded index names."""
    shards = {p: shard_paths(p) if p.name.endswith(SHARD_INDEX) else [] for p in files}
    return [f for p in files for f in (p, *shards[p])]


def _source_lines(source: Source | None) -> list[str]:
    if source is None:
        return []
    out = [f"layout:      {source.layout}"]
    if source.component is not None:
        found = ", ".join(source.components)
        out.append(f"component:   {source.component} (found: {found}; choose with --component)")
    if source.config is not None:
        out.append(f"config:      {source.config}")
    if source.ignored:
        out.append("ignored:     " + ", ".join(p.name for p in source.ignored))
    out.extend(f"note:        {n}" for n in source.notes)
    return out


def _extraction_lines(e: Extraction | None) -> list[str]:
    if e is None:
        return []
    out = []
    if e.key is not None or e.other_keys:
        used = "the top level" if e.key is None else f"key '{e.key}'"
        others = f" (others: {', '.join(e.other_keys)}; choose with --key)" if e.other_keys else ""
        out.append(f"weights:     {used}{others}")
    if e.stripped:
        out.append("prefixes:    removed " + ", ".join(f"'{p}'" for p in e.stripped))
    if e.dropped:
        out.append(f"dropped:     {e.dropped} keys without the --strip-prefix prefix")
    if e.shared_prefix is not None:
        out.append(
            f"hint:        every key starts with '{e.shared_prefix}'"
            f" (--strip-prefix {e.shared_prefix} removes it)"
        )
    if e.placeholders:
        out.append(
            "unpickled:   with lcsc's restricted unpickler; not built: " + ", ".join(e.placeholders)
        )
    return out
