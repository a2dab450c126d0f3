"""The digits experiment: LCSC against its baselines on scikit-learn's 8x8 digits.

* :mod:`.data` -- the one digits loader and train/test split (generators and feature nets);
* :mod:`.objective` -- :func:`digits_fd`, the search objective for ``lcsc train`` models;
* :mod:`.evaluation` -- held-out metrics; :mod:`.experiment` -- one comparison;
* :mod:`.demo` -- ``lcsc demo``; :mod:`.plots` -- coefficient and search plots, tables.
"""

from lcsc.reference.digits.objective import digits_fd

__all__ = ["digits_fd"]
