"""Samplers on toy data whose exact denoiser and ODE solution are known in closed form.

Data y ~ N(mu, s^2 I): the exact denoiser is D(x, sigma) = mu + s^2 / (s^2 + sigma^2) (x - mu),
and the probability-flow ODE from x(sigma_max) = sigma_max z ends at
x(0) = mu + s / sqrt(s^2 + sigma_max^2) (sigma_max z - mu). s = 0 is a single data point.
"""

from __future__ import annotations

import math

import pytest
import torch

from lcsc.errors import LcscError
from lcsc.reference.generative import (
    ModelConfig,
    SigmaSchedule,
    build_model,
    initial_noise,
    sample,
    steps_for,
)
from lcsc.reference.generative.samplers import default_cm_sigmas

MU, S, SMAX, SMIN = 0.3, 0.5, 80.0, 0.002


class Gaussian:
    """The exact denoiser of N(mu, s^2 I), counting its evaluations."""

    def __init__(self, mu: float = MU, s: float = S) -> None:
        self.mu, self.s, self.calls, self.rows = mu, s, 0, 0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        assert sigma.shape == (x.shape[0],)
        self.calls += 1
        self.rows += x.shape[0]
        sg = sigma.reshape(-1, *([1] * (x.ndim - 1)))
        return self.mu + self.s**2 / (self.s**2 + sg**2) * (x - self.mu)

    def ode_solution(self, z: torch.Tensor) -> torch.Tensor:
        return self.mu + self.s / math.sqrt(self.s**2 + SMAX**2) * (SMAX * z - self.mu)

    def consistency(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The exact consistency function: the ODE from sigma down to sigma_min."""
        sg = sigma.reshape(-1, *([1] * (x.ndim - 1)))
        scale = ((self.s**2 + SMIN**2) / (self.s**2 + sg**2)).sqrt()
        return self.mu + scale * (x - self.mu)


@pytest.fixture
def z() -> torch.Tensor:
    return initial_noise(500, (4,), seed=0).double()


def test_schedule() -> None:
    sig = SigmaSchedule().sigmas(18)
    assert sig[0] == pytest.approx(80.0) and sig[-1] == pytest.approx(0.002)
    assert all(a > b for a, b in zip(sig, sig[1:], strict=False))
    assert SigmaSchedule().sigmas(1) == [80.0]
    with pytest.raises(LcscError, match="sigma_min"):
        SigmaSchedule(sigma_min=100.0)


def test_nfe_to_steps() -> None:
    assert steps_for("euler", 10) == 10 and steps_for("dpmpp", 10) == 10
    assert steps_for("heun", 35) == 18 and steps_for("heun", 1) == 1
    assert steps_for("cm", 2) == 2
    with pytest.raises(LcscError, match="odd"):
        steps_for("heun", 4)
    with pytest.raises(LcscError, match="nfe"):
        steps_for("euler", 0)
    with pytest.raises(LcscError, match="unknown sampler"):
        steps_for("ddim", 10)


@pytest.mark.parametrize(
    ("method", "nfe"), [("euler", 7), ("heun", 7), ("heun", 1), ("dpmpp", 7), ("cm", 1), ("cm", 3)]
)
def test_nfe_is_the_number_of_evaluations(method: str, nfe: int, z: torch.Tensor) -> None:
    model = Gaussian()
    sample(model, z, method, nfe, generator=torch.Generator().manual_seed(0))
    assert model.calls == nfe
    model = Gaussian()
    sample(model, z, method, nfe, batch_size=200, generator=torch.Generator().manual_seed(0))
    assert model.calls == 3 * nfe and model.rows == nfe * len(z)


@pytest.mark.parametrize("method", ["euler", "heun", "dpmpp"])
def test_single_point_is_reached_exactly(method: str, z: torch.Tensor) -> None:
    x = sample(Gaussian(s=0.0), z, method, 5)
    torch.testing.assert_close(x, torch.full_like(z, MU), atol=1e-9, rtol=0)


def test_gaussian_convergence_and_order(z: torch.Tensor) -> None:
    model = Gaussian()
    exact = model.ode_solution(z)
    errors = {
        m: [float((sample(model, z, m, nfe) - exact).abs().max()) for nfe in (17, 33, 65, 129)]
        for m in ("euler", "heun", "dpmpp")
    }
    for m, e in errors.items():
        assert all(a > b for a, b in zip(e, e[1:], strict=False)), (m, e)  # converges as NFE grows
    # Euler is first order (error halves with twice the NFE), Heun and DPM-Solver++ second.
    assert 1.6 < errors["euler"][-2] / errors["euler"][-1] < 2.4
    assert errors["heun"][-2] / errors["heun"][-1] > 3.3
    assert errors["dpmpp"][-2] / errors["dpmpp"][-1] > 3.3
    for i in (1, 2, 3):  # at equal NFE, Heun is the more accurate
        assert errors["heun"][i] < errors["euler"][i]
    assert all(d < e for d, e in zip(errors["dpmpp"], errors["euler"], strict=False))
    assert errors["heun"][-1] < 0.01


def test_samples_follow_the_data_distribution() -> None:
    z = initial_noise(20000, (1,), seed=1).double()
    x = sample(Gaussian(), z, "heun", 65)
    assert float(x.mean()) == pytest.approx(MU, abs=0.015)
    assert float(x.std()) == pytest.approx(S, abs=0.015)


def test_consistency_sampling(z: torch.Tensor) -> None:
    model = Gaussian()
    one = sample(model.consistency, z, "cm", 1)
    torch.testing.assert_close(one, model.consistency(SMAX * z, torch.full((len(z),), SMAX)))
    noise = torch.randn(2, *z.shape, dtype=z.dtype, generator=torch.Generator().manual_seed(3))
    sigmas = [80.0, 2.0, 0.5]
    x = sample(model.consistency, z, "cm", 3, sigmas=sigmas, noise=noise)
    ref = one
    for k, s in enumerate(sigmas[1:]):
        ref = model.consistency(
            ref + math.sqrt(s * s - SMIN**2) * noise[k], torch.full((len(z),), s)
        )
    torch.testing.assert_close(x, ref)
    assert default_cm_sigmas(1, SigmaSchedule()) == [80.0]
    assert len(default_cm_sigmas(3, SigmaSchedule())) == 3


def test_consistency_generator_is_batch_invariant(z: torch.Tensor) -> None:
    model = Gaussian().consistency
    a = sample(model, z, "cm", 3, generator=torch.Generator().manual_seed(5))
    b = sample(model, z, "cm", 3, generator=torch.Generator().manual_seed(5), batch_size=64)
    assert torch.equal(a, b)


@pytest.mark.parametrize("method", ["euler", "heun", "dpmpp"])
def test_batch_size_invariance(method: str, z: torch.Tensor) -> None:
    model = Gaussian()
    assert torch.equal(sample(model, z, method, 9), sample(model, z, method, 9, batch_size=37))


def test_batch_size_invariance_network_and_mode() -> None:
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(data_shape=(1, 8, 8), width=32, depth=1, emb_dim=16, dropout=0.5)
    )
    with torch.no_grad():
        model.net.out.weight.normal_(0, 0.1)
    z = initial_noise(64, (1, 8, 8), seed=2)
    model.train()
    a = sample(model, z, "dpmpp", 5)
    assert model.training  # restored after sampling in eval mode (no dropout noise)
    b = sample(model, z, "dpmpp", 5, batch_size=10)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert torch.equal(a, sample(model, z, "dpmpp", 5))


def test_bad_arguments(z: torch.Tensor) -> None:
    model = Gaussian()
    with pytest.raises(LcscError, match="noise levels"):
        sample(model, z, "euler", 3, sigmas=[10.0, 1.0])
    with pytest.raises(LcscError, match="decreasing"):
        sample(model, z, "euler", 2, sigmas=[1.0, 10.0])
    with pytest.raises(LcscError, match="batch_size"):
        sample(model, z, "euler", 2, batch_size=0)
    with pytest.raises(LcscError, match="noise must have shape"):
        sample(model, z, "cm", 2, noise=torch.zeros(1, 3, 4))
