"""Two schedules meant to speed up diffusion training, after the abstract of arXiv 2404.07946
(its code and formulas are not public; these are our reading, derived in docs/fast_training.md):

* :class:`NoiseCurriculum` -- the noise level is the explicit indicator of difficulty; the easy
  levels (for noise prediction: near pure noise, high sigma) are trained less and less often.
* :class:`MomentumDecay` -- Adam's ``beta1`` decreases over training, with a learning-rate
  compensation and Adam's bias correction made exact for a varying ``beta1``.

Both move from a start to an end value along the same progress ramp over the 0-based
iterations ``k = 0 .. K-1`` of a run of ``K`` iterations::

    c(k) = min(1, k / (fraction K)) ** pace,        value(k) = start + c(k) (end - start)

so the first iteration uses the start value and the end value is reached at iteration
``fraction K`` (kept after). Every function here is pure except :class:`AdamMomentum`, which
only carries the running product of the ``beta1`` values for the bias correction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch.special import log_ndtr, ndtr, ndtri

from lcsc.config import Config, choice, real
from lcsc.errors import LcscError

COMPENSATIONS = ("influence", "none", "rms", "stability")
MAX_TILT = 10.0  # |tilt| beyond this only moves all the mass to one end of the noise range
_V_EPS = 1e-15  # keeps uniforms off 0 and 1, whose quantiles are -inf and +inf


class ScheduleError(LcscError):
    """A bad schedule field; ``field`` names it."""


def progress(k: int, iterations: int, fraction: float = 1.0, pace: float = 1.0) -> float:
    """The ramp ``c(k) = min(1, k / (fraction K)) ** pace`` in [0, 1], k 0-based, K = iterations.

    ``pace > 1`` stays near the start longer, ``pace < 1`` leaves it sooner.
    """
    if iterations < 1 or k < 0:
        raise LcscError(f"progress needs k >= 0 and iterations >= 1, got {k}, {iterations}")
    return min(1.0, k / (fraction * iterations)) ** pace


def _ramp(start: float, end: float, c: float) -> float:
    return start + c * (end - start)


def _check_ramp(config: Config) -> None:
    config.check("fraction", real, above=0.0, maximum=1.0)
    config.check("pace", real, above=0.0)


# --------------------------------------------------------------------------- noise curriculum
@dataclass(frozen=True)
class NoiseCurriculum(Config):
    """Train the easy noise levels ``sigma > sigma_easy`` less and less often.

    At iteration ``k`` the noise levels are drawn from the run's lognormal ``p`` (EDM: ``ln
    sigma ~ N(P_mean, P_std^2)``; CT/CD: its discretisation over adjacent level pairs), tilted::

        p_k(sigma) ~ p(sigma) min(1, sigma_easy / sigma) ** tilt(k),
        tilt(k) = tilt_start + c(k) (tilt_end - tilt_start)

    Levels below ``sigma_easy`` keep their relative frequencies; above it the density is
    multiplied by ``(sigma_easy / sigma) ** tilt``: the noisier (easier), the more it is cut.
    ``tilt = 0`` is the plain lognormal; a negative tilt favours the easy levels (a curriculum
    that starts easier than the base distribution).

    Attributes:
        sigma_easy: where "easy" starts; the default 2 is 4 sigma_data (of the default
            sigma_data 0.5): signal-to-noise ratio 1/16, close to pure noise.
        tilt_start, tilt_end: the tilt at the first iteration and from ``fraction K`` on
            (|tilt| <= 10).
        fraction, pace: the ramp ``c(k)`` (see the module docstring).
    """

    error: ClassVar[type[LcscError]] = ScheduleError
    sigma_easy: float = 2.0
    tilt_start: float = 0.0
    tilt_end: float = 2.0
    fraction: float = 1.0
    pace: float = 1.0

    def __post_init__(self) -> None:
        self.check("sigma_easy", real, above=0.0)
        for field in ("tilt_start", "tilt_end"):
            self.check(field, real, -MAX_TILT, MAX_TILT)
        _check_ramp(self)

    def tilt(self, k: int, iterations: int) -> float:
        """``tilt(k)`` at the 0-based iteration ``k`` of a run of ``iterations``."""
        c = progress(k, iterations, self.fraction, self.pace)
        return _ramp(self.tilt_start, self.tilt_end, c)


@dataclass(frozen=True)
class _Tilted:
    """The tilted lognormal in standard units ``z = (ln sigma - P_mean) / P_std``.

    With ``zc = (ln sigma_easy - P_mean) / P_std``, ``a = tilt`` and ``h = a P_std``, the tail
    ``phi(z) exp(-h (z - zc))`` (z > zc) equals ``K phi(z + h)`` with ``ln K = h^2/2 + h zc``
    (completing the square), so the unnormalised masses are::

        body (z <= zc):  Phi(zc)         tail (z > zc):  T = K Q(zc + h),   Q = 1 - Phi

    and the tail mass above any ``z >= zc`` is ``K Q(z + h)``. Logs throughout: K overflows
    for large ``|h|`` while ``K Q`` stays moderate.
    """

    zc: float
    h: float
    log_k: float
    log_body: float
    log_tail: float
    log_total: float

    @classmethod
    def of(cls, p_mean: float, p_std: float, sigma_easy: float, tilt: float) -> _Tilted:
        zc = (math.log(sigma_easy) - p_mean) / p_std
        h = tilt * p_std
        log_k = 0.5 * h * h + h * zc
        log_body = float(log_ndtr(torch.tensor(zc, dtype=torch.float64)))
        log_tail = log_k + float(log_ndtr(torch.tensor(-(zc + h), dtype=torch.float64)))
        return cls(zc, h, log_k, log_body, log_tail, _logaddexp(log_body, log_tail))


def _logaddexp(a: float, b: float) -> float:
    hi, lo = max(a, b), min(a, b)
    return hi + math.log1p(math.exp(lo - hi))


def easy_share(p_mean: float, p_std: float, sigma_easy: float, tilt: float) -> float:
    """Probability of ``sigma > sigma_easy`` under the tilted lognormal: ``T / (Phi(zc) + T)``."""
    t = _Tilted.of(p_mean, p_std, sigma_easy, tilt)
    return math.exp(t.log_tail - t.log_total)


def log_sigma_quantile(
    v: torch.Tensor, p_mean: float, p_std: float, sigma_easy: float, tilt: float
) -> torch.Tensor:
    """Inverse CDF of the tilted lognormal: ``ln sigma`` (float64) at probabilities ``v``.

    With ``Z = Phi(zc) + T`` and ``R = Z (1 - v)`` the unnormalised mass above the sample::

        R <= T:  K Q(z + h) = R   ->  z = -ndtri(R / K) - h          (the tail)
        R >  T:  Phi(z) = Z v     ->  z = ndtri(Z v)                 (the body)

    and ``ln sigma = P_mean + P_std z``. ``tilt = 0`` gives ``P_mean + P_std ndtri(v)``.
    """
    t = _Tilted.of(p_mean, p_std, sigma_easy, tilt)
    v = v.to(torch.float64).clamp(_V_EPS, 1.0 - _V_EPS)
    log_r = t.log_total + torch.log1p(-v)
    z_tail = (-ndtri((log_r - t.log_k).exp()) - t.h).clamp(min=t.zc)
    z_body = ndtri((t.log_total + v.log()).exp().clamp(max=1.0)).clamp(max=t.zc)
    z = torch.where(log_r <= t.log_tail, z_tail, z_body)
    return p_mean + p_std * z


def sample_sigma(
    n: int,
    g: torch.Generator,
    p_mean: float,
    p_std: float,
    sigma_easy: float,
    tilt: float,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``n`` noise levels (n,) from the tilted lognormal: one uniform each, from ``g``."""
    v = torch.rand(n, generator=g, dtype=torch.float64)
    return log_sigma_quantile(v, p_mean, p_std, sigma_easy, tilt).exp().to(dtype)


