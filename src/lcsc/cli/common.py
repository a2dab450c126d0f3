"""Argument helpers shared by several commands."""

from __future__ import annotations

import argparse

from lcsc.trajectory import Trajectory


def add_selection(p: argparse.ArgumentParser) -> None:
    """Positional checkpoint paths plus the window/interval selection options."""
    p.add_argument(
        "paths", nargs="+", metavar="PATH", help="checkpoint files or one Recorder directory"
    )
    p.add_argument("--start", type=int, help="first step of the window")
    p.add_argument("--stop", type=int, help="last step of the window")
    p.add_argument(
        "--every", type=int, default=1, help="keep every N-th checkpoint (from the last)"
    )


def add_objective(p: argparse.ArgumentParser) -> None:
    """``--objective MODULE:FUNCTION`` and its repeatable ``--objective-arg KEY=VALUE``."""
    p.add_argument(
        "--objective",
        required=True,
        metavar="MODULE:FUNCTION",
        help="factory returning a callable state_dict -> float (lower is better); MODULE may be"
        " a FILE.py",
    )
    p.add_argument(
        "--objective-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keyword argument for the factory, passed as a string (repeatable)",
    )


def open_selection(args: argparse.Namespace) -> Trajectory:
    """The trajectory named by :func:`add_selection`'s arguments."""
    traj = Trajectory.from_paths(args.paths)
    if args.start is not None or args.stop is not None or args.every != 1:
        traj = traj.select(args.start, args.stop, args.every)
    return traj


class StageBars:
    """One tqdm progress bar per stage of a long job: a :class:`lcsc.progress.Progress`.

    A bar opens at its stage's first report, so errors raised during set-up print alone;
    ``info`` numbers are shown beside the bar; ``done`` may go back (a CheckFree rollback).
    """

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self._bars: dict[str, object] = {}

    def __call__(self, stage: str, done: int, total: int, **info: float) -> None:
        from tqdm import tqdm

        bar = self._bars.get(stage)
        if bar is None:
            for other in self._bars.values():
                other.close()  # type: ignore[attr-defined]
            desc = f"{self.prefix}{stage}"
            bar = self._bars[stage] = tqdm(total=total, desc=desc, unit="it", leave=True)
        if info:
            shown = {k: f"{v:.4g}" if isinstance(v, float) else v for k, v in info.items()}
            bar.set_postfix(shown, refresh=False)  # type: ignore[attr-defined]
        bar.update(done - bar.n)  # type: ignore[attr-defined]  # tqdm throttles redraws

    def __enter__(self) -> StageBars:
        return self

    def __exit__(self, *exc: object) -> None:
        for bar in self._bars.values():
            bar.close()  # type: ignore[attr-defined]
