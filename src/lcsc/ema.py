"""EMA-style coefficient vectors over a trajectory of saved checkpoints.

A trajectory holds ``K`` checkpoints saved at training steps ``s_1 < ... < s_K``
(``steps``, shape ``(K,)``). A *combination* is a coefficient vector ``a``, shape
``(K,)``, summing to one; the combined weights are ``sum_j a_j * theta_j``.

Exponential moving averages of the weights are special cases of such combinations.
This module computes their coefficients when only the listed steps were saved:

* :func:`ema_coefficients` -- the classic per-iteration EMA with a constant decay
  (Eq. (6) of the LCSC paper);
* :func:`power_ema_coefficients` -- the EDM2 power function EMA (Karras et al. 2024),
  parameterised by its relative width ``sigma_rel`` (see :func:`sigma_rel_to_gamma`);
* :func:`uniform_coefficients` -- the plain mean of the checkpoints;
* :func:`default_ema_rates` -- a grid of decays used to seed the search and as the
  EMA baseline grid.

All functions are pure, work in ``numpy.float64`` and return vectors that sum to one
up to rounding. Weights are computed from ratios with ``exp``/``log1p``/``expm1`` so
that decays close to one, long spans and large steps lose no precision.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import numpy.typing as npt

from lcsc.config import real
from lcsc.errors import LcscError, TrajectoryError

__all__ = [
    "MAX_SIGMA_REL",
    "default_ema_rates",
    "ema_coefficients",
    "power_ema_coefficients",
    "sigma_rel_to_gamma",
    "uniform_coefficients",
]

# The relative width of the power function EMA, as a function of the exponent gamma,
# sigma_rel(gamma)^2 = (gamma + 1) / ((gamma + 2)^2 (gamma + 3)), rises from 0 at
# gamma = -1 to its maximum at the root of gamma^2 + 3 gamma + 1 = 0, then falls to 0.
_GAMMA_AT_MAX_WIDTH = (math.sqrt(5.0) - 3.0) / 2.0  # about -0.382


def _sigma_rel_sq(gamma: float) -> float:
    return (gamma + 1.0) / ((gamma + 2.0) ** 2 * (gamma + 3.0))


MAX_SIGMA_REL = math.sqrt(_sigma_rel_sq(_GAMMA_AT_MAX_WIDTH))  # about 0.3003
"""Largest relative width a power function EMA (with ``gamma > -1``) can have."""


def _check_steps(steps: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Return ``steps`` as a 1-D int64 array, or raise :class:`TrajectoryError`.

    Steps must be non-empty, integral, non-negative and strictly increasing.
    """
    try:
        arr = np.asarray(steps)
    except (TypeError, ValueError) as exc:
        raise TrajectoryError(f"steps must be a 1-D sequence of integers; got {steps!r}") from exc
    if arr.ndim != 1:
        raise TrajectoryError(f"steps must be 1-D; got shape {arr.shape}: {steps!r}")
    if arr.size == 0:
        raise TrajectoryError("steps must not be empty; got an empty sequence")
    if arr.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(arr) | (arr != np.round(arr)))
        if bad.size:
            i = int(bad[0])
            raise TrajectoryError(f"steps must be integers; got steps[{i}]={arr[i].item()!r}")
    elif arr.dtype.kind not in "iu":
        raise TrajectoryError(f"steps must be integers; got dtype {arr.dtype}: {steps!r}")
    neg = np.flatnonzero(arr < 0)
    if neg.size:
        i = int(neg[0])
        raise TrajectoryError(f"steps must be non-negative; got steps[{i}]={arr[i].item()!r}")
    out = arr.astype(np.int64)
    bad = np.flatnonzero(np.diff(out) <= 0)
    if bad.size:
        i = int(bad[0]) + 1
        raise TrajectoryError(
            f"steps must be strictly increasing; got steps[{i}]={int(out[i])} "
            f"after steps[{i - 1}]={int(out[i - 1])}"
        )
    return out


