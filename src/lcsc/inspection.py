"""What ``lcsc inspect`` reports about checkpoints: a summary plus every problem found."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lcsc.checkpoint import read_checkpoint
from lcsc.errors import LcscError
from lcsc.trajectory import Trajectory, layout


@dataclass(frozen=True)
class Report:
    """Facts about a set of checkpoints; ``problems`` is empty when they form a valid trajectory."""

    files: int
    steps: list[int] = field(default_factory=list)
    parameters: int = 0
    bytes: int = 0
    dtypes: dict[str, int] = field(default_factory=dict)  # dtype name -> number of tensors
    intervals: dict[int, int] = field(default_factory=dict)  # step gap -> how often
    metadata: dict[str, object] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"checkpoints: {len(self.steps)} of {self.files} files"]
        if self.steps:
            out.append(f"steps:       {self.steps[0]} .. {self.steps[-1]}")
        if self.intervals:
            gaps = ", ".join(f"{g} (x{n})" for g, n in sorted(self.intervals.items()))
            out.append(f"interval:    {gaps}")
        out.append(f"parameters:  {self.parameters:,} per checkpoint")
        out.append(f"bytes:       {self.bytes:,} on disk ({self.bytes / 2**20:.1f} MiB)")
        if self.dtypes:
            out.append("dtypes:      " + ", ".join(f"{d} x{n}" for d, n in self.dtypes.items()))
        if self.metadata:
            out.append(f"metadata:    {self.metadata}")
        out.append("problems:    " + ("none" if not self.problems else f"{len(self.problems)}"))
        out.extend(f"  - {p}" for p in self.problems)
        return out


def inspect_paths(paths: Sequence[str | os.PathLike[str]]) -> Report:
    """Summarise checkpoint files or a Recorder directory, collecting problems instead of
    stopping at the first one."""
    files = _files(paths)
    problems: list[str] = []
    if not files:
        return Report(0, problems=[f"{', '.join(map(str, paths))}: no checkpoint files found"])
    try:
        traj = Trajectory.from_paths(paths)
    except LcscError as exc:
        problems.append(str(exc))
        traj = None
    if traj is None:
        # Still check each file on its own, so that every unreadable one is listed.
        for p in files:
            try:
                read_checkpoint(p)
            except LcscError as exc:
                if str(exc) not in problems:
                    problems.append(str(exc))
        return Report(
            len(files),
            bytes=sum(p.stat().st_size for p in files if p.is_file()),
            problems=problems,
        )
    steps = traj.steps
    return Report(
        files=len(files),
        steps=steps,
        parameters=traj.num_parameters,
        bytes=traj.nbytes,
        dtypes=dict(Counter(str(d).removeprefix("torch.") for d in traj.dtypes.values())),
        intervals=dict(Counter(b - a for a, b in zip(steps, steps[1:], strict=False))),
        metadata=dict(traj.metadata),
        problems=problems,
    )


def _files(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(layout.checkpoint_files(p))
        else:
            out.append(p)
    return out
