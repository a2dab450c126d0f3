"""Feature spaces that need no trained deep network: raw values, a random projection, a linear
(PCA) projection fitted to reference data, and a small MLP classifier handed over from outside
(e.g. fitted with scikit-learn). They are ``nn.Module`` extractors like the packaged nets, so
:func:`lcsc.metrics.compute_features` and :class:`lcsc.objectives.SampleFD` take them as they are.

They check whether a gain measured in one learned feature space holds in spaces of other kinds
(the transfer report of the digits experiment); none of them depends on the data set.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from lcsc.errors import LcscError


def _flat(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    # Real data never leaves [low, high]; clamp generated samples as saving them would.
    return x.to(torch.float32).flatten(1).clamp(low, high)


class PixelFeatures(nn.Module):
    """The samples' raw values, flattened and clamped to ``[low, high]``: ``(N, ...) -> (N, D)``."""

    def __init__(self, low: float = -1.0, high: float = 1.0) -> None:
        super().__init__()
        if not high > low:
            raise LcscError(f"PixelFeatures: high must exceed low, got [{low}, {high}]")
        self.low, self.high = float(low), float(high)

    def extra_repr(self) -> str:
        return f"low={self.low}, high={self.high}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _flat(x, self.low, self.high)


class RandomFeatures(nn.Module):
    """Random ReLU features ``relu(x W + b)`` of the flattened, clamped samples.

    ``W (in_dim, out_dim) ~ N(0, 1/in_dim)`` and ``b ~ N(0, 1)`` are drawn from a generator
    seeded with ``seed``: the same seed gives the same space on every machine.
    """

    def __init__(
        self, in_dim: int, out_dim: int, seed: int, low: float = -1.0, high: float = 1.0
    ) -> None:
        super().__init__()
        if in_dim < 1 or out_dim < 1:
            raise LcscError(f"RandomFeatures: dimensions must be >= 1, got {in_dim}, {out_dim}")
        g = torch.Generator().manual_seed(int(seed))
        self.register_buffer("weight", torch.randn(in_dim, out_dim, generator=g) / in_dim**0.5)
        self.register_buffer("bias", torch.randn(out_dim, generator=g))
        self.low, self.high = float(low), float(high)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(_flat(x, self.low, self.high) @ self.weight + self.bias)


class LinearProjection(nn.Module):
    """``(x - mean) @ components.T`` of the flattened, clamped samples: ``(N, ...) -> (N, k)``."""

    def __init__(
        self, mean: np.ndarray, components: np.ndarray, low: float = -1.0, high: float = 1.0
    ) -> None:
        super().__init__()
        mean_t = torch.as_tensor(np.asarray(mean), dtype=torch.float32)
        comp_t = torch.as_tensor(np.asarray(components), dtype=torch.float32)
        if mean_t.ndim != 1 or comp_t.ndim != 2 or comp_t.shape[1] != mean_t.shape[0]:
            raise LcscError(
                f"LinearProjection: mean {tuple(mean_t.shape)} and components"
                f" {tuple(comp_t.shape)} do not fit (expected (D,) and (k, D))"
            )
        self.register_buffer("mean", mean_t)
        self.register_buffer("components", comp_t)
        self.low, self.high = float(low), float(high)

    @classmethod
    def pca(
        cls, reference: torch.Tensor, k: int, low: float = -1.0, high: float = 1.0
    ) -> LinearProjection:
        """The top-``k`` principal components of ``reference`` (N, ...).

        Each component's sign is fixed so that its largest-magnitude entry is positive, which
        makes the projection unique (an SVD may return either sign).
        """
        x = _flat(reference, low, high).to(torch.float64).numpy()
        if not 1 <= k <= min(x.shape):
            raise LcscError(f"LinearProjection.pca: k must be in [1, {min(x.shape)}], got {k}")
        mean = x.mean(axis=0)
        _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
        comps = vt[:k]
        signs = np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])
        return cls(mean, comps * signs[:, None], low, high)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (_flat(x, self.low, self.high) - self.mean) @ self.components.T


_ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "logistic": torch.sigmoid}


class MLPClassifierFeatures(nn.Module):
    """A fully connected classifier given by its weights; features are its last hidden layer.

    ``weights[i]`` is ``(in, out)`` and ``biases[i]`` ``(out,)`` for each layer, the last being
    the output layer (the layout of scikit-learn's ``MLPClassifier.coefs_`` and
    ``intercepts_``). ``features_and_logits`` gives the class logits too.
    """

    def __init__(
        self,
        weights: Sequence[np.ndarray],
        biases: Sequence[np.ndarray],
        activation: str = "relu",
        low: float = -1.0,
        high: float = 1.0,
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise LcscError(f"MLPClassifierFeatures: unknown activation {activation!r}")
        if len(weights) < 2 or len(weights) != len(biases):
            raise LcscError("MLPClassifierFeatures: needs >= 2 layers, one bias per weight")
        self.layers = nn.ModuleList()
        for w, b in zip(weights, biases, strict=True):
            w_t = torch.as_tensor(np.asarray(w), dtype=torch.float32)
            layer = nn.Linear(w_t.shape[0], w_t.shape[1])
            layer.weight.data.copy_(w_t.T)
            layer.bias.data.copy_(torch.as_tensor(np.asarray(b), dtype=torch.float32))
            self.layers.append(layer)
        self.requires_grad_(False)
        self.activation = activation
        self.low, self.high = float(low), float(high)

    def extra_repr(self) -> str:
        return f"activation={self.activation}"

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Last hidden layer (N, H) and logits (N, C)."""
        h = _flat(x, self.low, self.high)
        act = _ACTIVATIONS[self.activation]
        for layer in self.layers[:-1]:
            h = act(layer(h))
        return h, self.layers[-1](h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(x)[0]
