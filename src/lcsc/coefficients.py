"""Coefficient files: a JSON list of K numbers, or an object with a "coefficients" list.

Per-group coefficients (:mod:`lcsc.trajectory.groups`) are an object whose "coefficients" is
a list of G lists of K numbers and whose "groups" lists the G group names (the patterns, then
``rest``); a file without "groups" reads as before.
"""

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
    values, groups = read_coefficients(path, k)
    if groups is not None:
        raise LcscError(
            f"{path}: holds per-group coefficients ({len(groups)} groups), not one vector"
        )
    return values


def read_coefficients(
    path: str | os.PathLike[str], k: int | None = None
) -> tuple[np.ndarray, list[str] | None]:
    """Coefficients ``(K,)`` and None, or per-group ones ``(G, K)`` and the G group names;
    the count (when ``k`` is given) and finiteness are checked."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise LcscError(f"{p}: no such coefficients file") from None
    except (OSError, ValueError) as exc:
        raise LcscError(f"{p}: not a JSON coefficients file: {exc}") from exc
    values = data.get("coefficients") if isinstance(data, dict) else data
    groups = data.get("groups") if isinstance(data, dict) else None
    if groups is None:
        return _vector(p, values, k), None
    if not isinstance(groups, list) or not groups or not all(isinstance(g, str) for g in groups):
        raise LcscError(f'{p}: "groups" must be a non-empty list of group names')
    if not isinstance(values, list) or len(values) != len(groups):
        raise LcscError(f'{p}: "coefficients" must hold one list per group ({len(groups)})')
    rows = [_vector(p, row, k, name) for row, name in zip(values, groups, strict=True)]
    if len({len(row) for row in rows}) > 1:
        raise LcscError(f"{p}: the groups hold different numbers of coefficients")
    return np.stack(rows), groups


def _vector(p: Path, values: Any, k: int | None, group: str | None = None) -> np.ndarray:
    where = "" if group is None else f" of group {group!r}"
    if not isinstance(values, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    ):
        raise LcscError(f'{p}: expected a list of numbers{where} or {{"coefficients": [...]}}')
    if k is not None and len(values) != k:
        raise LcscError(
            f"{p}: holds {len(values)} coefficients{where} but there are {k} checkpoints"
        )
    if not all(math.isfinite(v) for v in values):
        raise LcscError(f"{p}: coefficients{where} must be finite")
    return np.asarray(values, dtype=np.float64)


def save_coefficients(
    path: str | os.PathLike[str],
    coefficients: np.ndarray | Sequence[float],
    steps: Sequence[int] | None = None,
    **extra: Any,
) -> None:
    """Write coefficients (``(K,)``, or ``(G, K)`` with ``groups=[names]`` in ``extra``)
    atomically in the format :func:`read_coefficients` reads."""
    obj: dict[str, Any] = {"coefficients": np.asarray(coefficients, dtype=np.float64).tolist()}
    if steps is not None:
        obj["steps"] = [int(s) for s in steps]
    write_json(path, obj | extra)


def coefficient_sum(coefficients: np.ndarray | Sequence[float]) -> float:
    """The sum of finite ``coefficients``, exactly rounded (no overflow in between)."""
    return float(sum(Fraction(float(c)) for c in coefficients))
