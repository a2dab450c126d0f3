"""Search for the best linear combination of saved checkpoints (LCSC).

Given ``K`` checkpoints ``theta_1..theta_K`` of one run, find coefficients ``a`` (sum 1,
negatives allowed) minimising a non-differentiable score ``F(sum_i a_i theta_i)``:

* :func:`run` -- model level: scores ``trajectory.combine(a)`` with ``objective``;
* :func:`minimize` -- vector level: ``score_fn(a) -> float``;
* :func:`iterate` -- the same as a generator of :class:`Evaluation` (progress bars).

Methods: ``"subspace"`` (the default: CMA-ES over smooth coefficient profiles, one vector per
top-level module of the network by default, see ``run(groups=)``), ``"evolutionary"`` (the
paper's Algorithm 1), ``"cmaes"``, ``"random"``; or a config (:class:`SubspaceConfig`,
:class:`EvolutionaryConfig`, :class:`CMAESConfig`, :class:`RandomConfig`).
With a ``workdir`` the search is logged and resumes exactly after any interruption.
Against overfitting the metric: a :class:`Validation` objective picks the result from the
search path and stops early; a :class:`Penalty` keeps candidates near the initial vector.
"""

from lcsc.search.base import SearchConfig
from lcsc.search.cmaes import CMAESConfig
from lcsc.search.evolutionary import EvolutionaryConfig
from lcsc.search.penalty import Penalty
from lcsc.search.random_search import RandomConfig
from lcsc.search.results import Evaluation, SearchResult, Validated
from lcsc.search.runner import (
    DEFAULT_GROUPS,
    DEFAULT_METHOD,
    METHODS,
    ema_init,
    iterate,
    minimize,
    resolve_method,
    run,
)
from lcsc.search.subspace import SubspaceConfig
from lcsc.search.validation import Validation

__all__ = [
    "DEFAULT_GROUPS",
    "DEFAULT_METHOD",
    "METHODS",
    "CMAESConfig",
    "Evaluation",
    "EvolutionaryConfig",
    "Penalty",
    "RandomConfig",
    "SearchConfig",
    "SearchResult",
    "SubspaceConfig",
    "Validated",
    "Validation",
    "ema_init",
    "iterate",
    "minimize",
    "resolve_method",
    "run",
]
