"""A small LLaMA-style decoder-only language model, built stage by stage.

Blocks are pre-norm: ``x <- x + Attn(RMSNorm(x))``, ``x <- x + SwiGLU(RMSNorm(x))``, with causal
multi-head attention on rotary positions (no position parameters) and no biases. A
:class:`Stage` is one pipeline stage's share: its blocks, plus the token embedding on stage 0
and the final RMSNorm and LM head on stage ``S - 1``.

Parameter names are stable and the same on every stage: ``blocks.<j>.*`` for the stage's
``j``-th block, ``embed.weight``, ``norm.weight`` and ``head.weight``, so the layers of two
stages can be averaged name by name.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from checkfree.config import ModelConfig

EMBED_KEYS = ("embed.weight",)
HEAD_KEYS = ("norm.weight", "head.weight")
BLOCK_PREFIX = "blocks."


class RMSNorm(nn.Module):
    """``y = x / sqrt(mean(x^2, last dim) + eps) * g`` with a learned gain ``g`` (``[d]``)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotary_tables(seq_len: int, head_dim: int, base: float = 10000.0) -> torch.Tensor:
    """``[seq_len, head_dim / 2, 2]``: cos and sin of ``t * base^(-2k / head_dim)``."""
    freqs = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.arange(seq_len, dtype=torch.float64)[:, None] * freqs[None, :]
    return torch.stack([angles.cos(), angles.sin()], -1).float()


def apply_rotary(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rotate feature pairs ``(x_2k, x_2k+1)`` of ``x`` (``[B, H, T, hd]``) by position angle."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    cos, sin = table[: x.shape[-2], :, 0], table[: x.shape[-2], :, 1]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1).flatten(-2)


class Attention(nn.Module):
    """Causal multi-head self-attention with rotary positions; ``[B, T, d] -> [B, T, d]``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.heads = config.heads
        self.qkv = nn.Linear(config.dim, 3 * config.dim, bias=False)
        self.out = nn.Linear(config.dim, config.dim, bias=False)
        table = rotary_tables(config.seq_len, config.dim // config.heads)
        self.register_buffer("rotary", table, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, self.rotary), apply_rotary(k, self.rotary)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class SwiGLU(nn.Module):
    """``W_down(silu(W_gate x) * W_up x)``; ``[B, T, d] -> [B, T, d]``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.gate = nn.Linear(dim, hidden, bias=False)
        self.up = nn.Linear(dim, hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    """One pre-norm transformer layer."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(config.dim)
        self.attn = Attention(config)
        self.mlp_norm = RMSNorm(config.dim)
        self.mlp = SwiGLU(config.dim, config.hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class Stage(nn.Module):
    """Pipeline stage ``index`` of ``config.stages``; see the module docstring for its parts."""

    def __init__(self, config: ModelConfig, index: int) -> None:
        super().__init__()
        self.index = index
        self.first = index == 0
        self.last = index == config.stages - 1
        self.embed = nn.Embedding(config.vocab, config.dim) if self.first else None
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers_per_stage))
        self.norm = RMSNorm(config.dim) if self.last else None
        self.head = nn.Linear(config.dim, config.vocab, bias=False) if self.last else None

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` int64 tokens -> ``[B, T, d]`` embeddings (stage 0 only)."""
        assert self.embed is not None
        return self.embed(tokens)

    def run_blocks(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T, d] -> [B, T, d]`` through this stage's transformer blocks."""
        for block in self.blocks:
            x = block(x)
        return x

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T, d] -> [B, T, vocab]`` (last stage only)."""
        assert self.norm is not None and self.head is not None
        return self.head(self.norm(x))


def build_stage(config: ModelConfig, index: int, generator: torch.Generator) -> Stage:
    """Stage ``index`` with weights ``N(0, init_std^2)`` drawn from ``generator`` (norms: 1).

    Each stage draws from its own generator, so one process can build its stage alone and get
    the same weights as a single process building all stages.
    """
    stage = Stage(config, index)
    with torch.no_grad():
        for name, p in stage.named_parameters():
            if not name.endswith("norm.weight"):  # RMSNorm gains stay 1
                p.normal_(0.0, config.init_std, generator=generator)
    return stage