def ema_coefficients(steps: npt.ArrayLike, rate: float) -> npt.NDArray[np.float64]:
    r"""Coefficients of a per-iteration EMA on the saved checkpoints (Eq. (6) of the LCSC paper).

    The EMA is initialised at the weights of step ``s_1`` and updated once per training
    iteration ``n = s_1 + 1, ..., N`` with ``N = s_K``::

        ema <- rate * ema + (1 - rate) * theta_n

    Only the listed steps were saved, so saved checkpoint ``j > 1`` stands for the
    iterations ``(s_{j-1}, s_j]`` (their weights are held at ``theta_{s_j}``). Its weight
    is the telescoping sum

    .. math::

        a_j = \sum_{n=s_{j-1}+1}^{s_j} \mathrm{rate}^{N-n} (1-\mathrm{rate})
            = \mathrm{rate}^{N-s_j} - \mathrm{rate}^{N-s_{j-1}}, \qquad
        a_1 = \mathrm{rate}^{N-s_1}.

    It is evaluated as ``exp((N - s_j) L) * (-expm1((s_j - s_{j-1}) L))`` with
    ``L = log(rate)`` taken through ``log1p``, free of cancellation for ``rate`` close
    to one. When every step is saved this is exactly the EMA of
    ``torch.optim.swa_utils.get_ema_multi_avg_fn(rate)`` fed one checkpoint per update.

    Args:
        steps: training steps of the saved checkpoints, shape ``(K,)``; non-negative
            integers, strictly increasing.
        rate: decay per training iteration, ``0 <= rate < 1`` (``0`` keeps only the last
            checkpoint).

    Returns:
        Coefficients ``a``, shape ``(K,)``, float64, non-negative, summing to one.

    Raises:
        TrajectoryError: ``steps`` is empty, not 1-D, not integral, negative or not
            strictly increasing.
        LcscError: ``rate`` is not a real number in ``[0, 1)``.
    """
    s = _check_steps(steps)
    r = real("rate", rate)
    if not 0.0 <= r < 1.0:
        raise LcscError(f"rate must be in [0, 1); got rate={rate!r}")
    k = s.size
    if r == 0.0 or k == 1:
        out = np.zeros(k, dtype=np.float64)
        out[-1] = 1.0
        return out
    # rate - 1 is exact for rate >= 1/2 (Sterbenz), so log1p keeps full precision near 1.
    log_rate = math.log1p(r - 1.0) if r >= 0.5 else math.log(r)
    age = (s[-1] - s).astype(np.float64)  # N - s_j, exact
    gaps = np.diff(s).astype(np.float64)  # s_j - s_{j-1}, exact
    out = np.exp(age * log_rate)
    out[1:] *= -np.expm1(gaps * log_rate)
    return out / out.sum()


def sigma_rel_to_gamma(sigma_rel: float) -> float:
    r"""Exponent ``gamma`` of the EDM2 power function EMA with relative width ``sigma_rel``.

    Karras et al. (2024), "Analyzing and Improving the Training Dynamics of Diffusion
    Models", define the relative standard deviation of the averaging profile as

    .. math::

        \sigma_\mathrm{rel}^2 = \frac{\gamma + 1}{(\gamma + 2)^2 (\gamma + 3)},

    i.e. ``gamma`` is a root of the cubic
    ``gamma^3 + 7 gamma^2 + (16 - 1/sigma_rel^2) gamma + (12 - 1/sigma_rel^2) = 0``.
    This returns its largest real root, found by bisection on the branch where the
    width decreases in ``gamma`` (``gamma >= (sqrt(5) - 3) / 2``); no root lies beyond.
    ``sigma_rel <= 1/sqrt(12)`` (about 0.2887) gives ``gamma >= 0``; up to
    :data:`MAX_SIGMA_REL` (about 0.3003) ``gamma`` lies in ``(-1, 0)``.

    Args:
        sigma_rel: relative width, ``0 < sigma_rel <= MAX_SIGMA_REL``.

    Returns:
        ``gamma > -1``.

    Raises:
        LcscError: ``sigma_rel`` is not a real number in ``(0, MAX_SIGMA_REL]`` (no
            exponent ``gamma > -1`` gives that width).
    """
    sig = real("sigma_rel", sigma_rel)
    if not 0.0 < sig <= MAX_SIGMA_REL:
        raise LcscError(
            f"sigma_rel must be in (0, {MAX_SIGMA_REL:.6f}] (no power function EMA with "
            f"gamma > -1 is wider); got sigma_rel={sigma_rel!r}"
        )
    target = 2.0 * math.log(sig)

    def excess(gamma: float) -> float:  # log sigma_rel(gamma)^2 - log sigma_rel^2, decreasing
        return math.log1p(gamma) - 2.0 * math.log(gamma + 2.0) - math.log(gamma + 3.0) - target

    # sigma_rel(gamma)^2 < 1/gamma^2 for gamma > 0, so the root is below 1/sigma_rel.
    lo, hi = _GAMMA_AT_MAX_WIDTH, 1.0 / sig
    for _ in range(400):
        mid = 0.5 * (lo + hi)
        if not lo < mid < hi:
            break
        if excess(mid) > 0.0:
            lo = mid
        else:
            hi = mid
    return lo if abs(excess(lo)) <= abs(excess(hi)) else hi


