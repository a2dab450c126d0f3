"""What :func:`lcsc.search.run` adds to a search on coefficients: the checks it makes of its
trajectory (a workdir outside the checkpoints' folders, groups of the trajectory's keys), the
choice of a span combiner, and objectives on state dicts turned into objectives on coefficients.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from lcsc.errors import SearchError
from lcsc.search.base import SearchConfig
from lcsc.search.validation import Validation
from lcsc.trajectory.groups import AUTO, Groups, combine_groups, module_patterns, resolve_groups
from lcsc.trajectory.span import SpanCombiner

if TYPE_CHECKING:  # torch is only needed for annotations; keep importing cheap
    import torch


class TrajectoryLike(Protocol):
    """What :func:`lcsc.search.run` needs from a trajectory (see :mod:`lcsc.trajectory`)."""

    @property
    def steps(self) -> Sequence[int]: ...

    def combine(self, coefficients: npt.NDArray[np.float64]) -> dict[str, torch.Tensor]: ...

    def fingerprint(self) -> str: ...


def check_workdir(workdir: str | os.PathLike[str], paths: Sequence[os.PathLike[str]]) -> None:
    """Refuse a workdir in a folder of the trajectory: its files would mix with them."""
    work = Path(workdir).resolve()
    for folder in {Path(p).parent.resolve() for p in paths}:
        if work == folder or folder in work.parents:
            raise SearchError(
                f"workdir {workdir}: is {'' if work == folder else 'inside '}the folder of"
                f" the trajectory's checkpoints ({folder}); the search's files would mix with"
                " them: choose a workdir outside it"
            )


def search_groups(
    groups: Groups | str | None, trajectory: TrajectoryLike, config: SearchConfig
) -> Groups | None:
    """The groups :func:`lcsc.search.run` searches: ``groups`` checked against the trajectory,
    or for ``"auto"`` one group per top-level module (:func:`module_patterns`) when the method
    takes groups and there are several modules, else None (one vector for all)."""
    keys = list(getattr(trajectory, "keys", []))  # duck-typed trajectories may have none
    if isinstance(groups, str):
        if groups != AUTO:
            raise SearchError(f"groups must be a Groups, {AUTO!r} or None; got {groups!r}")
        if not config.takes_groups or not keys:
            return None
        found = resolve_groups(keys, module_patterns(keys))
        return found if len(found) > 1 else None
    if groups is None:
        return None
    if not config.takes_groups:
        raise SearchError(
            f"groups need method 'subspace' or 'cmaes' (CMA-ES over the groups' vectors,"
            f" without full_after); got {config.method!r}"
        )
    if list(groups.keys) != keys:
        raise SearchError("groups must be resolved from the trajectory's keys (resolve_groups)")
    return groups


def span_combiner(
    trajectory: TrajectoryLike,
    config: SearchConfig,
    init: npt.NDArray[np.float64],
    budget: int,
) -> TrajectoryLike | SpanCombiner:
    """A :class:`SpanCombiner` when the method searches a span of at most K/4 vectors and
    the budget repays computing their models; else the trajectory itself."""
    span = config.span(init)
    if span is None or 4 * len(span) > init.shape[1] or budget < 2 * len(span):
        return trajectory
    return SpanCombiner.build(trajectory, span) or trajectory


def on_coefficients(
    objective: Callable[[dict[str, torch.Tensor]], float],
    combiner: TrajectoryLike | SpanCombiner,
    groups: Groups | None,
) -> Callable[[npt.NDArray[np.float64]], float]:
    """``objective`` of the model that ``combiner`` combines from coefficients (one block of
    ``K`` per group with ``groups``)."""

    def score(coefficients: npt.NDArray[np.float64]) -> float:
        return objective(combine_groups(combiner, groups, coefficients))

    return score


def validation_on_coefficients(
    validation: Validation, trajectory: TrajectoryLike, groups: Groups | None
) -> Validation:
    """``validation`` with its state-dict objective turned into one on coefficients; the
    identity stays that of the user's callable, not of the wrapper."""
    identity = validation.describe()["objective"]
    objective = on_coefficients(validation.objective, trajectory, groups)
    return dataclasses.replace(validation, objective=objective, identity=identity)
