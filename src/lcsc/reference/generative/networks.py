"""Small networks ``F(x, c_noise)`` for the EDM denoiser, and the config that rebuilds them.

* :class:`MLP` for flat vectors (or any sample shape, flattened): residual blocks with SiLU and
  the noise embedding added inside every block.
* :class:`UNet` for images ``(N, C, H, W)``: residual blocks with GroupNorm and SiLU at
  ``len(channel_mult)`` resolutions, skip connections, the noise embedding added in every block.

:class:`ModelConfig` holds everything needed to rebuild a network (it is stored as JSON in every
checkpoint's ``lcsc_metadata``); :func:`build_model` turns it into a :class:`Denoiser`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from lcsc.config import Config, choice, integer, integers, real
from lcsc.reference.generative.edm import PARAMETRISATIONS, Denoiser, Preconditioning

KINDS = ("mlp", "unet")
EMBEDDINGS = ("fourier", "positional")
_EMBED_SEED = 0  # Fourier frequencies are a fixed function of the config, never trained


@dataclass(frozen=True)
class ModelConfig(Config):
    """Architecture and preconditioning of a denoiser.

    Attributes:
        kind: ``"mlp"`` or ``"unet"``.
        data_shape: shape of one sample in model space: ``(D,)`` or ``(C, H, W)`` for the MLP
            (flattened), ``(C, H, W)`` for the U-Net.
        width: MLP hidden width.
        depth: number of MLP residual blocks.
        channels: U-Net channels at the first resolution.
        channel_mult: U-Net channel multipliers, one per resolution (each halves H and W).
        num_res_blocks: U-Net residual blocks per resolution.
        emb_dim: width of the noise embedding.
        embedding: ``"fourier"`` (random Fourier features) or ``"positional"`` (sinusoids).
        embedding_scale: frequency scale of the embedding of ``c_noise = ln(sigma) / 4``.
        dropout: dropout rate inside the residual blocks.
        sigma_data, sigma_min, parametrisation: the preconditioning (see :mod:`.edm`).
    """

    kind: str = "mlp"
    data_shape: tuple[int, ...] = (64,)
    width: int = 256
    depth: int = 2
    channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2)
    num_res_blocks: int = 1
    emb_dim: int = 128
    embedding: str = "fourier"
    embedding_scale: float = 1.0
    dropout: float = 0.0
    sigma_data: float = 0.5
    sigma_min: float = 0.002
    parametrisation: str = "dm"

    def __post_init__(self) -> None:
        # Lists (from JSON) are stored as tuples, so configs stay hashable and comparable.
        self.check("data_shape", integers, 1)
        self.check("channel_mult", integers, 1)
        self.check("kind", choice, KINDS)
        self.check("embedding", choice, EMBEDDINGS)
        self.check("parametrisation", choice, PARAMETRISATIONS)
        for name in ("width", "depth", "channels", "num_res_blocks", "emb_dim"):
            self.check(name, integer, 1)
        self.require(self.emb_dim % 2 == 0, "emb_dim", "must be even", self.emb_dim)
        self.check("dropout", real, 0.0, below=1.0)
        for name in ("embedding_scale", "sigma_data", "sigma_min"):
            self.check(name, real, above=0.0)
        if self.kind == "unet":
            self._check_unet_shape()

    def _check_unet_shape(self) -> None:
        shape = self.data_shape
        self.require(len(shape) == 3, "data_shape", "must be (C, H, W) for a U-Net", shape)
        factor = 2 ** (len(self.channel_mult) - 1)
        self.require(
            shape[1] % factor == 0 and shape[2] % factor == 0,
            "data_shape",
            f"must have H and W divisible by {factor} for {len(self.channel_mult)} resolutions"
            " (channel_mult)",
            shape,
        )

    @property
    def preconditioning(self) -> Preconditioning:
        return Preconditioning(self.sigma_data, self.sigma_min, self.parametrisation)

    @property
    def dim(self) -> int:
        """Number of values in one sample."""
        return math.prod(self.data_shape)


# --------------------------------------------------------------------------- building blocks
class NoiseEmbedding(nn.Module):
    """Features of ``c_noise`` (N,) -> (N, emb_dim), followed by a two-layer SiLU MLP.

    Fourier: ``[cos(2 pi f c), sin(2 pi f c)]`` with fixed ``f ~ N(0, scale^2)`` (a non-persistent
    buffer drawn from a fixed seed, so checkpoints hold only trained weights).
    Positional: the same with geometric ``f = scale * (1/1000)^(i / half)``.
    """

    def __init__(self, dim: int, kind: str, scale: float) -> None:
        super().__init__()
        half = dim // 2
        if kind == "fourier":
            g = torch.Generator().manual_seed(_EMBED_SEED)
            freqs = torch.randn(half, generator=g) * scale
        else:
            freqs = scale * (1e-3) ** (torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim), nn.SiLU())

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        phase = (2 * math.pi) * c_noise.to(self.freqs.dtype)[:, None] * self.freqs[None, :]
        return self.mlp(torch.cat([phase.cos(), phase.sin()], dim=1))


class _MLPBlock(nn.Module):
    """``h + W2 drop(SiLU(W1 SiLU(LN(h)) + E emb))``."""

    def __init__(self, width: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.emb = nn.Linear(emb_dim, width)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(width, width)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        a = self.fc1(nn.functional.silu(self.norm(h))) + self.emb(emb)
        return h + self.fc2(self.drop(nn.functional.silu(a)))


class MLP(nn.Module):
    """``F(x, c_noise)`` for samples of any shape ``(N, *S)``, flattened to ``(N, prod(S))``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d, w = config.dim, config.width
        self.embed = NoiseEmbedding(config.emb_dim, config.embedding, config.embedding_scale)
        self.inp = nn.Linear(d, w)
        self.blocks = nn.ModuleList(
            _MLPBlock(w, config.emb_dim, config.dropout) for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(w)
        self.out = nn.Linear(w, d)
        # Zero output: the untrained denoiser is c_skip x, a sane start for every sigma.
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        emb = self.embed(c_noise)
        h = self.inp(x.reshape(x.shape[0], -1))
        for block in self.blocks:
            h = block(h, emb)
        return self.out(nn.functional.silu(self.norm(h))).reshape(x.shape)


def _groups(channels: int) -> int:
    """GroupNorm groups: the largest of 8, 4, 2, 1 dividing ``channels``."""
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


class _ResBlock(nn.Module):
    """``skip(h) + conv(drop(SiLU(GN(conv(SiLU(GN(h))) + E emb))))`` on (N, C, H, W)."""

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        a = self.conv1(nn.functional.silu(self.norm1(h))) + self.emb(emb)[:, :, None, None]
        a = self.conv2(self.drop(nn.functional.silu(self.norm2(a))))
        return self.skip(h) + a


class UNet(nn.Module):
    """``F(x, c_noise)`` for images (N, C, H, W): an encoder/decoder over ``len(channel_mult)``
    resolutions with skip connections (strided-conv down, nearest-neighbour + conv up)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        cimg, e, drop = config.data_shape[0], config.emb_dim, config.dropout
        widths = [config.channels * m for m in config.channel_mult]
        self.embed = NoiseEmbedding(e, config.embedding, config.embedding_scale)
        self.inp = nn.Conv2d(cimg, widths[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skips, c = [], widths[0]
        for level, w in enumerate(widths):
            for _ in range(config.num_res_blocks):
                self.down.append(_ResBlock(c, w, e, drop))
                c = w
                skips.append(c)
            last = level == len(widths) - 1
            self.downsample.append(
                nn.Identity() if last else nn.Conv2d(c, c, 3, stride=2, padding=1)
            )
        self.mid = _ResBlock(c, c, e, drop)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level in reversed(range(len(widths))):
            for _ in range(config.num_res_blocks):
                self.up.append(_ResBlock(c + skips.pop(), widths[level], e, drop))
                c = widths[level]
            self.upsample.append(nn.Identity() if level == 0 else nn.Conv2d(c, c, 3, padding=1))
        self.norm = nn.GroupNorm(_groups(c), c)
        self.out = nn.Conv2d(c, cimg, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self._blocks = config.num_res_blocks

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        emb = self.embed(c_noise)
        h = self.inp(x)
        skips = []
        blocks = iter(self.down)
        for down in self.downsample:
            for _ in range(self._blocks):
                h = next(blocks)(h, emb)
                skips.append(h)
            h = down(h)
        h = self.mid(h, emb)
        blocks = iter(self.up)
        for up in self.upsample:
            for _ in range(self._blocks):
                h = next(blocks)(torch.cat([h, skips.pop()], dim=1), emb)
            if not isinstance(up, nn.Identity):
                h = up(nn.functional.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(nn.functional.silu(self.norm(h)))


def build_model(config: ModelConfig) -> Denoiser:
    """The denoiser described by ``config`` (freshly initialised from torch's global RNG)."""
    net: nn.Module = MLP(config) if config.kind == "mlp" else UNet(config)
    return Denoiser(net, config.preconditioning)


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