def power_ema_coefficients(steps: npt.ArrayLike, sigma_rel: float) -> npt.NDArray[np.float64]:
    r"""Coefficients of the EDM2 power function EMA on the saved checkpoints.

    The EDM2 power function EMA (Karras et al. 2024) with exponent ``gamma``
    (from ``sigma_rel`` via :func:`sigma_rel_to_gamma`) updates once per training
    iteration ``t = 1, 2, ...`` (1-based count of iterations done)::

        ema <- beta_t * ema + (1 - beta_t) * theta_t,   beta_t = (1 - 1/t)^(gamma + 1)

    After ``T`` iterations iteration ``n`` carries weight
    ``(n^(gamma+1) - (n-1)^(gamma+1)) / T^(gamma+1)``. With only the listed steps saved
    (``N = s_K``, ``p = gamma + 1``), checkpoint ``j > 1`` stands for the iterations
    ``(s_{j-1}, s_j]`` and checkpoint 1 for *all* iterations ``1..s_1``, i.e. the
    iterations before the saved window are attributed to the first saved checkpoint:

    .. math::

        a_1 = (s_1 / N)^p, \qquad
        a_j = \frac{s_j^p - s_{j-1}^p}{N^p}
            = (s_j / N)^p \left(1 - (s_{j-1} / s_j)^p\right).

    The second factor is evaluated as ``-expm1(p * log1p(-(s_j - s_{j-1}) / s_j))`` to
    avoid cancellation between close steps. ``steps[0] == 0`` is allowed (that
    checkpoint gets weight 0, unless it is the only one).

    Args:
        steps: training steps of the saved checkpoints, shape ``(K,)``; non-negative
            integers, strictly increasing.
        sigma_rel: relative width of the averaging profile, ``0 < sigma_rel <=
            MAX_SIGMA_REL`` (about 0.3003); EDM2 uses e.g. 0.05 or 0.10.

    Returns:
        Coefficients ``a``, shape ``(K,)``, float64, non-negative, summing to one.

    Raises:
        TrajectoryError: ``steps`` is empty, not 1-D, not integral, negative or not
            strictly increasing.
        LcscError: ``sigma_rel`` is out of range (see :func:`sigma_rel_to_gamma`).
    """
    s = _check_steps(steps)
    p = sigma_rel_to_gamma(sigma_rel) + 1.0
    k = s.size
    if k == 1:
        return np.ones(1, dtype=np.float64)
    sf = s.astype(np.float64)
    out = np.power(sf / sf[-1], p)  # (s_j / N)^p, s_j / N correctly rounded
    prev, cur = sf[:-1], sf[1:]
    frac = (cur - prev) / cur  # in (0, 1]; the gap is exact
    with np.errstate(divide="ignore"):
        # log(s_{j-1} / s_j): log1p for close steps, plain log of the ratio otherwise.
        log_ratio = np.where(frac < 0.5, np.log1p(-frac), np.log(prev / cur))
    out[1:] *= -np.expm1(p * log_ratio)
    return out / out.sum()


def uniform_coefficients(k: int) -> npt.NDArray[np.float64]:
    """Uniform average of ``k`` checkpoints: ``a_j = 1 / k``, shape ``(k,)``, float64.

    Raises:
        LcscError: ``k`` is not a positive integer.
    """
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral) or k < 1:
        raise LcscError(f"k must be a positive integer; got k={k!r}")
    return np.full(int(k), 1.0 / int(k), dtype=np.float64)


def default_ema_rates(steps: npt.ArrayLike, count: int = 8) -> list[float]:
    """A grid of per-iteration EMA decays suited to a trajectory.

    An EMA with decay ``rate`` averages over about ``L = 1 / (1 - rate)`` iterations.
    The grid spaces ``L`` geometrically (``count`` values, both ends included) from the
    saving interval ``L_min = median(diff(steps))`` -- shorter EMAs barely differ from
    the last checkpoint -- to ``L_max = 2 (s_K - s_1)``, about twice the window length,
    beyond which the EMA is close to its own limit on this trajectory; then
    ``rate = 1 - 1/L``. The rates are sorted ascending and all ``< 1`` (``L_min = 1``
    gives ``rate = 0``, the last checkpoint). Used to seed the search population and as
    the EMA baseline grid (pass each rate to :func:`ema_coefficients`).

    Args:
        steps: training steps of the saved checkpoints, shape ``(K,)``, ``K >= 2``.
        count: number of rates, ``>= 2``.

    Returns:
        ``count`` decays, ascending, each in ``[0, 1)``.

    Raises:
        TrajectoryError: ``steps`` is invalid or holds fewer than two steps.
        LcscError: ``count`` is not an integer ``>= 2``.
    """
    s = _check_steps(steps)
    if isinstance(count, (bool, np.bool_)) or not isinstance(count, numbers.Integral):
        raise LcscError(f"count must be an integer >= 2; got count={count!r}")
    if count < 2:
        raise LcscError(f"count must be an integer >= 2; got count={count!r}")
    if s.size < 2:
        raise TrajectoryError(
            f"steps must hold at least 2 steps to derive EMA rates; got steps={s.tolist()}"
        )
    l_min = float(np.median(np.diff(s).astype(np.float64)))
    l_max = 2.0 * float(s[-1] - s[0])
    lengths = np.geomspace(l_min, l_max, int(count))
    rates = np.minimum(1.0 - 1.0 / lengths, np.nextafter(1.0, 0.0))
    return [float(r) for r in np.sort(rates)]
