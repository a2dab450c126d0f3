"""Deterministic samplers for EDM denoisers and consistency models, from given initial noise.

The probability-flow ODE of the EDM formulation (Karras et al. 2022, Eq. (3) with s(t)=1,
sigma(t)=t) is

    dx / dsigma = (x - D(x, sigma)) / sigma,

integrated from ``x = sigma_max z`` (z ~ N(0, I)) down to ``sigma = 0`` on the EDM time
discretisation (Eq. (5))::

    sigma_i = (sigma_max^(1/rho) + i / (n - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho,
    i = 0 .. n-1, followed by sigma_n = 0.

Every sampler takes the initial noise ``z`` (N, *S) as an argument and draws nothing itself
(the consistency multistep sampler's re-noising uses a given tensor or generator, drawn once
for the whole batch), so a fixed ``z`` gives the same samples for any ``batch_size``.
``nfe`` is always the number of network evaluations:

* ``euler``: n steps, n evaluations.
* ``heun``: n steps, 2n - 1 evaluations (the last step, to sigma = 0, is an Euler step), so
  ``nfe`` must be odd.
* ``dpmpp``: DPM-Solver++(2M) (Lu et al. 2022), n steps, n evaluations.
* ``cm``: consistency sampling, ``nfe`` evaluations at the given (or default) noise levels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from lcsc.config import Config, integer, real
from lcsc.errors import LcscError

DenoiseFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
METHODS = ("euler", "heun", "dpmpp", "cm")


@dataclass(frozen=True)
class SigmaSchedule(Config):
    """The EDM noise levels: ``sigma_min``, ``sigma_max`` and the warping exponent ``rho``."""

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0

    def __post_init__(self) -> None:
        self.check("sigma_min", real, above=0.0)
        self.check("sigma_max", real)
        msg = f"must exceed sigma_min {self.sigma_min}"
        self.require(self.sigma_max > self.sigma_min, "sigma_max", msg, self.sigma_max)
        self.check("rho", real, above=0.0)

    def sigmas(self, n: int) -> list[float]:
        """``n`` decreasing noise levels from ``sigma_max`` to ``sigma_min`` (EDM Eq. (5)),
        computed in float64; ``n = 1`` gives ``[sigma_max]``."""
        if n < 1:
            raise LcscError(f"need at least one noise level, got {n}")
        if n == 1:
            return [self.sigma_max]
        hi, lo = self.sigma_max ** (1 / self.rho), self.sigma_min ** (1 / self.rho)
        return [(hi + i / (n - 1) * (lo - hi)) ** self.rho for i in range(n)]


def steps_for(method: str, nfe: int) -> int:
    """Number of solver steps that make exactly ``nfe`` network evaluations."""
    _check_method(method)
    nfe = integer("nfe", nfe, 1)
    if method == "heun":
        if nfe % 2 == 0:
            raise LcscError(
                f"nfe={nfe}: Heun with n steps makes 2n - 1 evaluations, so nfe must be odd"
            )
        return (nfe + 1) // 2
    return nfe


def initial_noise(
    n: int, shape: Sequence[int], seed: int, *, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Fixed initial noise ``z`` (n, *shape) ~ N(0, I) from ``seed`` (drawn on the CPU, so the
    same seed gives the same noise on any device)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g).to(device)


# --------------------------------------------------------------------------- ODE solvers
def _sigma(x: torch.Tensor, s: float) -> torch.Tensor:
    return torch.full((x.shape[0],), s, dtype=x.dtype, device=x.device)


def euler(denoise: DenoiseFn, z: torch.Tensor, sigmas: Sequence[float]) -> torch.Tensor:
    """Euler on ``dx/dsigma = (x - D) / sigma`` through ``sigmas`` then to 0; len(sigmas) evals.

    ``x_{i+1} = x_i + (sigma_{i+1} - sigma_i) (x_i - D(x_i, sigma_i)) / sigma_i``.
    """
    x = z * sigmas[0]
    levels = [*sigmas, 0.0]
    for s, s_next in zip(levels[:-1], levels[1:], strict=True):
        d = (x - denoise(x, _sigma(x, s))) / s
        x = x + (s_next - s) * d
    return x


def heun(denoise: DenoiseFn, z: torch.Tensor, sigmas: Sequence[float]) -> torch.Tensor:
    """Heun's 2nd-order method (EDM Algorithm 1 without churn); 2 len(sigmas) - 1 evals.

    Predictor ``x' = x_i + h d_i``, corrector ``x_{i+1} = x_i + h (d_i + d'_i) / 2`` with
    ``h = sigma_{i+1} - sigma_i`` and ``d = (x - D(x, sigma)) / sigma``; the last step, to
    sigma = 0, stays first-order.
    """
    x = z * sigmas[0]
    levels = [*sigmas, 0.0]
    for s, s_next in zip(levels[:-1], levels[1:], strict=True):
        d = (x - denoise(x, _sigma(x, s))) / s
        x_pred = x + (s_next - s) * d
        if s_next > 0:
            d_next = (x_pred - denoise(x_pred, _sigma(x, s_next))) / s_next
            x = x + (s_next - s) * 0.5 * (d + d_next)
        else:
            x = x_pred
    return x


def dpmpp_2m(denoise: DenoiseFn, z: torch.Tensor, sigmas: Sequence[float]) -> torch.Tensor:
    """DPM-Solver++(2M): second-order multistep in ``lambda = -ln(sigma)``, data prediction;
    len(sigmas) evals.

    With ``h = lambda_{i+1} - lambda_i``, ``r = h_{i-1} / h`` and
    ``D' = (1 + 1/(2r)) D_i - 1/(2r) D_{i-1}`` (``D' = D_i`` on the first and last steps)::

        x_{i+1} = (sigma_{i+1} / sigma_i) x_i - expm1(-h) D'

    The last step, to sigma = 0 (``h = inf``), reduces to ``x = D'``; it is taken first-order,
    ``x = D_i``, as in the reference solver.
    """
    x = z * sigmas[0]
    levels = [*sigmas, 0.0]
    prev_d: torch.Tensor | None = None
    prev_h = 0.0
    for s, s_next in zip(levels[:-1], levels[1:], strict=True):
        d = denoise(x, _sigma(x, s))
        if s_next == 0:
            x = d
            break
        h = math.log(s / s_next)
        if prev_d is None:
            d_hat = d
        else:
            r = prev_h / h
            d_hat = (1 + 1 / (2 * r)) * d - (1 / (2 * r)) * prev_d
        x = (s_next / s) * x - math.expm1(-h) * d_hat
        prev_d, prev_h = d, h
    return x


# --------------------------------------------------------------------------- consistency models
def default_cm_sigmas(nfe: int, schedule: SigmaSchedule) -> list[float]:
    """Noise levels of ``nfe``-step consistency sampling: ``sigma_max`` then the EDM schedule of
    ``nfe + 1`` levels without its last (``sigma_min``, where ``D`` is the identity)."""
    if nfe == 1:
        return [schedule.sigma_max]
    return schedule.sigmas(nfe + 1)[:-1]


def consistency(
    denoise: DenoiseFn,
    z: torch.Tensor,
    sigmas: Sequence[float],
    *,
    sigma_min: float = 0.002,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Consistency sampling (Song et al. 2023, Algorithm 1); len(sigmas) evals.

    ``x = D(sigma_0 z, sigma_0)``; then for each further level
    ``x = D(x + sqrt(sigma_k^2 - sigma_min^2) eps_k, sigma_k)`` with
    ``eps_k = noise[k - 1]`` (``noise``: (len(sigmas) - 1, N, *S)).
    """
    if len(sigmas) > 1 and (noise is None or noise.shape[0] < len(sigmas) - 1):
        raise LcscError(f"multistep consistency sampling needs {len(sigmas) - 1} noise tensors")
    x = denoise(z * sigmas[0], _sigma(z, sigmas[0]))
    for k, s in enumerate(sigmas[1:]):
        assert noise is not None
        scale = max(s * s - sigma_min * sigma_min, 0.0) ** 0.5
        x = denoise(x + scale * noise[k], _sigma(x, s))
    return x


