"""Objectives: callables ``state_dict -> float`` (lower is better) that a search minimises.

* :mod:`lcsc.objectives.loading` -- a user's objective named ``MODULE:FUNCTION``;
* :mod:`lcsc.objectives.sample_fd` -- the paper's objective: Frechet distance of samples drawn
  from fixed noise, for models trained by ``lcsc train``.
"""

from lcsc.objectives.loading import Objective, load_objective, parse_pairs
from lcsc.objectives.sample_fd import FixedNoiseGenerator, SampleFD, digits_fd, fixed_noise

__all__ = [
    "FixedNoiseGenerator",
    "Objective",
    "SampleFD",
    "digits_fd",
    "fixed_noise",
    "load_objective",
    "parse_pairs",
]
