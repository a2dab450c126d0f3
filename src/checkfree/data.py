"""The corpus every machine has offline: the Python standard library's own source, as bytes.

``*.py`` files under ``sysconfig.get_paths()["stdlib"]`` are read in a fixed order (a walk with
sorted directory and file names, skipping ``site-packages``, ``dist-packages`` and
``__pycache__``) until ``max_bytes``; tokens are the bytes themselves (vocabulary 256). The
split is by interleaved blocks (64 KiB, smaller for a small corpus; every
``1 / val_fraction``-th block is validation), so both parts sample the same mix of modules.
The corpus depends on the Python version installed.
"""

from __future__ import annotations

import functools
import os
import sysconfig
from dataclasses import dataclass

import numpy as np
import torch

from checkfree.rng import numpy_rng
from lcsc.errors import LcscError

_SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__"}
_BLOCK = 64 * 1024


@functools.lru_cache(maxsize=4)
def stdlib_bytes(max_bytes: int) -> bytes:
    """Up to ``max_bytes`` of standard-library source, files joined by a blank line."""
    root = sysconfig.get_paths()["stdlib"]
    parts: list[bytes] = []
    total = 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            try:
                with open(os.path.join(folder, name), "rb") as f:
                    text = f.read()
            except OSError:
                continue  # unreadable file: skip (same on every run of this machine)
            parts.append(text + b"\n\n")
            total += len(parts[-1])
            if total >= max_bytes:
                return b"".join(parts)[:max_bytes]
    if total < 2 * _BLOCK:
        raise LcscError(f"checkfree: found only {total} bytes of Python source under {root}")
    return b"".join(parts)


@dataclass(frozen=True)
class Corpus:
    """Byte tokens (``uint8``, vocabulary 256) split into a training and a validation part."""

    train: np.ndarray
    val: np.ndarray


@functools.lru_cache(maxsize=4)
def load_corpus(max_bytes: int, val_fraction: float) -> Corpus:
    """The standard-library corpus, split into interleaved training and validation blocks."""
    tokens = np.frombuffer(stdlib_bytes(max_bytes), dtype=np.uint8)
    period = max(2, round(1 / val_fraction))
    # 64 KiB blocks, smaller for a small corpus so that validation gets at least 4 of them.
    size = max(1024, min(_BLOCK, len(tokens) // (4 * period)))
    blocks = [tokens[i : i + size] for i in range(0, len(tokens), size)]
    val = [b for i, b in enumerate(blocks) if i % period == period - 1]
    train = [b for i, b in enumerate(blocks) if i % period != period - 1]
    return Corpus(np.concatenate(train), np.concatenate(val))


def _windows(tokens: np.ndarray, starts: np.ndarray, seq_len: int) -> tuple[torch.Tensor, ...]:
    idx = starts[:, None] + np.arange(seq_len + 1)[None, :]
    chunk = torch.from_numpy(tokens[idx].astype(np.int64))
    return chunk[:, :-1], chunk[:, 1:]


def train_batch(
    corpus: Corpus, seed: int, iteration: int, batch_size: int, seq_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-byte targets, each ``[batch_size, seq_len]`` int64, of one iteration.

    The windows depend only on ``(seed, iteration)``: a rolled-back iteration is redone on the
    same batch, and every process of a pipeline computes the same batch without communicating.
    """
    rng = numpy_rng(seed, "data", iteration)
    starts = rng.integers(0, len(corpus.train) - seq_len - 1, size=batch_size)
    return _windows(corpus.train, starts, seq_len)


def val_batches(
    corpus: Corpus, count: int, batch_size: int, seq_len: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A fixed validation set: ``count`` batches of evenly spaced windows (no randomness)."""
    n = count * batch_size
    starts = np.linspace(0, len(corpus.val) - seq_len - 2, n).astype(np.int64)
    return [
        _windows(corpus.val, starts[i * batch_size : (i + 1) * batch_size], seq_len)
        for i in range(count)
    ]
