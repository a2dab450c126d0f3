"""The digits transfer spaces: feature spaces of other kinds than the search's, that neither the
search nor its validation use, all built offline and deterministically from the TRAIN split:

* ``fd_pixels`` -- the 64 raw pixels;
* ``fd_random`` -- 256 random ReLU features of the pixels (seed 0);
* ``fd_pca`` -- the top 16 principal components of the train split (a linear projection);
* ``fd_mlp`` -- the hidden layer of a scikit-learn MLP (32 sigmoid units, full-batch L-BFGS,
  L2 penalty, no augmentation), fitted at run time: another architecture and recipe than the
  packaged nets (ReLU MLP / conv net, AdamW with augmentation).

The MLP's class probabilities give the classifier measures (confidence, class balance).
"""

from __future__ import annotations

import functools
import warnings

import torch
from torch import nn

from lcsc.metrics.projections import (
    LinearProjection,
    MLPClassifierFeatures,
    PixelFeatures,
    RandomFeatures,
)
from lcsc.reference.digits.data import SPLIT_SEED, TEST_FRACTION, load_digits_split

TRANSFER_FDS = ("fd_pixels", "fd_random", "fd_pca", "fd_mlp")
RANDOM_DIM, PCA_DIM, MLP_HIDDEN = 256, 16, 32
SEED = 0


def fit_mlp_classifier(x: torch.Tensor, y: torch.Tensor, seed: int = SEED) -> nn.Module:
    """A scikit-learn MLP classifier fitted to digits ``x`` (N, 64) in [-1, 1] and labels ``y``,
    as an extractor (hidden layer features, class logits). Deterministic for a fixed ``seed``."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(
        hidden_layer_sizes=(MLP_HIDDEN,),
        activation="logistic",
        solver="lbfgs",
        alpha=1e-2,
        max_iter=300,
        random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a fixed budget is the recipe
        clf.fit(x.reshape(len(x), -1).double().numpy(), y.numpy())
    return MLPClassifierFeatures(clf.coefs_, clf.intercepts_, activation="logistic").eval()


@functools.lru_cache(maxsize=2)
def transfer_extractors(
    split_seed: int = SPLIT_SEED, test_fraction: float = TEST_FRACTION
) -> dict[str, nn.Module]:
    """The four transfer spaces, fitted to the train split of the digits split
    (``split_seed``, ``test_fraction``); computed once per process."""
    x_train, y_train, _, _ = load_digits_split(split_seed, test_fraction)
    return {
        "fd_pixels": PixelFeatures(),
        "fd_random": RandomFeatures(64, RANDOM_DIM, SEED),
        "fd_pca": LinearProjection.pca(x_train, PCA_DIM),
        "fd_mlp": fit_mlp_classifier(x_train, y_train),
    }
