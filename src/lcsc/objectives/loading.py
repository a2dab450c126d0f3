"""Loading a user's objective: ``MODULE:FUNCTION`` or ``path/to/file.py:FUNCTION``.

FUNCTION is a factory: it is called with the ``KEY=VALUE`` pairs as string keyword arguments and
returns the objective, a callable ``state_dict -> float`` (lower is better).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from lcsc.errors import LcscError

Objective = Callable[[dict[str, torch.Tensor]], float]


def parse_pairs(pairs: Sequence[str], flag: str = "--objective-arg") -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``; a malformed pair is named (with ``flag``)."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise LcscError(f"{flag} '{pair}': expected KEY=VALUE with a Python name as KEY")
        out[key] = value
    return out


def load_objective(
    spec: str,
    kwargs: dict[str, str] | None = None,
    flag: str = "--objective",
    arg_flag: str = "--objective-arg",
) -> Objective:
    """Import ``spec`` (``MODULE:FUNCTION`` or ``FILE.py:FUNCTION``) and build the objective.

    Errors name ``flag`` and ``arg_flag`` (the validation objective's flags for that one)."""
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise LcscError(f"{flag} '{spec}': expected MODULE:FUNCTION or FILE.py:FUNCTION")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise LcscError(f"{flag} '{spec}': no such file {path}")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        if "" not in sys.path:
            sys.path.insert(0, "")  # like `python -m`: modules in the working directory
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise LcscError(f"{flag} '{spec}': cannot import {target}: {exc}") from exc
    factory = getattr(module, name, None)
    if not callable(factory):
        raise LcscError(f"{flag} '{spec}': {target} has no function {name}")
    try:
        objective = factory(**(kwargs or {}))
    except TypeError as exc:
        raise LcscError(f"{flag} '{spec}': bad {arg_flag}: {exc}") from exc
    if not callable(objective):
        raise LcscError(f"{flag} '{spec}': {name}() must return a callable objective")
    return objective
