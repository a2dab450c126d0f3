"""Compact storage: each checkpoint as a half-precision difference from the previous one.

The differences form closed-loop chains (``full, delta, delta, ...``): the writer encodes
``theta_j - recon_{j-1}``, where ``recon_{j-1}`` is what a reader reconstructs, so rounding errors
do not accumulate along the chain, and each difference spans one saving interval only, where a
difference from a fixed anchor would grow with the window and lose precision. Each delta tensor
carries a power-of-two scale that maps its largest magnitude to 2**15, so small differences never
fall into float16's subnormal range. Floating tensors only; other tensors are stored as they are.
"""

from __future__ import annotations

import math

import numpy as np
import torch

_TARGET_EXPONENT = 15  # largest |delta| is mapped to about 2**15 (float16 max is 65504)


def encode_delta(theta: torch.Tensor, recon: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Encode ``theta - recon`` as float16 values ``q`` and a scale exponent ``e``.

    Shapes: ``theta``, ``recon`` and ``q`` share one shape. ``q * 2**e`` approximates the
    difference to a relative precision of 2**-11 of its largest entry or better.
    """
    d = theta.to(recon.dtype) - recon
    peak = float(d.abs().max()) if d.numel() else 0.0
    e = math.ceil(math.log2(peak)) - _TARGET_EXPONENT if peak > 0 else 0
    e = max(-100, min(100, e))
    return torch.ldexp(d, torch.tensor(-e, dtype=d.dtype)).to(torch.float16), e


def decode_delta(q: torch.Tensor, e: int, dtype: torch.dtype) -> torch.Tensor:
    """The difference ``q * 2**e`` as ``dtype`` (exact: scaling by a power of two)."""
    return torch.ldexp(q.to(dtype), torch.tensor(e, dtype=dtype))


def chain_weights(coefficients: np.ndarray, chain_start: np.ndarray) -> np.ndarray:
    """Per-file weights that turn a combination of checkpoints into one of stored files.

    A chain ``f_0, d_1, ..., d_m`` stores ``theta_j = f_0 + sum_{i<=j} d_i``, so
    ``sum_j a_j theta_j = (sum_j a_j) f_0 + sum_i (sum_{j>=i} a_j) d_i``: each file gets the
    suffix sum of the coefficients of its chain from itself on.

    Shapes: ``coefficients`` (K,) float64; ``chain_start`` (K,) int, the index of the full file
    that starts each entry's chain (an entry that starts a chain points to itself).
    """
    w = np.zeros_like(coefficients, dtype=np.float64)
    running = 0.0
    for j in range(len(coefficients) - 1, -1, -1):
        running += coefficients[j]
        w[j] = running
        if chain_start[j] == j:
            running = 0.0
    return w
