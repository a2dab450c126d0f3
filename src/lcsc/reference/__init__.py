"""Reference models and the digits experiment, apart from the core tool (which imports none of
this package).

* :mod:`lcsc.reference.generative` -- EDM denoisers, DM / CT / CD trainers, samplers, the
  faster-training schedules and the fixed-noise generator of a trained model;
* :mod:`lcsc.reference.digits` -- the digits experiment: data and its one train/test split,
  the digits FD objective, held-out evaluation, the experiment shared by ``lcsc demo`` and
  ``benchmarks/paper_claims.py``, and its plots.
"""
