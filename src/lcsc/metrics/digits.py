"""scikit-learn's 8x8 digits (shipped with scikit-learn, nothing downloaded) in model space.

The fixed train/test split here is the one the packaged digits feature nets were trained and
evaluated on; use the test split (or all of it) as the reference set for digit FIDs.
"""

from __future__ import annotations

import torch

from lcsc.errors import LcscError
from lcsc.metrics.features import digits_to_model_space

SPLIT_SEED = 0
TEST_FRACTION = 0.2


def load_digits_split(
    seed: int = SPLIT_SEED, test_fraction: float = TEST_FRACTION
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stratified split of the 1797 digits: ``x_train (N, 64), y_train (N,), x_test, y_test``.

    Pixels are in [-1, 1] (``pixel / 8 - 1``), float32; labels int64.
    """
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        raise LcscError("the digits data set needs scikit-learn: pip install scikit-learn") from exc
    data = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(
        data.data, data.target, test_size=test_fraction, random_state=seed, stratify=data.target
    )
    return (
        digits_to_model_space(torch.from_numpy(x_tr)),
        torch.from_numpy(y_tr).long(),
        digits_to_model_space(torch.from_numpy(x_te)),
        torch.from_numpy(y_te).long(),
    )
