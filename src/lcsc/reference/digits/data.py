"""scikit-learn's 8x8 digits (shipped with scikit-learn, nothing downloaded): the one loader and
the one train/test split, used both by the generators (``lcsc train --data digits``) and by the
packaged digits feature nets, so that the test split is unseen by either."""

from __future__ import annotations

import numpy as np
import torch

from lcsc.errors import LcscError
from lcsc.metrics.features import digits_to_model_space

SPLIT_SEED = 0
TEST_FRACTION = 0.2


def digits_images() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits: images (1797, 8, 8) float32 on the 0..16 scale, labels (1797,) int64."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - scikit-learn is a dependency
        raise LcscError("the digits data set needs scikit-learn: pip install scikit-learn") from exc
    data = load_digits()
    return data.images.astype(np.float32), data.target.astype(np.int64)


def stratified_split(
    labels: np.ndarray, test_fraction: float = TEST_FRACTION, seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted indices ``(train, test)`` of a split that keeps each class's share in both parts."""
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(
        np.arange(len(labels)), test_size=test_fraction, random_state=seed, stratify=labels
    )
    return np.sort(train), np.sort(test)


def load_digits_split(
    seed: int = SPLIT_SEED, test_fraction: float = TEST_FRACTION
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The split as flat vectors: ``x_train (N, 64), y_train (N,), x_test, y_test``.

    Pixels are in [-1, 1] (``pixel / 8 - 1``), float32; labels int64.
    """
    images, labels = digits_images()
    train, test = stratified_split(labels, test_fraction, seed)
    flat = torch.from_numpy(images.reshape(len(images), 64))
    y = torch.from_numpy(labels)
    return digits_to_model_space(flat[train]), y[train], digits_to_model_space(flat[test]), y[test]
