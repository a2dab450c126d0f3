"""Coefficient files: a JSON list of K numbers, or an object with a "coefficients" list."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from lcsc.atomic import write_json
from lcsc.errors import LcscError

SUM_TOLERANCE = 1e-6  # |sum - 1| above this is reported (a rounded file sums to 1 +- 1e-12)


def load_coefficients(path: str | os.PathLike[str], k: int | None = None) -> np.ndarray:
    """Read coefficients, shape (K,), checking count (when ``k`` is given) and finiteness."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise LcscError(f"{p}: no such coefficients file") from None
    except (OSError, ValueError) as exc:
        raise LcscError(f"{p}: not a JSON coefficients file: {exc}") from exc
    values = data.get("coefficients") if isinstance(data, dict) else data
    if not isinstance(values, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    ):
        raise LcscError(f'{p}: expected a list of numbers or {{"coefficients": [...]}}')
    if k is not None and len(values) != k:
        raise LcscError(f"{p}: holds {len(values)} coefficients but there are {k} checkpoints")
    if not all(math.isfinite(v) for v in values):
        raise LcscError(f"{p}: coefficients must be finite")
    return np.asarray(values, dtype=np.float64)


def save_coefficients(
    path: str | os.PathLike[str],
    coefficients: np.ndarray | Sequence[float],
    steps: Sequence[int] | None = None,
    **extra: Any,
) -> None:
    """Write coefficients atomically in the format :func:`load_coefficients` reads."""
    obj: dict[str, Any] = {"coefficients": [float(c) for c in coefficients]}
    if steps is not None:
        obj["steps"] = [int(s) for s in steps]
    write_json(path, obj | extra)


def coefficient_sum(coefficients: np.ndarray | Sequence[float]) -> float:
    """The sum of finite ``coefficients``, exactly rounded (no overflow in between)."""
    return float(sum(Fraction(float(c)) for c in coefficients))
