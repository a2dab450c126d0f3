"""Objectives: callables ``state_dict -> float`` (lower is better) that a search minimises.

* :mod:`lcsc.objectives.loading` -- a user's objective named ``MODULE:FUNCTION``;
* :mod:`lcsc.objectives.features` -- feature extractors named by a string (``digits``,
  ``inception``, ``MODULE:ATTR``), for factories' ``--objective-arg`` values;
* :mod:`lcsc.objectives.sample_fd` -- the paper's objective: Frechet distance of samples drawn
  from fixed noise by any generator ``state_dict -> samples``.

The diffusers UNet objective is ``lcsc.integrations.diffusers_objective:unet_fd``; the digits
objective for models trained by ``lcsc train`` is ``lcsc.reference.digits:digits_fd``. Importing
this package loads none of the trainers, nor diffusers.
"""

from lcsc.objectives.features import load_extractor
from lcsc.objectives.loading import Objective, load_objective, parse_pairs
from lcsc.objectives.sample_fd import SampleFD, fixed_noise

__all__ = [
    "Objective",
    "SampleFD",
    "fixed_noise",
    "load_extractor",
    "load_objective",
    "parse_pairs",
]