# --------------------------------------------------------------------------- front end
def sample(
    model: DenoiseFn,
    z: torch.Tensor,
    method: str = "heun",
    nfe: int = 35,
    *,
    batch_size: int | None = None,
    schedule: SigmaSchedule | None = None,
    sigmas: Sequence[float] | None = None,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Samples (N, *S) in model space from initial noise ``z`` (N, *S) ~ N(0, I).

    Args:
        model: a denoiser ``D(x, sigma)``, sigma of shape (N,); an ``nn.Module`` is run in eval
            mode (and put back as it was).
        z: the initial noise; the output depends on ``z`` only, never on ``batch_size``.
        method: ``"euler"``, ``"heun"``, ``"dpmpp"`` or ``"cm"``.
        nfe: number of network evaluations per sample.
        batch_size: samples per network call (None: all at once).
        schedule: the EDM noise levels (sigma_min, sigma_max, rho).
        sigmas: explicit decreasing noise levels instead of the schedule (ODE methods: the
            non-zero levels, whose count then follows from ``nfe``; ``cm``: ``nfe`` levels).
        generator, noise: re-noising of multistep ``cm``: a tensor (nfe - 1, N, *S), or drawn
            from ``generator`` (all of it, before batching). Unused by the ODE methods.
    """
    schedule = schedule or SigmaSchedule()
    steps = steps_for(method, nfe)
    integer("batch_size", batch_size, 1, optional=True)
    levels = _levels(method, nfe, steps, schedule, sigmas)
    if method == "cm" and steps > 1 and noise is None:
        # Drawn on the CPU (where generators live) for all samples at once: batch-invariant.
        noise = torch.randn(steps - 1, *z.shape, generator=generator, dtype=z.dtype)
        noise = noise.to(z.device)
    if noise is not None and method == "cm" and tuple(noise.shape[1:]) != tuple(z.shape):
        raise LcscError(f"noise must have shape ({steps - 1}, {tuple(z.shape)}), got {noise.shape}")
    size = z.shape[0] if batch_size is None else batch_size
    outputs = []
    with torch.no_grad(), _eval_mode(model):
        for start in range(0, z.shape[0], max(size, 1)):
            zb = z[start : start + size]
            if method == "euler":
                xb = euler(model, zb, levels)
            elif method == "heun":
                xb = heun(model, zb, levels)
            elif method == "dpmpp":
                xb = dpmpp_2m(model, zb, levels)
            else:
                nb = None if noise is None else noise[:, start : start + size]
                xb = consistency(model, zb, levels, sigma_min=schedule.sigma_min, noise=nb)
            outputs.append(xb)
    return torch.cat(outputs) if outputs else z.clone()


def _levels(
    method: str, nfe: int, steps: int, schedule: SigmaSchedule, sigmas: Sequence[float] | None
) -> list[float]:
    """The noise levels of a run: the schedule's, or explicit ``sigmas`` checked."""
    if sigmas is None:
        return default_cm_sigmas(nfe, schedule) if method == "cm" else schedule.sigmas(steps)
    levels = [float(s) for s in sigmas]
    if len(levels) != steps:
        raise LcscError(f"{method} with nfe={nfe} needs {steps} noise levels, got {len(levels)}")
    if any(b >= a for a, b in zip(levels, levels[1:], strict=False)) or levels[-1] <= 0:
        raise LcscError(f"sigmas must be positive and strictly decreasing, got {levels}")
    return levels


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise LcscError(f"unknown sampler {method!r} (expected one of {', '.join(METHODS)})")


@contextmanager
def _eval_mode(model: object) -> Iterator[None]:
    if not isinstance(model, nn.Module):
        yield
        return
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
