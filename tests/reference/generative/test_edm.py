from __future__ import annotations

import pytest
import torch

from lcsc.errors import LcscError
from lcsc.reference.generative import Denoiser, ModelConfig, Preconditioning, build_model

SIGMAS = torch.tensor([0.002, 0.01, 0.3, 0.5, 2.0, 80.0], dtype=torch.float64)


def test_dm_closed_forms() -> None:
    pc = Preconditioning(sigma_data=0.5, parametrisation="dm")
    s, sd = SIGMAS, 0.5
    torch.testing.assert_close(pc.c_skip(s), sd**2 / (s**2 + sd**2))
    torch.testing.assert_close(pc.c_out(s), s * sd / (s**2 + sd**2).sqrt())
    torch.testing.assert_close(pc.c_in(s), 1 / (s**2 + sd**2).sqrt())
    torch.testing.assert_close(pc.c_noise(s), s.log() / 4)
    # EDM's design: the network's input and effective target have unit variance.
    torch.testing.assert_close(pc.c_in(s) ** 2 * (s**2 + sd**2), torch.ones_like(s))
    target_var = ((1 - pc.c_skip(s)) ** 2 * sd**2 + pc.c_skip(s) ** 2 * s**2) / pc.c_out(s) ** 2
    torch.testing.assert_close(target_var, torch.ones_like(s))


def test_cm_boundary_condition() -> None:
    pc = Preconditioning(sigma_data=0.5, sigma_min=0.002, parametrisation="cm")
    s_min = torch.tensor([0.002])
    assert pc.c_skip(s_min).item() == 1.0
    assert pc.c_out(s_min).item() == 0.0
    s, sd = SIGMAS, 0.5
    torch.testing.assert_close(pc.c_skip(s), sd**2 / ((s - 0.002) ** 2 + sd**2))
    torch.testing.assert_close(pc.c_out(s), (s - 0.002) * sd / (sd**2 + s**2).sqrt())


@pytest.mark.parametrize("kind", ["mlp", "unet"])
def test_cm_denoiser_is_identity_at_sigma_min(kind: str) -> None:
    torch.manual_seed(0)
    config = ModelConfig(
        kind=kind,
        data_shape=(1, 8, 8),
        width=32,
        depth=1,
        channels=8,
        emb_dim=16,
        parametrisation="cm",
    )
    model = build_model(config)
    with torch.no_grad():
        for p in model.parameters():  # the zero-initialised output layer would hide the test
            p.normal_(0, 0.1)
    x = torch.randn(5, 1, 8, 8)
    assert torch.equal(model(x, config.sigma_min), x)
    assert not torch.allclose(model(x, 1.0), x)


def test_denoiser_matches_formula_and_broadcasts_sigma() -> None:
    class Net(torch.nn.Module):
        def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
            return x.square() + c_noise.reshape(-1, 1)

    pc = Preconditioning(0.5)
    d = Denoiser(Net(), pc)
    x = torch.randn(4, 3, dtype=torch.float64)
    sigma = torch.full((4,), 0.7, dtype=torch.float64)
    s = sigma[:, None]
    expected = pc.c_skip(s) * x + pc.c_out(s) * ((pc.c_in(s) * x).square() + pc.c_noise(s))
    torch.testing.assert_close(d(x, sigma), expected)
    torch.testing.assert_close(d(x, 0.7), expected)


def test_bad_preconditioning_names_the_field() -> None:
    with pytest.raises(LcscError, match="parametrisation"):
        Preconditioning(parametrisation="vp")
    with pytest.raises(LcscError, match="sigma_data"):
        Preconditioning(sigma_data=0.0)