def pair_probabilities(
    levels: torch.Tensor, p_mean: float, p_std: float, sigma_easy: float, tilt: float
) -> torch.Tensor:
    """Probabilities (n-1,) of the adjacent pairs of increasing ``levels`` (n,) under the tilted
    lognormal, iCT's discretisation with the tilt (float64)::

        p_i ~ [Phi(min(z_{i+1}, zc)) - Phi(min(z_i, zc))]
              + K [Q(max(z_i, zc) + h) - Q(max(z_{i+1}, zc) + h)]

    the body and tail masses between ``ln s_i`` and ``ln s_{i+1}``. ``tilt = 0`` gives
    :func:`lcsc.reference.generative.losses.discretisation`'s probabilities.
    """
    t = _Tilted.of(p_mean, p_std, sigma_easy, tilt)
    z = (levels.to(torch.float64).log() - p_mean) / p_std
    body_cdf = ndtr(z.clamp(max=t.zc))
    above = (t.log_k + log_ndtr(-(z.clamp(min=t.zc) + t.h))).exp()  # tail mass above z
    p = (body_cdf[1:] - body_cdf[:-1]) + (above[:-1] - above[1:])
    total = p.sum()
    if not total > 0:
        raise LcscError("the noise curriculum puts no mass on the discretisation's levels")
    return p / total


