"""Independent, named random streams derived from one run seed.

Initialisation, batches, failures and random re-initialisation each draw from their own stream,
so changing the strategy (which changes what is computed) never changes which batches are read
or which stages fail.
"""

from __future__ import annotations

import numpy as np
import torch

_STREAMS = {"init": 1, "reinit": 2, "data": 3, "failures": 4}


def stream_seed(seed: int, stream: str, *keys: int) -> int:
    """A 63-bit seed for ``stream`` (one of init, reinit, data, failures) and integer ``keys``."""
    entropy = [int(seed), _STREAMS[stream], *(int(k) for k in keys)]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> np.uint64(1))


def numpy_rng(seed: int, stream: str, *keys: int) -> np.random.Generator:
    return np.random.default_rng(stream_seed(seed, stream, *keys))


def torch_generator(seed: int, stream: str, *keys: int) -> torch.Generator:
    return torch.Generator().manual_seed(stream_seed(seed, stream, *keys))
