"""Training objectives: EDM denoising, improved consistency training (iCT) and consistency
distillation (CD), each a function of one batch returning a scalar loss.

All noise is drawn from the given ``torch.Generator``, so a seed fixes every loss value.
Shapes: ``y`` is a batch of clean data (B, *S) in model space.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import torch

DenoiseFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------- EDM (diffusion)
def edm_loss(
    model: DenoiseFn,
    y: torch.Tensor,
    g: torch.Generator,
    *,
    sigma_data: float = 0.5,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    sigma: torch.Tensor | None = None,
) -> torch.Tensor:
    """EDM loss (Karras et al. 2022, Eq. (2) with Table 1's choices)::

        ln(sigma) ~ N(p_mean, p_std^2),  n ~ N(0, sigma^2 I),
        L = E[ lambda(sigma) || D(y + n, sigma) - y ||^2 ],
        lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2,

    averaged over the batch and the sample's values. ``sigma`` (B,), if given, replaces the
    lognormal draw (e.g. a noise curriculum's levels, :mod:`.schedules`).
    """
    b = y.shape[0]
    if sigma is None:
        sigma = (torch.randn(b, generator=g) * p_std + p_mean).exp()
    sigma = sigma.to(y.dtype)
    noise = torch.randn(y.shape, generator=g, dtype=y.dtype)
    s = _bcast(sigma, y)
    weight = (s**2 + sigma_data**2) / (s * sigma_data) ** 2
    return (weight * (model(y + s * noise, sigma) - y) ** 2).mean()


# --------------------------------------------------------------------------- consistency
def ct_num_levels(k: int, iterations: int, s0: int = 10, s1: int = 1280) -> int:
    """The iCT discretisation curriculum (Song & Dhariwal 2023, Sec. 3.4): the number of noise
    levels at iteration ``k`` (0-based) of a run of ``K = iterations``::

        N(k) = min(s0 2^floor(k / K'), s1) + 1,   K' = floor(K / (log2 floor(s1 / s0) + 1))

    The doubling interval ``K'`` scales with the run, so a short run still spends its last
    ``K'`` iterations at ``s1``.
    """
    doublings = math.floor(math.log2(s1 // s0)) + 1
    interval = max(1, iterations // doublings)
    return min(s0 * 2 ** (k // interval), s1) + 1


@lru_cache(maxsize=64)
def discretisation(
    n: int, sigma_min: float, sigma_max: float, rho: float, p_mean: float, p_std: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` increasing noise levels (n,) and the probabilities (n-1,) of their adjacent pairs
    (both float64; cached, do not modify)::

        sigma_i = (s_min^(1/rho) + i/(n-1) (s_max^(1/rho) - s_min^(1/rho)))^rho
        p_i ~ erf((ln s_{i+1} - P_mean) / (sqrt(2) P_std)) - erf((ln s_i - P_mean) / (...))

    the latter being iCT's discretised lognormal over the pairs.
    """
    i = torch.arange(n, dtype=torch.float64) / (n - 1)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    levels = (lo + i * (hi - lo)) ** rho
    cdf = torch.erf((levels.log() - p_mean) / (math.sqrt(2.0) * p_std))
    p = cdf[1:] - cdf[:-1]
    return levels, p / p.sum()


def pseudo_huber(diff: torch.Tensor, c: float) -> torch.Tensor:
    """Per-sample pseudo-Huber distance ``sqrt(||diff||^2 + c^2) - c``: (B, *S) -> (B,)."""
    sq = diff.reshape(diff.shape[0], -1).pow(2).sum(1)
    return sq / ((sq + c * c).sqrt() + c)  # the same, without cancellation for small diffs


def huber_c(dim: int) -> float:
    """iCT's ``c = 0.00054 sqrt(d)`` for samples of ``d`` values."""
    return 0.00054 * math.sqrt(dim)


def consistency_loss(
    model: DenoiseFn,
    y: torch.Tensor,
    g: torch.Generator,
    levels: torch.Tensor,
    probs: torch.Tensor,
    *,
    teacher: DenoiseFn | None = None,
    distance: str = "huber",
    c: float | None = None,
) -> torch.Tensor:
    """Consistency training (``teacher=None``) or distillation loss, with target ``stop-grad(f)``
    of the online network (iCT: no EMA teacher network)::

        L = E[ lambda_i d(f(x_{i+1}, s_{i+1}), sg f(x_i, s_i)) ],  lambda_i = 1 / (s_{i+1} - s_i)

    * CT (Song & Dhariwal 2023): ``x_{i+1} = y + s_{i+1} z`` and ``x_i = y + s_i z``, same z.
    * CD (Song et al. 2023): ``x_i`` is one Heun step of the teacher's probability-flow ODE
      ``dx/ds = (x - D_phi(x, s)) / s`` from ``x_{i+1}`` to ``s_i``.

    ``d`` is the pseudo-Huber distance (``c`` defaults to ``0.00054 sqrt(dim)``) or the squared
    L2 distance; ``levels`` (n,) are the increasing noise levels of the discretisation and
    ``probs`` (n-1,) the probabilities of its pairs (see :func:`discretisation`). Dropout, if the
    model has any, is active in both evaluations, as in iCT.
    """
    b = y.shape[0]
    i = torch.multinomial(probs, b, replacement=True, generator=g)
    s_lo, s_hi = levels[i], levels[i + 1]
    z = torch.randn(y.shape, generator=g, dtype=y.dtype)
    lo, hi = s_lo.to(y.dtype), s_hi.to(y.dtype)
    x_hi = y + _bcast(hi, y) * z
    with torch.no_grad():
        x_lo = y + _bcast(lo, y) * z if teacher is None else heun_step(teacher, x_hi, hi, lo)
        target = model(x_lo, lo)
    diff = model(x_hi, hi) - target
    if distance == "huber":
        dist = pseudo_huber(diff, huber_c(diff[0].numel()) if c is None else c)
    else:
        dist = diff.reshape(b, -1).pow(2).sum(1)
    weight = (1.0 / (s_hi - s_lo)).to(y.dtype)
    return (weight * dist).mean()


def heun_step(
    teacher: DenoiseFn, x: torch.Tensor, s: torch.Tensor, s_next: torch.Tensor
) -> torch.Tensor:
    """One Heun step of ``dx/ds = (x - D(x, s)) / s`` from ``s`` to ``s_next > 0`` (each (B,))."""
    h = _bcast(s_next - s, x)
    d = (x - teacher(x, s)) / _bcast(s, x)
    x_pred = x + h * d
    d_next = (x_pred - teacher(x_pred, s_next)) / _bcast(s_next, x)
    return x + h * 0.5 * (d + d_next)


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, ..., 1) to broadcast against ``like`` (B, *S)."""
    return v.reshape(-1, *([1] * (like.ndim - 1)))
