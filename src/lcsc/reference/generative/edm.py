"""EDM preconditioning (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based
Generative Models", Table 1) and its consistency-model variant.

A network ``F`` is wrapped into a denoiser

    D(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma)),

so that ``F``'s input and training target have unit variance at every noise level.

* Diffusion models (``parametrisation="dm"``)::

      c_skip = sd^2 / (s^2 + sd^2)        c_out = s sd / sqrt(s^2 + sd^2)
      c_in   = 1 / sqrt(s^2 + sd^2)       c_noise = ln(s) / 4

* Consistency models (``"cm"``, Song et al. 2023) shift ``c_skip``/``c_out`` so that the boundary
  condition ``D(x, s_min) = x`` holds exactly::

      c_skip = sd^2 / ((s - s_min)^2 + sd^2)      c_out = (s - s_min) sd / sqrt(s^2 + sd^2)

with ``sd`` = sigma_data and ``s`` = sigma.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lcsc.config import Config, choice, real

PARAMETRISATIONS = ("dm", "cm")


@dataclass(frozen=True)
class Preconditioning(Config):
    """Which preconditioning to apply, and its constants.

    Attributes:
        sigma_data: standard deviation of the data in model space (0.5 for data in [-1, 1]).
        sigma_min: the smallest noise level; only the consistency version uses it.
        parametrisation: ``"dm"`` (diffusion model) or ``"cm"`` (consistency model).
    """

    sigma_data: float = 0.5
    sigma_min: float = 0.002
    parametrisation: str = "dm"

    def __post_init__(self) -> None:
        self.check("sigma_data", real, above=0.0)
        self.check("sigma_min", real, above=0.0)
        self.check("parametrisation", choice, PARAMETRISATIONS)

    def c_skip(self, sigma: torch.Tensor) -> torch.Tensor:
        """Skip scaling, same shape as ``sigma``."""
        sd2 = self.sigma_data**2
        if self.parametrisation == "cm":
            return sd2 / ((sigma - self.sigma_min) ** 2 + sd2)
        return sd2 / (sigma**2 + sd2)

    def c_out(self, sigma: torch.Tensor) -> torch.Tensor:
        """Output scaling, same shape as ``sigma``."""
        sd = self.sigma_data
        scale = sigma - self.sigma_min if self.parametrisation == "cm" else sigma
        return scale * sd / (sigma**2 + sd**2).sqrt()

    def c_in(self, sigma: torch.Tensor) -> torch.Tensor:
        """Input scaling, same shape as ``sigma``: makes ``c_in x`` unit variance."""
        return (sigma**2 + self.sigma_data**2).rsqrt()

    def c_noise(self, sigma: torch.Tensor) -> torch.Tensor:
        """The noise-level conditioning fed to the network, ``ln(sigma) / 4``."""
        return sigma.log() / 4


class Denoiser(nn.Module):
    """``D(x, sigma) = c_skip x + c_out F(c_in x, c_noise)`` around a network ``F(x, c_noise)``.

    Args:
        net: maps ``(x, c_noise)`` with shapes ``(N, *S)`` and ``(N,)`` to ``(N, *S)``.
        config: the preconditioning (:class:`Preconditioning`).
    """

    def __init__(self, net: nn.Module, config: Preconditioning) -> None:
        super().__init__()
        self.net = net
        self.config = config

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """Denoise ``x`` (N, *S) at noise level ``sigma`` (a scalar or shape (N,)); -> (N, *S)."""
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        s = sigma.reshape(-1, *([1] * (x.ndim - 1)))  # broadcast over the sample dimensions
        pc = self.config
        out = self.net(pc.c_in(s) * x, pc.c_noise(sigma))
        return pc.c_skip(s) * x + pc.c_out(s) * out
