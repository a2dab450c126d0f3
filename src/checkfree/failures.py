"""The failure model: which stages are lost at the start of which executed iteration.

A stage fails at an executed iteration with probability

    p = 1 - (1 - h)^(iteration_time / 3600)

from an hourly per-stage failure rate ``h`` (the chance that a given stage is lost within an
hour, iterations being independent). Draws come from the ``failures`` stream of the run seed,
one uniform per stage per executed iteration, so the schedule is the same for every strategy
and every ``failing_stages`` setting (protected edge stages only have their failures dropped).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from checkfree.config import FailureConfig
from checkfree.rng import numpy_rng
from lcsc.errors import LcscError

#: Failure draws are made in blocks of this many iterations (one generator per block).
_BLOCK = 1024


def failure_probability(hourly_rate: float, iteration_time_s: float) -> float:
    """Per-iteration, per-stage ``p = 1 - (1 - h)^(t / 3600)`` for ``h`` in ``[0, 1)``."""
    if not 0.0 <= hourly_rate < 1.0:
        raise LcscError(f"hourly failure rate must be in [0, 1), got {hourly_rate}")
    if iteration_time_s <= 0:
        raise LcscError(f"iteration time must be positive, got {iteration_time_s}")
    return float(-np.expm1(np.log1p(-hourly_rate) * iteration_time_s / 3600.0))


class FailureSchedule:
    """Failed stages per executed iteration ``step`` (0-based), precomputed lazily by blocks.

    ``failed(step)`` is a pure function of ``(seed, stages, probability, failing)``: block
    ``b`` of steps ``[b * 1024, (b + 1) * 1024)`` is drawn from its own generator, so the
    schedule can be extended (checkpoint rollbacks execute more iterations) without changing
    its beginning.
    """

    def __init__(
        self,
        seed: int,
        stages: int,
        probability: float,
        failing: Iterable[int] | None = None,
        events: Iterable[tuple[int, int]] | None = None,
    ) -> None:
        self.seed = seed
        self.stages = stages
        self.probability = probability
        self.failing = frozenset(range(stages) if failing is None else failing)
        self._events: dict[int, tuple[int, ...]] | None = None
        if events is not None:
            table: dict[int, set[int]] = {}
            for step, stage in events:
                table.setdefault(step, set()).add(stage)
            self._events = {s: tuple(sorted(v)) for s, v in table.items()}
        self._blocks: dict[int, np.ndarray] = {}

    @classmethod
    def from_config(cls, config: FailureConfig, seed: int, stages: int) -> FailureSchedule:
        failing = range(stages) if config.stages == "all" else range(1, stages - 1)
        p = failure_probability(config.rate_percent / 100.0, config.iteration_time_s)
        return cls(seed, stages, p, failing, config.events)

    def _block(self, b: int) -> np.ndarray:
        if b not in self._blocks:
            u = numpy_rng(self.seed, "failures", b).random((_BLOCK, self.stages))
            self._blocks[b] = u < self.probability
        return self._blocks[b]

    def failed(self, step: int) -> tuple[int, ...]:
        """Stages lost at the start of executed iteration ``step``, in increasing order."""
        if self._events is not None:
            return self._events.get(step, ())
        row = self._block(step // _BLOCK)[step % _BLOCK]
        return tuple(int(i) for i in np.flatnonzero(row) if int(i) in self.failing)

    def table(self, steps: int) -> np.ndarray:
        """``[steps, stages]`` booleans: ``table[t, i]`` is True when stage ``i`` fails at ``t``."""
        out = np.zeros((steps, self.stages), dtype=bool)
        for t in range(steps):
            out[t, list(self.failed(t))] = True
        return out
