"""One way to report the progress of long work: ``progress(stage, done, total, **info)``.

Functions that run to completion (training, the baselines' grids, feature statistics, the
digits experiment, CheckFree training) take ``progress: Progress | None``. ``stage`` names the
phase (``"train"``, ``"EMA grid"``, ...), ``done`` of ``total`` units are finished, and ``info``
holds numbers worth showing (``loss=0.12``). A search is a generator instead
(:func:`lcsc.search.iterate`): each item it yields is its progress. The CLI draws both with
:class:`lcsc.cli.common.StageBars`.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """``progress(stage, done, total, **info)``: ``done`` of ``total`` units of ``stage``."""

    def __call__(self, stage: str, done: int, total: int, **info: float) -> None: ...


def report(progress: Progress | None, stage: str, done: int, total: int, **info: float) -> None:
    """Call ``progress`` unless it is None (the default of every function that takes one)."""
    if progress is not None:
        progress(stage, done, total, **info)