# --------------------------------------------------------------------------- momentum decay
@dataclass(frozen=True)
class MomentumDecay(Config):
    """Decrease Adam's ``beta1`` from ``start`` to ``end`` and compensate the learning rate.

    ``beta1(k) = start + c(k) (end - start)``, and the learning rate of iteration ``k`` is
    multiplied by :func:`lr_compensation` (``compensation``) and by Adam's exact bias
    correction for a varying ``beta1`` (see :class:`AdamMomentum`).

    Attributes:
        end: ``beta1`` from ``fraction K`` on, in [0, start].
        start: ``beta1`` at the first iteration; None: the run's Adam ``betas[0]``.
        fraction, pace: the ramp ``c(k)`` (see the module docstring).
        compensation: ``"influence"`` (default), ``"none"``, ``"rms"`` or ``"stability"``;
            see :func:`lr_compensation`.
    """

    error: ClassVar[type[LcscError]] = ScheduleError
    end: float = 0.5
    start: float | None = None
    fraction: float = 1.0
    pace: float = 1.0
    compensation: str = "influence"

    def __post_init__(self) -> None:
        self.check("end", real, 0.0, below=1.0)
        self.check("start", real, 0.0, below=1.0, optional=True)
        if self.start is not None:
            msg = f"must not exceed start {self.start} (a decay)"
            self.require(self.end <= self.start, "end", msg, self.end)
        _check_ramp(self)
        self.check("compensation", choice, COMPENSATIONS)

    def beta1(self, k: int, iterations: int, run_beta1: float) -> float:
        """``beta1(k)``; ``run_beta1`` is the start when ``start`` is None."""
        start = run_beta1 if self.start is None else self.start
        return _ramp(start, self.end, progress(k, iterations, self.fraction, self.pace))


def lr_compensation(
    beta1: float, beta1_start: float, mode: str = "influence", beta1_next: float | None = None
) -> float:
    """Learning-rate factor of an iteration run at ``b = beta1`` (``b0 = beta1_start``, ``b' =
    beta1_next`` the next iteration's, default ``b``).

    * ``"influence"``: ``1 + O(b) - O(b')`` with the odds ``O(b) = b / (1 - b)``. A gradient
      ``g_j`` enters ``m`` with weight ``1 - b_j`` and then decays by the later ``b``'s; at a
      constant ``beta1`` its total weight in the parameter updates is exactly ``lr``. Solving
      ``(1 - b_j) sum_{t >= j} lr_t prod_{j < i <= t} b_i = lr`` for every ``j`` gives
      ``lr_t = lr (1 + O(b_t) - O(b_{t+1}))``: every gradient moves the weights as far as at a
      constant ``beta1``, neither amplified nor damped by the decay.
    * ``"none"``: 1. Adam's first moment is a normalised average, so a constant gradient gives
      the same step at any ``beta1``; this ignores only the ``O(b) - O(b')`` correction.

    With ``A(b) = (1 + b) / (1 - b)``, two damped alternatives (smaller steps):

    * ``"rms"``: ``sqrt(A(b) / A(b0))``. Under white gradient noise ``Var m = sigma^2 / A(b)``,
      so a smaller ``beta1`` makes each update larger in RMS; this keeps it at its start size.
    * ``"stability"``: ``A(b) / A(b0)``. Adam with momentum ``b`` is stable on a quadratic only
      while the preconditioned sharpness stays below ``2 A(b) / lr``; this keeps that bound.
    """
    if mode not in COMPENSATIONS:
        raise LcscError(f"compensation must be one of {', '.join(COMPENSATIONS)}, got {mode!r}")
    if mode == "none":
        return 1.0
    if mode == "influence":
        b_next = beta1 if beta1_next is None else beta1_next
        return 1.0 + beta1 / (1.0 - beta1) - b_next / (1.0 - b_next)
    ratio = ((1 + beta1) / (1 - beta1)) / ((1 + beta1_start) / (1 - beta1_start))
    return math.sqrt(ratio) if mode == "rms" else ratio


def bias_correction_fix(beta1: float, step: int, beta1_product: float) -> float:
    """``(1 - beta1^t) / (1 - prod_{i<=t} beta1_i)``, t = ``step`` (1-based).

    torch's Adam divides its first moment by ``1 - beta1^t`` with the *current* ``beta1``; for
    a varying ``beta1`` the weights of ``m_t = beta1_t m_{t-1} + (1 - beta1_t) g_t`` sum to
    ``1 - prod_i beta1_i`` instead. Scaling the learning rate by this factor makes the division
    exact (the ``eps`` term is added after the second-moment correction, so it is unaffected).
    """
    return (1.0 - beta1**step) / (1.0 - beta1_product)


class AdamMomentum:
    """Applies a :class:`MomentumDecay` to a torch Adam, one call per iteration."""

    def __init__(self, decay: MomentumDecay, iterations: int, betas: tuple[float, float]) -> None:
        self.decay, self.iterations, self.betas = decay, iterations, betas
        self.start = betas[0] if decay.start is None else decay.start
        self.product = 1.0  # prod of the beta1 values used so far

    def __call__(self, k: int) -> tuple[float, float]:
        """``(beta1, lr factor)`` for the 0-based iteration ``k`` (call once per iteration)."""
        beta1 = self.decay.beta1(k, self.iterations, self.betas[0])
        beta1_next = self.decay.beta1(k + 1, self.iterations, self.betas[0])
        self.product *= beta1
        factor = lr_compensation(beta1, self.start, self.decay.compensation, beta1_next)
        return beta1, factor * bias_correction_fix(beta1, k + 1, self.product)

    def apply(self, k: int, opt: torch.optim.Optimizer, lr: float) -> None:
        """Set ``opt``'s ``betas`` and ``lr`` (``lr``: this iteration's uncompensated rate)."""
        beta1, factor = self(k)
        for group in opt.param_groups:
            group["betas"] = (beta1, self.betas[1])
            group["lr"] = lr * factor
