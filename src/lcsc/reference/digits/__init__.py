"""The digits experiment: LCSC against its baselines on scikit-learn's 8x8 digits.

* :mod:`.data` -- the one digits loader and train/test split (generators and feature nets);
* :mod:`.objective` -- :func:`digits_fd`, the search objective for ``lcsc train`` models;
* :mod:`.evaluation` -- held-out scores on the test split, with the noise floor;
* :mod:`.transfer` -- the feature spaces neither the search nor its validation use;
* :mod:`.experiment` -- one comparison (and the search's levers); :mod:`.findings` -- what it
  found, in numbers and words;
* :mod:`.demo` -- ``lcsc demo``; :mod:`.plots` -- coefficient, search and Goodhart plots, tables.
"""

from lcsc.reference.digits.objective import digits_fd

__all__ = ["digits_fd"]
