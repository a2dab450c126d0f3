"""Tests for lcsc.ema against independent references.

References: torch.optim.swa_utils' EMA, brute-force per-iteration simulations of the
EMA updates, and high-precision (decimal) evaluations of the closed forms.
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from lcsc.ema import (
    MAX_SIGMA_REL,
    default_ema_rates,
    ema_coefficients,
    power_ema_coefficients,
    sigma_rel_to_gamma,
    uniform_coefficients,
)
from lcsc.errors import LcscError, TrajectoryError

NONUNIFORM_STEPS = [
    [0, 1, 2, 3, 4],
    [5, 6, 9, 17, 40, 41, 100, 230, 231, 300],
    [1, 50, 51, 52, 120, 121, 250],
    [37, 38],
    [12],
]


def _segment_of(steps: list[int], n: int) -> int:
    """Index of the saved checkpoint standing for iteration n: first j with steps[j] >= n."""
    return next(j for j, s in enumerate(steps) if s >= n)


def _simulate_ema(steps: list[int], rate: float) -> np.ndarray:
    """Per-iteration EMA of one-hot 'weights', theta held constant between saves."""
    k = len(steps)
    ema = np.zeros(k)
    ema[0] = 1.0  # initialised at the weights of step s_1
    for n in range(steps[0] + 1, steps[-1] + 1):
        theta = np.zeros(k)
        theta[_segment_of(steps, n)] = 1.0
        ema = rate * ema + (1.0 - rate) * theta
    return ema


def _simulate_power_ema(steps: list[int], gamma: float) -> np.ndarray:
    """EDM2 power EMA, beta_t = (1 - 1/t)^(gamma+1), one update per iteration t = 1..s_K."""
    k = len(steps)
    ema = np.zeros(k)
    for t in range(1, steps[-1] + 1):
        beta = (1.0 - 1.0 / t) ** (gamma + 1.0)
        theta = np.zeros(k)
        theta[_segment_of(steps, t)] = 1.0
        ema = beta * ema + (1.0 - beta) * theta
    if steps[-1] == 0:
        ema[0] = 1.0
    return ema


def _check_combination(a: np.ndarray, k: int) -> None:
    assert isinstance(a, np.ndarray)
    assert a.dtype == np.float64
    assert a.shape == (k,)
    assert np.all(np.isfinite(a))
    assert np.all(a >= 0.0)
    assert abs(a.sum() - 1.0) < 1e-12


# ----------------------------------------------------------------------------- ema


@pytest.mark.parametrize("rate", [0.0, 0.3, 0.9, 0.99, 0.999])
def test_ema_equals_torch_swa_utils_when_every_step_is_saved(rate: float) -> None:
    torch.manual_seed(0)
    k = 9
    model = nn.Linear(4, 3).double()
    n_params = parameters_to_vector(model.parameters()).numel()
    thetas = torch.randn(k, n_params, dtype=torch.float64)
    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(rate))
    for theta in thetas:
        vector_to_parameters(theta, model.parameters())
        averaged.update_parameters(model)  # the first call copies the weights
    expected = parameters_to_vector(averaged.module.parameters()).detach().numpy()

    steps = list(range(1000, 1000 + k))
    a = ema_coefficients(steps, rate)
    _check_combination(a, k)
    combined = a @ thetas.numpy()
    np.testing.assert_allclose(combined, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("steps", NONUNIFORM_STEPS)
@pytest.mark.parametrize("rate", [0.0, 0.2, 0.9, 0.99, 0.999])
def test_ema_nonuniform_steps_match_per_iteration_simulation(steps: list[int], rate: float) -> None:
    a = ema_coefficients(steps, rate)
    _check_combination(a, len(steps))
    np.testing.assert_allclose(a, _simulate_ema(steps, rate), rtol=1e-10, atol=1e-13)


def _ema_reference(steps: list[int], rate: float) -> list[Decimal]:
    with localcontext() as ctx:
        ctx.prec = 60
        r = Decimal(rate)
        n = steps[-1]
        out = [r ** (n - steps[0])]
        out += [r ** (n - s) - r ** (n - p) for p, s in zip(steps[:-1], steps[1:], strict=True)]
        return out


@pytest.mark.parametrize(
    ("steps", "rate"),
    [
        ([0, 1, 2, 10, 1000, 50_000, 200_000, 999_998, 999_999, 1_000_000], 0.99999),
        (list(range(0, 1_000_001, 50_000)), 0.99999),
        ([10, 11, 500_000, 1_000_000], 1.0 - 1e-12),
        ([3, 7, 8, 20], 1e-3),
    ],
)
def test_ema_is_accurate_for_rates_near_one_and_long_spans(steps: list[int], rate: float) -> None:
    a = ema_coefficients(steps, rate)
    _check_combination(a, len(steps))
    ref = np.array([float(x) for x in _ema_reference(steps, rate)])
    np.testing.assert_allclose(a, ref, rtol=1e-13, atol=1e-300)


def test_ema_edge_cases() -> None:
    np.testing.assert_array_equal(ema_coefficients([7], 0.9), [1.0])
    np.testing.assert_array_equal(ema_coefficients([0, 5, 9], 0.0), [0.0, 0.0, 1.0])
    # numpy inputs (int, unsigned and integral float) are accepted
    ref = ema_coefficients([0, 5, 9], 0.8)
    np.testing.assert_allclose(ema_coefficients(np.array([0, 5, 9], dtype=np.uint32), 0.8), ref)
    np.testing.assert_allclose(ema_coefficients(np.array([0.0, 5.0, 9.0]), np.float64(0.8)), ref)
    # numpy scalar rates are accepted (0.5 is exact in float32)
    half = ema_coefficients([0, 5, 9], 0.5)
    np.testing.assert_array_equal(ema_coefficients([0, 5, 9], np.float32(0.5)), half)


# ----------------------------------------------------------------------- power EMA


def _gamma_to_sigma_rel(gamma: float) -> float:
    return math.sqrt((gamma + 1.0) / ((gamma + 2.0) ** 2 * (gamma + 3.0)))


@pytest.mark.parametrize("sigma_rel", [1e-4, 0.01, 0.05, 0.1, 0.2, 0.28, 0.2887, 0.29, 0.3])
def test_sigma_rel_to_gamma_round_trip(sigma_rel: float) -> None:
    gamma = sigma_rel_to_gamma(sigma_rel)
    assert gamma > -1.0
    assert _gamma_to_sigma_rel(gamma) == pytest.approx(sigma_rel, rel=1e-12)
    t = sigma_rel**-2
    roots = np.roots([1.0, 7.0, 16.0 - t, 12.0 - t])
    largest_real = max(r.real for r in roots if abs(r.imag) < 1e-9)
    assert gamma == pytest.approx(largest_real, rel=1e-8, abs=1e-10)


def test_sigma_rel_to_gamma_matches_edm2_values() -> None:
    # EDM2 (Karras et al. 2024): sigma_rel 0.05 and 0.10 correspond to gamma 16.97 and 6.94.
    assert sigma_rel_to_gamma(0.05) == pytest.approx(16.97, abs=5e-3)
    assert sigma_rel_to_gamma(0.10) == pytest.approx(6.94, abs=5e-3)
    assert sigma_rel_to_gamma(1.0 / math.sqrt(12.0)) == pytest.approx(0.0, abs=1e-12)
    assert sigma_rel_to_gamma(MAX_SIGMA_REL) == pytest.approx((math.sqrt(5) - 3) / 2, abs=1e-6)


@pytest.mark.parametrize("steps", NONUNIFORM_STEPS)
@pytest.mark.parametrize("sigma_rel", [0.05, 0.1, 0.2, 0.29])
def test_power_ema_matches_per_iteration_simulation(steps: list[int], sigma_rel: float) -> None:
    a = power_ema_coefficients(steps, sigma_rel)
    _check_combination(a, len(steps))
    expected = _simulate_power_ema(steps, sigma_rel_to_gamma(sigma_rel))
    np.testing.assert_allclose(a, expected, rtol=1e-10, atol=1e-13)


def test_power_ema_first_step_zero_gets_zero_weight() -> None:
    a = power_ema_coefficients([0, 10, 20], 0.1)
    assert a[0] == 0.0
    np.testing.assert_array_equal(power_ema_coefficients([0], 0.1), [1.0])
    np.testing.assert_array_equal(power_ema_coefficients([50], 0.1), [1.0])


@pytest.mark.parametrize(
    ("steps", "sigma_rel"),
    [
        ([1, 2, 1000, 9_999_998, 9_999_999, 10_000_000], 0.05),
        ([0, 1, 100_000_000, 100_000_001], 0.29),
        ([123_456, 123_457, 5_000_000, 5_000_001, 7_000_000], 0.1),
    ],
)
def test_power_ema_is_accurate_for_large_steps(steps: list[int], sigma_rel: float) -> None:
    a = power_ema_coefficients(steps, sigma_rel)
    _check_combination(a, len(steps))
    with localcontext() as ctx:
        ctx.prec = 60
        p = Decimal(sigma_rel_to_gamma(sigma_rel)) + 1
        powers = [Decimal(s) ** p if s > 0 else Decimal(0) for s in steps]
        total = powers[-1]
        ref = [powers[0] / total]
        ref += [(b - c) / total for c, b in zip(powers[:-1], powers[1:], strict=True)]
    np.testing.assert_allclose(a, [float(x) for x in ref], rtol=1e-13, atol=1e-300)


# ------------------------------------------------------------------------- uniform


@pytest.mark.parametrize("k", [1, 2, 7, np.int64(5)])
def test_uniform_coefficients(k: int) -> None:
    a = uniform_coefficients(k)
    _check_combination(a, int(k))
    np.testing.assert_allclose(a, 1.0 / int(k))


@pytest.mark.parametrize("k", [0, -3, 2.5, True, "3", None])
def test_uniform_coefficients_rejects_bad_k(k: object) -> None:
    with pytest.raises(LcscError, match=r"\bk\b"):
        uniform_coefficients(k)  # type: ignore[arg-type]


# ----------------------------------------------------------------------- EMA rates


@pytest.mark.parametrize(
    ("steps", "count"),
    [
        (list(range(0, 10_001, 100)), 8),
        ([0, 1, 2, 3, 4, 5], 8),
        ([10, 20, 25, 100, 1000, 1010], 5),
        ([3, 9], 2),
    ],
)
def test_default_ema_rates_span_saving_interval_to_twice_the_window(
    steps: list[int], count: int
) -> None:
    rates = default_ema_rates(steps, count)
    assert isinstance(rates, list)
    assert len(rates) == count
    assert all(isinstance(r, float) for r in rates)
    assert all(0.0 <= r < 1.0 for r in rates)
    assert rates == sorted(rates)
    assert len(set(rates)) == count
    lengths = np.array([1.0 / (1.0 - r) for r in rates])
    assert lengths[0] == pytest.approx(float(np.median(np.diff(steps))), rel=1e-9)
    assert lengths[-1] == pytest.approx(2.0 * (steps[-1] - steps[0]), rel=1e-9)
    np.testing.assert_allclose(np.diff(np.log(lengths)), np.log(lengths[1] / lengths[0]))
    for r in rates:  # every rate is usable with ema_coefficients
        _check_combination(ema_coefficients(steps, r), len(steps))


def test_default_ema_rates_default_count() -> None:
    assert len(default_ema_rates(list(range(0, 5000, 250)))) == 8


@pytest.mark.parametrize("count", [1, 0, -2, 2.0, True, "8"])
def test_default_ema_rates_rejects_bad_count(count: object) -> None:
    with pytest.raises(LcscError, match="count"):
        default_ema_rates([0, 10, 20], count)  # type: ignore[arg-type]


def test_default_ema_rates_needs_two_steps() -> None:
    with pytest.raises(TrajectoryError, match="steps"):
        default_ema_rates([100])


# ---------------------------------------------------------------------- validation

BAD_STEPS = [
    ([], "empty"),
    ([[0, 1], [2, 3]], "1-D"),
    (5, "1-D"),
    ([0, 5, 5, 9], r"steps\[2\]=5"),
    ([0, 9, 5], r"steps\[2\]=5"),
    ([-3, 1, 2], r"steps\[0\]=-3"),
    ([0, 1.5, 3], r"steps\[1\]=1.5"),
    ([0, float("nan")], r"steps\[1\]=nan"),
    (["a", "b"], "integers"),
    ([True, False], "integers"),
]


@pytest.mark.parametrize(
    "fn",
    [
        lambda s: ema_coefficients(s, 0.9),
        lambda s: power_ema_coefficients(s, 0.1),
        lambda s: default_ema_rates(s),
    ],
    ids=["ema", "power_ema", "default_ema_rates"],
)
@pytest.mark.parametrize(("steps", "detail"), BAD_STEPS)
def test_bad_steps_raise_trajectory_error(fn, steps: object, detail: str) -> None:
    with pytest.raises(TrajectoryError, match="steps") as excinfo:
        fn(steps)
    assert excinfo.match(detail)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan"), float("inf"), True, "0.9", None])
def test_bad_rate_raises_lcsc_error(rate: object) -> None:
    with pytest.raises(LcscError, match="rate") as excinfo:
        ema_coefficients([0, 1, 2], rate)  # type: ignore[arg-type]
    assert excinfo.type is LcscError
    assert excinfo.match(r"rate=")


@pytest.mark.parametrize("sigma_rel", [0.0, -0.05, 0.31, 1.0, float("nan"), float("inf"), None])
def test_bad_sigma_rel_raises_lcsc_error(sigma_rel: object) -> None:
    for call in (
        lambda: sigma_rel_to_gamma(sigma_rel),  # type: ignore[arg-type]
        lambda: power_ema_coefficients([0, 1, 2], sigma_rel),  # type: ignore[arg-type]
    ):
        with pytest.raises(LcscError, match="sigma_rel=") as excinfo:
            call()
        assert excinfo.type is LcscError
